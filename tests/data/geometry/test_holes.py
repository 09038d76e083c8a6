"""Analytic checks of expr3d.data.geometry.holes: planes and spheres with holes, regions, edge cases."""

import numpy as np
import pytest

from expr3d.data import geometry
from tests.data.geometry.analytic import SIZE, disc_mask, ortho_sphere


def test_fill_holes_plane_exact_and_never_outside_region():
    size = 64
    u, v = geometry.pixel_centers(size, size)
    depth = 5.0 + 0.03 * u - 0.02 * v  # an orthographic plane: linear in the image
    face = disc_mask(size, 32, 30, 26)
    mask = face.copy()
    mask[20:32, 18:30] = False  # square hole
    mask[disc_mask(size, 42, 40, 5)] = False  # round hole
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
    depth, _, inside, r = ortho_sphere(cam, np.zeros(3), 1.4)
    mask = r < 0.97
    hole = disc_mask(SIZE, 55, 44, 7) | disc_mask(SIZE, 30, 60, 4)
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
