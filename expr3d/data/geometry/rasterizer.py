"""The z-buffer triangle rasterizer: depth, mask, normals, triangle ids, barycentrics and attributes at pixel centres.

Owns ``rasterize`` and its result type ``RasterResult``; vectorised over (triangle, pixel) pairs in bounded chunks,
no Python loop over triangles or pixels.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from expr3d.data.geometry.cameras import _check_camera
from expr3d.data.geometry.meshes import _check_mesh, _normalise, _unnormalised_face_normals, _vertex_normals

__all__ = ["RasterResult", "rasterize"]

# Candidate (triangle, pixel) pairs processed at once; bounds peak memory to
# roughly 100 bytes per pair (~50 MB).
_PAIRS_PER_CHUNK = 1 << 19
# Barycentric tolerance so a pixel centre lying exactly on a shared edge is
# not lost to rounding by both neighbouring triangles.
_INSIDE_EPS = 1e-7
# Twice the screen-space area (px^2) below which a triangle is degenerate.
_MIN_DOUBLE_AREA = 1e-12
# Perspective: triangles with a vertex closer than this (in z_depth units) to
# the camera plane are dropped (no near-plane clipping).
_MIN_PERSPECTIVE_DEPTH = 1e-9


@dataclasses.dataclass
class RasterResult:
    """Output of ``rasterize``; every array is [H, W, ...].

    Attributes:
        depth: float32 [H, W] z_depth of the nearest surface, 0 where empty.
        mask: bool [H, W] pixels covered by the mesh.
        normals: float32 [H, W, 3] unit camera-space normals facing the camera, 0 where empty.
        triangle_id: int32 [H, W] index of the visible face, -1 where empty.
        barycentrics: float32 [H, W, 3] barycentric coordinates of the visible
            surface point in its face (perspective-correct), 0 where empty.
        attributes: float32 [H, W, C] interpolated vertex attributes (0 where
            empty) or None when none were given.
    """

    depth: np.ndarray
    mask: np.ndarray
    normals: np.ndarray
    triangle_id: np.ndarray
    barycentrics: np.ndarray
    attributes: np.ndarray | None = None


def _check_size(name, value):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def rasterize(
    vertices,
    faces,
    camera,
    height,
    width,
    attributes=None,
    cull_backfaces=False,
    smooth_normals=True,
    precomputed_normals=None,
):
    """Z-buffer rasterization of a triangle mesh at pixel centres.

    A pixel is covered by a triangle when its centre lies inside the projected
    triangle; the nearest covering triangle (smallest z_depth) wins. Depth is
    interpolated exactly (1/z_depth is linear in the image under a perspective
    camera), barycentrics and attributes perspective-correctly. Triangles partly
    or wholly outside the image are clipped; a mesh missing the image gives an
    empty mask. Degenerate triangles (zero projected area) are ignored, and so
    are triangles with a vertex at or behind a perspective camera's plane.

    Args:
        vertices: float [N, 3] in the camera's input space.
        faces: int [F, 3] vertex indices.
        camera: a ``PerspectiveCamera``, ``OrthographicCamera`` or ``PixelSpaceCamera``.
        height: output rows.
        width: output columns.
        attributes: optional float [N, C] per-vertex values (e.g. colours).
        cull_backfaces: drop triangles whose winding is clockwise as seen from
            the camera (front faces are counter-clockwise in camera space,
            i.e. their face normal (v1-v0)x(v2-v0) points toward the viewer).
        smooth_normals: interpolate area-weighted vertex normals (True) or use
            flat face normals (False). Vertex normals that cancel out fall back
            to the face normal.
        precomputed_normals: optional [N, 3] vertex normals in camera space
            (for ``PixelSpaceCamera`` that is ``to_camera_space`` of the pixel
            frame) used instead of computing area-weighted ones; saves time
            when rendering one mesh repeatedly.

    Returns:
        A ``RasterResult``.
    """
    _check_camera(camera)
    height = _check_size("height", height)
    width = _check_size("width", width)
    vertices, faces = _check_mesh(vertices, faces)
    if attributes is not None:
        attributes = np.asarray(attributes)
        if attributes.ndim != 2 or attributes.shape[0] != len(vertices):
            raise ValueError(f"attributes must have shape [N={len(vertices)}, C], got {attributes.shape}")
        if not np.issubdtype(attributes.dtype, np.number):
            raise ValueError(f"attributes must be numeric, got dtype {attributes.dtype}")
        attributes = attributes.astype(np.float64, copy=False)
        if not np.all(np.isfinite(attributes)):
            raise ValueError("attributes contains NaN or inf values")
    if precomputed_normals is not None:
        precomputed_normals = np.asarray(precomputed_normals, np.float64)
        if precomputed_normals.shape != vertices.shape:
            raise ValueError(f"precomputed_normals must have shape {vertices.shape}, got {precomputed_normals.shape}")

    num_pixels = height * width
    uv, z_depth = camera.project(vertices)
    perspective = camera.is_perspective
    # A vertex exactly on a perspective camera's plane projects to inf/nan; its
    # triangles are dropped below, this only keeps the arithmetic quiet.
    uv = np.where(np.isfinite(uv), uv, 0.0)

    # --- per-triangle set-up ------------------------------------------------
    f0, f1, f2 = faces[:, 0], faces[:, 1], faces[:, 2]
    u_all, v_all = uv[:, 0].copy(), uv[:, 1].copy()
    u0, u1, u2 = u_all[f0], u_all[f1], u_all[f2]
    v0, v1, v2 = v_all[f0], v_all[f1], v_all[f2]
    z0, z1, z2 = z_depth[f0], z_depth[f1], z_depth[f2]
    double_area = (u1 - u0) * (v2 - v0) - (u2 - u0) * (v1 - v0)
    keep = np.abs(double_area) > _MIN_DOUBLE_AREA
    if perspective:
        keep &= np.minimum(np.minimum(z0, z1), z2) > _MIN_PERSPECTIVE_DEPTH
    if cull_backfaces:
        # Image rows go down, so a counter-clockwise camera-space triangle has
        # a negative signed area in (u, v).
        keep &= double_area < 0
    # Pixel-centre ranges of the bounding boxes, clipped to the image.
    col_lo = np.clip(np.ceil(np.minimum(np.minimum(u0, u1), u2) - 0.5), 0, width)
    col_hi = np.clip(np.floor(np.maximum(np.maximum(u0, u1), u2) - 0.5), -1, width - 1)
    row_lo = np.clip(np.ceil(np.minimum(np.minimum(v0, v1), v2) - 0.5), 0, height)
    row_hi = np.clip(np.floor(np.maximum(np.maximum(v0, v1), v2) - 0.5), -1, height - 1)
    box_w = np.maximum(col_hi - col_lo + 1, 0).astype(np.int64)
    box_h = np.maximum(row_hi - row_lo + 1, 0).astype(np.int64)
    counts = box_w * box_h
    counts[~keep] = 0
    tri_ids = np.flatnonzero(counts)

    zbuffer = np.full(num_pixels, np.inf)
    winner = np.full(num_pixels, -1, np.int64)
    if tri_ids.size:
        # Screen-space barycentrics b1, b2 and the depth key as affine functions
        # of pixel (u, v): value = a * u + b * v + c.
        t = tri_ids
        inv_area = 1.0 / double_area[t]
        b1_a = (v2[t] - v0[t]) * inv_area
        b1_b = -(u2[t] - u0[t]) * inv_area
        b1_c = -(u0[t] * b1_a + v0[t] * b1_b)
        b2_a = -(v1[t] - v0[t]) * inv_area
        b2_b = (u1[t] - u0[t]) * inv_area
        b2_c = -(u0[t] * b2_a + v0[t] * b2_b)
        if perspective:
            # 1/z_depth is linear in screen space; nearest = largest.
            key0, key1, key2 = -1.0 / z0[t], -1.0 / z1[t], -1.0 / z2[t]
        else:
            key0, key1, key2 = z0[t], z1[t], z2[t]
        k_a = (key1 - key0) * b1_a + (key2 - key0) * b2_a
        k_b = (key1 - key0) * b1_b + (key2 - key0) * b2_b
        k_c = key0 + (key1 - key0) * b1_c + (key2 - key0) * b2_c
        coeffs = (b1_a, b1_b, b1_c, b2_a, b2_b, b2_c, k_a, k_b, k_c)
        local_w = box_w[t]
        local_c0 = col_lo[t].astype(np.int64)
        local_r0 = row_lo[t].astype(np.int64)
        local_counts = counts[t]
        ends = np.cumsum(local_counts)
        starts = ends - local_counts
        # Chunk boundaries over triangles so each chunk holds ~_PAIRS_PER_CHUNK pairs.
        num_chunks = max(1, int(math.ceil(ends[-1] / _PAIRS_PER_CHUNK)))
        bounds = np.searchsorted(ends, np.arange(1, num_chunks) * _PAIRS_PER_CHUNK, side="left")
        bounds = np.unique(np.concatenate([[0], bounds, [len(t)]]))
        for lo, hi in zip(bounds[:-1], bounds[1:]):
            _raster_chunk(
                lo, hi, starts, local_counts, local_w, local_c0, local_r0, coeffs, t, width, zbuffer, winner
            )

    # --- per-pixel shading of the winners -----------------------------------
    mask_flat = winner >= 0
    pix = np.flatnonzero(mask_flat)
    tri = winner[pix]
    pu = (pix % width) + 0.5
    pv = (pix // width) + 0.5
    uu0, vv0 = u0[tri], v0[tri]
    inv_area = 1.0 / double_area[tri]
    b1 = ((pu - uu0) * (v2[tri] - vv0) - (pv - vv0) * (u2[tri] - uu0)) * inv_area
    b2 = ((u1[tri] - uu0) * (pv - vv0) - (v1[tri] - vv0) * (pu - uu0)) * inv_area
    bary = np.stack([1.0 - b1 - b2, b1, b2], axis=-1)
    bary = np.clip(bary, 0.0, None)
    bary /= np.maximum(bary.sum(axis=-1, keepdims=True), 1e-30)
    zt = np.stack([z0[tri], z1[tri], z2[tri]], axis=-1)
    if perspective:
        weights = bary / zt
        total = weights.sum(axis=-1)
        depth_pix = 1.0 / total
        bary = weights / total[:, None]
    else:
        depth_pix = np.einsum("pi,pi->p", bary, zt)

    cam_vertices = camera.to_camera_space(vertices)
    pix_faces = faces[tri]
    if smooth_normals:
        vn = precomputed_normals if precomputed_normals is not None else _vertex_normals(cam_vertices, faces)
        n_pix = np.einsum("pk,pkd->pd", bary, vn[pix_faces])
        n_pix, ok = _normalise(n_pix, eps=1e-6)
        if not ok.all():  # vertex normals cancelled out: use the flat face normal
            n_pix[~ok] = _normalise(_unnormalised_face_normals(cam_vertices, pix_faces[~ok]))[0]
    else:
        n_pix = _normalise(_unnormalised_face_normals(cam_vertices, pix_faces))[0]
    surface = camera.to_camera_space(camera.unproject(pu, pv, depth_pix))
    toward = camera.view_vectors(surface)
    flip = np.einsum("pi,pi->p", n_pix, toward) < 0
    n_pix[flip] *= -1.0

    depth = np.zeros(num_pixels, np.float32)
    depth[pix] = depth_pix
    normals = np.zeros((num_pixels, 3), np.float32)
    normals[pix] = n_pix
    barycentrics = np.zeros((num_pixels, 3), np.float32)
    barycentrics[pix] = bary
    triangle_id = winner.astype(np.int32)
    attr_out = None
    if attributes is not None:
        attr_out = np.zeros((num_pixels, attributes.shape[1]), np.float32)
        attr_out[pix] = (
            bary[:, 0:1] * attributes[pix_faces[:, 0]]
            + bary[:, 1:2] * attributes[pix_faces[:, 1]]
            + bary[:, 2:3] * attributes[pix_faces[:, 2]]
        )
        attr_out = attr_out.reshape(height, width, -1)
    return RasterResult(
        depth=depth.reshape(height, width),
        mask=mask_flat.reshape(height, width),
        normals=normals.reshape(height, width, 3),
        triangle_id=triangle_id.reshape(height, width),
        barycentrics=barycentrics.reshape(height, width, 3),
        attributes=attr_out,
    )


def _raster_chunk(lo, hi, starts, counts, box_w, col0, row0, coeffs, tri_ids, width, zbuffer, winner):
    """Depth-test all (triangle, pixel-centre) candidates of triangles [lo, hi)."""
    chunk_counts = counts[lo:hi]
    total = int(chunk_counts.sum())
    if total == 0:
        return
    local = np.repeat(np.arange(lo, hi), chunk_counts)
    offset = np.arange(total) - (starts[local] - starts[lo])
    w = box_w[local]
    drow = offset // w
    col = col0[local] + (offset - drow * w)
    row = row0[local] + drow
    u = col + 0.5
    v = row + 0.5
    b1_a, b1_b, b1_c, b2_a, b2_b, b2_c, k_a, k_b, k_c = coeffs
    b1 = b1_a[local] * u + b1_b[local] * v + b1_c[local]
    b2 = b2_a[local] * u + b2_b[local] * v + b2_c[local]
    inside = (b1 >= -_INSIDE_EPS) & (b2 >= -_INSIDE_EPS) & (b1 + b2 <= 1.0 + _INSIDE_EPS)
    local = local[inside]
    u = u[inside]
    v = v[inside]
    key = k_a[local] * u + k_b[local] * v + k_c[local]
    pixel = row[inside] * width + col[inside]
    np.minimum.at(zbuffer, pixel, key)
    # Every pixel whose z-buffer this chunk lowered has a pair equal to the new
    # minimum, so the winner written here is never stale.
    best = key == zbuffer[pixel]
    winner[pixel[best]] = tri_ids[local[best]]
