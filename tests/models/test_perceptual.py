import os

import h5py
import keras
import numpy as np
import pytest

from expr3d.models import VGG19Features, keras_cache_candidates
from expr3d.models.perceptual import DEFAULT_LAYERS, VGG19_NOTOP_FILENAME


@pytest.fixture(scope="module")
def source_vgg():
    """A randomly initialised notop VGG19 standing in for the ImageNet one."""
    keras.utils.set_random_seed(7)
    return keras.applications.VGG19(weights=None, include_top=False, input_shape=(None, None, 3))


def _write_legacy_h5(model, path):
    """Writes `model`'s weights in the legacy Keras HDF5 layout of the cached ImageNet file."""
    with h5py.File(path, "w") as f:
        layers = [layer for layer in model.layers if layer.weights]
        f.attrs["layer_names"] = [layer.name.encode("utf8") for layer in model.layers]
        f.attrs["backend"] = b"tensorflow"
        f.attrs["keras_version"] = b"2.2.4"
        for layer in model.layers:
            group = f.create_group(layer.name)
            names = [f"{layer.name}_W_1:0", f"{layer.name}_b_1:0"] if layer in layers else []
            group.attrs["weight_names"] = [n.encode("utf8") for n in names]
            for name, value in zip(names, layer.get_weights()):
                group.create_dataset(name, data=value)


def _reference_features(source, images):
    """Source VGG features through Keras' own caffe preprocessing (independent of ours)."""
    pixels = (images + 1.0) * 127.5
    x = keras.applications.vgg19.preprocess_input(pixels.copy())
    extractor = keras.Model(source.input, [source.get_layer(n).output for n in DEFAULT_LAYERS])
    return [keras.ops.convert_to_numpy(f) for f in extractor(x)]


def test_missing_cache_raises_helpful_error(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))
    expected = str(tmp_path / "keras_home" / "models" / VGG19_NOTOP_FILENAME)
    assert keras_cache_candidates() == [expected]
    with pytest.raises(FileNotFoundError) as error:
        VGG19Features()
    message = str(error.value)
    assert "--vgg19_weights" in message
    assert expected in message
    assert 'python -c "import keras; keras.applications.VGG19(include_top=False)"' in message
    assert "--perceptual_weight=0" in message


def test_missing_explicit_file_names_flag_and_path(tmp_path):
    missing = tmp_path / "nope.h5"
    with pytest.raises(FileNotFoundError, match="--vgg19_weights=.*nope.h5"):
        VGG19Features(weights=str(missing))


@pytest.mark.slow
def test_loads_cached_legacy_h5_via_keras_home(tmp_path, monkeypatch, source_vgg):
    home = tmp_path / "keras_home"
    os.makedirs(home / "models")
    _write_legacy_h5(source_vgg, str(home / "models" / VGG19_NOTOP_FILENAME))
    monkeypatch.setenv("KERAS_HOME", str(home))

    vgg = VGG19Features()  # weights="auto"
    assert not vgg.trainable and not vgg.trainable_weights
    images = np.random.default_rng(0).uniform(-1, 1, (2, 32, 32, 3)).astype("float32")
    ours = [keras.ops.convert_to_numpy(f) for f in vgg(images)]
    reference = _reference_features(source_vgg, images)
    assert [f.shape for f in ours] == [(2, 32, 32, 64), (2, 16, 16, 128), (2, 8, 8, 256), (2, 4, 4, 512)]
    for a, b in zip(ours, reference):
        assert np.all(a >= 0)  # ReLU activations
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4 * np.abs(b).max())


def test_loads_weights_h5_path(tmp_path, source_vgg):
    path = str(tmp_path / "vgg19_notop.weights.h5")
    source_vgg.save_weights(path)
    vgg = VGG19Features(weights=path, layers=("block2_conv2",))
    images = np.random.default_rng(1).uniform(-1, 1, (1, 16, 16, 3)).astype("float32")
    outputs = vgg(images)
    assert isinstance(outputs, list) and len(outputs) == 1  # a list even for one layer
    ours = outputs[0]
    pixels = keras.applications.vgg19.preprocess_input((images + 1.0) * 127.5)
    reference = keras.Model(source_vgg.input, source_vgg.get_layer("block2_conv2").output)(pixels)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(ours), keras.ops.convert_to_numpy(reference), rtol=1e-4, atol=1e-3
    )


def test_wrong_file_is_reported(tmp_path):
    path = str(tmp_path / "other.weights.h5")
    keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)]).save_weights(path)
    with pytest.raises(ValueError, match="--vgg19_weights"):
        VGG19Features(weights=path)


def test_unknown_layer_is_named():
    with pytest.raises(ValueError, match="block9_conv1"):
        VGG19Features(weights=None, layers=("block9_conv1",))


def test_random_weights_for_tests_and_gradients_reach_the_input():
    import tensorflow as tf

    vgg = VGG19Features(weights=None, layers=("block1_conv2", "block3_conv4"))
    x = tf.Variable(np.random.default_rng(2).uniform(-1, 1, (1, 16, 16, 3)).astype("float32"))
    with tf.GradientTape() as tape:
        loss = sum(tf.reduce_mean(f) for f in vgg(x))
    assert float(tf.reduce_sum(tf.abs(tape.gradient(loss, x)))) > 0
