import keras
import numpy as np
import pytest

from expr3d.models import (AUAdversary, FlowWarp, ModelConfig, TransferDecoder, TransferEncoder,
                           TransferGeneratorDecoder, TransferGeneratorWarpDecoder)
from expr3d.models.builder import build_models


def _image(batch=2, size=16, seed=0):
    return np.random.default_rng(seed).uniform(-1, 1, (batch, size, size, 3)).astype("float32")


def _numpy(x):
    return keras.ops.convert_to_numpy(x)


def test_encoder_outputs_a_code_a_spatial_au_free_map_and_au_intensities():
    encoder = TransferEncoder(conv_dim=4, num_down=2, num_res_blocks=1, code_dim=10, free_channels=6)
    code, free, aus = (_numpy(t) for t in encoder(_image(batch=3, size=16)))
    assert code.shape == (3, 10) and free.shape == (3, 4, 4, 6) and aus.shape == (3, 17)
    assert np.all((aus > 0) & (aus < 1))
    # Any multiple of 2**num_down: the map follows the size, the code does not.
    code24, free24, _ = encoder(_image(size=24))
    assert code24.shape == (2, 10) and free24.shape == (2, 6, 6, 6)


def test_a_split_encoder_gives_the_au_free_map_a_trunk_the_code_does_not_share(tmp_path):
    """`trunks="split"`: a gradient of the map alone reaches none of the code's weights, and of the code alone none
    of the map's own trunk; the shared encoder's map gradient reaches the trunk under the code. Saved and loaded
    as itself; a config without `trunks` (saved before it) loads the shared encoder."""
    import tensorflow as tf

    image = _image()
    for trunks, map_reaches_code_trunk in (("shared", True), ("split", False)):
        encoder = TransferEncoder(conv_dim=4, num_down=2, num_res_blocks=1, code_dim=10, free_channels=6,
                                  trunks=trunks)
        with tf.GradientTape(persistent=True) as tape:
            code, free, _ = encoder(image)
            of_map, of_code = tf.reduce_sum(free**2), tf.reduce_sum(code**2)
        stem = encoder.get_layer("stem_conv").kernel
        assert (tape.gradient(of_map, stem) is not None) is map_reaches_code_trunk
        assert tape.gradient(of_code, encoder.get_layer("code_dense").kernel) is not None
        if trunks == "split":
            own = encoder.get_layer("free_trunk_stem_conv").kernel
            assert tape.gradient(of_map, own) is not None and tape.gradient(of_code, own) is None
            path = str(tmp_path / "encoder.keras")
            encoder.save(path)
            loaded = keras.saving.load_model(path, compile=False)
            assert loaded.get_config()["trunks"] == "split"
            for ours, theirs in zip(encoder(image), loaded(image)):
                np.testing.assert_allclose(_numpy(ours), _numpy(theirs), atol=1e-6)
        else:
            assert not any(layer.name.startswith("free_trunk_") for layer in encoder.layers)
    config = encoder.get_config()
    del config["trunks"]
    assert TransferEncoder.from_config(config).get_config()["trunks"] == "shared"
    with pytest.raises(ValueError, match="trunks must be one of"):
        TransferEncoder(conv_dim=4, num_down=2, num_res_blocks=1, trunks="twin")


def _decoder_inputs():
    rng = np.random.default_rng(1)
    free = rng.normal(size=(2, 4, 4, 6)).astype("float32")
    code = rng.normal(size=(2, 10)).astype("float32")
    return free, code, _image()


@pytest.mark.parametrize("decoder_class", [TransferDecoder, TransferGeneratorDecoder, TransferGeneratorWarpDecoder])
def test_each_decoder_blends_the_colour_into_the_source_through_its_mask(decoder_class, tmp_path):
    decoder = decoder_class(conv_dim=4, num_down=2, num_res_blocks=1, code_dim=10, free_channels=6)
    free, code, source = _decoder_inputs()
    output, mask, colour = (_numpy(t) for t in decoder.with_attention([free, code, source]))
    assert output.shape == colour.shape == (2, 16, 16, 3) and mask.shape == (2, 16, 16, 1)
    np.testing.assert_allclose(output, mask * colour + (1 - mask) * source, atol=1e-6)
    np.testing.assert_array_equal(output, _numpy(decoder([free, code, source])))
    # The code and the AU-free map reach the output: another code (map), another image.
    for changed in ([free, code[::-1], source], [free[::-1], code, source]):
        assert np.abs(_numpy(decoder(changed)) - output).max() > 1e-4
    path = str(tmp_path / "decoder.keras")
    decoder.save(path)
    loaded = keras.saving.load_model(path, compile=False)
    assert type(loaded) is decoder_class
    np.testing.assert_allclose(_numpy(loaded([free, code, source])), output, atol=1e-6)
    decoder.get_layer("attention_conv").bias.assign([-200.0])  # a shut mask copies the source exactly
    np.testing.assert_array_equal(_numpy(decoder([free, code, source])), source)


