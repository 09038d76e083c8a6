"""Face detection and eye-line alignment on drawn faces (OpenCV's bundled cascades)."""
import numpy as np
import pytest

from expr3d.deploy import faces
from tests.deploy import fixtures


@pytest.mark.parametrize("angle", [0.0, 12.0, -15.0])
def test_finds_the_face_and_levels_the_eye_line(angle):
    image = fixtures.draw_face(256, seed=1, angle=angle)
    face = faces.find_face(image)
    assert face is not None
    x, y, w, h = face.box
    assert abs(x + w / 2 - 128) < 20 and abs(y + h / 2 - 128) < 25 and 120 < w < 240
    assert face.eyes is not None
    # cv2 rotates counter-clockwise on screen, which lifts the right eye: the eye line tilts by -angle.
    assert face.angle == pytest.approx(-angle, abs=5.0)
    crop = faces.extract(image, face)
    assert crop.shape == (face.size, face.size, 3)
    # In the crop, the eyes are level.
    (lx, ly), (rx, ry) = [face.matrix[:, :2] @ np.array(eye) + face.matrix[:, 2] for eye in face.eyes]
    assert abs(ry - ly) < 0.02 * face.size and rx > lx


def test_no_face_is_none_and_bad_input_is_an_error():
    assert faces.find_face(fixtures.no_face_image()) is None
    with pytest.raises(ValueError, match="RGB uint8"):
        faces.find_face(np.zeros((32, 32), np.uint8))


def test_crop_matrix_maps_the_box_centre_to_the_crop_centre():
    matrix = faces.crop_matrix((100, 50, 80, 80), 120, angle_degrees=20.0)
    centre = matrix[:, :2] @ np.array([140.0, 90.0]) + matrix[:, 2]
    np.testing.assert_allclose(centre, [60.0, 60.0], atol=1e-9)
    # The crop spans CROP_SCALE box sides.
    assert np.linalg.det(matrix[:, :2]) == pytest.approx((120 / (faces.CROP_SCALE * 80)) ** 2)
