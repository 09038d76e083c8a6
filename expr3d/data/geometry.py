"""Geometry shared by the procedural face renderer and real-data preparation.

Everything here is vectorised numpy (plus OpenCV for contours and connected
components); there is no Python loop over triangles or pixels.

Conventions (the project's, see DESIGN.md):

* Camera space: x right, y up, z TOWARD the camera (OpenGL); the camera looks
  down -z. Visible points have z < 0.
* A depth map stores ``z_depth``, the positive distance along the optical axis
  (``z_depth = -z`` for the perspective camera), so smaller = nearer. Empty
  pixels hold 0 and are marked by a separate boolean mask.
* Image coordinates: ``u`` = column, ``v`` = row (rows go down, row 0 = top);
  pixel ``(row, col)`` has its centre at ``(u, v) = (col + 0.5, row + 0.5)``.
* Normals are unit vectors in camera space facing the camera (``n_z > 0`` on a
  surface seen head-on; under a perspective camera they are oriented toward the
  viewing ray, i.e. ``dot(n, -p) > 0``).
* A horizontal flip mirrors columns and negates the normals' x component.

Main entry points: the cameras (``PerspectiveCamera``, ``OrthographicCamera``,
``PixelSpaceCamera``), ``rasterize`` (z-buffer triangle rasterizer giving depth,
mask, normals, triangle ids, barycentrics and interpolated attributes),
``vertex_normals`` / ``face_normals``, ``depth_to_normals``, ``fill_holes``
and ``flip_horizontal``.

Example:

```python
vertices, faces = uv_sphere_mesh(radius=1.0, center=(0.0, 0.0, -5.0))
camera = PerspectiveCamera(focal_px=100.0, cx=32.0, cy=32.0)
result = rasterize(vertices, faces, camera, height=64, width=64)
normals, valid = depth_to_normals(result.depth, result.mask, camera)
```
"""

from __future__ import annotations

import dataclasses
import math

import cv2
import numpy as np

__all__ = [
    "PerspectiveCamera",
    "OrthographicCamera",
    "PixelSpaceCamera",
    "RasterResult",
    "rasterize",
    "face_normals",
    "vertex_normals",
    "depth_to_normals",
    "fill_holes",
    "flip_horizontal",
    "pixel_centers",
    "uv_sphere_mesh",
    "grid_mesh",
]

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


def _finite_positive(name, value):
    value = float(value)
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite positive number, got {value!r}")
    return value


def _finite(name, value):
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return value


def _as_points(name, points):
    points = np.asarray(points, dtype=np.float64)
    if points.ndim != 2 or points.shape[1] != 3:
        raise ValueError(f"{name} must have shape [N, 3], got {points.shape}")
    return points


# ----------------------------------------------------------------------------
# Cameras
# ----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class PerspectiveCamera:
    """Pinhole camera looking down -z of camera space.

    ``u = cx + f * x / (-z)``, ``v = cy - f * y / (-z)``, ``z_depth = -z``.

    Args:
        focal_px: focal length in pixels (> 0).
        cx: column coordinate of the principal point (e.g. ``width / 2`` for the
            image centre, since pixel centres sit at integer + 0.5).
        cy: row coordinate of the principal point.

    Example:

    ```python
    cam = PerspectiveCamera(focal_px=200.0, cx=64.0, cy=64.0)
    uv, z_depth = cam.project(np.array([[0.0, 0.0, -2.0]]))  # -> [[64, 64]], [2]
    ```
    """

    focal_px: float
    cx: float
    cy: float

    def __post_init__(self):
        object.__setattr__(self, "focal_px", _finite_positive("focal_px", self.focal_px))
        object.__setattr__(self, "cx", _finite("cx", self.cx))
        object.__setattr__(self, "cy", _finite("cy", self.cy))

    is_perspective = True

    def project(self, points):
        """Camera-space points [N, 3] -> (uv [N, 2], z_depth [N])."""
        points = _as_points("points", points)
        z_depth = -points[:, 2]
        # Points on the camera plane (z = 0) give inf/nan coordinates, by design.
        with np.errstate(divide="ignore", invalid="ignore"):
            inv = self.focal_px / z_depth
            uv = np.stack([self.cx + points[:, 0] * inv, self.cy - points[:, 1] * inv], axis=-1)
        return uv, z_depth

    def unproject(self, u, v, z_depth):
        """Pixel coordinates and z_depth (broadcastable arrays) -> points [..., 3]."""
        u, v, z_depth = np.broadcast_arrays(
            np.asarray(u, np.float64), np.asarray(v, np.float64), np.asarray(z_depth, np.float64)
        )
        x = (u - self.cx) * z_depth / self.focal_px
        y = -(v - self.cy) * z_depth / self.focal_px
        return np.stack([x, y, -z_depth], axis=-1)

    def to_camera_space(self, points):
        """Identity: this camera's points are already in camera space."""
        return np.asarray(points, np.float64)

    def view_vectors(self, camera_points):
        """Unnormalised directions from camera-space surface points toward the camera."""
        return -np.asarray(camera_points, np.float64)


