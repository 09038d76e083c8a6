"""`init="stargan"`: PyTorch's default initialisation as the official StarGAN code gets it (U(+-1/sqrt(fan_in)))."""
import math

import keras
import numpy as np
import pytest
from scipy import stats

from expr3d.models import AttentionGenerator, DepthTranslator, ModelConfig, PatchCritic, StarGANGenerator, build_models
from expr3d.models.initializers import TorchDefaultUniform, layer_initializers


def _weight(model, path):
    matches = [w for w in model.weights if w.path == path]
    assert matches, (path, [w.path for w in model.weights])
    return keras.ops.convert_to_numpy(matches[0]).ravel()


def _assert_uniform(values, bound, name):
    """Support inside [-bound, bound] and reaching its edges; mean 0 and variance bound^2 / 3 within ~4 standard
    errors; a Kolmogorov-Smirnov test against U(-bound, bound) that a wrong bound (x or / sqrt 2) fails."""
    n = values.size
    assert np.abs(values).max() <= bound * (1 + 1e-6), name
    assert np.abs(values).max() >= bound * (1 - 20.0 / n), name  # the largest of n draws is within ~bound/n of it
    assert abs(values.mean()) <= 4 * bound / math.sqrt(3 * n), name
    assert values.var() == pytest.approx(bound**2 / 3, rel=4 * math.sqrt(0.8 / n)), name
    # ~25 KS tests run here on fixed seeds: 1e-4 keeps a chance failure unlikely (one layer's p is 4e-4).
    assert stats.kstest(values, stats.uniform(loc=-bound, scale=2 * bound).cdf).pvalue > 1e-4, name
    if n >= 1000:  # enough draws to reject the neighbouring bounds (KS distance 0.146 between them)
        for wrong in (bound * math.sqrt(2), bound / math.sqrt(2)):
            assert stats.kstest(values, stats.uniform(loc=-wrong, scale=2 * wrong).cdf).pvalue < 1e-4, name


def test_critic_kernels_and_biases_follow_pytorch_defaults():
    keras.utils.set_random_seed(1)
    critic = PatchCritic(image_size=32, num_classes=8, conv_dim=32, num_layers=3, init="stargan")
    # Stride-2 conv i: in_channels * 4 * 4 inputs per output; PyTorch's fan_in of both its weight and its bias.
    for i, in_channels in enumerate((3, 32, 64)):
        bound = 1 / math.sqrt(in_channels * 16)
        _assert_uniform(_weight(critic, f"conv{i}/kernel"), bound, f"conv{i}/kernel")
        bias = _weight(critic, f"conv{i}/bias")
        _assert_uniform(bias, bound, f"conv{i}/bias")
    # Bias-free heads (StarGAN's conv1 / conv2): src 3x3 over 128 channels, cls 4x4 over 128.
    _assert_uniform(_weight(critic, "src_conv/kernel"), 1 / math.sqrt(128 * 9), "src_conv/kernel")
    _assert_uniform(_weight(critic, "cls_conv/kernel"), 1 / math.sqrt(128 * 16), "cls_conv/kernel")
    assert not any(w.path.startswith(("src_conv/bias", "cls_conv/bias")) for w in critic.weights)


def test_generator_kernels_including_the_transposed_convs_and_norms():
    keras.utils.set_random_seed(2)
    g = StarGANGenerator(cond_dim=8, conv_dim=16, num_res_blocks=1, init="stargan")
    expected = {
        "stem_conv/kernel": (3 + 8) * 49,
        "down0_conv/kernel": 16 * 16,
        "down1_conv/kernel": 32 * 16,
        "res0_conv1/kernel": 64 * 9,
        # ConvTranspose2d(64 -> 32): PyTorch's weight is [in=64, out=32, 4, 4] and its fan_in is weight.size(1) * 16
        # = OUT channels x 16 = 512 (not 64 x 16); Keras' kernel is [4, 4, out=32, in=64].
        "up0_conv/kernel": 32 * 16,
        "up1_conv/kernel": 16 * 16,
        "out_conv/kernel": 16 * 49,
    }
    for path, fan_in in expected.items():
        _assert_uniform(_weight(g, path), 1 / math.sqrt(fan_in), path)
    up0 = [w for w in g.weights if w.path == "up0_conv/kernel"][0]
    assert tuple(up0.shape) == (4, 4, 32, 64)  # [kh, kw, out, in]
    # No conv biases in the generator; instance norms start at gamma = 1, beta = 0 (PyTorch's affine defaults).
    assert not any(w.path.endswith("/bias") for w in g.weights)
    for w in g.weights:
        if w.path.endswith("gamma"):
            np.testing.assert_array_equal(keras.ops.convert_to_numpy(w), 1.0)
        if w.path.endswith("beta"):
            np.testing.assert_array_equal(keras.ops.convert_to_numpy(w), 0.0)


