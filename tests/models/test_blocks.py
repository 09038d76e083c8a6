import keras
import numpy as np

from expr3d.models import ConditionConcat, residual_block


def test_condition_concat_tiles_the_condition():
    image = np.random.default_rng(0).normal(size=(2, 4, 5, 3)).astype("float32")
    condition = np.array([[1, 0], [0.5, 2]], "float32")
    out = keras.ops.convert_to_numpy(ConditionConcat()([image, condition]))
    assert out.shape == (2, 4, 5, 5)
    np.testing.assert_array_equal(out[..., :3], image)
    for b in range(2):
        np.testing.assert_array_equal(out[b, :, :, 3:], np.broadcast_to(condition[b], (4, 5, 2)))


def test_condition_concat_symbolic_shape():
    out = ConditionConcat()([keras.Input((None, None, 3)), keras.Input((8,))])
    assert tuple(out.shape) == (None, None, None, 11)


def test_residual_block_is_identity_plus_residual():
    inputs = keras.Input((8, 8, 4))
    model = keras.Model(inputs, residual_block(inputs, 4, name="rb"))
    x = np.random.default_rng(1).normal(size=(2, 8, 8, 4)).astype("float32")
    # With the second norm's scale and offset zeroed the residual branch vanishes.
    norm = model.get_layer("rb_norm2")
    norm.gamma.assign(np.zeros(4, "float32"))
    np.testing.assert_allclose(keras.ops.convert_to_numpy(model(x)), x, atol=1e-6)
    # Otherwise the branch output is instance-normalised: per-sample, per-channel zero mean, unit variance.
    norm.gamma.assign(np.ones(4, "float32"))
    branch = keras.ops.convert_to_numpy(model(x)) - x
    np.testing.assert_allclose(branch.mean(axis=(1, 2)), 0, atol=1e-5)
    np.testing.assert_allclose(branch.var(axis=(1, 2)), 1, atol=1e-3)


def test_conditional_affine_scales_and_shifts_each_channel_by_the_condition():
    from expr3d.models.blocks import ConditionalAffine

    layer = ConditionalAffine()
    x = np.random.default_rng(0).normal(size=(2, 3, 3, 2)).astype("float32")
    condition = np.array([[1.0, 0.0], [0.0, 2.0]], "float32")
    assert np.array_equal(np.asarray(layer([x, condition])), x)  # zero-initialised: the identity
    kernel = np.array([[0.5, -1.0, 0.1, 0.2], [1.0, 0.0, -0.3, 0.4]], "float32")  # [gamma0, gamma1, beta0, beta1]
    layer.set_weights([kernel, np.array([0.0, 0.5, 1.0, 0.0], "float32")])
    out = np.asarray(layer([x, condition]))
    gamma = condition @ kernel[:, :2] + [0.0, 0.5]
    beta = condition @ kernel[:, 2:] + [1.0, 0.0]
    assert np.allclose(out, x * (1 + gamma[:, None, None, :]) + beta[:, None, None, :], atol=1e-6)