@dataclasses.dataclass(frozen=True)
class OrthographicCamera:
    """Orthographic camera looking down -z of camera space.

    ``u = cx + scale * x``, ``v = cy - scale * y``, ``z_depth = depth_offset - z``.

    Args:
        scale: pixels per camera-space unit (> 0).
        cx: column coordinate of the camera-space origin.
        cy: row coordinate of the camera-space origin.
        depth_offset: added to ``-z`` so that depths of the object are positive
            (choose it larger than the largest z of the mesh).

    Example:

    ```python
    cam = OrthographicCamera(scale=30.0, cx=32.0, cy=32.0, depth_offset=3.0)
    ```
    """

    scale: float
    cx: float
    cy: float
    depth_offset: float = 0.0

    def __post_init__(self):
        object.__setattr__(self, "scale", _finite_positive("scale", self.scale))
        object.__setattr__(self, "cx", _finite("cx", self.cx))
        object.__setattr__(self, "cy", _finite("cy", self.cy))
        object.__setattr__(self, "depth_offset", _finite("depth_offset", self.depth_offset))

    is_perspective = False

    def project(self, points):
        points = _as_points("points", points)
        uv = np.stack([self.cx + self.scale * points[:, 0], self.cy - self.scale * points[:, 1]], axis=-1)
        return uv, self.depth_offset - points[:, 2]

    def unproject(self, u, v, z_depth):
        u, v, z_depth = np.broadcast_arrays(
            np.asarray(u, np.float64), np.asarray(v, np.float64), np.asarray(z_depth, np.float64)
        )
        return np.stack([(u - self.cx) / self.scale, -(v - self.cy) / self.scale, self.depth_offset - z_depth], axis=-1)

    def to_camera_space(self, points):
        return np.asarray(points, np.float64)

    def view_vectors(self, camera_points):
        shape = np.shape(camera_points)
        out = np.zeros(shape, np.float64)
        out[..., 2] = 1.0
        return out


