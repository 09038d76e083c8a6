import keras
import numpy as np
import pytest

from expr3d.models import (AttentionCombine, AttentionGenerator, AttentionUNetGenerator, AttentionWarpGenerator,
                           FlowWarp, ModelConfig, StarGANGenerator, build_models)


def _inputs(batch=2, size=32, cond_dim=8, seed=0):
    rng = np.random.default_rng(seed)
    image = rng.uniform(-1, 1, (batch, size, size, 3)).astype("float32")
    labels = rng.integers(0, cond_dim, batch)
    return image, np.eye(cond_dim, dtype="float32")[labels]


def _numpy(x):
    return keras.ops.convert_to_numpy(x)


def _set_attention_bias(generator, value):
    layer = generator.get_layer("attention_conv")
    layer.bias.assign(np.full(layer.bias.shape, value, "float32"))


@pytest.mark.parametrize("generator_class", [AttentionGenerator, AttentionUNetGenerator, AttentionWarpGenerator])
@pytest.mark.parametrize("cond_dim,conv_dim,num_res_blocks,num_down,size", [(8, 8, 1, 2, 32), (3, 4, 0, 1, 8)])
def test_shapes_dtypes_and_ranges(generator_class, cond_dim, conv_dim, num_res_blocks, num_down, size):
    g = generator_class(cond_dim, conv_dim=conv_dim, num_res_blocks=num_res_blocks, num_down=num_down)
    image, condition = _inputs(batch=3, size=size, cond_dim=cond_dim)
    out = _numpy(g([image, condition]))
    assert out.shape == (3, size, size, 3) and out.dtype == np.float32
    assert np.all(np.abs(out) <= 1.0)
    output, mask, colour = (_numpy(t) for t in g.with_attention([image, condition]))
    assert mask.shape == (3, size, size, 1) and colour.shape == (3, size, size, 3)
    assert mask.dtype == colour.dtype == np.float32
    assert np.all((mask >= 0.0) & (mask <= 1.0)) and np.all(np.abs(colour) <= 1.0)
    # call() and with_attention() are the same graph; the output is the blend of its parts.
    np.testing.assert_array_equal(output, out)
    np.testing.assert_allclose(output, mask * colour + (1.0 - mask) * image, atol=1e-6)


def test_same_trunk_as_stargan_plus_two_heads():
    kwargs = dict(cond_dim=5, conv_dim=8, num_res_blocks=2)
    g, stargan = AttentionGenerator(**kwargs), StarGANGenerator(**kwargs)
    trunk = {l.name: l for l in stargan.layers if l.name not in ("out_conv", "out_tanh")}
    for name, layer in trunk.items():
        assert [w.shape for w in g.get_layer(name).weights] == [w.shape for w in layer.weights], name
    assert g.get_layer("colour_conv").kernel.shape == (7, 7, 8, 3) and not g.get_layer("colour_conv").use_bias
    assert g.get_layer("attention_conv").kernel.shape == (7, 7, 8, 1) and g.get_layer("attention_conv").use_bias
    # Exactly the extra attention head (7*7*8 kernel + 1 bias) over StarGAN's parameters; no weight counted twice.
    assert g.count_params() == stargan.count_params() + 7 * 7 * 8 + 1
    assert len(g.get_weights()) == len({id(w) for w in g.weights})


def test_unet_is_the_attention_trunk_plus_a_skip_per_up_sampling_stage():
    kwargs = dict(cond_dim=5, conv_dim=8, num_res_blocks=2)
    g, plain = AttentionUNetGenerator(**kwargs), AttentionGenerator(**kwargs)
    assert isinstance(g, AttentionGenerator)  # the trainer's mask terms and the exporters treat both alike
    # up0 (16 channels at H/2) gets down0's 16 channels, up1 (8 at H) gets the stem's 8: the heads read 16.
    assert g.get_layer("skip0_concat").output.shape[-1] == 32 and g.get_layer("skip1_concat").output.shape[-1] == 16
    assert g.get_layer("up1_conv").kernel.shape == (4, 4, 8, 32)  # transposed conv: (kh, kw, out, in)
    assert g.get_layer("colour_conv").kernel.shape == (7, 7, 16, 3)
    assert g.get_layer("attention_conv").kernel.shape == (7, 7, 16, 1)
    # Only the decoder's second stage and the heads see more channels; every other layer is the plain one's.
    extra = 4 * 4 * 8 * 16 + 7 * 7 * 8 * 4
    assert g.count_params() == plain.count_params() + extra
    with pytest.raises(ValueError):
        plain.get_layer("skip0_concat")


