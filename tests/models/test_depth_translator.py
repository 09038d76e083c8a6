import keras
import numpy as np

from expr3d.models import TO_GEOMETRY, TO_RGB, DepthTranslator, StarGANGenerator


def _image(batch=2, size=32, seed=0):
    return np.random.default_rng(seed).uniform(-1, 1, (batch, size, size, 3)).astype("float32")


def _np(x):
    return keras.ops.convert_to_numpy(x)


def test_directions_match_explicit_domain_and_differ():
    g = DepthTranslator(conv_dim=8, num_res_blocks=1)
    assert isinstance(g, StarGANGenerator) and g.cond_dim == 2
    x = _image()
    geometry = _np(g.to_geometry(x))
    rgb = _np(g.to_rgb(x))
    assert geometry.shape == rgb.shape == (2, 32, 32, 3)
    assert geometry.dtype == np.float32 and np.all(np.abs(geometry) <= 1)
    np.testing.assert_allclose(geometry, _np(g([x, np.array([TO_GEOMETRY] * 2, "float32")])), atol=1e-6)
    np.testing.assert_allclose(rgb, _np(g([x, np.array([TO_RGB] * 2, "float32")])), atol=1e-6)
    assert np.abs(geometry - rgb).mean() > 1e-4
    # The cycle RGB -> geometry -> RGB composes.
    assert g.to_rgb(g.to_geometry(x)).shape == (2, 32, 32, 3)


def test_works_inside_tf_function():
    import tensorflow as tf

    g = DepthTranslator(conv_dim=4, num_res_blocks=1)
    x = _image(batch=3, size=16)
    traced = tf.function(lambda t: g.to_geometry(t), input_signature=[tf.TensorSpec([None, None, None, 3])])
    np.testing.assert_allclose(_np(traced(x)), _np(g.to_geometry(x)), atol=1e-5)


def test_config_round_trip_and_keras_file(tmp_path):
    g = DepthTranslator(conv_dim=8, num_res_blocks=2, name="g_depth")
    config = g.get_config()
    assert "cond_dim" not in config
    assert DepthTranslator.from_config(config).get_config() == config

    path = str(tmp_path / "g_depth.keras")
    g.save(path)
    loaded = keras.saving.load_model(path)
    assert type(loaded) is DepthTranslator
    x = _image()
    np.testing.assert_array_equal(_np(loaded.to_geometry(x)), _np(g.to_geometry(x)))
    np.testing.assert_array_equal(_np(loaded.to_rgb(x)), _np(g.to_rgb(x)))


def test_mixed_bfloat16_outputs_float32():
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        g = DepthTranslator(conv_dim=8, num_res_blocks=1)
        out = g.to_geometry(_image())
        assert keras.backend.standardize_dtype(out.dtype) == "float32"
    finally:
        keras.mixed_precision.set_global_policy("float32")
