"""expr3d.imaging.faces: face detection and eye-line alignment (through the deployment crop) on rendered and drawn
faces, and on noise."""
import os

import cv2
import numpy as np
import pytest

from expr3d.imaging import crops, faces
from tests.deploy import fixtures


def _rotated(image, angle):
    size = image.shape[0]
    matrix = cv2.getRotationMatrix2D((size / 2.0, size / 2.0), angle, 1.0)
    return cv2.warpAffine(image, matrix, (size, size), borderMode=cv2.BORDER_REPLICATE)


@pytest.mark.parametrize("detector", faces.DETECTORS)
@pytest.mark.parametrize("source,angle", [("rendered", 0.0), ("rendered", 10.0), ("rendered", -10.0),
                                          ("drawn", 12.0), ("drawn", -15.0)])
def test_finds_the_face_and_levels_the_eye_line(source, angle, detector):
    image = fixtures.rendered_face(identity=1) if source == "rendered" else fixtures.draw_face(256, seed=1)
    image = _rotated(image, angle)
    face = faces.find_face(image, detector=detector)
    assert face is not None and face.detector == detector and face.faces_found == 1
    x, y, w, h = face.box
    assert abs(x + w / 2 - 128) < 25 and abs(y + h / 2 - 128) < 30 and 100 < w < 240
    assert face.eyes is not None
    # cv2 rotates counter-clockwise on screen for a positive angle, and so does the eye line (angles are CCW).
    assert face.angle == pytest.approx(angle, abs=3.5)
    crop = faces.extract(image, face)
    assert crop.shape == (face.size, face.size, 3)
    # In the crop, the eyes are level and the left-in-image eye stays on the left.
    (lx, ly), (rx, ry) = crops.transform_points(face.matrix, np.array(face.eyes))
    assert abs(ry - ly) < 0.02 * face.size and rx > lx


@pytest.mark.parametrize("detector", faces.DETECTORS)
def test_no_face_is_none_and_bad_input_is_an_error(detector):
    assert faces.find_face(fixtures.no_face_image(), detector=detector) is None
    with pytest.raises(ValueError, match="RGB uint8"):
        faces.find_face(np.zeros((32, 32), np.uint8), detector=detector)
    with pytest.raises(ValueError, match="unknown face detector"):
        faces.find_face(fixtures.no_face_image(), detector="eyeballs")


def test_blazeface_ranks_by_confidence_not_size():
    """A big faint face-like blob and a smaller clear face: Haar keeps the largest box, BlazeFace the real face."""
    photo = np.full((400, 800, 3), 120, np.uint8)
    photo[80:336, 480:736] = fixtures.rendered_face(identity=2)
    big = cv2.resize(fixtures.draw_face(256, seed=3), (380, 380))
    photo[10:390, 20:400] = (0.35 * big + 0.65 * 120).astype(np.uint8)  # washed out: a poster in the background
    face = faces.find_face(photo, detector="blazeface")
    assert face.faces_found == 2 and face.box[0] > 400, face.to_dict()  # both found, the confident one kept
    assert faces.find_face(photo, detector="haar").box[0] < 400  # the largest box: the poster


def test_the_tools_choose_the_detector_of_the_training_crops():
    assert faces.detector_for({"kind": "photos"}) == "haar"  # prepared before BlazeFace: no detector recorded
    assert faces.detector_for({"kind": "photos", "detector": "blazeface"}) == "blazeface"
    assert faces.detector_for({"kind": "photos", "detector": "haar"}) == "haar"
    assert faces.detector_for({"kind": "procedural"}) == faces.detector_for(None) == "blazeface"


def test_crop_matrix_maps_the_box_centre_to_the_crop_centre():
    matrix = faces.deployment_crop_matrix((100, 50, 80, 80), 120, angle_degrees=20.0)
    # Continuous centre (140, 90) is index (139.5, 89.5); the crop's centre is index 59.5.
    centre = crops.transform_points(matrix, [[139.5, 89.5]])[0]
    np.testing.assert_allclose(centre, [59.5, 59.5], atol=1e-9)
    # The crop spans CROP_SCALE box sides.
    assert np.linalg.det(matrix[:, :2]) == pytest.approx((120 / (faces.CROP_SCALE * 80)) ** 2)
    # The same matrix as the one prepare crops training faces with (expr3d.imaging.crops is shared).
    np.testing.assert_allclose(matrix, crops.crop_matrix((100, 50, 80, 80), 120,
                                                         margin=faces.CROP_SCALE - 1, angle_deg=20.0))


def test_haar_finds_no_face_in_noise():
    rng = np.random.default_rng(0)
    assert faces.detect_face(rng.integers(0, 255, (120, 120, 3), dtype=np.uint8)) is None


def test_the_tools_say_what_is_unusual_about_the_face_they_edit():
    photos_dir = os.path.join(os.path.dirname(__file__), os.pardir, "data", "photos")
    obama = cv2.cvtColor(cv2.imread(os.path.join(photos_dir, "obama.jpg")), cv2.COLOR_BGR2RGB)
    face = faces.find_face(obama)
    assert face.levelled_by == "face_mesh" and abs(face.yaw) < 20
    assert faces.face_warnings(face, obama.shape, 64) == []
    partial = cv2.cvtColor(cv2.imread(os.path.join(photos_dir, "obama_partial_face.jpg")), cv2.COLOR_BGR2RGB)
    [warning] = faces.face_warnings(faces.find_face(partial), partial.shape, 64)
    assert "border" in warning
    pair = np.concatenate([obama, obama[:, ::-1]], axis=1)
    assert "2 faces found" in faces.face_warnings(faces.find_face(pair), pair.shape)[0]
    small = cv2.resize(obama, (112, 140), interpolation=cv2.INTER_AREA)
    assert any("small" in w for w in faces.face_warnings(faces.find_face(small), small.shape, 128))
    face.yaw = 60.0
    assert any("turned about 60 degrees" in w for w in faces.face_warnings(face, obama.shape, 64))
