"""`expr3d.metrics.probes` on features whose content is known."""
import numpy as np
import pytest

from expr3d.metrics import probes


def _features(n, informative, rng):
    """[n, 17] AU intensities and [n, 64] features: a linear mix of them plus noise, or noise alone."""
    y = rng.uniform(0.0, 1.0, (n, 17))
    mixed = y @ np.random.default_rng(99).normal(size=(17, 24))  # one mixing for every call
    noise = rng.normal(size=(n, 40))
    return (np.concatenate([mixed, noise], axis=1) if informative else rng.normal(size=(n, 64))), y


def test_ridge_probe_reads_features_that_hold_the_action_units_and_not_noise():
    rng = np.random.default_rng(0)
    (train_x, train_y), (test_x, test_y) = _features(400, True, rng), _features(200, True, rng)
    pooled, per_au, penalty = probes.ridge_probe(train_x, train_y, test_x, test_y)
    assert pooled > 0.95 and min(per_au.values()) > 0.9 and penalty in probes.RIDGE_PENALTIES
    (train_x, train_y), (test_x, test_y) = _features(400, False, rng), _features(200, False, rng)
    pooled, _, _ = probes.ridge_probe(train_x, train_y, test_x, test_y)
    assert pooled < 0.05  # no better than the train mean


@pytest.mark.slow  # trains two small Keras probes, ~10 s
def test_mlp_probe_reads_a_non_linear_code():
    rng = np.random.default_rng(0)
    y = rng.uniform(0.0, 1.0, (600, 17))
    x = np.concatenate([np.sin(3 * y), np.cos(3 * y)], axis=1)
    pooled, _ = probes.mlp_probe(x[:400], y[:400], x[400:], y[400:], epochs=40)
    assert pooled > 0.8
    pooled, _ = probes.mlp_probe(rng.normal(size=(400, 34)), y[:400], rng.normal(size=(200, 34)),
                                              y[400:], epochs=40)
    assert pooled < 0.05


def test_r2_is_zero_for_the_train_mean_and_one_for_the_truth():
    truth = np.random.default_rng(0).uniform(size=(50, 17))
    truth[:, 3] = 0.0  # an AU that never varies is left out, not divided by zero
    mean = truth.mean(axis=0)
    pooled, per_au = probes.r2_against_train_mean(truth, np.tile(mean, (50, 1)), mean)
    assert abs(pooled) < 1e-12 and len(per_au) == 16
    assert probes.r2_against_train_mean(truth, truth, mean)[0] == 1.0
