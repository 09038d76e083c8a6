"""Where a face's depth comes from: per-image depth maps, per-image meshes, or this project's depth network.

Every source works in two steps so that the crop is decided once and applied identically to image and geometry:
`load(item, image_shape)` reads the source data in the coordinates of the source image (and can tell where the face
is, for `--crop=depth`), and `render(data, matrix, size, crop_rgb)` produces depth, mask and normals of the output
crop given the similarity `matrix` (expr3d.imaging.crops.crop_matrix) that also warps the image.

Units: output depth is in output-crop pixels for the `pixels` and `orthographic` cameras (so depth_to_normals sees a
true aspect ratio), and in the source's own units (e.g. metres) under a `perspective` camera, whose focal length and
principal point are transformed with the crop instead.
"""
import dataclasses
import math
import os

os.environ.setdefault("OPENCV_IO_ENABLE_OPENEXR", "1")  # OpenCV reads .exr only when this is set before first use

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from expr3d.data import geometry  # noqa: E402
from expr3d.data.prepare import meshes  # noqa: E402
from expr3d.imaging import crops, faces  # noqa: E402
from expr3d.imaging.pixels import from_uint8  # noqa: E402

DEPTH_EXTENSIONS = (".npy", ".png", ".exr", ".tif", ".tiff")


class SourceError(ValueError):
    """No usable geometry for an item; `reason` is a report code, the message names the file."""

    def __init__(self, reason, message):
        super().__init__(message)
        self.reason = reason


@dataclasses.dataclass
class Geometry:
    """Geometry of the output crop before hole filling.

    depth: float32 [S, S] z_depth (positive where mask); mask: bool [S, S] measured pixels; normals: float32
    [S, S, 3] where the source gives them (mesh), else None; camera: the geometry camera of the crop (for
    depth_to_normals and hole filling); notes: conversions applied.
    """

    depth: np.ndarray
    mask: np.ndarray
    normals: np.ndarray | None
    camera: object
    notes: list


@dataclasses.dataclass
class SourceSettings:
    """Flags shared by the sources (see __main__ for their help)."""

    depth_dir: str = ""
    mesh_dir: str = ""
    depth_model: str = ""
    suffix: str = ""
    camera: str = "pixels"  # pixels | orthographic | perspective
    focal_px: float = 0.0
    cx: float | None = None  # None: image centre
    cy: float | None = None
    ortho_scale: float = 1.0
    depth_scale: float = 1.0
    depth_near: str = "small"  # small | large
    depth_invalid_value: float = 0.0
    mesh_z_toward_camera: bool = True
    mesh_y_up: bool = False
    model_depth_range: float = 0.4
    model_mask_threshold: float = -0.9
    face_mesh_model: str = ""  # facemesh: the face_landmark.tflite file ("" = the installed package's)


def find_file(root, item, extensions, suffix=""):
    """The file in `root` matching the item's relative path stem (same sub-folders) or its bare stem; None if absent.

    Returns (path, note) where note mentions other candidates when several extensions exist.
    """
    rel_stem = os.path.splitext(item.rel_path)[0] + suffix
    bare_stem = os.path.basename(os.path.splitext(item.rel_path)[0]) + suffix
    for stem in dict.fromkeys((rel_stem, bare_stem)):  # relative first, then bare; dict keeps order, drops dupes
        found = [os.path.join(root, stem + ext) for ext in extensions if os.path.isfile(os.path.join(root, stem + ext))]
        if found:
            note = None
            if len(found) > 1:
                note = f"several files for {stem}: used {os.path.basename(found[0])}"
            return found[0], note
    return None, None


def _camera_in_source(settings, height, width):
    cx = settings.cx if settings.cx is not None and math.isfinite(settings.cx) else width / 2.0
    cy = settings.cy if settings.cy is not None and math.isfinite(settings.cy) else height / 2.0
    return cx, cy


def _perspective_crop_camera(settings, matrix, height, width):
    """The pinhole camera of the crop: focal scaled, principal point moved with the (similarity) crop."""
    cx, cy = _camera_in_source(settings, height, width)
    scale = crops.crop_scale(matrix)
    centre = crops.transform_points(matrix, np.array([[cx - 0.5, cy - 0.5]]))[0] + 0.5
    return geometry.PerspectiveCamera(focal_px=settings.focal_px * scale, cx=centre[0], cy=centre[1])


def _rotation(matrix):
    linear = np.asarray(matrix)[:, :2]
    return linear / crops.crop_scale(matrix)


