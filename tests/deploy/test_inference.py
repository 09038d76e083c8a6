"""Inference clones: the same function as the training graph, with TFLite-delegable ops, and the layers' configs."""
import keras
import numpy as np
import pytest

from expr3d.deploy import inference
from expr3d.models import DepthTranslator, StarGANGenerator


def _randomise_norms(model, seed=0):
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, keras.layers.GroupNormalization):
            layer.gamma.assign(rng.uniform(0.5, 1.5, layer.gamma.shape))
            layer.beta.assign(rng.uniform(-0.5, 0.5, layer.beta.shape))


@pytest.mark.parametrize("cls", [StarGANGenerator, DepthTranslator])
def test_clone_computes_the_same_function_with_4d_ops(cls):
    keras.utils.set_random_seed(1)
    model = StarGANGenerator(cond_dim=8, conv_dim=8, num_res_blocks=1) if cls is StarGANGenerator else \
        DepthTranslator(conv_dim=8, num_res_blocks=1)
    _randomise_norms(model)
    cond_dim = model.cond_dim
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (2, 24, 40, 3)).astype(np.float32)  # non-square: the clone is fully convolutional too
    condition = np.eye(cond_dim, dtype=np.float32)[[0, cond_dim - 1]]
    clone, difference = inference.inference_clone(model, [x, condition])
    assert difference < 1e-5
    assert inference.count_replaceable(model) == {"group_norm": 7, "instance_norm": 0, "conv_transpose": 2,
                                                  "subpixel": 0}
    assert inference.count_replaceable(clone) == {"group_norm": 0, "instance_norm": 7, "conv_transpose": 0,
                                                  "subpixel": 2}
    assert len(clone.weights) == len(model.weights)
    # The clone holds its own copies: changing it does not change the model.
    layer = next(layer for layer in clone.layers if isinstance(layer, inference.InstanceNormalization))
    layer.gamma.assign(layer.gamma * 2.0)
    assert np.abs(np.asarray(clone([x, condition])) - np.asarray(model([x, condition]))).max() > 1e-3


def test_subpixel_upsampling_equals_conv_transpose_with_bias():
    keras.utils.set_random_seed(2)
    transposed = keras.layers.Conv2DTranspose(5, 4, strides=2, padding="same", use_bias=True)
    x = np.random.default_rng(1).normal(size=(2, 7, 9, 3)).astype(np.float32)
    transposed.build(x.shape)
    transposed.bias.assign(np.random.default_rng(2).normal(size=5))
    expected = np.asarray(transposed(x))
    layer = inference.SubPixelUpsampling(5, use_bias=True)
    layer.build(x.shape)
    layer.kernel.assign(inference.SubPixelUpsampling.from_transposed_kernel(transposed.kernel.numpy()))
    layer.bias.assign(transposed.bias)
    got = np.asarray(layer(x))
    assert got.shape == expected.shape == (2, 14, 18, 5)
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_instance_normalization_matches_group_normalization_and_round_trips():
    x = np.random.default_rng(3).normal(2.0, 3.0, size=(2, 6, 5, 4)).astype(np.float32)
    group = keras.layers.GroupNormalization(groups=-1, epsilon=1e-5)
    group.build(x.shape)
    group.gamma.assign([0.5, 1.0, 1.5, 2.0])
    group.beta.assign([-1.0, 0.0, 1.0, 2.0])
    layer = inference.InstanceNormalization(epsilon=1e-5)
    layer.build(x.shape)
    layer.gamma.assign(group.gamma)
    layer.beta.assign(group.beta)
    np.testing.assert_allclose(np.asarray(layer(x)), np.asarray(group(x)), atol=1e-5)
    restored = inference.InstanceNormalization.from_config(layer.get_config())
    assert restored.epsilon == 1e-5
    upsampling = inference.SubPixelUpsampling.from_config(inference.SubPixelUpsampling(3, use_bias=True).get_config())
    assert (upsampling.filters, upsampling.use_bias) == (3, True)
    with pytest.raises(RuntimeError, match="differs"):
        model = StarGANGenerator(cond_dim=2, conv_dim=4, num_res_blocks=0)
        inference.inference_clone(model, [np.ones((1, 8, 8, 3), np.float32), np.ones((1, 2), np.float32)],
                                  tolerance=-1.0)


def test_the_unet_attention_generator_clones_with_its_skips():
    """`--generator=attention_unet` exports through the same clone (its skips are plain concatenations)."""
    from expr3d.models import AttentionUNetGenerator

    keras.utils.set_random_seed(2)
    model = AttentionUNetGenerator(cond_dim=8, conv_dim=8, num_res_blocks=1)
    _randomise_norms(model)
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (2, 24, 40, 3)).astype(np.float32)
    condition = np.eye(8, dtype=np.float32)[[1, 6]]
    clone, difference = inference.inference_clone(model, [x, condition])
    assert difference < 1e-5
    assert inference.count_replaceable(clone)["group_norm"] == 0 and inference.count_replaceable(clone)["subpixel"] == 2
    assert [layer.name for layer in clone.layers if isinstance(layer, keras.layers.Concatenate)] == [
        "skip0_concat", "skip1_concat"]
