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


def test_learning_curves_give_each_run_one_colour_and_each_term_one_style(tmp_path, monkeypatch):
    steps = np.arange(1, 4)
    curve = {"gan/loss/g_cls": (steps, steps * 1.0), "gan/loss/d_cls": (steps, steps * 2.0)}
    runs = {f"run{i}": curve for i in range(12)}  # more runs than matplotlib's ten-colour cycle
    saved = []
    real_save = figures._save
    monkeypatch.setattr(figures, "_save", lambda fig, path: saved.append(fig) or real_save(fig, path))
    assert _valid_png(figures.learning_curves_figure(runs, str(tmp_path / "curves.png")))
    lines = [line for axis in saved[0].axes for line in axis.get_lines()]
    colour = {line.get_label(): line.get_color() for line in lines}
    style = {line.get_label(): line.get_linestyle() for line in lines}
    assert len({colour[f"run{i}: gan/loss/g_cls"] for i in range(12)}) == 12
    assert all(colour[f"run{i}: gan/loss/g_cls"] == colour[f"run{i}: gan/loss/d_cls"] for i in range(12))
    assert style["run0: gan/loss/g_cls"] != style["run0: gan/loss/d_cls"]
