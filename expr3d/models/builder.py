"""Builds the networks of a model family from a `ModelConfig`."""

from expr3d.models.action_unit_edit_generator import ActionUnitEditGenerator
from expr3d.models.attention_generator import AttentionGenerator, AttentionUNetGenerator, AttentionWarpGenerator
from expr3d.models.config import ModelConfig
from expr3d.models.depth_translator import DepthTranslator
from expr3d.models.discriminator import PatchCritic
from expr3d.labels import NUM_ACTION_UNITS
from expr3d.models.generator import StarGANGenerator
from expr3d.models.transfer import DECODERS, AUAdversary, TransferEncoder

MODEL_KEYS = ("g_rgb", "d_rgb", "g_depth", "d_depth")
# The transfer family's networks: G_depth and D_depth (expression classes) are stage 1's, as the StarGAN's;
# d_depth_au is the transfer stage's critic of the swapped faces' estimated geometry, with an AU head.
TRANSFER_KEYS = ("encoder", "decoder", "adversary", "d_rgb", "d_swap", "g_depth", "d_depth", "d_depth_au")
# G_rgb's class for each `ModelConfig.generator`.
GENERATOR_CLASSES = {"stargan": StarGANGenerator, "attention": AttentionGenerator,
                     "attention_unet": AttentionUNetGenerator, "action_unit_edit": ActionUnitEditGenerator,
                     "attention_warp": AttentionWarpGenerator}


def build_models(config=None):
    """Returns `{"g_rgb", "d_rgb", "g_depth", "d_depth"}`, all built.

    - `g_rgb`: `StarGANGenerator(cond_dim=condition_dim)`, or `AttentionGenerator` when
      `config.generator == "attention"` (`AttentionUNetGenerator` for "attention_unet", `ActionUnitEditGenerator` for
      "action_unit_edit"); input `[image, one-hot target]`
      (with `config.condition == "action_units"`: `[image, AU intensities]`).
    - `d_rgb`: `PatchCritic` on RGB faces with `critic_dim` logits (expression classes, or AU logits; with
      `critic_fake_class` one more, "generated").
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
    if config.family == "transfer":
        return build_transfer_models(config)
    return {
        "g_rgb": build_generator(config),
        "d_rgb": PatchCritic(
            image_size=config.image_size,
            num_classes=config.critic_dim,
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
    # The edit generator's reader is its run's AU guide (copied at the adversarial stage's start).
    reader = {"reader_width": config.guide_width} if config.generator == "action_unit_edit" else {}
    return GENERATOR_CLASSES[config.generator](
        cond_dim=config.condition_dim,
        conv_dim=config.g_conv_dim,
        num_res_blocks=config.g_num_res_blocks,
        num_down=config.GENERATOR_DOWNSAMPLING,
        init=config.init,
        condition_norms=config.condition_norms,
        name=name,
        **reader,
    )


def build_transfer_models(config):
    """The transfer family's networks (`TRANSFER_KEYS`), for `config.family == "transfer"`.

    - `encoder` / `decoder`: `TransferEncoder` / `TransferDecoder` of width `g_conv_dim`, `g_num_res_blocks`
      residual blocks each, code `code_dim` (`transfer_code` "action_units": the 17 AU intensities; "guide": read by
      a copy of the AU guide of width `guide_width`); the decoder
      `TransferGeneratorDecoder` with `transfer_decoder` "generator" (`TransferGeneratorWarpDecoder`:
      "generator_warp"); the encoder's AU-free map on a trunk of its own with `transfer_encoder` "split".
    - `adversary`: `AUAdversary` on the AU-free map (`au_bins` bins per AU), width `d_conv_dim`.
    - `d_rgb`: `PatchCritic` on faces whose `cls` head gives the 17 AU logits; `d_swap`: the swap-consistency
      critic (`PatchCritic`, one unused class).
    - `g_depth`, `d_depth`: as `build_models`' (stage 1 pre-trains them); `d_depth_au`: `PatchCritic` on geometry
      with the 17 AU logits (the depth guidance of the swapped faces).
    """
    down = config.GENERATOR_DOWNSAMPLING
    explicit = config.transfer_code != "learned"
    sizes = dict(conv_dim=config.g_conv_dim, num_down=down, num_res_blocks=config.g_num_res_blocks,
                 code_dim=NUM_ACTION_UNITS if explicit else config.code_dim)
    encoder = TransferEncoder(**sizes, code=config.transfer_code, trunks=config.transfer_encoder,
                              reader_width=config.guide_width, name="encoder")

    def critic(name, num_classes, conv_dim, num_layers):
        return PatchCritic(image_size=config.image_size, num_classes=num_classes, conv_dim=conv_dim,
                           num_layers=num_layers, init=config.init, name=name)

    return {
        "encoder": encoder,
        "decoder": DECODERS[config.transfer_decoder](**sizes, condition_norms=config.condition_norms, name="decoder"),
        "adversary": AUAdversary(free_channels=config.g_conv_dim * 2**down, conv_dim=config.d_conv_dim,
                                 num_bins=config.au_bins, readout=config.adversary_readout, name="adversary"),
        "d_rgb": critic("d_rgb", NUM_ACTION_UNITS, config.d_conv_dim, config.d_num_layers),
        "d_swap": critic("d_swap", 1, config.d_conv_dim, config.d_num_layers),
        "g_depth": DepthTranslator(conv_dim=config.depth_g_conv_dim, num_res_blocks=config.depth_g_num_res_blocks,
                                   num_down=down, init=config.init, name="g_depth"),
        "d_depth": critic("d_depth", config.num_classes, config.depth_d_conv_dim, config.depth_d_num_layers),
        "d_depth_au": critic("d_depth_au", NUM_ACTION_UNITS, config.depth_d_conv_dim, config.depth_d_num_layers),
    }
