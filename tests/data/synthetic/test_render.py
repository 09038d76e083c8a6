"""Tests of expr3d.data.synthetic.render (and its `render_example`): expressions show in the geometry; a face
detector finds the rendered faces."""
import cv2
import numpy as np
import pytest

from expr3d.data.synthetic import action_units, face_model, render, render_example
from expr3d.labels import EXPRESSIONS


def test_expressions_show_in_geometry():
    rng = np.random.default_rng(5)
    face = face_model.sample_identity(rng)
    pose, light = render.Pose(), render.Light()
    size = 64
    base = render.render_face(face, action_units.neutral(), pose, light, size)
    rows = slice(int(0.55 * size), int(0.85 * size))
    cols = slice(int(0.3 * size), int(0.7 * size))

    def mouth_change(expression):
        ex = action_units.sample_expression(EXPRESSIONS.index(expression), np.random.default_rng(1),
                                            strength=(0.8, 0.8))
        out = render.render_face(face, ex, pose, light, size)
        both = base.mask[rows, cols] & out.mask[rows, cols]
        return np.abs(out.depth[rows, cols] - base.depth[rows, cols])[both].mean()

    # Metres: the jaw drop of surprise moves the lower face by centimetres; a smile by millimetres.
    assert mouth_change("surprise") > 0.004
    assert mouth_change("happy") > 0.0007
    # Brows: anger lowers them, surprise raises them (normals change around the brows).
    brows = slice(int(0.25 * size), int(0.42 * size))
    angry = render.render_face(face, action_units.sample_expression(6, np.random.default_rng(1)), pose, light, size)
    assert np.abs(angry.normals[brows, cols] - base.normals[brows, cols]).mean() > 0.02
    # Depth is the z distance, inside the frame's plausible range, and normals face the camera.
    assert 0.6 < base.depth[base.mask].min() < base.depth[base.mask].max() < 1.0
    # (Perspective: normals face the viewing ray, so n_z dips slightly below 0 only at grazing silhouettes.)
    assert np.mean(base.normals[base.mask][:, 2] > 0) > 0.98
    np.testing.assert_allclose(np.linalg.norm(base.normals[base.mask], axis=-1), 1.0, atol=1e-3)
    assert np.all(base.depth[~base.mask] == 0)


@pytest.mark.parametrize("size", [256, 128])
def test_haar_cascade_detects_frontal_neutral_face(size):
    cascade = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")
    assert not cascade.empty()
    for identity in range(3):
        image = render_example(0, size, seed=1, identity=identity).image
        found = cascade.detectMultiScale(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY), scaleFactor=1.1, minNeighbors=5)
        assert len(found), f"no face found in identity {identity} at {size}px"
        x, y, w, h = max(found, key=lambda box: box[2] * box[3])
        assert w > 0.3 * size and x < size / 2 < x + w and y < size / 2 < y + h
