"""Hole filling: harmonic (Laplace) interpolation of missing depth inside the face region.

Owns ``fill_holes`` and its solver (Jacobi-preconditioned conjugate gradients on the grid, started from a
half-resolution solution for large holes); OpenCV finds the region and the hole components.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from expr3d.data.geometry.cameras import _check_camera
from expr3d.data.geometry.normals import _check_depth_mask

__all__ = ["fill_holes"]


def _dilate4(mask):
    """Dilate a bool mask by one pixel along rows and columns (4-neighbourhood)."""
    cross = np.array([[0, 1, 0], [1, 1, 1], [0, 1, 0]], np.uint8)
    return cv2.dilate(mask.astype(np.uint8), cross) > 0


def _closed_region(mask):
    """The mask with its holes closed: filled outer contours of every component."""
    mask_u8 = mask.astype(np.uint8)
    contours, _ = cv2.findContours(mask_u8, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    region = np.zeros_like(mask_u8)
    if contours:
        cv2.drawContours(region, contours, -1, 1, thickness=cv2.FILLED)
    return region.astype(bool) | mask


def fill_holes(depth, mask, region=None, max_hole_px=None, camera=None, tol=1e-10, max_iterations=None):
    """Interpolate missing depth inside the face region by harmonic (Laplace) fill.

    The missing pixels (``region & ~mask``) are solved so that each is the mean
    of its 4-neighbours in the region, with the known depths as boundary values
    (neighbours outside the region are ignored). A plane is reproduced exactly
    (depth under an orthographic/pixel camera, inverse depth under a
    perspective one, both linear in the image), a smooth surface closely.
    Nothing outside the region is ever filled; a hole component touching no
    known pixel, or bigger than ``max_hole_px``, stays empty. The linear system
    is solved with Jacobi-preconditioned conjugate gradients (no scipy).

    Args:
        depth: float [H, W] z_depth (values where ``mask`` is False are ignored).
        mask: bool [H, W] valid depth.
        region: optional bool [H, W] area to fill in. Default: the mask with its
            holes closed (filled outer contours), so the background around the
            face is never touched.
        max_hole_px: optional; only holes (4-connected components of missing
            pixels) of at most this many pixels are filled.
        camera: optional camera; with a ``PerspectiveCamera`` 1/depth is
            interpolated (exact for planes), otherwise depth.
        tol: relative residual at which the solver stops.
        max_iterations: solver iteration cap (default: grows with the hole size).

    Returns:
        (filled_depth float32 [H, W] with 0 where still invalid, filled_mask bool [H, W]).
    """
    depth, mask = _check_depth_mask(depth, mask)
    if camera is not None:
        _check_camera(camera)
    if region is None:
        region = _closed_region(mask)
    else:
        region = np.asarray(region)
        if region.ndim == 3 and region.shape[-1] == 1:
            region = region[..., 0]
        if region.shape != mask.shape:
            raise ValueError(f"region must have the shape of depth {mask.shape}, got {region.shape}")
        region = region.astype(bool) | mask
    if max_hole_px is not None and (not isinstance(max_hole_px, (int, np.integer)) or max_hole_px < 0):
        raise ValueError(f"max_hole_px must be a non-negative integer, got {max_hole_px!r}")
    inverse = camera is not None and camera.is_perspective
    if inverse and np.any(depth[mask] <= 0):
        raise ValueError("depth must be positive inside mask to interpolate inverse depth (perspective camera)")

    holes = region & ~mask
    out_depth = np.where(mask, depth, 0.0)
    if not holes.any() or not mask.any():
        return out_depth.astype(np.float32), mask.copy()

    # Hole components: drop too-large ones and those with no known neighbour.
    num, labels, stats, _ = cv2.connectedComponentsWithStats(holes.astype(np.uint8), connectivity=4)
    keep = np.ones(num, bool)
    keep[0] = False
    if max_hole_px is not None:
        keep &= stats[:, cv2.CC_STAT_AREA] <= max_hole_px
    touches = np.zeros(num, bool)
    near_known = _dilate4(mask)
    touches[np.unique(labels[holes & near_known])] = True
    keep &= touches
    unknown = keep[labels] & holes
    if not unknown.any():
        return out_depth.astype(np.float32), mask.copy()

    values = np.where(mask, 1.0 / np.where(mask, depth, 1.0) if inverse else depth, 0.0)
    # Solve on the bounding box of the unknowns plus a one-pixel ring.
    rows, cols = np.nonzero(unknown)
    r0, r1 = max(rows.min() - 1, 0), min(rows.max() + 2, mask.shape[0])
    c0, c1 = max(cols.min() - 1, 0), min(cols.max() + 2, mask.shape[1])
    box = np.s_[r0:r1, c0:c1]
    solved = _solve_laplace(values[box], mask[box], region[box], unknown[box], tol, max_iterations)
    filled = values.copy()
    filled[box] = np.where(unknown[box], solved, values[box])
    filled_mask = mask | unknown
    if inverse:
        with np.errstate(divide="ignore"):
            filled = np.where(filled_mask, 1.0 / filled, 0.0)
        bad = filled_mask & ~(np.isfinite(filled) & (filled > 0))
        filled_mask &= ~bad
        filled[bad] = 0.0
    return np.where(filled_mask, filled, 0.0).astype(np.float32), filled_mask


# Below this many unknowns the Laplace system is solved directly on its grid;
# above it a half-resolution solution provides the starting point.
_COARSEN_ABOVE = 1024


def _shift_sum(grid):
    """Sum of the 4 neighbours of every cell (zero outside the grid)."""
    out = np.zeros_like(grid)
    out[1:] += grid[:-1]
    out[:-1] += grid[1:]
    out[:, 1:] += grid[:, :-1]
    out[:, :-1] += grid[:, 1:]
    return out


def _solve_laplace(values, known, region, unknown, tol, max_iterations):
    """Harmonic interpolation of ``unknown`` cells on a grid; returns the full grid.

    Each unknown equals the mean of its 4-neighbours inside ``region`` (known
    cells are Dirichlet boundaries, cells outside the region Neumann). Solved by
    Jacobi-preconditioned conjugate gradients on the grid (shifted slices, no
    index gathers), starting from the upsampled solution of the same problem
    at half resolution so that large holes converge in few iterations.
    """
    known_values = np.where(known, values, 0.0)
    n = int(np.count_nonzero(unknown))
    height, width = unknown.shape
    start = np.where(unknown, known_values[known].mean() if known.any() else 0.0, known_values)
    if n > _COARSEN_ABOVE and min(height, width) >= 8:
        # Half resolution: a 2x2 block is known if any of its cells is (value =
        # mean of its known cells), in the region if any cell is.
        ph, pw = height % 2, width % 2
        pad = ((0, ph), (0, pw))
        k = np.pad(known, pad).reshape((height + ph) // 2, 2, (width + pw) // 2, 2)
        kv = np.pad(known_values, pad).reshape(k.shape)
        rg = np.pad(region, pad).reshape(k.shape)
        count = k.sum(axis=(1, 3))
        coarse_known = count > 0
        coarse_values = kv.sum(axis=(1, 3)) / np.maximum(count, 1)
        coarse_region = rg.any(axis=(1, 3))
        coarse_unknown = coarse_region & ~coarse_known
        if coarse_unknown.any():
            coarse = _solve_laplace(coarse_values, coarse_known, coarse_region, coarse_unknown, tol, max_iterations)
        else:
            coarse = coarse_values
        # Cells of the coarse grid are centred at fine (2i + 0.5); linear resize matches that.
        up = cv2.resize(coarse, (width + pw, height + ph), interpolation=cv2.INTER_LINEAR)[:height, :width]
        start = np.where(unknown, up, known_values)

    in_region = region.astype(np.float64)
    diag = _shift_sum(in_region)
    inv_diag = np.where(unknown, 1.0 / np.maximum(diag, 1.0), 0.0)
    # Boundary contributions of known neighbours go to the right-hand side.
    rhs = np.where(unknown, _shift_sum(known_values * known), 0.0)
    x = np.where(unknown, start, 0.0)

    def apply(p):  # p is zero off the unknowns, so only unknown neighbours couple
        return np.where(unknown, diag * p - _shift_sum(p), 0.0)

    if max_iterations is None:
        max_iterations = int(100 + 10 * math.sqrt(n))
    r = rhs - apply(x)
    z = inv_diag * r
    p = z.copy()
    rz = np.vdot(r, z)
    target = tol * max(np.linalg.norm(rhs), 1e-30)
    for _ in range(max_iterations):  # solver iterations, each vectorised over the grid
        if np.linalg.norm(r) <= target:
            break
        ap = apply(p)
        alpha = rz / np.vdot(p, ap)
        x += alpha * p
        r -= alpha * ap
        z = inv_diag * r
        rz_new = np.vdot(r, z)
        p = z + (rz_new / rz) * p
        rz = rz_new
    return np.where(unknown, x, known_values)
