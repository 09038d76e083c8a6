import cv2
import numpy as np

from expr3d.metrics import figures


def _valid_png(path):
    return path is not None and path.endswith(".png") and cv2.imread(path) is not None


def test_read_scalars_from_event_files(tmp_path):
    import tensorflow as tf

    writer = tf.summary.create_file_writer(str(tmp_path / "logs" / "gan"))
    with writer.as_default():
        for step in (1, 2, 3):
            tf.summary.scalar("gan/loss/g_rec", 0.5 * step, step=step)
        tf.summary.text("gan/flags", "not a scalar", step=0)
    writer.close()
    scalars = figures.read_scalars(str(tmp_path / "logs"))
    assert list(scalars) == ["gan/loss/g_rec"]
    steps, values = scalars["gan/loss/g_rec"]
    assert steps.tolist() == [1, 2, 3]
    np.testing.assert_allclose(values, [0.5, 1.0, 1.5])
    assert figures.read_scalars(str(tmp_path / "missing")) == {}
    assert _valid_png(figures.learning_curves_figure({"a": scalars}, str(tmp_path / "curves.png")))
    assert figures.learning_curves_figure({"a": {}}, str(tmp_path / "none.png")) is None


def test_confusion_histogram_and_sample_grid_are_valid_pngs(tmp_path):
    assert _valid_png(figures.confusion_matrix_figure(np.eye(3) * 5 + 1, ["a", "b", "c"], str(tmp_path / "c.png")))
    assert _valid_png(figures.histogram_figure({"x": np.arange(10.0), "y": np.arange(5.0) + 3},
                                               str(tmp_path / "h.png")))
    inputs = np.zeros((2, 8, 8, 3))
    fakes = np.ones((2, 3, 8, 8, 3)) * 0.5
    path = figures.sample_grid_figure(inputs, fakes, [0, 1, 2], str(tmp_path / "s.png"),
                                      np.zeros((2, 8, 8, 1)), np.zeros((2, 3, 8, 8, 1)))
    assert _valid_png(path)
