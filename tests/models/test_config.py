import dataclasses
import json

import pytest

from expr3d.models import ModelConfig


def test_defaults_are_stargans():
    config = ModelConfig()
    assert (config.image_size, config.num_classes, config.g_conv_dim, config.g_num_res_blocks) == (128, 8, 64, 6)
    assert (config.d_conv_dim, config.d_num_layers) == (64, 6)
    assert (config.depth_g_conv_dim, config.depth_g_num_res_blocks) == (64, 6)
    assert (config.depth_d_conv_dim, config.depth_d_num_layers) == (64, 6)


def test_dict_round_trip_through_json():
    config = ModelConfig(image_size=32, g_conv_dim=8, g_num_res_blocks=1, d_num_layers=3, depth_d_num_layers=2)
    values = json.loads(json.dumps(config.to_dict()))
    assert ModelConfig.from_dict(values) == config
    assert set(values) == {f.name for f in dataclasses.fields(ModelConfig)}


def test_unknown_key_is_named():
    with pytest.raises(ValueError, match="g_width"):
        ModelConfig.from_dict({"g_width": 3})


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"image_size": 32}, "d_num_layers=6 needs image_size divisible by 64; got image_size=32"),
        ({"image_size": 32, "d_num_layers": 3}, "depth_d_num_layers=6 needs image_size divisible by 64"),
        ({"image_size": 66, "d_num_layers": 1, "depth_d_num_layers": 1}, "image_size must be divisible by 4"),
        ({"num_classes": 0}, "num_classes"),
        ({"g_conv_dim": 8.0}, "g_conv_dim"),
        ({"depth_g_num_res_blocks": -1}, "depth_g_num_res_blocks"),
    ],
)
def test_invalid_values_name_the_field(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ModelConfig(**kwargs)


def test_zero_residual_blocks_allowed():
    assert ModelConfig(g_num_res_blocks=0).g_num_res_blocks == 0
