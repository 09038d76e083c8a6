"""The per-model harness (tests/models/harness.py) applied to every layer and model of expr3d.models, at tiny sizes."""
import importlib
import inspect
import pkgutil

import keras
import numpy as np
import pytest

import expr3d.models
from expr3d.models import (AUAdversary, ActionUnitEditCombine, ActionUnitEditGenerator, AttentionCombine,
                           AttentionGenerator, AttentionUNetGenerator, AttentionWarpGenerator, ConditionConcat,
                           DepthTranslator, FlowWarp, PatchCritic, StarGANGenerator, TransferDecoder, TransferEncoder,
                           TransferGeneratorDecoder, TransferGeneratorWarpDecoder, VGG19Features)
from expr3d.models.action_unit_edit_generator import ActionUnitChange
from expr3d.models.blocks import ConditionalAffine
from expr3d.models.perceptual import CaffePreprocess
from expr3d.models.transfer import GridMeanPool
from tests.models import harness


def _image(batch=2, size=8, channels=3, seed=0):
    return np.random.default_rng(seed).uniform(-1, 1, (batch, size, size, channels)).astype("float32")


def _one_hot(labels, depth):
    return np.eye(depth, dtype="float32")[labels]


# name: (build, inputs, output dtype under mixed_float16). The networks promise float32 outputs under any policy
# (losses and images stay exact); the bare layers and the VGG features compute in the policy's float16.
CASES = {
    "StarGANGenerator": (lambda: StarGANGenerator(cond_dim=3, conv_dim=4, num_res_blocks=1, num_down=1, name="g"),
                         lambda: [_image(), _one_hot([0, 2], 3)], "float32"),
    "StarGANGenerator-stargan-init": (
        lambda: StarGANGenerator(cond_dim=3, conv_dim=4, num_res_blocks=0, num_down=1, init="stargan"),
        lambda: [_image(), _one_hot([1, 2], 3)], "float32"),
    "AttentionGenerator": (lambda: AttentionGenerator(cond_dim=3, conv_dim=4, num_res_blocks=1, num_down=1),
                           lambda: [_image(), _one_hot([2, 0], 3)], "float32"),
    "AttentionGenerator-condition-norms": (
        lambda: AttentionGenerator(cond_dim=3, conv_dim=4, num_res_blocks=1, num_down=1, condition_norms=True),
        lambda: [_image(), _one_hot([2, 0], 3)], "float32"),
    "ActionUnitEditGenerator": (
        lambda: ActionUnitEditGenerator(cond_dim=3, conv_dim=4, num_res_blocks=1, num_down=1, condition_norms=True,
                                        reader_width=2),
        lambda: [_image(size=16), (_image(size=1, channels=3)[:, 0, 0] + 1) / 2], "float32"),
    "ActionUnitEditCombine": (lambda: ActionUnitEditCombine(),
                              lambda: [_image(size=4), _image(size=4, channels=6, seed=1),
                                       _one_hot([1, 0], 2), _one_hot([0, 0], 2)], "float32"),
    "ActionUnitChange": (lambda: ActionUnitChange(), lambda: [_one_hot([1, 0], 3), _one_hot([2, 2], 3)],
                         "float16"),
    "ConditionalAffine": (lambda: ConditionalAffine(), lambda: [_image(size=4, channels=5), _one_hot([1, 0], 3)],
                          "float16"),
    "AttentionUNetGenerator": (lambda: AttentionUNetGenerator(cond_dim=3, conv_dim=4, num_res_blocks=1, num_down=1),
                               lambda: [_image(), _one_hot([2, 0], 3)], "float32"),
    "AttentionWarpGenerator": (lambda: AttentionWarpGenerator(cond_dim=3, conv_dim=4, num_res_blocks=1, num_down=1),
                               lambda: [_image(), _one_hot([2, 0], 3)], "float32"),
    "FlowWarp": (lambda: FlowWarp(max_shift=0.2), lambda: [_image(size=4), _image(size=4, channels=2, seed=1)],
                 "float16"),
    "DepthTranslator": (lambda: DepthTranslator(conv_dim=4, num_res_blocks=1, num_down=1, name="g_depth"),
                        lambda: [_image(), _one_hot([0, 1], 2)], "float32"),
    "PatchCritic": (lambda: PatchCritic(8, 3, conv_dim=4, num_layers=2, name="d_rgb"), lambda: _image(), "float32"),
    "PatchCritic-geometry": (lambda: PatchCritic(8, 2, conv_dim=4, num_layers=3, input_channels=1),
                             lambda: _image(channels=1), "float32"),
    "VGG19Features": (lambda: VGG19Features(weights=None, layers=("block1_conv1", "block1_conv2")),
                      lambda: _image(), "float16"),
    "ConditionConcat": (lambda: ConditionConcat(name="concat"), lambda: [_image(size=4), _one_hot([1, 0], 3)],
                        "float16"),
    "AttentionCombine": (lambda: AttentionCombine(),
                         lambda: [_image(size=4), _image(size=4, seed=1), (_image(size=4, channels=1) + 1) / 2],
                         "float16"),
    "CaffePreprocess": (lambda: CaffePreprocess(), lambda: _image(size=4), "float16"),
    "TransferEncoder": (lambda: TransferEncoder(conv_dim=4, num_down=1, num_res_blocks=1, code_dim=6, name="encoder"),
                        lambda: _image(), "float32"),
    "TransferEncoder-split": (
        lambda: TransferEncoder(conv_dim=4, num_down=1, num_res_blocks=1, code_dim=6, trunks="split", name="encoder"),
        lambda: _image(), "float32"),
    "TransferEncoder-guide": (
        lambda: TransferEncoder(conv_dim=4, num_down=1, num_res_blocks=1, code="guide", reader_width=4, name="encoder"),
        lambda: _image(), "float32"),
    "TransferDecoder": (lambda: TransferDecoder(conv_dim=4, num_down=1, num_res_blocks=1, code_dim=6),
                        lambda: [_image(size=4, channels=8), _image(size=1, channels=6)[:, 0, 0], _image()],
                        "float32"),
    "TransferDecoder-condition-norms": (
        lambda: TransferDecoder(conv_dim=4, num_down=1, num_res_blocks=1, code_dim=6, condition_norms=True),
        lambda: [_image(size=4, channels=8), _image(size=1, channels=6)[:, 0, 0], _image()], "float32"),
    "TransferGeneratorDecoder-condition-norms": (
        lambda: TransferGeneratorDecoder(conv_dim=4, num_down=1, num_res_blocks=1, code_dim=6, condition_norms=True),
        lambda: [_image(size=4, channels=8), _image(size=1, channels=6)[:, 0, 0], _image()], "float32"),
    "TransferGeneratorDecoder": (lambda: TransferGeneratorDecoder(conv_dim=4, num_down=1, num_res_blocks=1, code_dim=6),
                                 lambda: [_image(size=4, channels=8), _image(size=1, channels=6)[:, 0, 0], _image()],
                                 "float32"),
    "TransferGeneratorWarpDecoder": (
        lambda: TransferGeneratorWarpDecoder(conv_dim=4, num_down=1, num_res_blocks=1, code_dim=6),
        lambda: [_image(size=4, channels=8), _image(size=1, channels=6)[:, 0, 0], _image()], "float32"),
    "AUAdversary": (lambda: AUAdversary(free_channels=8, conv_dim=4, num_bins=3), lambda: _image(size=4, channels=8),
                    "float32"),
    "AUAdversary-grid": (lambda: AUAdversary(free_channels=8, conv_dim=4, num_bins=3, readout="grid"),
                         lambda: _image(size=6, channels=8), "float32"),
    "GridMeanPool": (lambda: GridMeanPool(2), lambda: _image(size=6, channels=3), "float16"),
}


# VGG19Features builds the whole VGG19 before slicing it (about 4 s): full suite only.
SLOW_CASES = {"VGG19Features"}


@pytest.mark.parametrize("name", [pytest.param(name, marks=pytest.mark.slow) if name in SLOW_CASES else name
                                  for name in sorted(CASES)])
def test_config_keras_file_and_mixed_precision(name, tmp_path):
    build, inputs, mixed_float16_dtype = CASES[name]
    harness.run_all_checks(build, inputs(), tmp_path, mixed_float16_dtype)


def test_every_layer_and_model_of_the_package_has_a_case():
    """A new network in expr3d.models fails here until it has a harness case."""
    modules = [importlib.import_module(f"expr3d.models.{info.name}") for info in pkgutil.iter_modules(
        expr3d.models.__path__)]
    classes = {obj.__name__ for module in modules for _, obj in inspect.getmembers(module, inspect.isclass)
               if issubclass(obj, keras.layers.Layer) and obj.__module__ == module.__name__}
    covered = {name.split("-")[0] for name in CASES}
    assert classes <= covered, sorted(classes - covered)
    assert classes >= {"StarGANGenerator", "AttentionGenerator", "DepthTranslator", "PatchCritic", "ConditionConcat",
                       "AttentionCombine"}
