"""Analytic checks of expr3d.data.geometry: spheres, planes, occlusion, hole filling."""

import warnings

import numpy as np
import pytest

from expr3d.data import geometry

SIZE = 96


def _angle_deg(a, b):
    a = a / np.linalg.norm(a, axis=-1, keepdims=True)
    b = b / np.linalg.norm(b, axis=-1, keepdims=True)
    return np.degrees(np.arccos(np.clip(np.sum(a * b, axis=-1), -1.0, 1.0)))


# --------------------------------------------------------------------------
# Analytic references
# --------------------------------------------------------------------------


def _ortho_sphere(camera, center, radius, size=SIZE):
    """Analytic depth, normals and disc mask of a sphere under an orthographic camera."""
    u, v = geometry.pixel_centers(size, size)
    x = (u - camera.cx) / camera.scale - center[0]
    y = -(v - camera.cy) / camera.scale - center[1]
    r2 = (x**2 + y**2) / radius**2
    inside = r2 < 1.0
    dz = radius * np.sqrt(np.clip(1.0 - r2, 0.0, None))
    depth = camera.depth_offset - (center[2] + dz)
    normals = np.stack([x, y, dz], axis=-1) / radius
    return depth, normals, inside, np.sqrt(r2)


def _perspective_sphere(camera, center, radius, size=SIZE):
    """Ray-sphere intersection per pixel centre: depth, normals, hit mask, discriminant."""
    u, v = geometry.pixel_centers(size, size)
    d = np.stack([(u - camera.cx) / camera.focal_px, -(v - camera.cy) / camera.focal_px, -np.ones_like(u)], axis=-1)
    c = np.asarray(center, np.float64)
    dd = np.sum(d * d, axis=-1)
    dc = d @ c
    disc = dc**2 - dd * (c @ c - radius**2)
    hit = disc > 0
    t = (dc - np.sqrt(np.clip(disc, 0.0, None))) / dd  # z_depth, since d_z = -1
    points = d * t[..., None]
    normals = (points - c) / radius
    return np.where(hit, t, 0.0), normals, hit, disc / (dd * radius**2)


def _plane_mesh(a, b, c, extent=4.0, n=24):
    """Grid mesh of the plane z = a*x + b*y + c over [-extent, extent]^2."""
    xs, ys = np.meshgrid(np.linspace(-extent, extent, n), np.linspace(-extent, extent, n))
    return geometry.grid_mesh(xs, ys, a * xs + b * ys + c)


# --------------------------------------------------------------------------
# Cameras
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "camera",
    [
        geometry.PerspectiveCamera(focal_px=120.0, cx=40.0, cy=30.0),
        geometry.OrthographicCamera(scale=25.0, cx=40.0, cy=30.0, depth_offset=5.0),
        geometry.PixelSpaceCamera(z_toward_camera=True, z_reference=50.0),
        geometry.PixelSpaceCamera(z_toward_camera=False, z_reference=-3.0, pixel_offset=0.0),
    ],
)
def test_camera_project_unproject_round_trip(camera):
    rng = np.random.default_rng(0)
    points = rng.uniform(-1.0, 1.0, (50, 3)) + np.array([0.0, 0.0, -4.0])
    uv, z_depth = camera.project(points)
    back = camera.unproject(uv[:, 0], uv[:, 1], z_depth)
    np.testing.assert_allclose(back, points, atol=1e-9)


def test_camera_formulas():
    p = np.array([[0.5, -0.25, -2.0]])
    uv, zd = geometry.PerspectiveCamera(focal_px=100.0, cx=32.0, cy=32.0).project(p)
    np.testing.assert_allclose(uv, [[32.0 + 25.0, 32.0 + 12.5]])
    np.testing.assert_allclose(zd, [2.0])
    uv, zd = geometry.OrthographicCamera(scale=10.0, cx=32.0, cy=32.0, depth_offset=1.0).project(p)
    np.testing.assert_allclose(uv, [[37.0, 34.5]])
    np.testing.assert_allclose(zd, [3.0])
    uv, zd = geometry.PixelSpaceCamera(z_reference=10.0).project(np.array([[3.0, 7.0, 4.0]]))
    np.testing.assert_allclose(uv, [[3.5, 7.5]])
    np.testing.assert_allclose(zd, [6.0])  # larger z is nearer -> smaller depth


