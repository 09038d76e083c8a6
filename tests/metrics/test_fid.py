import os

import numpy as np
import pytest

from expr3d.metrics import fid


def _gaussian(n, dim, shift=0.0, seed=0):
    return np.random.default_rng(seed).normal(size=(n, dim)) + shift


def test_identical_sets_give_zero_fid():
    features = _gaussian(200, 8)
    assert fid.fid_from_features(features, features) == pytest.approx(0.0, abs=1e-6)


def test_shifted_set_gives_larger_fid_close_to_squared_shift():
    real = _gaussian(4000, 4, seed=0)
    near = fid.fid_from_features(real, _gaussian(4000, 4, seed=1))
    far = fid.fid_from_features(real, _gaussian(4000, 4, shift=1.0, seed=1))
    assert near < 0.05
    assert far > 10 * near
    assert far == pytest.approx(4.0, rel=0.1)  # ||mu1 - mu2||^2 with equal covariances


def test_frechet_distance_matches_scipy_sqrtm_formula():
    linalg = pytest.importorskip("scipy.linalg")
    a, b = _gaussian(50, 6, seed=2), _gaussian(60, 6, shift=0.3, seed=3) * 1.7
    mu1, s1 = fid.statistics(a)
    mu2, s2 = fid.statistics(b)
    covmean = linalg.sqrtm(s1 @ s2).real
    expected = np.sum((mu1 - mu2) ** 2) + np.trace(s1 + s2 - 2 * covmean)
    assert fid.frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-6)


def test_kid_near_zero_for_same_distribution_and_larger_when_shifted():
    real = _gaussian(300, 8, seed=0)
    same, _ = fid.kernel_inception_distance(real, _gaussian(300, 8, seed=1), num_subsets=20, subset_size=100)
    shifted, _ = fid.kernel_inception_distance(real, _gaussian(300, 8, shift=1.0, seed=1), num_subsets=20,
                                               subset_size=100)
    assert abs(same) < 0.05
    assert shifted > 10 * max(abs(same), 1e-3)
    assert fid.kernel_inception_distance(real, real, num_subsets=3, subset_size=50, seed=7) == \
        fid.kernel_inception_distance(real, real, num_subsets=3, subset_size=50, seed=7)


def test_missing_inception_weights_name_the_flag_and_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    with pytest.raises(FileNotFoundError) as error:
        fid.resolve_inception_weights("auto")
    message = str(error.value)
    assert "--inception_weights" in message
    assert os.path.join(str(tmp_path), "models", fid.INCEPTION_NOTOP_FILENAME) in message
    with pytest.raises(FileNotFoundError, match="--inception_weights=/nope.h5"):
        fid.resolve_inception_weights("/nope.h5")
    assert fid.resolve_inception_weights("random") == "random"


def test_too_few_samples_warns_with_the_counts():
    metric = fid.FID()
    metric._real = [np.zeros((10, 16))]
    metric._fake = [np.zeros((80, 16))]
    [warning] = metric.warnings()
    assert "10 real" in warning and "80 generated" in warning


@pytest.mark.slow
def test_classifier_features_are_the_logits_layer_input(tmp_path):
    import keras

    from expr3d.metrics.expression_classifier import ExpressionClassifier, build_classifier

    model = build_classifier(32, width=4)
    classifier = ExpressionClassifier(model, {"classes": ["x"] * 8, "image_size": 32}, str(tmp_path))
    extractor = fid.classifier_feature_extractor(classifier)
    images = np.random.default_rng(0).uniform(-1, 1, (3, 32, 32, 3)).astype("float32")
    features = extractor(images)
    pooled = keras.Model(model.inputs, model.get_layer("pool").output)(images).numpy()
    assert features.shape == (3, 32)  # width 4 doubled over 4 stages
    np.testing.assert_allclose(features, pooled, rtol=1e-5, atol=1e-6)
    assert "classifier" in extractor.description and "NOT Inception" in extractor.description
    base = np.random.default_rng(1).uniform(-1, 0.5, (64, 32, 32, 3)).astype("float32")
    shifted = np.clip(base + 0.5, -1, 1)
    same = fid.fid_from_features(extractor(base), extractor(base))
    assert same == pytest.approx(0.0, abs=1e-6)
    assert fid.fid_from_features(extractor(base), extractor(shifted)) > 1e-4
