"""Face crops as similarity warps: the crop matrix around a face box (optionally levelling the eye line), its scale,
points through it, and the warps of an image and of a depth map with it.

Coordinates: a crop is a 2x3 matrix `M` in OpenCV's index convention (pixel (col, row) centres at integers), mapping
source pixels to output pixels, so `cv2.warpAffine(src, M, (S, S))` cuts the crop and
`cv2.warpAffine(crop, M, (W, H), flags=WARP_INVERSE_MAP)` puts it back. It is a similarity (rotation + uniform
scale + translation), so depth in pixel units scales by `crop_scale(M)` and normals rotate about the optical axis.
Boxes (x, y, w, h) are continuous (x = left edge of the box's first column).
"""
import math

import cv2
import numpy as np


def crop_matrix(box, output_size, margin=0.25, angle_deg=0.0, center=None):
    """Similarity from source pixels to an `output_size` square around `box` = (x, y, w, h) (continuous coordinates).

    The square side in the source is max(w, h) * (1 + margin); `angle_deg` rotates the source counter-clockwise
    about the box centre before cropping (pass the eye-line angle to level the eyes).
    """
    x, y, w, h = (float(v) for v in box)
    if not (w > 0 and h > 0):
        raise ValueError(f"face box must have positive width and height, got {box}")
    cx, cy = center if center is not None else (x + w / 2.0, y + h / 2.0)
    side = max(w, h) * (1.0 + margin)
    scale = output_size / side
    theta = math.radians(angle_deg)
    cos, sin = scale * math.cos(theta), scale * math.sin(theta)
    # Continuous coordinates: p' = L (p - c) + (S/2, S/2), L turning clockwise on screen by `angle_deg` (rows go
    # down), which levels an eye line that rises counter-clockwise by that angle.
    linear = np.array([[cos, -sin], [sin, cos]])
    offset = np.array([output_size / 2.0, output_size / 2.0]) - linear @ np.array([cx, cy])
    # Index convention: i' + 0.5 = L (i + 0.5) + t  ->  i' = L i + (L 0.5 + t - 0.5).
    offset_index = offset + linear @ np.array([0.5, 0.5]) - 0.5
    return np.concatenate([linear, offset_index[:, None]], axis=1)


def crop_scale(matrix):
    """Uniform scale factor of a similarity 2x3 matrix."""
    return float(math.sqrt(abs(np.linalg.det(np.asarray(matrix)[:, :2]))))


def transform_points(matrix, points):
    """Apply a 2x3 matrix (index convention) to [N, 2] index-convention points."""
    points = np.asarray(points, np.float64)
    return points @ np.asarray(matrix)[:, :2].T + np.asarray(matrix)[:, 2]


def outside_share(matrix, size, shape, samples=16):
    """Share of a `size` square crop (2x3 `matrix`, source -> crop) that falls outside a source image of `shape`
    (a face cut by the photo's border), from a `samples` x `samples` grid of crop points."""
    grid = (np.arange(samples) + 0.5) * size / samples - 0.5
    points = np.stack(np.meshgrid(grid, grid), -1).reshape(-1, 2)
    inverse = np.linalg.inv(np.vstack([np.asarray(matrix, np.float64), [0.0, 0.0, 1.0]]))[:2]
    back = transform_points(inverse, points)
    height, width = shape[:2]
    inside = (back[:, 0] >= -0.5) & (back[:, 0] < width - 0.5) & (back[:, 1] >= -0.5) & (back[:, 1] < height - 0.5)
    return 1.0 - float(inside.mean())


def box_corners(box):
    """Corner points (index convention) of a continuous-coordinate box (x, y, w, h)."""
    x, y, w, h = box
    return np.array([[x, y], [x + w, y], [x + w, y + h], [x, y + h]], np.float64) - 0.5


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