def test_pixel_space_camera_for_vertices_makes_depths_positive():
    vertices = np.array([[0.0, 0.0, 5.0], [1.0, 0.0, -2.0], [0.0, 1.0, 9.0]])
    cam = geometry.PixelSpaceCamera.for_vertices(vertices, margin=1.0)
    _, zd = cam.project(vertices)
    assert zd.min() == pytest.approx(1.0)
    cam = geometry.PixelSpaceCamera.for_vertices(vertices, z_toward_camera=False, margin=1.0)
    _, zd = cam.project(vertices)
    assert zd.min() == pytest.approx(1.0)


def test_pixel_space_sphere_matches_orthographic_rendering():
    """A pixel-space mesh (y down, z toward viewer) renders like its camera-space twin."""
    radius, centre_px = 30.0, (48.0, 44.0)
    unit_v, faces = geometry.uv_sphere_mesh(1.0, num_lat=48, num_lon=96)
    ortho = geometry.OrthographicCamera(scale=radius, cx=centre_px[0], cy=centre_px[1], depth_offset=2.0)
    ref = geometry.rasterize(unit_v, faces, ortho, SIZE, SIZE)
    # The same sphere in pixel units: column = cx + R x, row = cy - R y, z = R z.
    pix_v = np.stack(
        [centre_px[0] + radius * unit_v[:, 0], centre_px[1] - radius * unit_v[:, 1], radius * unit_v[:, 2]], axis=-1
    )
    cam = geometry.PixelSpaceCamera(z_toward_camera=True, z_reference=2.0 * radius, pixel_offset=0.0)
    got = geometry.rasterize(pix_v, faces, cam, SIZE, SIZE)
    np.testing.assert_array_equal(got.mask, ref.mask)
    np.testing.assert_allclose(got.depth[ref.mask], radius * ref.depth[ref.mask], rtol=1e-5)
    np.testing.assert_allclose(got.normals, ref.normals, atol=1e-5)
    # Above the centre (smaller rows) normals point up (+y), left of it to -x.
    assert got.normals[20, 48, 1] > 0.5 and got.normals[44, 25, 0] < -0.5
    # z pointing away from the viewer: mirror z, same picture.
    far_v = pix_v * np.array([1.0, 1.0, -1.0])
    cam_far = geometry.PixelSpaceCamera(z_toward_camera=False, z_reference=-2.0 * radius, pixel_offset=0.0)
    got_far = geometry.rasterize(far_v, faces, cam_far, SIZE, SIZE)
    np.testing.assert_array_equal(got_far.mask, ref.mask)
    np.testing.assert_allclose(got_far.depth, got.depth, rtol=1e-5)
    np.testing.assert_allclose(got_far.normals, got.normals, atol=1e-5)


# --------------------------------------------------------------------------
# Rasterizer against analytic shapes
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fine_sphere():
    return geometry.uv_sphere_mesh(1.0, num_lat=96, num_lon=192)


def test_sphere_orthographic_depth_normals_mask(fine_sphere):
    unit_v, faces = fine_sphere
    center, radius = np.array([0.1, -0.05, -0.5]), 1.2
    vertices = unit_v * radius + center
    cam = geometry.OrthographicCamera(scale=32.0, cx=48.0, cy=48.0, depth_offset=3.0)
    res = geometry.rasterize(vertices, faces, cam, SIZE, SIZE)
    depth, normals, inside, r = _ortho_sphere(cam, center, radius)
    assert res.depth.dtype == np.float32 and res.normals.dtype == np.float32
    assert res.triangle_id.dtype == np.int32 and res.mask.dtype == bool
    # Mask = disc, except pixel centres within a pixel of the rim.
    rim = np.abs(r - 1.0) * radius * cam.scale < 1.0
    np.testing.assert_array_equal(res.mask[~rim], inside[~rim])
    interior = r < 0.9
    assert np.abs(res.depth[interior] - depth[interior]).max() < 2e-3 * radius
    assert _angle_deg(res.normals[interior], normals[interior]).max() < 1.5
    # Whole visible disc: normals still close, and all facing the camera.
    assert np.percentile(_angle_deg(res.normals[res.mask & inside], normals[res.mask & inside]), 99) < 4.0
    assert np.all(res.normals[res.mask][:, 2] > 0)
    np.testing.assert_allclose(np.linalg.norm(res.normals[res.mask], axis=-1), 1.0, atol=1e-5)
    assert np.all(res.depth[~res.mask] == 0) and np.all(res.triangle_id[~res.mask] == -1)
    assert np.all(res.triangle_id[res.mask] >= 0)
    np.testing.assert_allclose(res.barycentrics[res.mask].sum(-1), 1.0, atol=1e-5)


