"""Photo -> face crop -> any translator -> feathered paste-back (shared by expr3d.lite and expr3d.synthesize).

A translator is a function `(crop uint8 [S, S, 3], expression ids) -> list of uint8 crops [S, S, 3]`, so the same
pre/post-processing runs with the TFLite interpreter (a phone app's path) or the SavedModel.
"""
import cv2

from expr3d.deploy import paste
from expr3d.imaging import faces, grid as tile_grids


def translate_photo(image, translate, expression_ids, crop_size=None, detector="blazeface"):
    """Translate the best face of `image` (expr3d.imaging.faces.find_face with `detector`) into each expression and
    paste it back.

    Args:
        image: RGB uint8 photo.
        translate: `(crop, ids) -> list of crops` (see the module docstring).
        expression_ids: target ids.
        crop_size: crop side handed to `translate` (default: the face's own resolution).

    Returns:
        (photos, crops, face): lists of uint8 results (pasted photos, translated crops) in `expression_ids` order and
        the FaceCrop; (None, None, None) when no face is found.
    """
    face = faces.find_face(image, crop_size=crop_size, detector=detector)
    if face is None:
        return None, None, None
    crop = faces.extract(image, face)
    translated = translate(crop, list(expression_ids))
    mask = paste.feathered_mask(face.size)
    photos = [paste.paste_back(image, out, face.matrix, mask) for out in translated]
    return photos, translated, face


def grid(rows, labels=None, cell=None, pad=2):
    """A uint8 grid image: each row a list of RGB images, each resized to fit a square `cell` (default: the largest
    side, at most 256), `pad` px gutters, the `labels` of the columns in a strip above (expr3d.imaging.grid)."""
    if not rows:
        raise ValueError("grid: nothing to draw")
    if cell is None:
        cell = max(max(image.shape[0], image.shape[1]) for row in rows for image in row)
        cell = min(cell, 256)
    columns = max(len(row) for row in rows)
    fitted = []
    for row in rows:
        fitted.append([])
        for image in row:
            h, w = image.shape[:2]
            scale = cell / max(h, w)
            fitted[-1].append(cv2.resize(image, (max(1, round(w * scale)), max(1, round(h * scale))),
                                         interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR))
    canvas = tile_grids.tile_grid(fitted, cell=(cell, cell), gutter=pad)
    if not labels:
        return canvas
    return tile_grids.with_column_labels(canvas, labels[:columns], cell, gutter=pad, style="fixed")