def test_the_warp_decoder_blends_into_the_source_moved_along_its_flow():
    decoder = TransferGeneratorWarpDecoder(conv_dim=4, num_down=2, num_res_blocks=1, code_dim=10, free_channels=6)
    free, code, source = _decoder_inputs()
    _, _, _, moved = (_numpy(t) for t in decoder.with_attention_and_source([free, code, source]))
    np.testing.assert_array_equal(moved, source)  # a new decoder's flow is zero
    decoder.get_layer("flow_conv").bias.assign(np.array([np.arctanh(0.5), 0.0], "float32"))  # 0.8 px down
    output, mask, colour, moved = (_numpy(t) for t in decoder.with_attention_and_source([free, code, source]))
    shift = np.stack([np.full((2, 16, 16), 0.05, "float32"), np.zeros((2, 16, 16), "float32")], axis=-1)
    np.testing.assert_allclose(moved, _numpy(FlowWarp(max_shift=1.0)([source, shift])), atol=1e-5)
    np.testing.assert_allclose(output, mask * colour + (1 - mask) * moved, atol=1e-6)
    assert type(build_models(ModelConfig(image_size=16, g_conv_dim=4, g_num_res_blocks=1, d_conv_dim=4,
                                         d_num_layers=2, depth_g_conv_dim=4, depth_g_num_res_blocks=1,
                                         depth_d_conv_dim=4, depth_d_num_layers=2, family="transfer",
                                         transfer_decoder="generator_warp"))["decoder"]) is TransferGeneratorWarpDecoder


def test_the_generator_decoder_also_reads_the_source_itself():
    # TransferDecoder reads the source only where its mask copies it; this one draws its colour from it too.
    decoder = TransferGeneratorDecoder(conv_dim=4, num_down=2, num_res_blocks=1, code_dim=10, free_channels=6)
    free, code, source = _decoder_inputs()
    colour = _numpy(decoder.with_attention([free, code, source])[2])
    assert np.abs(_numpy(decoder.with_attention([free, code, _image(seed=5)])[2]) - colour).max() > 1e-4


@pytest.mark.parametrize("decoder_class", [TransferDecoder, TransferGeneratorDecoder])
def test_condition_norms_put_the_code_after_every_norm_from_the_join_on(decoder_class):
    """`condition_norms=True`: zero-initialised ConditionalAffine after each norm the code reaches (the join, the
    residual blocks, the up-sampling; the generator decoder's stem and down-sampling too): with the plain decoder's
    weights copied both compute the same function; set weights make the code act through them."""
    plain = decoder_class(conv_dim=4, num_down=2, num_res_blocks=1, code_dim=10, free_channels=6)
    conditioned = decoder_class(conv_dim=4, num_down=2, num_res_blocks=1, code_dim=10, free_channels=6,
                                condition_norms=True)
    affines = sorted(layer.name for layer in conditioned.layers if layer.name.endswith("_condition"))
    assert affines == sorted(f"{layer.name}_condition" for layer in plain.layers if layer.name.endswith("norm")
                             or "_norm" in layer.name)
    assert "join_norm_condition" in affines and "up1_norm_condition" in affines
    for layer in plain.layers:
        if layer.weights:
            conditioned.get_layer(layer.name).set_weights(layer.get_weights())
    free, code, source = _decoder_inputs()
    np.testing.assert_allclose(_numpy(plain([free, code, source])), _numpy(conditioned([free, code, source])),
                               atol=1e-6)
    rng = np.random.default_rng(3)
    for layer in conditioned.layers:
        if layer.name.endswith("_condition"):
            layer.set_weights([rng.normal(0, 0.5, w.shape).astype("float32") for w in layer.get_weights()])
    assert np.abs(_numpy(plain([free, code, source])) - _numpy(conditioned([free, code, source]))).max() > 1e-3
    assert conditioned.get_config()["condition_norms"] is True


