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