@dataclasses.dataclass(frozen=True)
class PixelSpaceCamera:
    """Identity "camera" for meshes whose vertices are already image pixels.

    This is the layout written by 3DDFA(-V2), Extreme 3D and DECA: ``x`` is the
    column, ``y`` the row (going down) and ``z`` a depth in pixel units which
    grows toward the viewer when ``z_toward_camera`` (3DDFA convention) or away
    from it otherwise.

    Projection: ``u = x + pixel_offset``, ``v = y + pixel_offset`` (with the
    default 0.5, vertex ``x = i`` lands on the centre of column ``i``, the
    convention of those tools' rasterizers; use 0.0 if ``x = i`` is the left
    edge of column ``i``).

    Depth: ``z_depth = z_reference - z`` when ``z_toward_camera`` else
    ``z_depth = z - z_reference``; smaller = nearer either way. Choose
    ``z_reference`` beyond the nearest vertex so depths are positive (see
    ``for_vertices``); the rasterizer's mask, not the sign, marks valid pixels.

    Camera space (for normals) is ``(x, -y, z)`` when ``z_toward_camera`` and
    ``(x, -y, -z)`` otherwise, i.e. x right, y up, z toward the viewer.

    Args:
        z_toward_camera: whether larger ``z`` is nearer to the viewer.
        z_reference: the ``z`` whose depth is 0.
        pixel_offset: added to x and y to get pixel-centre coordinates.

    Example:

    ```python
    cam = PixelSpaceCamera.for_vertices(vertices)  # 3DDFA-style mesh
    result = rasterize(vertices, faces, cam, height=256, width=256)
    ```
    """

    z_toward_camera: bool = True
    z_reference: float = 0.0
    pixel_offset: float = 0.5

    def __post_init__(self):
        object.__setattr__(self, "z_toward_camera", bool(self.z_toward_camera))
        object.__setattr__(self, "z_reference", _finite("z_reference", self.z_reference))
        object.__setattr__(self, "pixel_offset", _finite("pixel_offset", self.pixel_offset))

    is_perspective = False

    @classmethod
    def for_vertices(cls, vertices, z_toward_camera=True, margin=1.0, pixel_offset=0.5):
        """A camera whose ``z_reference`` puts the nearest vertex at depth ``margin``."""
        z = _as_points("vertices", vertices)[:, 2]
        z = z[np.isfinite(z)]
        if z.size == 0:
            raise ValueError("vertices has no finite z value")
        if z_toward_camera:
            reference = float(z.max()) + margin
        else:
            reference = float(z.min()) - margin
        return cls(z_toward_camera=z_toward_camera, z_reference=reference, pixel_offset=pixel_offset)

    def project(self, points):
        points = _as_points("points", points)
        uv = points[:, :2] + self.pixel_offset
        if self.z_toward_camera:
            z_depth = self.z_reference - points[:, 2]
        else:
            z_depth = points[:, 2] - self.z_reference
        return uv, z_depth

    def unproject(self, u, v, z_depth):
        u, v, z_depth = np.broadcast_arrays(
            np.asarray(u, np.float64), np.asarray(v, np.float64), np.asarray(z_depth, np.float64)
        )
        z = self.z_reference - z_depth if self.z_toward_camera else self.z_reference + z_depth
        return np.stack([u - self.pixel_offset, v - self.pixel_offset, z], axis=-1)

    def to_camera_space(self, points):
        points = np.asarray(points, np.float64)
        sign_z = 1.0 if self.z_toward_camera else -1.0
        return points * np.array([1.0, -1.0, sign_z])

    def view_vectors(self, camera_points):
        shape = np.shape(camera_points)
        out = np.zeros(shape, np.float64)
        out[..., 2] = 1.0
        return out


_CAMERA_TYPES = (PerspectiveCamera, OrthographicCamera, PixelSpaceCamera)


def _check_camera(camera):
    if not isinstance(camera, _CAMERA_TYPES):
        raise ValueError(
            "camera must be a PerspectiveCamera, OrthographicCamera or PixelSpaceCamera, "
            f"got {type(camera).__name__}"
        )


def pixel_centers(height, width):
    """(u, v) float64 arrays [H, W] of pixel-centre coordinates (col + 0.5, row + 0.5)."""
    v, u = np.meshgrid(np.arange(height) + 0.5, np.arange(width) + 0.5, indexing="ij")
    return u, v


# ----------------------------------------------------------------------------
# Mesh normals
# ----------------------------------------------------------------------------


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


def _cross(a, b):
    """Cross product over the last axis (faster than np.cross for many short vectors)."""
    ax, ay, az = a[..., 0], a[..., 1], a[..., 2]
    bx, by, bz = b[..., 0], b[..., 1], b[..., 2]
    return np.stack([ay * bz - az * by, az * bx - ax * bz, ax * by - ay * bx], axis=-1)


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


# ----------------------------------------------------------------------------
# Rasterizer
# ----------------------------------------------------------------------------


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
        n_pix = (
            bary[:, 0:1] * vn[pix_faces[:, 0]] + bary[:, 1:2] * vn[pix_faces[:, 1]] + bary[:, 2:3] * vn[pix_faces[:, 2]]
        )
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


# ----------------------------------------------------------------------------
# Depth -> normals
# ----------------------------------------------------------------------------


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
    u, v = pixel_centers(height, width)
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


# ----------------------------------------------------------------------------
# Hole filling
# ----------------------------------------------------------------------------


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


# ----------------------------------------------------------------------------
# Small helpers
# ----------------------------------------------------------------------------


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