def test_the_model_config_picks_the_transfer_decoder():
    sizes = dict(image_size=16, g_conv_dim=4, g_num_res_blocks=1, d_conv_dim=4, d_num_layers=2,
                 depth_g_conv_dim=4, depth_g_num_res_blocks=1, depth_d_conv_dim=4, depth_d_num_layers=2)
    assert type(build_models(ModelConfig(**sizes, family="transfer"))["decoder"]) is TransferDecoder
    config = ModelConfig(**sizes, family="transfer", transfer_decoder="generator")
    assert ModelConfig.from_dict(config.to_dict()) == config
    assert type(build_models(config)["decoder"]) is TransferGeneratorDecoder
    with pytest.raises(ValueError, match="transfer_decoder applies to the transfer family"):
        ModelConfig(**sizes, transfer_decoder="generator")
    with pytest.raises(ValueError, match="transfer_decoder must be one of"):
        ModelConfig(**sizes, family="transfer", transfer_decoder="unet")
    # The encoder's trunks likewise.
    split = ModelConfig(**sizes, family="transfer", transfer_encoder="split")
    assert ModelConfig.from_dict(split.to_dict()) == split
    assert build_models(split)["encoder"].get_config()["trunks"] == "split"
    assert build_models(ModelConfig(**sizes, family="transfer"))["encoder"].get_config()["trunks"] == "shared"
    with pytest.raises(ValueError, match="transfer_encoder applies to the transfer family"):
        ModelConfig(**sizes, transfer_encoder="split")
    # The adversary's readout likewise: built from the config, recorded, refused outside the transfer family.
    assert build_models(ModelConfig(**sizes, family="transfer"))["adversary"].get_config()["readout"] == "global"
    grid = ModelConfig(**sizes, family="transfer", adversary_readout="grid")
    assert ModelConfig.from_dict(grid.to_dict()) == grid
    assert build_models(grid)["adversary"].get_config()["readout"] == "grid"
    with pytest.raises(ValueError, match="adversary_readout applies to the transfer family"):
        ModelConfig(**sizes, adversary_readout="grid")
    with pytest.raises(ValueError, match="adversary_readout must be one of"):
        ModelConfig(**sizes, family="transfer", adversary_readout="flat")


def test_encoder_and_decoder_compose_for_a_swap():
    encoder = TransferEncoder(conv_dim=4, num_down=2, num_res_blocks=0, code_dim=8)
    decoder = TransferDecoder(conv_dim=4, num_down=2, num_res_blocks=0, code_dim=8)
    a, b = _image(batch=1, seed=2), _image(batch=1, seed=3)
    code_a, free_a, _ = encoder(a)
    code_b, _, _ = encoder(b)
    a_with_b = _numpy(decoder([free_a, code_b, keras.ops.convert_to_tensor(a)]))
    assert a_with_b.shape == a.shape and np.all(np.abs(a_with_b) <= 1)


def test_an_explicit_code_is_the_predicted_action_units_and_survives_saving(tmp_path):
    encoder = TransferEncoder(conv_dim=4, num_down=2, num_res_blocks=1, code_dim=64, code="action_units")
    code, free, aus = (_numpy(t) for t in encoder(_image(batch=3)))
    assert code.shape == aus.shape == (3, 17)  # code_dim follows the AUs
    np.testing.assert_array_equal(code, aus)
    path = str(tmp_path / "encoder.keras")
    encoder.save(path)
    loaded = keras.saving.load_model(path, compile=False)
    assert loaded.get_config()["code"] == "action_units"
    np.testing.assert_allclose(_numpy(loaded(_image(batch=3))[0]), code, atol=1e-6)
    # The decoder takes it as any code of 17 entries.
    decoder = TransferDecoder(conv_dim=4, num_down=2, num_res_blocks=1, code_dim=17)
    assert _numpy(decoder([free, code, _image(batch=3)])).shape == (3, 16, 16, 3)
    with pytest.raises(ValueError, match="code must be one of"):
        TransferEncoder(code="pixels")


