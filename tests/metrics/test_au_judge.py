"""The independent AU judge: trained on procedural faces, scored against the mean baseline, saved, reloaded, cached."""
import io
import json
import os

import numpy as np
import pytest

from expr3d.labels import ACTION_UNITS
from expr3d.metrics import au_judge
from tests import forked_cli

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_regression_scores_on_known_cases():
    truth = np.array([[0.0, 0.2], [1.0, 0.2], [0.5, 0.2]])
    predicted = np.array([[0.1, 0.3], [0.9, 0.9], [0.5, 0.2]])
    mask = np.array([[1, 1], [1, 0], [1, 1]])  # the 0.9 at a missing AU does not count
    scores = au_judge.regression_scores(truth, predicted, mask, baseline=[0.5, 0.2])
    np.testing.assert_allclose(scores["test_mae"], (0.1 + 0.1 + 0 + 0.1 + 0) / 5)
    np.testing.assert_allclose(scores["baseline_mae"], (0.5 + 0.5 + 0 + 0 + 0) / 5)
    np.testing.assert_allclose(scores["test_mae_per_au"], [0.2 / 3, 0.05])
    np.testing.assert_allclose(scores["test_r2_per_au"][0], 1 - 0.02 / 0.5)
    assert scores["test_r2_per_au"][1] is None  # AU 2 never varies: R^2 undefined


@pytest.mark.slow  # renders 24 identities at 32 px and trains 2 short epochs, twice through the cache: ~60 s
def test_the_automatic_au_judge_learns_saves_reloads_and_is_cached(tmp_path):
    log = io.StringIO()
    path = au_judge.auto_au_judge(32, cache_dir=str(tmp_path), identities=24, epochs=2, batch_size=16, workers=1,
                                  log=log)
    assert path == str(tmp_path / au_judge.au_judge_key(32, 24, 2) / "au_regressor")
    assert "building" in log.getvalue() and not os.path.exists(os.path.join(os.path.dirname(path), "data"))
    # Its training state was checkpointed each epoch for a resume, and deleted once the judge was in place.
    assert sorted(os.listdir(os.path.dirname(path))) == ["au_regressor"]
    with open(os.path.join(path, au_judge.METADATA_FILE)) as handle:
        metadata = json.load(handle)
    assert metadata["action_units"] == list(ACTION_UNITS) and metadata["image_size"] == 32
    # It learns (the held-out figures of a judge this small mean little; the real one's are in docs/transfer.md).
    history = metadata["train_history"]
    assert history[-1]["mse"] < history[0]["mse"], history
    assert np.isfinite(metadata["test_mae"]) and np.isfinite(metadata["baseline_mae"])
    judge = au_judge.load_au_regressor(path, image_size=32)
    images = np.random.default_rng(0).uniform(-1, 1, (3, 32, 32, 3)).astype("float32")
    intensities = judge.predict(images)
    assert intensities.shape == (3, 17) and np.all((intensities >= 0) & (intensities <= 1))
    again = io.StringIO()
    assert au_judge.auto_au_judge(32, cache_dir=str(tmp_path), identities=24, epochs=2, log=again) == path
    assert again.getvalue().startswith("AU judge: reusing the cached AU judge")
    with pytest.raises(ValueError, match="reads 32 px faces, not 64 px"):
        au_judge.load_au_regressor(path, image_size=64)


def test_a_folder_without_a_judge_is_named(tmp_path):
    with pytest.raises(ValueError, match=f"{tmp_path}/au_regressor.keras is missing"):
        au_judge.load_au_regressor(str(tmp_path))


