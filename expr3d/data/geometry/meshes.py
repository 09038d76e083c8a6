"""Meshes: validation, face and vertex normals, and the primitives (UV sphere, triangulated grid).

Owns ``face_normals`` and ``vertex_normals`` (area-weighted), the mesh check the rasterizer shares, the vector
normalisation used by the rasterizer and ``depth_to_normals``, and the two mesh primitives ``uv_sphere_mesh`` and
``grid_mesh`` used by the synthetic data, the test fixtures and the benchmarks.
"""

from __future__ import annotations

import numpy as np

__all__ = ["face_normals", "vertex_normals", "uv_sphere_mesh", "grid_mesh"]


def _check_mesh(vertices, faces):
    vertices = np.asarray(vertices)
    if vertices.ndim != 2 or vertices.shape[1] != 3:
        raise ValueError(f"vertices must have shape [N, 3], got {vertices.shape}")
    if not np.issubdtype(vertices.dtype, np.number) or np.iscomplexobj(vertices):
        raise ValueError(f"vertices must be real numbers, got dtype {vertices.dtype}")
    vertices = vertices.astype(np.float64, copy=False)
    if not np.all(np.isfinite(vertices)):
        bad = int(np.count_nonzero(~np.all(np.isfinite(vertices), axis=1)))
        raise ValueError(f"vertices contains {bad} vertices with NaN or inf coordinates")
    faces = np.asarray(faces)
    if faces.ndim != 2 or faces.shape[1] != 3:
        raise ValueError(f"faces must have shape [F, 3], got {faces.shape}")
    if faces.size and not np.issubdtype(faces.dtype, np.integer):
        if np.issubdtype(faces.dtype, np.floating) and np.all(np.isfinite(faces)) and np.all(faces == np.round(faces)):
            faces = faces.astype(np.int64)
        else:
            raise ValueError(f"faces must hold integer vertex indices, got dtype {faces.dtype}")
    faces = faces.astype(np.int64, copy=False)
    if faces.size and (faces.min() < 0 or faces.max() >= len(vertices)):
        raise ValueError(
            f"faces indices must be in [0, {len(vertices) - 1}] (number of vertices - 1), "
            f"got range [{faces.min()}, {faces.max()}]"
        )
    return vertices, faces


def _face_normal_components(vertices, faces):
    """(nx, ny, nz) of (v1 - v0) x (v2 - v0), each [F]; length = 2 * area.

    Works on contiguous coordinate columns: gathering whole [F, 3] rows is
    several times slower for large meshes.
    """
    f0, f1, f2 = (np.ascontiguousarray(faces[:, k]) for k in range(3))
    vx, vy, vz = (np.ascontiguousarray(vertices[:, k]) for k in range(3))
    x0, y0, z0 = vx[f0], vy[f0], vz[f0]
    ax, ay, az = vx[f1] - x0, vy[f1] - y0, vz[f1] - z0
    bx, by, bz = vx[f2] - x0, vy[f2] - y0, vz[f2] - z0
    return ay * bz - az * by, az * bx - ax * bz, ax * by - ay * bx


def _unnormalised_face_normals(vertices, faces):
    return np.stack(_face_normal_components(vertices, faces), axis=-1)


def _normalise(vectors, eps=1e-30):
    norm = np.sqrt(np.einsum("...i,...i->...", vectors, vectors))
    ok = norm > eps
    out = np.where(ok[..., None], vectors / np.where(ok, norm, 1.0)[..., None], 0.0)
    return out, ok


def face_normals(vertices, faces):
    """Unit face normals [F, 3] from the winding (v1 - v0) x (v2 - v0); 0 for degenerate faces."""
    vertices, faces = _check_mesh(vertices, faces)
    return _normalise(_unnormalised_face_normals(vertices, faces))[0]


def vertex_normals(vertices, faces):
    """Area-weighted unit vertex normals [N, 3]; 0 for vertices on no (or only degenerate) faces."""
    vertices, faces = _check_mesh(vertices, faces)
    return _vertex_normals(vertices, faces)


def _vertex_normals(vertices, faces):
    # The unnormalised cross product has length 2 * area: summing it weights by area.
    components = _face_normal_components(vertices, faces)
    n = len(vertices)
    corners = [np.ascontiguousarray(faces[:, k]) for k in range(3)]
    summed = np.stack(
        [sum(np.bincount(corner, weights=c, minlength=n) for corner in corners) for c in components], axis=-1
    )
    return _normalise(summed)[0]


def uv_sphere_mesh(radius=1.0, center=(0.0, 0.0, 0.0), num_lat=64, num_lon=128, axes_scale=(1.0, 1.0, 1.0)):
    """A closed UV sphere (or ellipsoid via ``axes_scale``) with outward counter-clockwise faces.

    Returns (vertices float64 [N, 3], faces int64 [F, 3]) with
    N = (num_lat - 1) * num_lon + 2 and F = 2 * (num_lat - 1) * num_lon.
    """
    if num_lat < 2 or num_lon < 3:
        raise ValueError(f"num_lat must be >= 2 and num_lon >= 3, got {num_lat}, {num_lon}")
    theta = np.linspace(0.0, np.pi, num_lat + 1)[1:-1]  # polar angle from +y, rings only
    phi = np.linspace(0.0, 2.0 * np.pi, num_lon, endpoint=False)
    t, p = np.meshgrid(theta, phi, indexing="ij")
    ring = np.stack([np.sin(t) * np.sin(p), np.cos(t), np.sin(t) * np.cos(p)], axis=-1).reshape(-1, 3)
    vertices = np.concatenate([[[0.0, 1.0, 0.0]], ring, [[0.0, -1.0, 0.0]]])
    vertices = vertices * np.asarray(axes_scale, np.float64) * radius + np.asarray(center, np.float64)
    rings = num_lat - 1
    idx = 1 + np.arange(rings * num_lon).reshape(rings, num_lon)
    nxt = np.roll(idx, -1, axis=1)
    top = np.stack([np.zeros(num_lon, np.int64), idx[0], nxt[0]], axis=-1)
    bottom_pole = len(vertices) - 1
    bottom = np.stack([np.full(num_lon, bottom_pole), nxt[-1], idx[-1]], axis=-1)
    a, b, c, d = idx[:-1], nxt[:-1], idx[1:], nxt[1:]
    quads = np.concatenate(
        [np.stack([a, c, d], axis=-1).reshape(-1, 3), np.stack([a, d, b], axis=-1).reshape(-1, 3)]
    )
    faces = np.concatenate([top, quads, bottom]).astype(np.int64)
    return vertices, faces


def grid_mesh(xs, ys, zs):
    """Triangulate a regular grid of points ([R, C] arrays each) into (vertices, faces).

    Faces are counter-clockwise when x grows along columns and y along rows.
    """
    xs, ys, zs = (np.asarray(a, np.float64) for a in (xs, ys, zs))
    if xs.ndim != 2 or xs.shape != ys.shape or xs.shape != zs.shape or min(xs.shape) < 2:
        raise ValueError(f"xs, ys, zs must be equal [R>=2, C>=2] arrays, got {xs.shape}, {ys.shape}, {zs.shape}")
    rows, cols = xs.shape
    vertices = np.stack([xs, ys, zs], axis=-1).reshape(-1, 3)
    idx = np.arange(rows * cols).reshape(rows, cols)
    a, b, c, d = idx[:-1, :-1], idx[:-1, 1:], idx[1:, :-1], idx[1:, 1:]
    faces = np.concatenate([np.stack([a, b, d], -1).reshape(-1, 3), np.stack([a, d, c], -1).reshape(-1, 3)])
    return vertices, faces