def test_keras_init_is_unchanged_and_stargan_differs():
    keras.utils.set_random_seed(3)
    default = PatchCritic(image_size=16, num_classes=8, conv_dim=8, num_layers=2)
    keras.utils.set_random_seed(3)
    explicit = PatchCritic(image_size=16, num_classes=8, conv_dim=8, num_layers=2, init="keras")
    for a, b in zip(default.get_weights(), explicit.get_weights()):
        np.testing.assert_array_equal(a, b)  # the option's default draws exactly what the code drew before it
    np.testing.assert_array_equal(_weight(default, "conv0/bias"), 0.0)  # Keras: zero biases
    # Glorot-uniform: bound sqrt(6 / (fan_in + fan_out)) = sqrt(6 / (48 + 128)) for conv0 (4x4, 3 -> 8).
    assert np.abs(_weight(default, "conv0/kernel")).max() <= math.sqrt(6 / (48 + 128))
    keras.utils.set_random_seed(3)
    stargan = PatchCritic(image_size=16, num_classes=8, conv_dim=8, num_layers=2, init="stargan")
    assert np.abs(_weight(stargan, "conv0/bias")).max() > 0


def test_init_is_stored_validated_and_round_trips(tmp_path):
    config = ModelConfig(image_size=16, g_conv_dim=4, g_num_res_blocks=0, d_conv_dim=4, d_num_layers=2,
                         depth_g_conv_dim=4, depth_g_num_res_blocks=0, depth_d_conv_dim=4, depth_d_num_layers=2,
                         init="stargan")
    values = config.to_dict()
    assert values["init"] == "stargan" and ModelConfig.from_dict(values) == config
    del values["init"]
    assert ModelConfig.from_dict(values).init == "keras"  # a run config written before the field existed
    with pytest.raises(ValueError, match="init must be one of"):
        ModelConfig(init="torch")
    networks = build_models(config)
    assert {net.get_config()["init"] for net in networks.values()} == {"stargan"}
    assert np.abs(_weight(networks["d_depth"], "conv0/bias")).max() > 0
    critic_kwargs = {"image_size": 16, "num_classes": 2, "num_layers": 2}
    for cls, kwargs in ((StarGANGenerator, {"cond_dim": 2}), (PatchCritic, critic_kwargs), (DepthTranslator, {}),
                        (AttentionGenerator, {"cond_dim": 2})):
        with pytest.raises(ValueError, match="init must be one of"):
            cls(conv_dim=4, init="glorot", **kwargs)
    # A .keras file keeps the option; one saved before it existed (no "init" in its config) loads as "keras".
    critic = networks["d_rgb"]
    path = str(tmp_path / "d_rgb.keras")
    critic.save(path)
    loaded = keras.saving.load_model(path, compile=False)
    assert loaded.get_config()["init"] == "stargan"
    for a, b in zip(critic.get_weights(), loaded.get_weights()):
        np.testing.assert_array_equal(a, b)
    old_config = dict(critic.get_config())
    del old_config["init"]
    assert PatchCritic.from_config(old_config).init == "keras"
    translator = DepthTranslator.from_config(networks["g_depth"].get_config())
    assert translator.init == "stargan"


def test_attention_generator_takes_the_init():
    keras.utils.set_random_seed(4)
    g = AttentionGenerator(cond_dim=8, conv_dim=16, num_res_blocks=0, init="stargan")
    _assert_uniform(_weight(g, "up0_conv/kernel"), 1 / math.sqrt(32 * 16), "up0_conv/kernel")  # 64 -> 32
    bias = _weight(g, "attention_conv/bias")
    assert bias.shape == (1,) and 0 < abs(bias[0]) <= 1 / math.sqrt(16 * 49)


def test_initializer_needs_fan_in_for_biases_and_serializes():
    with pytest.raises(ValueError, match="explicit fan_in"):
        TorchDefaultUniform()((8,))
    with pytest.raises(ValueError, match="fan_in must be"):
        TorchDefaultUniform(fan_in=0)
    with pytest.raises(ValueError, match="needs its weight's fan_in"):
        layer_initializers("stargan", use_bias=True)
    assert layer_initializers("keras", fan_in=3, use_bias=True) == {}
    init = TorchDefaultUniform(fan_in=12, seed=5)
    restored = keras.initializers.deserialize(keras.initializers.serialize(init))
    assert isinstance(restored, TorchDefaultUniform) and restored.fan_in == 12
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(init((6,))), keras.ops.convert_to_numpy(restored((6,))))