class DepthDirSource:
    """Per-image depth maps (`.npy`, 16-bit `.png`, `.exr`, float `.tif`) matched by file stem.

    A stored value v becomes z_depth = v * depth_scale (depth_near="small", e.g. distances) or
    z_depth = max(v * depth_scale) - v * depth_scale + 1% of the range (depth_near="large", e.g. 3DDFA-style height
    maps where brighter is nearer). Values equal to depth_invalid_value, NaN and inf are invalid.
    With camera="pixels" the scaled values are in source-image pixels; with "perspective" in any unit along the
    optical axis (focal_px in source pixels); with "orthographic" in camera units (ortho_scale px per unit).
    """

    name = "depth_dir"

    def __init__(self, settings):
        if not os.path.isdir(settings.depth_dir):
            raise ValueError(f"--depth_dir {settings.depth_dir!r} is not a directory")
        self.settings = settings

    def load(self, item, image_shape):
        path, note = find_file(self.settings.depth_dir, item, DEPTH_EXTENSIONS, self.settings.suffix)
        if path is None:
            raise SourceError("no_depth", f"no depth map for {item.rel_path} in {self.settings.depth_dir} "
                                          f"(looked for <stem>{self.settings.suffix}{{{','.join(DEPTH_EXTENSIONS)}}})")
        notes = [note] if note else []
        raw = self._read(path, notes)
        height, width = image_shape[:2]
        if raw.shape != (height, width):
            raise SourceError("depth_size_mismatch", f"{path}: depth is {raw.shape[1]}x{raw.shape[0]}, the image is "
                                                     f"{width}x{height}")
        values = raw.astype(np.float64)
        finite = np.isfinite(values)
        if not finite.any():
            raise SourceError("nan_depth", f"{path}: every depth value is NaN or inf")
        if not finite.all():
            notes.append(f"{int((~finite).sum())} NaN/inf depth pixels treated as missing")
        valid = finite & (values != self.settings.depth_invalid_value)
        scaled = np.where(valid, values, 0.0) * self.settings.depth_scale
        if self.settings.depth_near == "large":
            top = scaled[valid].max() if valid.any() else 0.0
            span = top - (scaled[valid].min() if valid.any() else 0.0)
            scaled = top - scaled + max(0.01 * span, 1e-6)
        else:
            nonpositive = valid & (scaled <= 0)
            if nonpositive.any():
                notes.append(f"{int(nonpositive.sum())} non-positive depth pixels treated as missing")
                valid &= ~nonpositive
        if not valid.any():
            raise SourceError("no_depth", f"{path}: no valid depth pixel")
        if self.settings.camera == "orthographic":
            scaled = scaled * self.settings.ortho_scale
        return {"depth": np.where(valid, scaled, 0.0), "mask": valid, "notes": notes, "path": path,
                "shape": (height, width)}

    def _read(self, path, notes):
        ext = os.path.splitext(path)[1].lower()
        if ext == ".npy":
            try:
                array = np.load(path, allow_pickle=False)
            except (ValueError, OSError) as error:
                raise SourceError("no_depth", f"{path}: unreadable .npy ({error})") from None
        else:
            array = cv2.imread(path, cv2.IMREAD_UNCHANGED | cv2.IMREAD_ANYDEPTH)
            if array is None:
                hint = " (OpenCV was built without OpenEXR?)" if ext == ".exr" else ""
                raise SourceError("no_depth", f"{path}: OpenCV could not read this depth map{hint}")
            if array.dtype == np.uint8:
                notes.append("8-bit depth map (only 256 levels)")
        if array.ndim == 3 and array.shape[2] == 1:
            array = array[..., 0]
        elif array.ndim == 3:
            notes.append(f"depth map had {array.shape[2]} channels: used the first")
            array = array[..., 0]
        if array.ndim != 2 or not np.issubdtype(array.dtype, np.number):
            raise SourceError("no_depth", f"{path}: expected a 2-D numeric depth map, got {array.dtype} {array.shape}")
        return array

    def box(self, data):
        return faces.box_from_mask(data["mask"])

    def render(self, data, matrix, size, crop_rgb):
        depth, mask = crops.warp_depth(data["depth"], data["mask"], matrix, size)
        height, width = data["shape"]
        if self.settings.camera == "perspective":
            camera = _perspective_crop_camera(self.settings, matrix, height, width)
        else:
            depth = depth * crops.crop_scale(matrix)  # pixel units scale with the crop
            # Depth in output pixels: x = col, y = -row, z = -depth (z toward the camera).
            camera = geometry.OrthographicCamera(scale=1.0, cx=0.0, cy=0.0)
        return Geometry(depth=depth, mask=mask & (depth > 0), normals=None, camera=camera, notes=list(data["notes"]))


