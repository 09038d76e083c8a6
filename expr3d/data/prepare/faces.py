"""Image loading with explicit conversions and the one similarity warp shared by image, depth and mask.

Face detection, eye-line alignment and the crop matrix live in expr3d.faces (shared with deployment, so served photos
are framed like training faces); they are re-exported here under the names prepare has always used.

Coordinates: a crop is a 2x3 matrix `M` in OpenCV's index convention (pixel (col, row) centres at integers), mapping
source pixels to output pixels; `cv2.warpAffine(src, M, (S, S))` applies it. It is a similarity (rotation + uniform
scale + translation), so depth in pixel units scales by `crop_scale(M)` and normals rotate about the optical axis.
"""
import dataclasses

import cv2
import numpy as np

from expr3d import image_files
from expr3d.faces import (  # noqa: F401  (re-exported: prepare's public names)
    FaceBox, box_corners, crop_matrix, crop_scale, detect_eyes, detect_face, detect_faces, eye_angle,
    transform_points)


# An image that cannot be used; `reason` is a report code ("missing_path", "unreadable_image", "oversized_image",
# "tiny_image"), the message names the file. One class with the photo readers of lite/synthesize.
ImageError = image_files.ImageFileError


@dataclasses.dataclass
class LoadedImage:
    """A source image as prepare works on it.

    rgb: uint8 [h, w, 3], EXIF-oriented, at most image_files.MAX_WORKING_PIXELS (a larger photo is downscaled).
    notes: conversions applied, e.g. ["grayscale converted to RGB"].
    source_size: (width, height) of the photo in its file, after EXIF orientation: the coordinates of annotation
        boxes, landmarks, depth maps and meshes.
    scale: (sx, sy) = rgb's size / source_size (1.0 unless downscaled); `to_working` turns a source crop matrix into
        one for `rgb`.
    """

    rgb: np.ndarray
    notes: list
    source_size: tuple = None
    scale: tuple = (1.0, 1.0)

    @property
    def source_shape(self):
        """(height, width) of the source image (what the depth sources expect)."""
        return (self.source_size[1], self.source_size[0]) if self.source_size else self.rgb.shape[:2]

    def to_working(self, matrix):
        """A 2x3 source-pixel -> crop matrix as a `rgb`-pixel -> crop matrix (index convention)."""
        sx, sy = self.scale
        if sx == 1.0 and sy == 1.0:
            return matrix
        # i_working = (i_source + 0.5) * s - 0.5, so i_source = (i_working + 0.5) / s - 0.5.
        back = np.array([[1.0 / sx, 0.0, 0.5 / sx - 0.5], [0.0, 1.0 / sy, 0.5 / sy - 0.5], [0.0, 0.0, 1.0]])
        return (np.vstack([matrix, [0.0, 0.0, 1.0]]) @ back)[:2]

    def to_source_box(self, box):
        """A (x, y, w, h) box in `rgb` pixels (continuous coordinates) in source pixels."""
        sx, sy = self.scale
        return (box[0] / sx, box[1] / sy, box[2] / sx, box[3] / sy)


def load_image(path, min_size=32, max_pixels=image_files.MAX_WORKING_PIXELS):
    """Read any common image as uint8 RGB, converting (and noting) grayscale, alpha, palette, CMYK and 16-bit input;
    EXIF orientation applied (as lite and synthesize do), huge photos decoded reduced or downscaled to `max_pixels`
    and decompression bombs refused before decoding (expr3d.image_files).

    Raises ImageError("missing_path" | "unreadable_image" | "oversized_image" | "tiny_image", ...) naming the file.
    """
    decoded = image_files.read(path, unchanged=True, max_pixels=max_pixels)
    raw = decoded.image
    notes = list(decoded.notes)
    if decoded.header.components == 4:
        # libjpeg already converted CMYK/YCCK to 3-channel BGR; say so, colours of Adobe CMYK files may be off.
        notes.append("CMYK JPEG converted to RGB")
    if raw.dtype == np.uint16:
        raw = (raw.astype(np.uint32) * 255 + 32767) // 65535
        raw = raw.astype(np.uint8)
        notes.append("16-bit image converted to 8-bit")
    elif raw.dtype in (np.float32, np.float64):
        finite = np.nan_to_num(raw.astype(np.float64), nan=0.0, posinf=1.0, neginf=0.0)
        scale = 255.0 if finite.max() <= 1.0 else 1.0
        raw = np.clip(finite * scale, 0, 255).astype(np.uint8)
        notes.append(f"floating-point image ({raw.dtype}) converted to 8-bit")
    elif raw.dtype != np.uint8:
        raise ImageError("unreadable_image", f"{path}: unsupported pixel type {raw.dtype}")
    if raw.ndim == 2 or (raw.ndim == 3 and raw.shape[2] == 1):
        bgr = cv2.cvtColor(raw.reshape(raw.shape[:2]), cv2.COLOR_GRAY2BGR)
        notes.append("grayscale converted to RGB")
    elif raw.shape[2] == 2:
        bgr = cv2.cvtColor(raw[..., 0], cv2.COLOR_GRAY2BGR)
        notes.append("grayscale+alpha converted to RGB (alpha dropped)")
    elif raw.shape[2] == 4:
        bgr = raw[..., :3]
        notes.append("alpha channel dropped")
    elif raw.shape[2] == 3:
        bgr = raw
    else:
        raise ImageError("unreadable_image", f"{path}: {raw.shape[2]} channels")
    width, height = decoded.width, decoded.height
    if min(height, width) < min_size:
        raise ImageError("tiny_image", f"{path}: {width}x{height} is smaller than {min_size} px")
    return LoadedImage(rgb=np.ascontiguousarray(bgr[..., ::-1]), notes=notes, source_size=(width, height),
                       scale=decoded.scale)


