"""The networks of the depth-guided StarGAN (and their config) and of the exemplar expression transfer."""

from expr3d.models.action_unit_edit_generator import ActionUnitEditCombine, ActionUnitEditGenerator
from expr3d.models.attention_generator import AttentionGenerator, AttentionUNetGenerator, AttentionWarpGenerator
from expr3d.models.blocks import AttentionCombine, ConditionConcat, FlowWarp, residual_block
from expr3d.models.builder import MODEL_KEYS, TRANSFER_KEYS, build_generator, build_models
from expr3d.models.config import ModelConfig
from expr3d.models.depth_translator import TO_GEOMETRY, TO_RGB, DepthTranslator
from expr3d.models.discriminator import PatchCritic
from expr3d.models.generator import StarGANGenerator
from expr3d.models.perceptual import VGG19Features, keras_cache_candidates, resolve_vgg19_weights
from expr3d.models.transfer import (AUAdversary, TransferDecoder, TransferEncoder, TransferGeneratorDecoder,
                                   TransferGeneratorWarpDecoder)

__all__ = [
    "ActionUnitEditCombine",
    "ActionUnitEditGenerator",
    "AUAdversary",
    "AttentionCombine",
    "FlowWarp",
    "AttentionGenerator",
    "AttentionUNetGenerator",
    "AttentionWarpGenerator",
    "ConditionConcat",
    "DepthTranslator",
    "MODEL_KEYS",
    "ModelConfig",
    "PatchCritic",
    "StarGANGenerator",
    "TO_GEOMETRY",
    "TO_RGB",
    "TRANSFER_KEYS",
    "TransferDecoder",
    "TransferGeneratorDecoder",
    "TransferGeneratorWarpDecoder",
    "TransferEncoder",
    "VGG19Features",
    "build_generator",
    "build_models",
    "keras_cache_candidates",
    "residual_block",
    "resolve_vgg19_weights",
]
