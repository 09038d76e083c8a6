"""Cameras: the perspective, orthographic and pixel-space projections between camera space and the image.

Owns ``PerspectiveCamera``, ``OrthographicCamera`` and ``PixelSpaceCamera`` (project, unproject, the camera-space
frame used for normals and the direction toward the viewer), the check that a value is one of them, and
``pixel_centers``, the image coordinates of pixel centres. The conventions are in the package docstring
(``expr3d.data.geometry``).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

__all__ = ["PerspectiveCamera", "OrthographicCamera", "PixelSpaceCamera", "pixel_centers"]


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