def test_sphere_perspective_depth_normals_mask(fine_sphere):
    unit_v, faces = fine_sphere
    center, radius = np.array([0.3, -0.2, -4.0]), 1.0
    vertices = unit_v * radius + center
    cam = geometry.PerspectiveCamera(focal_px=110.0, cx=47.0, cy=49.0)
    res = geometry.rasterize(vertices, faces, cam, SIZE, SIZE)
    depth, normals, hit, disc = _perspective_sphere(cam, center, radius)
    assert hit.sum() > 1000 and not hit.all()
    sure = disc > 0.1  # comfortably inside the silhouette
    edge = (disc > -0.06) & (disc < 0.06)  # within ~a pixel of the silhouette
    np.testing.assert_array_equal(res.mask[~edge], hit[~edge])
    interior = disc > 0.2
    assert np.abs(res.depth[interior] - depth[interior]).max() < 3e-3
    assert _angle_deg(res.normals[interior], normals[interior]).max() < 1.5
    assert np.percentile(_angle_deg(res.normals[sure], normals[sure]), 99) < 3.0
    # Normals face the viewer: dot(n, -p) > 0 at the visible surface point.
    u, v = geometry.pixel_centers(SIZE, SIZE)
    p = cam.unproject(u, v, res.depth)
    assert np.all(np.sum(res.normals * -p, axis=-1)[res.mask] > 0)


@pytest.mark.parametrize(
    "camera",
    [
        geometry.PerspectiveCamera(focal_px=70.0, cx=48.0, cy=48.0),
        geometry.OrthographicCamera(scale=10.0, cx=48.0, cy=48.0, depth_offset=0.0),
    ],
)
def test_tilted_plane_exact_depth_and_constant_normal(camera):
    a, b, c = 0.3, -0.2, -6.0
    vertices, faces = _plane_mesh(a, b, c, extent=12.0, n=7)  # larger than the view: clipped triangles
    res = geometry.rasterize(vertices, faces, camera, SIZE, SIZE)
    assert res.mask.all()
    u, v = geometry.pixel_centers(SIZE, SIZE)
    if camera.is_perspective:
        # Ray (x, y, -1) * t hits z = a x + b y + c where -t = a t dx + b t dy + c.
        dx, dy = (u - camera.cx) / camera.focal_px, -(v - camera.cy) / camera.focal_px
        expected = -c / (1.0 + a * dx + b * dy)
    else:
        x, y = (u - camera.cx) / camera.scale, -(v - camera.cy) / camera.scale
        expected = camera.depth_offset - (a * x + b * y + c)
    np.testing.assert_allclose(res.depth, expected, rtol=2e-6)
    n = np.array([-a, -b, 1.0]) / np.linalg.norm([-a, -b, 1.0])
    np.testing.assert_allclose(res.normals.reshape(-1, 3), np.broadcast_to(n, (SIZE * SIZE, 3)), atol=1e-6)


