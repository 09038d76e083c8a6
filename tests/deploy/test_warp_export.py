"""A tiny run with the warp generator (`--generator=attention_warp`) through export: the SavedModel equals the Keras
model with its flow moving pixels, and TFLite converts the warp's gathers to builtin ops and matches through LiteRT."""
import os

import numpy as np
import pytest
import tensorflow as tf

from expr3d.deploy import tflite
from expr3d.models import AttentionWarpGenerator
from tests.deploy import fixtures

IMAGE_SIZE = fixtures.TINY["image_size"]


@pytest.fixture(scope="session")  # once per worker, however its tests are interleaved
def warp_export(tmp_path_factory):
    """A 4-step warp run exported in-process with the fp32 TFLite variant."""
    return fixtures.exported_run(tmp_path_factory, "warp_deploy", "attention_warp", ("fp32",))


@pytest.mark.slow
def test_the_served_generator_warps_as_the_keras_model(warp_export):
    g_rgb = warp_export["models"]["g_rgb"]
    assert isinstance(g_rgb, AttentionWarpGenerator)
    x = np.random.default_rng(0).uniform(-1, 1, (3, IMAGE_SIZE, IMAGE_SIZE, 3)).astype(np.float32)
    condition = np.eye(8, dtype=np.float32)[[0, 4, 7]]
    _, _, _, moved = (t.numpy() for t in g_rgb.with_attention_and_source([x, condition]))
    assert np.abs(moved - x).mean() > 0.05  # the flow moves pixels
    loaded = tf.saved_model.load(warp_export["version_dir"])
    got = loaded.signatures["generator"](image=tf.constant(x), condition=tf.constant(condition))["image"].numpy()
    np.testing.assert_allclose(got, g_rgb([x, condition], training=False).numpy(), atol=1e-5)


@pytest.mark.slow
def test_tflite_is_builtin_only_and_matches_the_saved_model(warp_export):
    path = os.path.join(warp_export["version_dir"], "tflite", tflite.file_name("fp32"))
    ok, ops = tflite.builtin_only(open(path, "rb").read())
    assert ok and "GATHER" in ops, ops  # the warp's bilinear taps
    images = tflite.images_from_records(warp_export["data_dir"], "test", IMAGE_SIZE, 8)
    conditions = tflite.conditions_for(len(images))
    expected = tflite.saved_model_generator(warp_export["version_dir"])(images, conditions)
    got = tflite.LiteGenerator(path)(images, conditions)
    assert tflite.compare(expected, got)["psnr_db"] >= 80.0