@pytest.mark.parametrize("generator_class", [AttentionGenerator, AttentionUNetGenerator, AttentionWarpGenerator])
def test_output_is_the_source_where_the_mask_is_zero_and_the_colour_where_it_is_one(generator_class):
    g = generator_class(cond_dim=8, conv_dim=8, num_res_blocks=1)
    image, condition = _inputs()
    _set_attention_bias(g, -200.0)  # sigmoid underflows to 0: nothing is edited
    output, mask, _ = (_numpy(t) for t in g.with_attention([image, condition]))
    assert mask.max() == 0.0
    np.testing.assert_array_equal(output, image)
    _set_attention_bias(g, 200.0)  # sigmoid saturates at 1: everything is the colour head's
    output, mask, colour = (_numpy(t) for t in g.with_attention([image, condition]))
    assert mask.min() == 1.0
    np.testing.assert_array_equal(output, colour)


def test_combine_layer_copies_the_source_exactly_where_the_mask_is_zero():
    rng = np.random.default_rng(1)
    source = rng.uniform(-1, 1, (2, 4, 4, 3)).astype("float32")
    colour = rng.uniform(-1, 1, (2, 4, 4, 3)).astype("float32")
    mask = np.zeros((2, 4, 4, 1), "float32")
    mask[:, :2] = 1.0
    mask[1, 3, 3] = 0.25
    out = _numpy(AttentionCombine()([source, colour, mask]))
    np.testing.assert_array_equal(out[:, 2:3], source[:, 2:3])
    np.testing.assert_array_equal(out[0, 2:], source[0, 2:])
    np.testing.assert_array_equal(out[:, :2], colour[:, :2])
    np.testing.assert_allclose(out[1, 3, 3], 0.25 * colour[1, 3, 3] + 0.75 * source[1, 3, 3], rtol=1e-6)


def test_mixed_bfloat16_outputs_float32():
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        g = AttentionGenerator(cond_dim=8, conv_dim=8, num_res_blocks=1)
        assert g.get_layer("attention_conv").compute_dtype == "bfloat16"
        image, condition = _inputs()
        for out in (g([image, condition]),) + g.with_attention([image, condition]):
            assert keras.backend.standardize_dtype(out.dtype) == "float32"
            assert np.all(np.isfinite(_numpy(out)))
    finally:
        keras.mixed_precision.set_global_policy("float32")


@pytest.mark.parametrize("generator_class", [AttentionGenerator, AttentionUNetGenerator, AttentionWarpGenerator])
def test_config_round_trip_and_keras_file(tmp_path, generator_class):
    g = generator_class(cond_dim=5, conv_dim=8, num_res_blocks=2, name="g_test")
    _set_attention_bias(g, -0.7)  # a non-initial value, so loading must restore it
    clone = generator_class.from_config(g.get_config())
    assert clone.get_config() == g.get_config() and clone.count_params() == g.count_params()

    image, condition = _inputs(cond_dim=5)
    path = str(tmp_path / "g.keras")
    g.save(path)
    loaded = keras.saving.load_model(path)
    assert type(loaded) is generator_class and loaded.name == "g_test"
    np.testing.assert_array_equal(_numpy(loaded([image, condition])), _numpy(g([image, condition])))
    for got, expected in zip(loaded.with_attention([image, condition]), g.with_attention([image, condition])):
        np.testing.assert_array_equal(_numpy(got), _numpy(expected))
    # with_attention still shares the loaded model's weights.
    _set_attention_bias(loaded, -200.0)
    np.testing.assert_array_equal(_numpy(loaded.with_attention([image, condition])[0]), image)


@pytest.mark.parametrize("field,value", [("cond_dim", 0), ("conv_dim", 2.5), ("num_res_blocks", -1)])
def test_bad_arguments_name_the_field(field, value):
    with pytest.raises(ValueError, match=f"AttentionGenerator: {field}"):
        AttentionGenerator(**{"cond_dim": 8, field: value})


def test_build_models_picks_the_generator():
    tiny = dict(image_size=32, g_conv_dim=8, g_num_res_blocks=1, d_conv_dim=8, d_num_layers=3, depth_g_conv_dim=8,
                depth_g_num_res_blocks=1, depth_d_conv_dim=8, depth_d_num_layers=3)
    assert type(build_models(ModelConfig(**tiny))["g_rgb"]) is StarGANGenerator
    networks = build_models(ModelConfig(**tiny, generator="attention"))
    assert type(networks["g_rgb"]) is AttentionGenerator and networks["g_rgb"].name == "g_rgb"
    assert networks["g_rgb"].cond_dim == 8 and networks["g_rgb"].conv_dim == 8
    networks = build_models(ModelConfig(**tiny, generator="attention_unet"))
    assert type(networks["g_rgb"]) is AttentionUNetGenerator and networks["g_rgb"].name == "g_rgb"
    assert type(build_models(ModelConfig(**tiny, generator="attention_warp"))["g_rgb"]) is AttentionWarpGenerator


