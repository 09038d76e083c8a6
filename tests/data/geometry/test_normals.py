"""Analytic checks of expr3d.data.geometry.normals: depth -> normals on spheres and planes, the horizontal flip."""

import numpy as np
import pytest

from expr3d.data import geometry
from tests.data.geometry.analytic import angle_deg, ortho_sphere, perspective_sphere


@pytest.mark.parametrize("perspective", [False, True])
def test_depth_to_normals_recovers_sphere_normals(perspective):
    center, radius = np.array([0.2, 0.1, -4.0]), 1.0
    if perspective:
        cam = geometry.PerspectiveCamera(focal_px=120.0, cx=48.0, cy=48.0)
        depth, normals, hit, disc = perspective_sphere(cam, center, radius)
        mask = disc > 0.02
        interior = disc > 0.3
    else:
        cam = geometry.OrthographicCamera(scale=35.0, cx=48.0, cy=48.0, depth_offset=0.0)
        depth, normals, hit, r = ortho_sphere(cam, center, radius)
        mask = r < 0.98
        interior = r < 0.85
    est, valid = geometry.depth_to_normals(depth, mask, cam)
    assert est.dtype == np.float32
    np.testing.assert_array_equal(valid, mask)  # one-sided differences at the borders
    assert angle_deg(est[interior], normals[interior]).max() < 1.0
    assert np.median(angle_deg(est[mask], normals[mask])) < 1.0
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