class MeshDirSource:
    """Per-image meshes (`.obj` / `.ply`) rasterised by our z-buffer into the crop.

    camera="pixels": vertices are (column, row, z) of the source image (3DDFA-V2, Extreme 3D, ...), z larger = nearer
    unless mesh_z_toward_camera is False; mesh_y_up means rows are counted upward (row = image height - y).
    camera="orthographic": camera-space vertices, u = cx + ortho_scale * x, v = cy - ortho_scale * y (DECA-style
    weak perspective, after applying its scale and translation). camera="perspective": camera-space vertices (OpenGL:
    looking down -z) with focal_px, cx, cy in source pixels.
    """

    name = "mesh_dir"

    def __init__(self, settings):
        if not os.path.isdir(settings.mesh_dir):
            raise ValueError(f"--mesh_dir {settings.mesh_dir!r} is not a directory")
        if settings.camera == "perspective" and not settings.focal_px > 0:
            raise ValueError("--camera=perspective needs --focal_px > 0")
        self.settings = settings

    def load(self, item, image_shape):
        path, note = find_file(self.settings.mesh_dir, item, meshes.MESH_EXTENSIONS, self.settings.suffix)
        if path is None:
            raise SourceError("no_depth", f"no mesh for {item.rel_path} in {self.settings.mesh_dir} "
                                          f"(looked for <stem>{self.settings.suffix}{{.obj,.ply}})")
        try:
            mesh = meshes.read_mesh(path)
        except (meshes.MeshError, OSError) as error:
            raise SourceError("mesh_unreadable", str(error)) from None
        height, width = image_shape[:2]
        vertices = mesh.vertices.copy()
        settings = self.settings
        if settings.camera == "pixels":
            if settings.mesh_y_up:
                vertices[:, 1] = height - vertices[:, 1]
            if not settings.mesh_z_toward_camera:
                vertices[:, 2] = -vertices[:, 2]
        elif settings.camera == "orthographic":
            cx, cy = _camera_in_source(settings, height, width)
            s = settings.ortho_scale
            vertices = np.stack([cx + s * vertices[:, 0] - 0.5, cy - s * vertices[:, 1] - 0.5, s * vertices[:, 2]], -1)
        if settings.camera == "perspective":
            camera = geometry.PerspectiveCamera(settings.focal_px, *_camera_in_source(settings, height, width))
            in_front = vertices[:, 2] < 0
            uv, _ = camera.project(vertices[in_front])
            uv = uv - 0.5
        else:
            uv = vertices[:, :2]
        inside = (uv[:, 0] >= -0.5) & (uv[:, 0] < width - 0.5) & (uv[:, 1] >= -0.5) & (uv[:, 1] < height - 0.5)
        if not inside.any():
            raise SourceError("mesh_misses_image", f"{path}: no vertex projects into the {width}x{height} image "
                                                   f"(check --camera, --mesh_y_up and the mesh/image pairing)")
        notes = [note] if note else []
        if inside.mean() < 0.5:
            notes.append(f"only {100 * inside.mean():.0f}% of the mesh vertices project into the image")
        return {"vertices": vertices, "faces": mesh.faces, "uv": uv[inside], "notes": notes, "path": path,
                "shape": (height, width)}

    def box(self, data):
        uv = data["uv"]
        lo, hi = uv.min(axis=0) + 0.5, uv.max(axis=0) + 0.5
        return (float(lo[0]), float(lo[1]), float(hi[0] - lo[0]), float(hi[1] - lo[1]))

    def render(self, data, matrix, size, crop_rgb):
        vertices = data["vertices"]
        height, width = data["shape"]
        if self.settings.camera == "perspective":
            camera = _perspective_crop_camera(self.settings, matrix, height, width)
            rot = _rotation(matrix)
            # Image-plane offsets are f/(-z) * (x, -y): rotating the crop rotates (x, -y) the same way.
            xy = np.stack([vertices[:, 0], -vertices[:, 1]], axis=-1) @ rot.T
            moved = np.stack([xy[:, 0], -xy[:, 1], vertices[:, 2]], axis=-1)
            result = geometry.rasterize(moved, data["faces"], camera, size, size)
        else:
            result, camera = pixel_mesh_in_crop(vertices, data["faces"], matrix, size)
        if not result.mask.any():
            raise SourceError("mesh_misses_image", f"{data['path']}: the mesh covers no pixel of the face crop")
        return Geometry(depth=result.depth, mask=result.mask, normals=result.normals, camera=camera,
                        notes=list(data["notes"]))