# --- crops -------------------------------------------------------------------------------------------------------

def _prefilter(image, matrix, interpolation):
    """Shrink `image` with area averaging first when the crop scales down a lot, and fold that into the matrix.

    Bilinear warping samples 4 pixels per output pixel; at 4x down-scaling that aliases. Pre-shrinking to about the
    output scale keeps the warp close to 1:1.
    """
    scale = crop_scale(matrix)
    if scale >= 0.6 or interpolation == cv2.INTER_NEAREST:
        return image, matrix
    height, width = image.shape[:2]
    factor = max(scale * 1.25, 1.0 / min(height, width))
    new_w, new_h = max(1, round(width * factor)), max(1, round(height * factor))
    small = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_AREA)
    fx, fy = new_w / width, new_h / height
    # Index convention of a resize: i_small = (i + 0.5) * f - 0.5, so i = (i_small + 0.5) / f - 0.5.
    back = np.array([[1.0 / fx, 0.0, 0.5 / fx - 0.5], [0.0, 1.0 / fy, 0.5 / fy - 0.5], [0.0, 0.0, 1.0]])
    full = np.vstack([matrix, [0.0, 0.0, 1.0]]) @ back
    return small, full[:2]


def warp_image(rgb, matrix, size):
    """The output crop of an RGB image (bilinear, area pre-filtered; outside the source is black)."""
    source, m = _prefilter(rgb, matrix, cv2.INTER_LINEAR)
    return cv2.warpAffine(source, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                          borderValue=0)


def warp_depth(depth, mask, matrix, size, min_weight=0.5):
    """Mask-normalised warp of a depth map: only valid source depths are averaged, never the background.

    Returns (depth float32 [S, S] in the source's units, valid bool [S, S]); an output pixel is valid where at least
    `min_weight` of its interpolation weight fell on valid source pixels.
    """
    mask_f = mask.astype(np.float32)
    weighted = np.where(mask, depth, 0.0).astype(np.float32)
    stacked = np.dstack([weighted, mask_f])
    source, m = _prefilter(stacked, matrix, cv2.INTER_LINEAR)
    warped = cv2.warpAffine(source, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                            borderValue=0)
    weight = warped[..., 1]
    valid = weight >= min_weight
    out = np.where(valid, warped[..., 0] / np.maximum(weight, 1e-12), 0.0).astype(np.float32)
    return out, valid


# --- face boxes from annotations ------------------------------------------------------------------------------

def landmark_eyes(landmarks):
    """Eye centres from 68-point landmarks (iBUG order: 36-41 and 42-47), or None if not 68 points."""
    points = np.asarray(landmarks, np.float64).reshape(-1, 2) if landmarks is not None else None
    if points is None or len(points) != 68 or not np.all(np.isfinite(points)):
        return None
    return tuple(points[36:42].mean(axis=0)), tuple(points[42:48].mean(axis=0))


def box_from_mask(mask):
    """Bounding box (x, y, w, h) of a boolean mask in continuous coordinates, or None if empty."""
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return None
    return (float(cols[0]), float(rows[0]), float(cols[-1] - cols[0] + 1), float(rows[-1] - rows[0] + 1))


def box_iou(a, b):
    ax0, ay0, aw, ah = a
    bx0, by0, bw, bh = b
    ix = max(0.0, min(ax0 + aw, bx0 + bw) - max(ax0, bx0))
    iy = max(0.0, min(ay0 + ah, by0 + bh) - max(ay0, by0))
    inter = ix * iy
    union = aw * ah + bw * bh - inter
    return inter / union if union > 0 else 0.0