def test_zbuffer_near_triangle_hides_far_one_in_any_order():
    cam = geometry.PerspectiveCamera(focal_px=50.0, cx=16.0, cy=16.0)
    near = np.array([[-1.0, -1.0, -2.0], [1.0, -1.0, -2.0], [0.0, 1.0, -2.0]])
    far = np.array([[-3.0, -3.0, -4.0], [3.0, -3.0, -4.0], [0.0, 3.0, -4.0]])
    vertices = np.concatenate([near, far])
    for faces, near_id in (([[0, 1, 2], [3, 4, 5]], 0), ([[3, 4, 5], [0, 1, 2]], 1)):
        res = geometry.rasterize(vertices, np.array(faces), cam, 32, 32)
        assert res.triangle_id[16, 16] == near_id
        assert res.depth[16, 16] == pytest.approx(2.0)
        far_only = res.mask & (res.triangle_id == 1 - near_id)
        assert far_only.sum() > 0 and np.allclose(res.depth[far_only], 4.0)
        assert (res.triangle_id == near_id).sum() > 20


def test_multi_chunk_zbuffer_matches_single_chunk(fine_sphere, monkeypatch):
    unit_v, faces = fine_sphere
    rng = np.random.default_rng(1)
    perm = rng.permutation(len(faces))  # shuffled so near and far faces share chunks unpredictably
    cam = geometry.PerspectiveCamera(focal_px=80.0, cx=32.0, cy=32.0)
    vertices = unit_v + np.array([0.0, 0.0, -4.0])
    whole = geometry.rasterize(vertices, faces[perm], cam, 64, 64)
    monkeypatch.setattr(geometry, "_PAIRS_PER_CHUNK", 997)
    chunked = geometry.rasterize(vertices, faces[perm], cam, 64, 64)
    np.testing.assert_array_equal(chunked.triangle_id, whole.triangle_id)
    np.testing.assert_array_equal(chunked.depth, whole.depth)


