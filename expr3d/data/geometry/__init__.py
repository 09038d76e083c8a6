"""Geometry shared by the procedural face renderer and real-data preparation.

Everything here is vectorised numpy (plus OpenCV for contours and connected
components); there is no Python loop over triangles or pixels. One module per
concern: ``cameras`` (projections, pixel centres), ``meshes`` (mesh normals and
primitives), ``rasterizer``, ``normals`` (depth -> normals, horizontal flip) and
``holes`` (hole filling); this package re-exports their public names.

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

from expr3d.data.geometry.cameras import OrthographicCamera, PerspectiveCamera, PixelSpaceCamera, pixel_centers
from expr3d.data.geometry.holes import fill_holes
from expr3d.data.geometry.meshes import face_normals, grid_mesh, uv_sphere_mesh, vertex_normals
from expr3d.data.geometry.normals import depth_to_normals, flip_horizontal
from expr3d.data.geometry.rasterizer import RasterResult, rasterize

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
