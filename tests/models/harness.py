"""The checks every layer and model of expr3d.models passes (keras-hub's habit): config round trip, `.keras` round
trip with equal outputs, and the output dtype under a mixed_float16 policy.

Each check takes a `build` function (a fresh, tiny instance under the current dtype policy) and its example inputs, so
the mixed-precision check can build under the policy it sets.
"""
import keras
import numpy as np


def as_list(outputs):
    """One output or a list/tuple of them, as a list of numpy arrays."""
    outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
    return [keras.ops.convert_to_numpy(output) for output in outputs]


def check_config_round_trip(layer, inputs):
    """`from_config(get_config())` rebuilds the same architecture: equal config, name, parameter count, and equal
    outputs once the weights are copied; `serialize_keras_object` names a registered class."""
    clone = type(layer).from_config(layer.get_config())
    assert type(clone) is type(layer)
    assert clone.get_config() == layer.get_config()
    assert clone.name == layer.name
    layer_outputs = as_list(layer(inputs))  # builds a subclassed layer before its weights are counted
    clone(inputs)
    assert clone.count_params() == layer.count_params()
    clone.set_weights(layer.get_weights())
    for got, expected in zip(as_list(clone(inputs)), layer_outputs, strict=True):
        np.testing.assert_array_equal(got, expected)
    revived = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    assert type(revived) is type(layer) and revived.get_config() == layer.get_config()


def check_keras_file_round_trip(layer, inputs, path):
    """Saved to `path` (a `.keras` file) and loaded: the same class, name and config, and exactly equal outputs."""
    expected = as_list(layer(inputs))
    keras.saving.save_model(layer, path)
    loaded = keras.saving.load_model(path)
    assert type(loaded) is type(layer) and loaded.name == layer.name
    assert loaded.get_config() == layer.get_config()
    for got, want in zip(as_list(loaded(inputs)), expected, strict=True):
        np.testing.assert_array_equal(got, want)


def check_mixed_float16_outputs(build, inputs, expected_dtype):
    """Built and called under a mixed_float16 global policy: every output has `expected_dtype` and is finite. The
    previous global policy is restored, even on failure."""
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        layer = build()
        outputs = layer(inputs)
        outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
        for output in outputs:
            assert keras.backend.standardize_dtype(output.dtype) == expected_dtype, (layer.name, output.dtype)
            assert np.all(np.isfinite(keras.ops.convert_to_numpy(output).astype(np.float32)))
    finally:
        keras.mixed_precision.set_global_policy(previous)
    assert keras.mixed_precision.global_policy().name == previous.name


def run_all_checks(build, inputs, tmp_path, mixed_float16_dtype):
    """Every harness check on a fresh `build()` with `inputs`; `.keras` files go under `tmp_path`."""
    check_config_round_trip(build(), inputs)
    check_keras_file_round_trip(build(), inputs, str(tmp_path / "layer.keras"))
    check_mixed_float16_outputs(build, inputs, mixed_float16_dtype)