def test_backface_culling(fine_sphere):
    unit_v, faces = fine_sphere
    cam = geometry.OrthographicCamera(scale=20.0, cx=32.0, cy=32.0, depth_offset=2.0)
    full = geometry.rasterize(unit_v, faces, cam, 64, 64)
    culled = geometry.rasterize(unit_v, faces, cam, 64, 64, cull_backfaces=True)
    np.testing.assert_array_equal(culled.mask, full.mask)
    np.testing.assert_array_equal(culled.depth, full.depth)
    # Reversed winding: the near hemisphere is culled, the inside of the far one shows.
    inside_out = geometry.rasterize(unit_v, faces[:, ::-1], cam, 64, 64, cull_backfaces=True)
    np.testing.assert_array_equal(inside_out.mask, full.mask)
    far = cam.depth_offset + (cam.depth_offset - full.depth)  # mirror of the near side about z = 0
    np.testing.assert_allclose(inside_out.depth[full.mask], far[full.mask], atol=0.05)
    assert np.all(inside_out.depth[full.mask] >= full.depth[full.mask])
    # A single clockwise (seen from the camera) triangle is culled.
    tri = np.array([[0.0, 0.0, 0.0], [0.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    assert geometry.rasterize(tri, np.array([[0, 1, 2]]), cam, 64, 64).mask.any()
    assert not geometry.rasterize(tri, np.array([[0, 1, 2]]), cam, 64, 64, cull_backfaces=True).mask.any()
    assert geometry.rasterize(tri, np.array([[0, 2, 1]]), cam, 64, 64, cull_backfaces=True).mask.any()


@pytest.mark.parametrize(
    "camera",
    [
        geometry.PerspectiveCamera(focal_px=60.0, cx=24.0, cy=24.0),
        geometry.OrthographicCamera(scale=6.0, cx=24.0, cy=24.0, depth_offset=0.0),
    ],
)
def test_attribute_interpolation_linear_ramp_on_tilted_plane(camera):
    vertices, faces = _plane_mesh(0.4, 0.25, -8.0, extent=8.0, n=3)  # big triangles: perspective matters
    colour = np.stack([vertices[:, 0], 2.0 * vertices[:, 1] + 1.0, np.ones(len(vertices))], axis=-1)
    res = geometry.rasterize(vertices, faces, camera, 48, 48, attributes=colour)
    assert res.attributes.shape == (48, 48, 3) and res.attributes.dtype == np.float32
    u, v = geometry.pixel_centers(48, 48)
    points = camera.unproject(u, v, res.depth)
    expected = np.stack([points[..., 0], 2.0 * points[..., 1] + 1.0, np.ones_like(u)], axis=-1)
    np.testing.assert_allclose(res.attributes[res.mask], expected[res.mask], atol=2e-5)
    assert res.mask.all()


def test_offscreen_and_behind_camera_meshes_give_empty_result(fine_sphere):
    unit_v, faces = fine_sphere
    cam = geometry.PerspectiveCamera(focal_px=50.0, cx=16.0, cy=16.0)
    for shift in ([40.0, 0.0, -5.0], [0.0, -30.0, -5.0], [0.0, 0.0, 5.0]):
        res = geometry.rasterize(unit_v + shift, faces, cam, 32, 32, attributes=np.ones((len(unit_v), 2)))
        assert not res.mask.any()
        assert np.all(res.triangle_id == -1) and np.all(res.depth == 0) and np.all(res.attributes == 0)
    # A vertex on the camera plane (z = 0) or behind it: its triangles are dropped, quietly.
    tris = np.array([[0.0, 0.0, 0.0], [1.0, 0.0, -2.0], [0.0, 1.0, -2.0], [-1.0, 0.0, 1.0]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        res = geometry.rasterize(tris, np.array([[0, 1, 2], [3, 1, 2]]), cam, 32, 32)
    assert not res.mask.any()
    # Half off-screen: clipped, the visible half is drawn.
    res = geometry.rasterize(unit_v + [0.8, 0.0, -3.0], faces, cam, 32, 32)
    assert res.mask[:, -1].any() and res.mask.any() and not res.mask[:, :8].any()


def test_flat_and_precomputed_normals():
    vertices, faces = geometry.uv_sphere_mesh(1.0, num_lat=12, num_lon=24)
    cam = geometry.OrthographicCamera(scale=20.0, cx=24.0, cy=24.0, depth_offset=2.0)
    smooth = geometry.rasterize(vertices, faces, cam, 48, 48)
    flat = geometry.rasterize(vertices, faces, cam, 48, 48, smooth_normals=False)
    fn = geometry.face_normals(vertices, faces)
    np.testing.assert_allclose(flat.normals[flat.mask], fn[flat.triangle_id[flat.mask]], atol=1e-6)
    assert _angle_deg(smooth.normals[smooth.mask], flat.normals[flat.mask]).max() < 20.0
    # Precomputed normals are used as given (here: all +z).
    up = np.tile([0.0, 0.0, 1.0], (len(vertices), 1))
    given = geometry.rasterize(vertices, faces, cam, 48, 48, precomputed_normals=up)
    np.testing.assert_allclose(given.normals[given.mask], np.tile([0.0, 0.0, 1.0], (given.mask.sum(), 1)))
    with pytest.raises(ValueError, match="precomputed_normals"):
        geometry.rasterize(vertices, faces, cam, 48, 48, precomputed_normals=up[:5])
    # An empty mesh is an empty picture.
    empty = geometry.rasterize(np.zeros((0, 3)), np.zeros((0, 3), int), cam, 8, 8, attributes=np.zeros((0, 2)))
    assert not empty.mask.any() and empty.attributes.shape == (8, 8, 2)


def test_degenerate_triangles_are_ignored():
    cam = geometry.OrthographicCamera(scale=10.0, cx=16.0, cy=16.0, depth_offset=1.0)
    vertices = np.array([[-1.0, -1.0, 0.0], [1.0, 1.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.5]])
    res = geometry.rasterize(vertices, np.array([[0, 1, 2], [2, 2, 3]]), cam, 32, 32)
    assert not res.mask.any()


@pytest.mark.parametrize(
    "kwargs, name",
    [
        (dict(vertices=np.zeros((4, 2))), "vertices"),
        (dict(vertices=np.array([[0.0, 0.0, np.nan]] * 4)), "vertices"),
        (dict(vertices=np.array([[0.0, 0.0, np.inf]] * 4)), "vertices"),
        (dict(faces=np.array([[0, 1, 4]])), "faces"),
        (dict(faces=np.array([[0, 1, -1]])), "faces"),
        (dict(faces=np.array([[0.0, 1.5, 2.0]])), "faces"),
        (dict(faces=np.array([0, 1, 2])), "faces"),
        (dict(attributes=np.ones((3, 2))), "attributes"),
        (dict(attributes=np.full((4, 1), np.nan)), "attributes"),
        (dict(height=0), "height"),
        (dict(width=2.5), "width"),
        (dict(camera="pinhole"), "camera"),
    ],
)
def test_rasterize_rejects_invalid_inputs_naming_the_argument(kwargs, name):
    args = dict(
        vertices=np.array([[0.0, 0.0, -1.0], [1.0, 0.0, -1.0], [0.0, 1.0, -1.0], [1.0, 1.0, -1.0]]),
        faces=np.array([[0, 1, 2]]),
        camera=geometry.PerspectiveCamera(focal_px=10.0, cx=8.0, cy=8.0),
        height=16,
        width=16,
    )
    args.update(kwargs)
    with pytest.raises(ValueError, match=name):
        geometry.rasterize(**args)


def test_cameras_reject_bad_parameters():
    with pytest.raises(ValueError, match="focal_px"):
        geometry.PerspectiveCamera(focal_px=-1.0, cx=0.0, cy=0.0)
    with pytest.raises(ValueError, match="scale"):
        geometry.OrthographicCamera(scale=0.0, cx=0.0, cy=0.0)
    with pytest.raises(ValueError, match="cx"):
        geometry.OrthographicCamera(scale=1.0, cx=np.nan, cy=0.0)


# --------------------------------------------------------------------------
# Normals
# --------------------------------------------------------------------------


def test_vertex_and_face_normals(fine_sphere):
    unit_v, faces = fine_sphere
    vn = geometry.vertex_normals(unit_v, faces)
    assert _angle_deg(vn, unit_v).max() < 0.5  # radial on a sphere
    fn = geometry.face_normals(unit_v, faces)
    centroids = unit_v[faces].mean(axis=1)
    assert np.all(np.sum(fn * centroids, axis=-1) > 0)  # outward, counter-clockwise
    tri = np.array([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [2.0, 0.0, 0.0]])
    fn = geometry.face_normals(tri, np.array([[0, 1, 2], [0, 1, 3]]))
    np.testing.assert_allclose(fn, [[0.0, 0.0, 1.0], [0.0, 0.0, 0.0]])


@pytest.mark.parametrize("perspective", [False, True])
def test_depth_to_normals_recovers_sphere_normals(perspective):
    center, radius = np.array([0.2, 0.1, -4.0]), 1.0
    if perspective:
        cam = geometry.PerspectiveCamera(focal_px=120.0, cx=48.0, cy=48.0)
        depth, normals, hit, disc = _perspective_sphere(cam, center, radius)
        mask = disc > 0.02
        interior = disc > 0.3
    else:
        cam = geometry.OrthographicCamera(scale=35.0, cx=48.0, cy=48.0, depth_offset=0.0)
        depth, normals, hit, r = _ortho_sphere(cam, center, radius)
        mask = r < 0.98
        interior = r < 0.85
    est, valid = geometry.depth_to_normals(depth, mask, cam)
    assert est.dtype == np.float32
    np.testing.assert_array_equal(valid, mask)  # one-sided differences at the borders
    assert _angle_deg(est[interior], normals[interior]).max() < 1.0
    assert np.median(_angle_deg(est[mask], normals[mask])) < 1.0
    assert np.all(est[~valid] == 0)


@pytest.mark.parametrize(
    "camera",
    [
        geometry.PerspectiveCamera(focal_px=70.0, cx=30.0, cy=34.0),
        geometry.OrthographicCamera(scale=8.0, cx=32.0, cy=32.0, depth_offset=0.0),
        geometry.PixelSpaceCamera(z_reference=100.0),
    ],
)
def test_depth_to_normals_plane_exact_including_borders(camera):
    a, b, c = -0.35, 0.2, -6.0
    u, v = geometry.pixel_centers(64, 64)
    if camera.is_perspective:
        dx, dy = (u - camera.cx) / camera.focal_px, -(v - camera.cy) / camera.focal_px
        depth = -c / (1.0 + a * dx + b * dy)
        n = np.array([-a, -b, 1.0])
    elif isinstance(camera, geometry.OrthographicCamera):
        x, y = (u - camera.cx) / camera.scale, -(v - camera.cy) / camera.scale
        depth = camera.depth_offset - (a * x + b * y + c)
        n = np.array([-a, -b, 1.0])
    else:
        # Pixel space: z = a * col + b * row + c'; camera space is (x, -y, z).
        depth = camera.z_reference - (a * (u - 0.5) + b * (v - 0.5) + 10.0)
        n = np.array([-a, b, 1.0])
    mask = np.ones((64, 64), bool)
    mask[20:30, 25:40] = False  # an interior hole: one-sided differences around it
    mask[:, :3] = False
    est, valid = geometry.depth_to_normals(depth, mask, camera)
    np.testing.assert_array_equal(valid, mask)
    n = n / np.linalg.norm(n)
    np.testing.assert_allclose(est[mask], np.broadcast_to(n, est[mask].shape), atol=1e-5)


def test_depth_to_normals_invalid_where_not_computable():
    cam = geometry.OrthographicCamera(scale=1.0, cx=4.0, cy=4.0)
    depth = np.full((8, 8), 3.0)
    mask = np.zeros((8, 8), bool)
    mask[2, 1:6] = True  # a single row: no vertical neighbour
    mask[5, 5] = True  # isolated pixel
    depth[6, 6] = np.nan
    mask[6, 6] = True
    normals, valid = geometry.depth_to_normals(depth, mask, cam)
    assert not valid.any() and np.all(normals == 0)
    with pytest.raises(ValueError, match="mask"):
        geometry.depth_to_normals(depth, mask[:4], cam)
    with pytest.raises(ValueError, match="camera"):
        geometry.depth_to_normals(depth, mask, None)


def test_depth_to_normals_max_depth_jump_separates_occlusion_edges():
    cam = geometry.OrthographicCamera(scale=1.0, cx=8.0, cy=8.0)
    depth = np.full((16, 16), 10.0)
    depth[:, 8:] = 2.0  # a step: two fronto-parallel planes
    mask = np.ones((16, 16), bool)
    plain, _ = geometry.depth_to_normals(depth, mask, cam)
    assert abs(plain[8, 7, 0]) > 0.5  # the step tilts the normals next to it
    split, valid = geometry.depth_to_normals(depth, mask, cam, max_depth_jump=1.0)
    assert valid.all()
    np.testing.assert_allclose(split.reshape(-1, 3), np.broadcast_to([0.0, 0.0, 1.0], (256, 3)), atol=1e-6)


# --------------------------------------------------------------------------
# Hole filling
# --------------------------------------------------------------------------


def _disc_mask(size, cx, cy, radius):
    u, v = geometry.pixel_centers(size, size)
    return (u - cx) ** 2 + (v - cy) ** 2 < radius**2


def test_fill_holes_plane_exact_and_never_outside_region():
    size = 64
    u, v = geometry.pixel_centers(size, size)
    depth = 5.0 + 0.03 * u - 0.02 * v  # an orthographic plane: linear in the image
    face = _disc_mask(size, 32, 30, 26)
    mask = face.copy()
    mask[20:32, 18:30] = False  # square hole
    mask[_disc_mask(size, 42, 40, 5)] = False  # round hole
    mask[10, 30:36] = False  # thin crack
    holes = face & ~mask
    corrupted = np.where(mask, depth, np.nan)  # missing values must not matter
    filled, filled_mask = geometry.fill_holes(corrupted, mask)
    assert filled.dtype == np.float32
    np.testing.assert_array_equal(filled_mask, face)  # holes closed, background untouched
    assert np.abs(filled[holes] - depth[holes]).max() < 1e-3
    assert np.all(filled[~face] == 0)
    np.testing.assert_array_equal(filled[mask], depth[mask].astype(np.float32))

    # max_hole_px leaves the big square hole open but fills the crack.
    filled, filled_mask = geometry.fill_holes(depth, mask, max_hole_px=100)
    assert not filled_mask[25, 25] and filled_mask[10, 32]

    # An explicit region limits the fill.
    region = np.zeros_like(mask)
    region[:, :32] = True
    filled, filled_mask = geometry.fill_holes(depth, mask, region=region)
    assert filled_mask[25, 25] and not filled_mask[40, 42]
    assert np.abs(filled[20:32, 18:30] - depth[20:32, 18:30]).max() < 1e-3


def test_fill_holes_perspective_plane_uses_inverse_depth():
    cam = geometry.PerspectiveCamera(focal_px=40.0, cx=32.0, cy=32.0)
    u, v = geometry.pixel_centers(64, 64)
    dx, dy = (u - cam.cx) / cam.focal_px, -(v - cam.cy) / cam.focal_px
    depth = 3.0 / (1.0 + 0.6 * dx - 0.5 * dy)  # strongly tilted plane
    mask = np.ones((64, 64), bool)
    mask[10:40, 15:50] = False
    filled, filled_mask = geometry.fill_holes(depth, mask, camera=cam)
    assert filled_mask.all()
    assert np.abs(filled - depth).max() < 1e-4


def test_fill_holes_sphere_close():
    cam = geometry.OrthographicCamera(scale=30.0, cx=48.0, cy=48.0, depth_offset=2.0)
    depth, _, inside, r = _ortho_sphere(cam, np.zeros(3), 1.4)
    mask = r < 0.97
    hole = _disc_mask(SIZE, 55, 44, 7) | _disc_mask(SIZE, 30, 60, 4)
    mask_holed = mask & ~hole
    filled, filled_mask = geometry.fill_holes(depth, mask_holed)
    np.testing.assert_array_equal(filled_mask, mask)
    err = np.abs(filled[hole] - depth[hole])
    # A sphere is not harmonic: the Laplace fill sags by about |lap z| r^2 / 4
    # (~0.02 here for the 7 px hole); a flat fill would be off by ~0.1.
    assert err.max() < 0.025 * 1.4
    assert np.abs(depth[hole] - depth[hole].mean()).max() > 4 * err.max()


def test_fill_holes_edge_cases_and_errors():
    depth = np.full((8, 8), 2.0)
    mask = np.ones((8, 8), bool)
    filled, filled_mask = geometry.fill_holes(depth, mask)  # nothing to fill
    np.testing.assert_array_equal(filled, depth)
    assert filled_mask.all()
    filled, filled_mask = geometry.fill_holes(depth, np.zeros((8, 8), bool))  # nothing known
    assert not filled_mask.any() and np.all(filled == 0)
    with pytest.raises(ValueError, match="region"):
        geometry.fill_holes(depth, mask, region=np.ones((4, 4), bool))
    with pytest.raises(ValueError, match="max_hole_px"):
        geometry.fill_holes(depth, mask, max_hole_px=-1)
    with pytest.raises(ValueError, match="depth"):
        geometry.fill_holes(np.ones((2, 8, 8)), mask)


# --------------------------------------------------------------------------
# Flip
# --------------------------------------------------------------------------


def test_flip_horizontal_matches_rendering_a_mirrored_mesh():
    vertices, faces = geometry.uv_sphere_mesh(1.0, num_lat=24, num_lon=48, axes_scale=(1.0, 0.8, 0.6))
    rng = np.random.default_rng(3)
    vertices = vertices + rng.normal(0, 0.03, vertices.shape) + [0.35, 0.1, 0.0]
    cam = geometry.OrthographicCamera(scale=20.0, cx=24.0, cy=24.0, depth_offset=2.0)  # cx = W / 2
    res = geometry.rasterize(vertices, faces, cam, 48, 48)
    mirrored = geometry.rasterize(vertices * [-1.0, 1.0, 1.0], faces[:, ::-1], cam, 48, 48)
    depth_f, normals_f = geometry.flip_horizontal(res.depth, res.normals)
    np.testing.assert_array_equal(geometry.flip_horizontal(res.mask), mirrored.mask)
    np.testing.assert_allclose(depth_f, mirrored.depth, atol=1e-5)
    np.testing.assert_allclose(normals_f, mirrored.normals, atol=1e-5)
    image = np.arange(2 * 3 * 3).reshape(2, 3, 3)
    np.testing.assert_array_equal(geometry.flip_horizontal(image), image[:, ::-1])
    with pytest.raises(ValueError, match="normals"):
        geometry.flip_horizontal(res.depth, res.normals[:, :10])