def pixel_mesh_in_crop(vertices, faces_, matrix, size):
    """Rasterise a `pixels`-layout mesh ((column, row, z) in source pixels, larger z nearer) into the crop of
    `matrix`: depth in crop pixels (a similarity scales z like x and y). Returns (RasterResult, camera)."""
    xy = crops.transform_points(matrix, vertices[:, :2])
    moved = np.concatenate([xy, vertices[:, 2:3] * crops.crop_scale(matrix)], axis=1)
    camera = geometry.PixelSpaceCamera.for_vertices(moved, z_toward_camera=True)
    return geometry.rasterize(moved, faces_, camera, size, size), camera


class FacemeshSource:
    """The built-in reconstruction: MediaPipe's Face Mesh (expr3d.imaging.facemesh) run on the photo itself.

    Needs the face first (prepare passes the detector's or the annotation's face as a landmark-model ROI); the 468
    landmarks become a `pixels`-layout mesh in source pixels, rasterised like a mesh from a file.
    """

    name = "facemesh"
    needs_face = True

    def __init__(self, settings):
        from expr3d.imaging import facemesh

        self.settings = settings
        path = settings.face_mesh_model or None
        if path is not None and not os.path.isfile(path):
            raise ValueError(f"--face_mesh_model {path!r} is not a file")
        self.model = facemesh.shared_face_mesh(path)  # a missing or broken model fails here, before any work
        facemesh.triangles()

    def provenance(self):
        """What the dataset card records about this reconstruction."""
        from expr3d.imaging import blazeface, facemesh

        return {"model": os.path.basename(self.model.path), "model_path": self.model.path,
                "model_sha256": blazeface.file_sha256(self.model.path), "landmarks": facemesh.NUM_LANDMARKS,
                "triangles": int(len(facemesh.triangles()))}

    def load(self, item, image_shape, loaded=None, roi=None, landmarks=None):
        """`landmarks`: the face's mesh in working pixels when the detection step already ran the model."""
        from expr3d.imaging import facemesh

        found = landmarks if landmarks is not None else self.model.landmarks_in(loaded.rgb, roi)
        if found.presence < facemesh.MIN_PRESENCE:
            raise SourceError("no_landmarks", f"{item.rel_path}: the face-landmark model sees no face in the face box "
                                              f"(presence {found.presence:.2f} < {facemesh.MIN_PRESENCE})")
        points = found.points.astype(np.float64)
        sx, sy = loaded.scale
        if (sx, sy) != (1.0, 1.0):  # working pixels -> source pixels (index convention); z scales like x
            points = np.stack([(points[:, 0] + 0.5) / sx - 0.5, (points[:, 1] + 0.5) / sy - 0.5,
                               points[:, 2] / math.sqrt(sx * sy)], axis=1)
        source_landmarks = facemesh.Landmarks(points=points.astype(np.float32), presence=found.presence, roi=roi)
        return {"vertices": points, "faces": facemesh.triangles_for(points), "landmarks": source_landmarks, "notes": [],
                "path": item.rel_path, "shape": tuple(image_shape[:2]), "yaw": source_landmarks.yaw()}

    def box(self, data):
        return data["landmarks"].box()

    def render(self, data, matrix, size, crop_rgb):
        result, camera = pixel_mesh_in_crop(data["vertices"], data["faces"], matrix, size)
        if not result.mask.any():
            raise SourceError("mesh_misses_image", f"{data['path']}: the face mesh covers no pixel of the face crop")
        return Geometry(depth=result.depth, mask=result.mask, normals=result.normals, camera=camera,
                        notes=list(data["notes"]))


