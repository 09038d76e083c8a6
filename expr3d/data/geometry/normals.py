"""Normals of depth maps: camera-aware finite differences (``depth_to_normals``) and the horizontal flip.

Owns ``depth_to_normals``, the depth/mask check it shares with hole filling, and ``flip_horizontal`` (mirror an
image or depth map, negating the normals' x component).
"""

from __future__ import annotations

import numpy as np

from expr3d.data.geometry.cameras import _check_camera, pixel_centers
from expr3d.data.geometry.meshes import _normalise

__all__ = ["depth_to_normals", "flip_horizontal"]


def _check_depth_mask(depth, mask, depth_name="depth", mask_name="mask"):
    depth = np.asarray(depth)
    if depth.ndim == 3 and depth.shape[-1] == 1:
        depth = depth[..., 0]
    if depth.ndim != 2:
        raise ValueError(f"{depth_name} must have shape [H, W] (or [H, W, 1]), got {depth.shape}")
    if not np.issubdtype(depth.dtype, np.number):
        raise ValueError(f"{depth_name} must be numeric, got dtype {depth.dtype}")
    mask = np.asarray(mask)
    if mask.ndim == 3 and mask.shape[-1] == 1:
        mask = mask[..., 0]
    if mask.shape != depth.shape:
        raise ValueError(f"{mask_name} must have the shape of {depth_name} {depth.shape}, got {mask.shape}")
    mask = mask.astype(bool)
    depth = depth.astype(np.float64)
    # Non-finite depth is never valid, whatever the mask says.
    mask = mask & np.isfinite(depth)
    return depth, mask


def depth_to_normals(depth, mask, camera, max_depth_jump=None):
    """Camera-aware surface normals of a depth map by finite differences.

    Each valid pixel is back-projected with ``camera.unproject`` at its centre;
    tangents are central differences where both neighbours are valid and
    one-sided at mask borders; the normal is their cross product, oriented
    toward the camera.

    Args:
        depth: float [H, W] z_depth.
        mask: bool [H, W] valid pixels (non-finite depth counts as invalid).
        camera: the camera that produced the depth map.
        max_depth_jump: optional; a neighbour whose depth differs by more than
            this is treated as invalid (keeps occlusion edges out of the
            differences).

    Returns:
        (normals float32 [H, W, 3], valid bool [H, W]); normals are 0 where not
        valid (outside the mask, or no neighbour along a row or column).
    """
    _check_camera(camera)
    depth, mask = _check_depth_mask(depth, mask)
    height, width = depth.shape
    normals = np.zeros((height, width, 3), np.float32)
    valid = np.zeros((height, width), bool)
    rows, cols = np.nonzero(mask.any(axis=1))[0], np.nonzero(mask.any(axis=0))[0]
    if rows.size == 0:
        return normals, valid
    # Only the mask's bounding box has normals (each needs valid neighbours): the same result, less work for a face
    # that fills part of its crop.
    box = np.s_[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
    u, v = pixel_centers(height, width)
    normals[box], valid[box] = _normals_in(depth[box], mask[box], u[box], v[box], camera, max_depth_jump)
    return normals, valid


def _normals_in(depth, mask, u, v, camera, max_depth_jump):
    """depth_to_normals on a window whose pixel centres are u, v (full-image coordinates)."""
    safe_depth = np.where(mask, depth, 0.0)
    points = camera.to_camera_space(camera.unproject(u, v, safe_depth))

    def tangent(axis):
        # Neighbour validity along the axis (+1 / -1 step), padded with False.
        fwd = np.zeros_like(mask)
        bwd = np.zeros_like(mask)
        fwd_pts = np.zeros_like(points)
        bwd_pts = np.zeros_like(points)
        if axis == 1:
            fwd[:, :-1] = mask[:, 1:]
            bwd[:, 1:] = mask[:, :-1]
            fwd_pts[:, :-1] = points[:, 1:]
            bwd_pts[:, 1:] = points[:, :-1]
            if max_depth_jump is not None:
                fwd[:, :-1] &= np.abs(depth[:, 1:] - depth[:, :-1]) <= max_depth_jump
                bwd[:, 1:] &= np.abs(depth[:, 1:] - depth[:, :-1]) <= max_depth_jump
        else:
            fwd[:-1] = mask[1:]
            bwd[1:] = mask[:-1]
            fwd_pts[:-1] = points[1:]
            bwd_pts[1:] = points[:-1]
            if max_depth_jump is not None:
                fwd[:-1] &= np.abs(depth[1:] - depth[:-1]) <= max_depth_jump
                bwd[1:] &= np.abs(depth[1:] - depth[:-1]) <= max_depth_jump
        fwd &= mask
        bwd &= mask
        hi = np.where(fwd[..., None], fwd_pts, points)
        lo = np.where(bwd[..., None], bwd_pts, points)
        return hi - lo, fwd | bwd

    d_col, ok_col = tangent(1)  # along +u (x right)
    d_row, ok_row = tangent(0)  # along +v (rows down)
    # (d/drow) x (d/dcol) points toward the viewer for a fronto-parallel plane.
    normals = np.cross(d_row, d_col)
    normals, ok = _normalise(normals, eps=1e-20)
    valid = mask & ok_col & ok_row & ok
    toward = camera.view_vectors(points)
    flip = np.einsum("hwi,hwi->hw", normals, toward) < 0
    normals[flip] *= -1.0
    normals[~valid] = 0.0
    return normals.astype(np.float32), valid



def flip_horizontal(image_or_depth, normals=None):
    """Mirror columns of an [H, W] or [H, W, C] array; with ``normals`` also flip them.

    Returns the flipped array, or ``(flipped, flipped_normals)`` when ``normals``
    ([H, W, 3]) is given; the normals' x component is negated.
    """
    array = np.asarray(image_or_depth)
    if array.ndim not in (2, 3):
        raise ValueError(f"image_or_depth must have shape [H, W] or [H, W, C], got {array.shape}")
    flipped = array[:, ::-1].copy()
    if normals is None:
        return flipped
    normals = np.asarray(normals)
    if normals.ndim != 3 or normals.shape[-1] != 3 or normals.shape[:2] != array.shape[:2]:
        raise ValueError(f"normals must have shape [{array.shape[0]}, {array.shape[1]}, 3], got {normals.shape}")
    flipped_normals = normals[:, ::-1].copy()
    flipped_normals[..., 0] *= -1
    return flipped, flipped_normals
