"""Builds the four networks of the method from a `ModelConfig`."""

from expr3d.models.attention_generator import AttentionGenerator, AttentionUNetGenerator
from expr3d.models.config import ModelConfig
from expr3d.models.depth_translator import DepthTranslator
from expr3d.models.discriminator import PatchCritic
from expr3d.models.generator import StarGANGenerator

MODEL_KEYS = ("g_rgb", "d_rgb", "g_depth", "d_depth")
# G_rgb's class for each `ModelConfig.generator`.
GENERATOR_CLASSES = {"stargan": StarGANGenerator, "attention": AttentionGenerator,
                     "attention_unet": AttentionUNetGenerator}


def build_models(config=None):
    """Returns `{"g_rgb", "d_rgb", "g_depth", "d_depth"}`, all built.

    - `g_rgb`: `StarGANGenerator(cond_dim=num_classes)`, or `AttentionGenerator` when
      `config.generator == "attention"` (`AttentionUNetGenerator` for "attention_unet"); input `[image, one-hot target]`.
    - `d_rgb`: `PatchCritic` on RGB faces with `num_classes` expression logits.
    - `g_depth`: `DepthTranslator` (RGB <-> 3-channel geometry map).
    - `d_depth`: `PatchCritic` on 3-channel geometry maps with `num_classes`
      expression logits.

    Layers take the global dtype policy at call time, so set
    `keras.mixed_precision.set_global_policy` before calling this (and build
    inside `strategy.scope()` when distributing).

    Every network is initialised with `config.init` ("keras" or "stargan",
    `expr3d.models.initializers`).

    Args:
        config: a `ModelConfig` (defaults: StarGAN's sizes).
    """
    config = config or ModelConfig()
    if not isinstance(config, ModelConfig):
        raise TypeError(f"build_models expects a ModelConfig; got {type(config).__name__}")
    return {
        "g_rgb": build_generator(config),
        "d_rgb": PatchCritic(
            image_size=config.image_size,
            num_classes=config.num_classes,
            conv_dim=config.d_conv_dim,
            num_layers=config.d_num_layers,
            init=config.init,
            name="d_rgb",
        ),
        "g_depth": DepthTranslator(
            conv_dim=config.depth_g_conv_dim,
            num_res_blocks=config.depth_g_num_res_blocks,
            num_down=config.GENERATOR_DOWNSAMPLING,
            init=config.init,
            name="g_depth",
        ),
        "d_depth": PatchCritic(
            image_size=config.image_size,
            num_classes=config.num_classes,
            conv_dim=config.depth_d_conv_dim,
            num_layers=config.depth_d_num_layers,
            init=config.init,
            name="d_depth",
        ),
    }


def build_generator(config, name="g_rgb"):
    """G_rgb alone (`build_models`' "g_rgb"; e.g. a second one holding the moving average of the trained one's
    weights)."""
    return GENERATOR_CLASSES[config.generator](
        cond_dim=config.num_classes,
        conv_dim=config.g_conv_dim,
        num_res_blocks=config.g_num_res_blocks,
        num_down=config.GENERATOR_DOWNSAMPLING,
        init=config.init,
        name=name,
    )