def test_model_config_generator_field():
    assert ModelConfig().generator == "stargan"
    config = ModelConfig(image_size=32, d_num_layers=3, depth_d_num_layers=3, generator="attention")
    assert ModelConfig.from_dict(config.to_dict()) == config
    # A run config written before the field existed loads as StarGAN.
    old = {k: v for k, v in config.to_dict().items() if k != "generator"}
    assert ModelConfig.from_dict(old).generator == "stargan"
    with pytest.raises(ValueError, match="generator must be one of"):
        ModelConfig(generator="unet")


def _flow(batch, size, dy, dx):
    """A constant flow of (dy, dx) pixels for FlowWarp(max_shift=1.0) at `size` px."""
    return np.stack([np.full((batch, size, size), dy / size, "float32"),
                     np.full((batch, size, size), dx / size, "float32")], axis=-1)


def test_flow_warp_on_known_flows():
    rng = np.random.default_rng(3)
    image = rng.uniform(-1, 1, (2, 6, 6, 3)).astype("float32")
    warp = FlowWarp(max_shift=1.0)
    np.testing.assert_array_equal(_numpy(warp([image, np.zeros((2, 6, 6, 2), "float32")])), image)
    # Two pixels down and one left: out[i, j] = image[i + 2, j - 1], the border row / column repeated.
    out = _numpy(warp([image, _flow(2, 6, 2, -1)]))
    rows, cols = np.minimum(np.arange(6) + 2, 5), np.maximum(np.arange(6) - 1, 0)
    np.testing.assert_allclose(out, image[:, rows][:, :, cols], atol=1e-6)
    # Half a pixel right: the mean of each pixel and its right neighbour.
    out = _numpy(warp([image, _flow(2, 6, 0, 0.5)]))
    np.testing.assert_allclose(out[:, :, :5], (image[:, :, :5] + image[:, :, 1:]) / 2, atol=1e-6)
    # Each image of the batch moves by its own flow.
    flows = np.concatenate([_flow(1, 6, 0, 0), _flow(1, 6, 1, 0)])
    out = _numpy(warp([image, flows]))
    np.testing.assert_array_equal(out[0], image[0])
    np.testing.assert_allclose(out[1], image[1][np.minimum(np.arange(6) + 1, 5)], atol=1e-6)
    # At most max_shift of the side: a flow of 1 with max_shift 0.5 moves 3 of 6 pixels.
    out = _numpy(FlowWarp(max_shift=0.5)([image, _flow(2, 6, 0, 6)]))
    np.testing.assert_allclose(out, image[:, :, np.minimum(np.arange(6) + 3, 5)], atol=1e-6)
    with pytest.raises(ValueError, match="max_shift must be in"):
        FlowWarp(max_shift=0)


def test_flow_warp_passes_a_gradient_to_the_flow():
    import tensorflow as tf

    image = np.tile(np.linspace(-1, 1, 8, dtype="float32")[None, None, :, None], (1, 8, 1, 1))  # a ramp in x
    flow = tf.Variable(_flow(1, 8, 0, 0.3))
    with tf.GradientTape() as tape:
        out = FlowWarp(max_shift=1.0)([image, flow])
        loss = tf.reduce_mean(out[:, :, 1:-2])
    gradient = tape.gradient(loss, flow).numpy()
    # Moving right reads larger values of the ramp: d out / d dx = slope * (side per unit flow), dy has none.
    assert np.all(gradient[..., 1][:, :, 1:-2] > 0) and np.all(gradient[..., 0] == 0)


def test_the_warp_generator_moves_the_source_along_its_flow():
    g = AttentionWarpGenerator(cond_dim=8, conv_dim=8, num_res_blocks=1)
    assert g.get_layer("flow_conv").kernel.shape == (7, 7, 8, 2)
    plain = AttentionGenerator(cond_dim=8, conv_dim=8, num_res_blocks=1)
    assert g.count_params() == plain.count_params() + 7 * 7 * 8 * 2 + 2
    image, condition = _inputs(size=16)
    _set_attention_bias(g, -200.0)  # nothing from the colour head: the output is the moved source
    output, _, _, source = (_numpy(t) for t in g.with_attention_and_source([image, condition]))
    np.testing.assert_array_equal(output, image)  # a new generator's flow is zero
    np.testing.assert_array_equal(source, image)
    # A flow of atanh(0.5) before the tanh: half of max_shift (10 % of 16 px) = 0.8 px right everywhere.
    g.get_layer("flow_conv").bias.assign(np.array([0.0, np.arctanh(0.5)], "float32"))
    output, _, _, source = (_numpy(t) for t in g.with_attention_and_source([image, condition]))
    expected = _numpy(FlowWarp(max_shift=1.0)([image, _flow(2, 16, 0, 0.8)]))
    np.testing.assert_allclose(source, expected, atol=1e-5)
    np.testing.assert_array_equal(output, source)
