"""Photo -> face crop -> any translator -> feathered paste-back (shared by expr3d.lite and expr3d.synthesize).

A translator is a function `(crop uint8 [S, S, 3], expression ids) -> list of uint8 crops [S, S, 3]`, so the same
pre/post-processing runs with the TFLite interpreter (a phone app's path) or the SavedModel.
"""
import os

import numpy as np

from expr3d import image_files
from expr3d.data import records
from expr3d.deploy import faces, paste

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


def read_image(path, max_pixels=image_files.MAX_WORKING_PIXELS):
    """RGB uint8 [H, W, 3] of an image file, EXIF-oriented and downscaled to at most `max_pixels` (a huge JPEG is
    decoded reduced; a header declaring more than image_files.MAX_DECODE_PIXELS is refused before decoding).
    FileNotFoundError / ValueError (image_files.ImageFileError) naming the file when it cannot be read."""
    import cv2

    if not os.path.isfile(path):
        raise FileNotFoundError(f"image {path!r} does not exist")
    decoded = image_files.read(path, max_pixels=max_pixels)
    return cv2.cvtColor(decoded.image, cv2.COLOR_BGR2RGB)


def write_image(path, image):
    """Write an RGB uint8 image atomically (temp file beside it + os.replace); the format follows the extension."""
    import cv2

    extension = os.path.splitext(path)[1].lower() or ".png"
    ok, data = cv2.imencode(extension, cv2.cvtColor(np.asarray(image), cv2.COLOR_RGB2BGR))
    if not ok:
        raise ValueError(f"cannot encode an image as {extension!r} for {path}")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    records.atomic_write_bytes(path, data.tobytes())


def list_images(path):
    """Image files of a directory (sorted, by extension) or [path] for a file."""
    if os.path.isdir(path):
        return sorted(os.path.join(path, name) for name in os.listdir(path)
                      if name.lower().endswith(IMAGE_EXTENSIONS) and not name.startswith("."))
    if os.path.isfile(path):
        return [path]
    raise FileNotFoundError(f"--images={path!r} is neither an image file nor a directory")


def translate_photo(image, translate, expression_ids, crop_size=None):
    """Translate the largest face of `image` into each expression and paste it back.

    Args:
        image: RGB uint8 photo.
        translate: `(crop, ids) -> list of crops` (see the module docstring).
        expression_ids: target ids.
        crop_size: crop side handed to `translate` (default: the face's own resolution).

    Returns:
        (photos, crops, face): lists of uint8 results (pasted photos, translated crops) in `expression_ids` order and
        the FaceCrop; (None, None, None) when no face is found.
    """
    face = faces.find_face(image, crop_size=crop_size)
    if face is None:
        return None, None, None
    crop = faces.extract(image, face)
    translated = translate(crop, list(expression_ids))
    mask = paste.feathered_mask(face.size)
    photos = [paste.paste_back(image, out, face.matrix, mask) for out in translated]
    return photos, translated, face


def grid(rows, labels=None, cell=None, pad=2):
    """A uint8 grid image: each row a list of equally sized RGB images (resized to `cell` if given)."""
    import cv2

    if not rows:
        raise ValueError("grid: nothing to draw")
    if cell is None:
        cell = max(max(image.shape[0], image.shape[1]) for row in rows for image in row)
        cell = min(cell, 256)
    columns = max(len(row) for row in rows)
    label_height = 18 if labels else 0
    height = label_height + len(rows) * (cell + pad) + pad
    width = columns * (cell + pad) + pad
    canvas = np.full((height, width, 3), 255, np.uint8)
    if labels:
        for j, label in enumerate(labels[:columns]):
            cv2.putText(canvas, str(label)[:14], (pad + j * (cell + pad) + 2, 13), cv2.FONT_HERSHEY_SIMPLEX, 0.4,
                        (0, 0, 0), 1, cv2.LINE_AA)
    for i, row in enumerate(rows):
        for j, image in enumerate(row):
            h, w = image.shape[:2]
            scale = cell / max(h, w)
            resized = cv2.resize(image, (max(1, round(w * scale)), max(1, round(h * scale))),
                                 interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
            top = label_height + pad + i * (cell + pad)
            left = pad + j * (cell + pad)
            canvas[top:top + resized.shape[0], left:left + resized.shape[1]] = resized
    return canvas
