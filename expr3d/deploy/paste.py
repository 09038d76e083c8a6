"""Feathered paste-back of a translated face crop into the photo it was cut from."""
import numpy as np

# The blended region: an ellipse in crop coordinates (fractions of the crop side) covering the face box
# (1 / CROP_SCALE of the crop) with a margin, softened by a Gaussian so no seam shows.
MASK_RADII = (0.42, 0.48)
FEATHER = 0.05  # Gaussian sigma of the mask edge, as a fraction of the crop side


def feathered_mask(size, radii=MASK_RADII, feather=FEATHER):
    """float32 [size, size] in [0, 1]: 1 inside a centred ellipse, fading to 0 over about 4 * feather * size."""
    import cv2

    mask = np.zeros((size, size), np.float32)
    centre = (size / 2.0 - 0.5, size / 2.0 - 0.5)
    axes = (radii[0] * size, radii[1] * size)
    # Shrink by two sigmas so the blurred edge has faded out before the crop's border.
    axes = (max(1.0, axes[0] - 2 * feather * size), max(1.0, axes[1] - 2 * feather * size))
    v, u = np.mgrid[0:size, 0:size].astype(np.float32)
    mask[((u - centre[0]) / axes[0]) ** 2 + ((v - centre[1]) / axes[1]) ** 2 <= 1.0] = 1.0
    sigma = max(0.5, feather * size)
    return cv2.GaussianBlur(mask, (0, 0), sigmaX=sigma, sigmaY=sigma, borderType=cv2.BORDER_CONSTANT)


def paste_back(image, crop, matrix, mask=None):
    """Blend `crop` (uint8 [S, S, 3], cut from `image` with the 2x3 photo -> crop `matrix`) back into `image`.

    Returns a new uint8 photo; pixels the mask does not reach are the original's exactly.
    """
    import cv2

    image = np.asarray(image)
    crop = np.asarray(crop)
    size = crop.shape[0]
    if crop.shape != (size, size, 3):
        raise ValueError(f"paste_back: crop must be square RGB [S, S, 3]; got {crop.shape}")
    if mask is None:
        mask = feathered_mask(size)
    height, width = image.shape[:2]
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    warped = cv2.warpAffine(crop, matrix, (width, height), flags=flags, borderMode=cv2.BORDER_CONSTANT)
    alpha = cv2.warpAffine(mask, matrix, (width, height), flags=flags, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    alpha = np.clip(alpha, 0.0, 1.0)[..., None]
    blended = alpha * warped.astype(np.float32) + (1.0 - alpha) * image.astype(np.float32)
    out = np.clip(np.round(blended), 0, 255).astype(np.uint8)
    untouched = alpha[..., 0] <= 0.0
    out[untouched] = image[untouched]
    return out