class ModelSource:
    """Pseudo-labels from a depth network exported by this project (a `.keras` DepthTranslator).

    The network sees the output crop in [-1, 1] and returns a 3-channel geometry map; depth is the mean of its
    channels, +1 nearest and -1 farthest/background (the pipeline's convention). Pixels above
    model_mask_threshold form the mask, and d becomes a positive pseudo-depth in output pixels:
    z_depth = S * (1 + model_depth_range * (1 - d) / 2), i.e. the face spans model_depth_range of the crop size in
    depth (about right for a face filling most of the crop), so normals from it have a plausible relief.
    """

    name = "model"

    def __init__(self, settings):
        if not os.path.isfile(settings.depth_model):
            raise ValueError(f"--depth_model {settings.depth_model!r} is not a file")
        self.settings = settings
        self._model = None

    def _load_model(self):
        if self._model is None:
            import keras

            import expr3d.models  # noqa: F401  registers DepthTranslator for deserialisation
            try:
                self._model = keras.saving.load_model(self.settings.depth_model, compile=False)
            except Exception as error:  # Keras raises several types for a bad archive
                raise ValueError(f"--depth_model {self.settings.depth_model}: cannot load ({error})") from None
            if not hasattr(self._model, "to_geometry"):
                raise ValueError(f"--depth_model {self.settings.depth_model}: {type(self._model).__name__} has no "
                                 f"to_geometry(); expected an expr3d DepthTranslator")
        return self._model

    def load(self, item, image_shape):
        return {"notes": [], "shape": image_shape[:2]}

    def box(self, data):
        return None

    def render(self, data, matrix, size, crop_rgb):
        model = self._load_model()
        x = from_uint8(crop_rgb)[None]
        geometry_map = np.asarray(model.to_geometry(x, training=False))[0]
        d = geometry_map.mean(axis=-1)
        if not np.all(np.isfinite(d)):
            raise SourceError("nan_depth", "the depth model returned NaN/inf")
        mask = d > self.settings.model_mask_threshold
        depth = size * (1.0 + self.settings.model_depth_range * (1.0 - np.clip(d, -1.0, 1.0)) / 2.0)
        camera = geometry.OrthographicCamera(scale=1.0, cx=0.0, cy=0.0)
        return Geometry(depth=np.where(mask, depth, 0.0).astype(np.float32), mask=mask, normals=None, camera=camera,
                        notes=["pseudo-depth from " + os.path.basename(self.settings.depth_model)])


SOURCES = {"depth_dir": DepthDirSource, "mesh_dir": MeshDirSource, "model": ModelSource, "facemesh": FacemeshSource}


def make_source(name, settings):
    if name not in SOURCES:
        raise ValueError(f"--depth_source must be one of {sorted(SOURCES)}, got {name!r}")
    return SOURCES[name](settings)


def complete_geometry(geom, fill=True, max_hole_px=None):
    """Fill holes (the paper's interpolation of missing parts) and compute normals where the source has none.

    Returns (depth, mask, normals, hole_fraction): hole_fraction is the share of the filled face region that was
    missing before filling.
    """
    depth, mask = geom.depth, geom.mask
    if fill:
        # tol 1e-6: the solver's error (~3e-4 px on a 1000-pixel hole) stays below png16's storage step (the face's
        # depth range / 65535), at two thirds of the 1e-10 default's time.
        filled, filled_mask = geometry.fill_holes(depth, mask, camera=geom.camera, max_hole_px=max_hole_px, tol=1e-6)
    else:
        filled, filled_mask = depth, mask.copy()
    region = int(filled_mask.sum())
    hole_fraction = float((filled_mask & ~mask).sum()) / region if region else 1.0
    if geom.normals is not None:
        # The source's normals cover its mask; finite differences are needed only on the filled holes (and their
        # one-pixel ring, which the differences read): computed on that window, the same values, less work.
        normals = np.where(mask[..., None], geom.normals, 0.0)
        valid = mask.copy()
        holes = filled_mask & ~mask
        if holes.any():
            rows, cols = np.nonzero(holes.any(axis=1))[0], np.nonzero(holes.any(axis=0))[0]
            r0, r1 = max(rows[0] - 1, 0), min(rows[-1] + 2, mask.shape[0])
            c0, c1 = max(cols[0] - 1, 0), min(cols[-1] + 2, mask.shape[1])
            window = np.zeros_like(filled_mask)
            window[r0:r1, c0:c1] = filled_mask[r0:r1, c0:c1]
            derived, derived_valid = geometry.depth_to_normals(np.where(window, filled, 0.0), window, geom.camera)
            use = holes & derived_valid
            normals[use] = derived[use]
            valid |= use
    else:
        derived, derived_valid = geometry.depth_to_normals(filled, filled_mask, geom.camera)
        normals, valid = derived, filled_mask & derived_valid
    normals = np.where(valid[..., None], normals, 0.0).astype(np.float32)
    depth = np.where(valid, filled, 0.0).astype(np.float32)
    return depth, valid, normals, hole_fraction
