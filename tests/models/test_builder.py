import numpy as np
import pytest

from expr3d.models import MODEL_KEYS, DepthTranslator, ModelConfig, PatchCritic, StarGANGenerator, build_models


@pytest.mark.parametrize(
    "config",
    [
        ModelConfig(image_size=32, g_conv_dim=8, g_num_res_blocks=1, d_conv_dim=8, d_num_layers=3,
                    depth_g_conv_dim=4, depth_g_num_res_blocks=2, depth_d_conv_dim=4, depth_d_num_layers=2),
        ModelConfig(image_size=16, num_classes=3, g_conv_dim=4, g_num_res_blocks=0, d_conv_dim=4, d_num_layers=4,
                    depth_g_conv_dim=4, depth_g_num_res_blocks=1, depth_d_conv_dim=4, depth_d_num_layers=4),
    ],
)
def test_build_models_gives_four_built_networks(config):
    models = build_models(config)
    assert tuple(models) == MODEL_KEYS
    assert type(models["g_rgb"]) is StarGANGenerator and models["g_rgb"].cond_dim == config.num_classes
    assert type(models["g_depth"]) is DepthTranslator
    assert type(models["d_rgb"]) is PatchCritic and type(models["d_depth"]) is PatchCritic
    for key, model in models.items():
        assert model.built and model.count_params() > 0, key
        assert model.name == key
    assert models["g_rgb"].conv_dim == config.g_conv_dim
    assert models["g_depth"].conv_dim == config.depth_g_conv_dim
    assert models["d_rgb"].num_layers == config.d_num_layers
    assert models["d_depth"].num_layers == config.depth_d_num_layers

    size, c = config.image_size, config.num_classes
    image = np.zeros((2, size, size, 3), "float32")
    target = np.eye(c, dtype="float32")[[0, c - 1]]
    fake = models["g_rgb"]([image, target])
    geometry = models["g_depth"].to_geometry(fake)
    src, cls = models["d_rgb"](fake)
    depth_src, depth_cls = models["d_depth"](geometry)
    patch, depth_patch = size // 2**config.d_num_layers, size // 2**config.depth_d_num_layers
    assert tuple(src.shape) == (2, patch, patch, 1) and tuple(cls.shape) == (2, c)
    assert tuple(depth_src.shape) == (2, depth_patch, depth_patch, 1) and tuple(depth_cls.shape) == (2, c)


def test_rejects_non_config():
    with pytest.raises(TypeError, match="ModelConfig"):
        build_models({"image_size": 32})
