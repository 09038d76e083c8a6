"""Analytic checks of expr3d.data.geometry.cameras: projection formulas, round trips, pixel-space meshes."""

import numpy as np
import pytest

from expr3d.data import geometry
from tests.data.geometry.analytic import SIZE


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




def test_cameras_reject_bad_parameters():
    with pytest.raises(ValueError, match="focal_px"):
        geometry.PerspectiveCamera(focal_px=-1.0, cx=0.0, cy=0.0)
    with pytest.raises(ValueError, match="scale"):
        geometry.OrthographicCamera(scale=0.0, cx=0.0, cy=0.0)
    with pytest.raises(ValueError, match="cx"):
        geometry.OrthographicCamera(scale=1.0, cx=np.nan, cy=0.0)