def test_a_guide_code_is_a_frozen_copy_of_the_au_guide_reading_the_face(tmp_path):
    """`code="guide"`: the code and the AU output are the sigmoid of the copied guide's logits, the copy is frozen
    (not among the trainable weights) and survives saving; a guide of another width, an encoder without a reader and
    split trunks are refused, naming what is wrong."""
    from expr3d.metrics.expression_classifier import build_classifier

    keras.utils.set_random_seed(3)
    guide = build_classifier(16, num_classes=17, width=4)
    encoder = TransferEncoder(conv_dim=4, num_down=2, num_res_blocks=1, code="guide", reader_width=4)
    trainable_before = len(encoder.trainable_weights)
    encoder.load_reader(guide)
    assert len(encoder.trainable_weights) < trainable_before
    assert not any("code_reader" in w.path for w in encoder.trainable_weights)
    image = _image(batch=3)
    code, free, aus = (_numpy(t) for t in encoder(image, training=True))  # frozen: its norms read as at inference
    expected = 1 / (1 + np.exp(-_numpy(guide(image, training=False))))
    np.testing.assert_allclose(code, expected, atol=1e-5)
    np.testing.assert_array_equal(code, aus)
    assert free.shape == (3, 4, 4, 16)
    path = str(tmp_path / "encoder.keras")
    encoder.save(path)
    loaded = keras.saving.load_model(path, compile=False)
    assert loaded.get_config()["code"] == "guide" and loaded.get_config()["reader_width"] == 4
    np.testing.assert_allclose(_numpy(loaded(image)[0]), code, atol=1e-5)
    with pytest.raises(ValueError, match=r"not the reader's network \(width 8, 17 AUs\).*--guide_width=8"):
        TransferEncoder(conv_dim=4, num_down=2, num_res_blocks=1, code="guide", reader_width=8).load_reader(guide)
    with pytest.raises(ValueError, match="only an encoder with code='guide' has a reader"):
        TransferEncoder(conv_dim=4, num_down=2, num_res_blocks=1).load_reader(guide)
    with pytest.raises(ValueError, match="trunks must be 'shared'"):
        TransferEncoder(conv_dim=4, num_down=2, num_res_blocks=1, code="guide", trunks="split")
    sizes = dict(image_size=16, g_conv_dim=4, g_num_res_blocks=1, d_conv_dim=4, d_num_layers=2,
                 depth_g_conv_dim=4, depth_g_num_res_blocks=1, depth_d_conv_dim=4, depth_d_num_layers=2)
    config = ModelConfig(**sizes, family="transfer", transfer_code="guide", guide_width=4)
    assert ModelConfig.from_dict(config.to_dict()) == config
    assert build_models(config)["encoder"].get_config()["reader_width"] == 4
    with pytest.raises(ValueError, match="transfer_encoder must be 'shared'"):
        ModelConfig(**sizes, family="transfer", transfer_code="guide", transfer_encoder="split")


def test_adversary_gives_per_au_bin_logits():
    adversary = AUAdversary(free_channels=6, conv_dim=4, num_layers=3, num_bins=4)
    logits = _numpy(adversary(np.zeros((3, 4, 4, 6), "float32")))
    assert logits.shape == (3, 17, 4) and logits.dtype == np.float32


def test_grid_adversary_reads_where_a_feature_sits_and_the_global_one_cannot():
    # The same feature at two places of the AU-free map (a mouth feature at the mouth, or at the brow): the global
    # mean of a convolution's output cannot tell them apart; the grid readout (the probe's 4 x 4 view) can.
    here, there = np.zeros((1, 16, 16, 6), "float32"), np.zeros((1, 16, 16, 6), "float32")
    here[0, 3:5, 3:5], there[0, 11:13, 11:13] = 1.0, 1.0
    keras.utils.set_random_seed(0)
    global_readout = AUAdversary(free_channels=6, conv_dim=4, num_layers=2, num_bins=3)
    grid_readout = AUAdversary(free_channels=6, conv_dim=4, num_layers=2, num_bins=3, readout="grid")
    maps = np.concatenate([here, there])
    by_global, by_grid = _numpy(global_readout(maps)), _numpy(grid_readout(maps))
    np.testing.assert_allclose(by_global[0], by_global[1], atol=1e-6)
    assert np.abs(by_grid[0] - by_grid[1]).max() > 1e-3
    # Any map size: 48 px faces give a 12 x 12 map, 6 x 6 after the strided convolution, not a multiple of 4.
    assert _numpy(grid_readout(np.zeros((2, 12, 12, 6), "float32"))).shape == (2, 17, 3)
    with pytest.raises(ValueError, match="readout must be one of"):
        AUAdversary(free_channels=6, readout="flatten")


@pytest.mark.parametrize("size", [16, 6, 5])
def test_grid_pool_is_the_area_mean_and_passes_gradients(size):
    import tensorflow as tf

    from expr3d.models.transfer import GridMeanPool

    maps = np.random.default_rng(size).normal(size=(2, size, size, 3)).astype("float32")
    expected = tf.image.resize(maps, (4, 4), method="area").numpy()
    np.testing.assert_allclose(_numpy(GridMeanPool(4)(maps)), expected, atol=1e-5)
    # The encoder trains through the adversary's readout: every pixel gets its share of the gradient
    # (TensorFlow's own ResizeArea has no gradient at all).
    variable = tf.Variable(maps)
    with tf.GradientTape() as tape:
        total = tf.reduce_sum(GridMeanPool(4)(variable))
    gradient = tape.gradient(total, variable).numpy()
    np.testing.assert_allclose(gradient, np.full_like(maps, (4 / size) ** 2), rtol=1e-5)


@pytest.mark.parametrize("build,field", [
    (lambda: TransferEncoder(code_dim=0), "code_dim"),
    (lambda: TransferDecoder(num_down=1.5), "num_down"),
    (lambda: AUAdversary(free_channels=8, num_bins=1), "num_bins"),
    (lambda: AUAdversary(free_channels=-1), "free_channels"),
])
def test_bad_sizes_name_the_field(build, field):
    with pytest.raises(ValueError, match=field):
        build()
