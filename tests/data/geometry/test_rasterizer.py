"""Analytic checks of expr3d.data.geometry.rasterizer: spheres, planes, occlusion, clipping, bad inputs."""

import warnings

import numpy as np
import pytest

from expr3d.data import geometry
from expr3d.data.geometry import rasterizer
from tests.data.geometry.analytic import SIZE, angle_deg, ortho_sphere, perspective_sphere, plane_mesh


def test_sphere_orthographic_depth_normals_mask(fine_sphere):
    unit_v, faces = fine_sphere
    center, radius = np.array([0.1, -0.05, -0.5]), 1.2
    vertices = unit_v * radius + center
    cam = geometry.OrthographicCamera(scale=32.0, cx=48.0, cy=48.0, depth_offset=3.0)
    res = geometry.rasterize(vertices, faces, cam, SIZE, SIZE)
    depth, normals, inside, r = ortho_sphere(cam, center, radius)
    assert res.depth.dtype == np.float32 and res.normals.dtype == np.float32
    assert res.triangle_id.dtype == np.int32 and res.mask.dtype == bool
    # Mask = disc, except pixel centres within a pixel of the rim.
    rim = np.abs(r - 1.0) * radius * cam.scale < 1.0
    np.testing.assert_array_equal(res.mask[~rim], inside[~rim])
    interior = r < 0.9
    assert np.abs(res.depth[interior] - depth[interior]).max() < 2e-3 * radius
    assert angle_deg(res.normals[interior], normals[interior]).max() < 1.5
    # Whole visible disc: normals still close, and all facing the camera.
    assert np.percentile(angle_deg(res.normals[res.mask & inside], normals[res.mask & inside]), 99) < 4.0
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
    depth, normals, hit, disc = perspective_sphere(cam, center, radius)
    assert hit.sum() > 1000 and not hit.all()
    sure = disc > 0.1  # comfortably inside the silhouette
    edge = (disc > -0.06) & (disc < 0.06)  # within ~a pixel of the silhouette
    np.testing.assert_array_equal(res.mask[~edge], hit[~edge])
    interior = disc > 0.2
    assert np.abs(res.depth[interior] - depth[interior]).max() < 3e-3
    assert angle_deg(res.normals[interior], normals[interior]).max() < 1.5
    assert np.percentile(angle_deg(res.normals[sure], normals[sure]), 99) < 3.0
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
    vertices, faces = plane_mesh(a, b, c, extent=12.0, n=7)  # larger than the view: clipped triangles
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
    monkeypatch.setattr(rasterizer, "_PAIRS_PER_CHUNK", 997)
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
    vertices, faces = plane_mesh(0.4, 0.25, -8.0, extent=8.0, n=3)  # big triangles: perspective matters
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
    assert angle_deg(smooth.normals[smooth.mask], flat.normals[flat.mask]).max() < 20.0
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
