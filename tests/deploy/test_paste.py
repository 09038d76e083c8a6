"""Feathered paste-back: the inverse of the crop, seamless, leaves the rest of the photo untouched."""
import numpy as np

from expr3d.deploy import paste
from expr3d.imaging import faces
from tests.deploy import fixtures


def test_mask_is_one_inside_zero_at_the_border_and_smooth():
    mask = paste.feathered_mask(128)
    assert mask[64, 64] > 0.99 and mask[0].max() < 0.02 and mask[:, 0].max() < 0.02
    assert np.abs(np.diff(mask, axis=1)).max() < 0.1, "no hard edge"


def test_pasting_the_untouched_crop_back_reproduces_the_photo():
    image = np.pad(fixtures.draw_face(200, seed=4, angle=10.0), ((40, 20), (60, 30), (0, 0)), mode="edge")
    face = faces.find_face(image)
    crop = faces.extract(image, face)
    out = paste.paste_back(image, crop, face.matrix)
    assert out.shape == image.shape and out.dtype == np.uint8
    # Two bilinear resamplings of a smooth picture: small differences only.
    assert np.abs(out.astype(int) - image).mean() < 1.0


def test_a_changed_crop_changes_only_the_face_region():
    image = fixtures.draw_face(256, seed=2)
    face = faces.find_face(image)
    crop = np.full((face.size, face.size, 3), 255, np.uint8)
    out = paste.paste_back(image, crop, face.matrix)
    x, y, w, h = face.box
    assert out[y + h // 2, x + w // 2].min() == 255, "the face centre takes the crop"
    assert (out[:8, :8] == image[:8, :8]).all(), "far from the face the photo is untouched"