@pytest.mark.slow
def test_cli_refuses_an_impossible_size():
    result = forked_cli.run(["-m", "expr3d.metrics.au_judge", "--image_size=33"], cwd=REPO,
                            capture_output=True, text=True, timeout=120, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    assert result.returncode == 2 and "--image_size=33" in result.stderr


class _ReadsTheRed:
    """A judge whose reading of every AU is the image's mean red channel in [0, 1]: known per image."""

    def predict(self, images):
        red = (np.asarray(images)[..., 0].mean(axis=(1, 2)) + 1.0) / 2.0
        return np.repeat(red[:, None], len(ACTION_UNITS), axis=1)


def test_true_dial_readings_pair_each_dial_render_with_its_group_s_render_and_read_the_dialled_unit(tmp_path):
    from expr3d.data import records
    from expr3d.data.synthetic import dataset
    from expr3d.imaging.pixels import from_uint8

    data = str(tmp_path / "dial")
    dataset.generate_dataset(data, num_identities=4, image_size=32, seed=3, test_fraction=0.25, workers=1,
                             progress=False, preview=False, train_pairs=True, train_dial_renders=6)
    examples = list(records.iterate_examples(data, "train"))
    dials = [ex for ex in examples if ex.key.endswith(dataset.DIAL_SUFFIX)]
    base = {(ex.pair_id, ex.expression): ex for ex in examples if not ex.key.endswith(dataset.DIAL_SUFFIX)}
    columns, levels, bases, read = au_judge.true_dial_readings(data, _ReadsTheRed())
    assert len(columns) == len(dials) == 3 * 6  # 3 train identities, one group each; no draw landed on the AU's own level at this seed
    for ex, column, level, base_level, reading in zip(dials, columns, levels, bases, read):
        source = base[(ex.pair_id, ex.expression)]
        assert np.flatnonzero(ex.action_units != source.action_units).tolist() == [column]
        assert level == ex.action_units[column] and base_level == source.action_units[column]
        assert np.isclose(reading, (from_uint8(ex.image)[..., 0].mean() + 1) / 2, atol=1e-5)
    # The pairs behind those readings: each dial's base render, and the condition that asks for that dial.
    pairs = au_judge.true_dial_pairs(data)
    assert pairs["base_image"].shape == pairs["dial_image"].shape == (len(dials), 32, 32, 3)
    for i, ex in enumerate(dials):
        source = base[(ex.pair_id, ex.expression)]
        assert np.array_equal(pairs["base_image"][i], from_uint8(source.image).astype(np.float32))
        assert np.array_equal(pairs["dial_units"][i], np.nan_to_num(np.clip(ex.action_units, 0, 1)))
    assert np.allclose(au_judge.read_column(_ReadsTheRed(), pairs["dial_image"], pairs["column"]), read)
    # Only the asked AUs, at most `max_dials`; none of them: an error naming the data.
    units = {ACTION_UNITS[c] for c in columns}
    some = sorted(units)[:2]
    picked = au_judge.true_dial_readings(data, _ReadsTheRed(), units=some)[0]
    assert {ACTION_UNITS[c] for c in picked} == set(some) and len(picked) == sum(ACTION_UNITS[c] in some
                                                                                  for c in columns)
    assert len(au_judge.true_dial_readings(data, _ReadsTheRed(), max_dials=5)[0]) == 5
    absent = sorted(set(ACTION_UNITS) - units)  # 18 draws over 17 AUs leave some out at this seed
    with pytest.raises(ValueError, match=f"{data} holds no dial renders of AUs"):
        au_judge.true_dial_readings(data, _ReadsTheRed(), units=absent[:1])
    plain = str(tmp_path / "plain")
    dataset.generate_dataset(plain, num_identities=4, image_size=32, seed=3, test_fraction=0.25, workers=1,
                             progress=False, preview=False, train_pairs=True)
    with pytest.raises(ValueError, match=f"{plain} holds no dial renders"):
        au_judge.true_dial_readings(plain, _ReadsTheRed())


def _weights(path):
    return [np.asarray(w) for w in au_judge.load_au_regressor(path).model.get_weights()]


@pytest.mark.slow  # three short trainings of a width-8 judge on au_data's 32 px faces: ~40 s
def test_an_interrupted_training_resumes_after_its_last_epoch_exactly(au_data, tmp_path):
    from expr3d.training.runtime import set_op_determinism

    set_op_determinism(True)  # bit-reproducible kernels: without, two uninterrupted trainings differ in rounding
    try:
        _interrupt_and_resume(au_data, tmp_path)
    finally:
        set_op_determinism(False)


def _interrupt_and_resume(au_data, tmp_path):
    options = dict(epochs=3, width=8, batch_size=16, max_steps_per_epoch=4, log=io.StringIO())
    whole = au_judge.train_au_regressor(au_data["data"], str(tmp_path / "whole"), **options)
    resume = str(tmp_path / "resume")
    assert au_judge.train_au_regressor(au_data["data"], str(tmp_path / "cut"), resume_dir=resume,
                                       stop_after_epochs=1, **options) is None
    assert not os.path.exists(tmp_path / "cut")  # nothing half-written where the regressor goes
    assert au_judge.train_au_regressor(au_data["data"], str(tmp_path / "cut"), resume_dir=resume,
                                       stop_after_epochs=1, **options) is None
    log = io.StringIO()
    resumed = au_judge.train_au_regressor(au_data["data"], str(tmp_path / "cut"), resume_dir=resume,
                                          **{**options, "log": log})
    assert "resuming after epoch 2 of 3" in log.getvalue()
    assert resumed["resumed_after_epoch"] == 2 and "resumed_after_epoch" not in whole
    # The same network, losses and baseline as the uninterrupted training: network, optimizer, data position and
    # the baseline's sums all came back.
    for a, b in zip(_weights(str(tmp_path / "whole")), _weights(str(tmp_path / "cut"))):
        np.testing.assert_array_equal(a, b)
    assert resumed["train_history"] == whole["train_history"] and resumed["train_mean"] == whole["train_mean"]
    assert resumed["test_mae"] == whole["test_mae"]
    # Another recipe does not resume from that state: it starts afresh, and says so.
    log = io.StringIO()
    au_judge.train_au_regressor(au_data["data"], str(tmp_path / "other"), resume_dir=resume,
                                **{**options, "epochs": 2, "log": log})
    assert "of another recipe; starting afresh" in log.getvalue() and "resuming" not in log.getvalue()
