"""A tiny run with the attention generator (`--generator=attention`) through export: the SavedModel equals the Keras
model, TFLite converts to builtin ops and runs through LiteRT, and `lite` / `synthesize` accept it."""
import json
import os

import numpy as np
import pytest
import tensorflow as tf

from expr3d import export
from expr3d.deploy import inference, signatures, tflite
from expr3d.imaging.photos import read_image, write_image
from expr3d.models import AttentionGenerator
from tests.deploy import fixtures
from tests.deploy.conftest import run_clis

IMAGE_SIZE = fixtures.TINY["image_size"]


@pytest.fixture(scope="session")  # once per worker, however its tests are interleaved
def attention_export(tmp_path_factory):
    """A 4-step attention run exported in-process with the fp32 and int8 TFLite variants."""
    return fixtures.exported_run(tmp_path_factory, "attention_deploy", "attention", ("fp32", "int8"))


@pytest.mark.slow
def test_the_run_holds_an_attention_generator_and_its_inference_clone_matches(attention_export):
    g_rgb = attention_export["models"]["g_rgb"]
    assert isinstance(g_rgb, AttentionGenerator)
    info = json.loads(open(os.path.join(attention_export["version_dir"], export.EXPORT_INFO)).read())
    assert info["model_config"]["generator"] == "attention"
    assert 0 <= info["inference_clone_max_abs_error"]["g_rgb"] < inference.CLONE_TOLERANCE
    clone, _ = inference.inference_clone(g_rgb)
    # the test run's generator has no residual blocks (each would add 2 instance norms)
    assert inference.count_replaceable(clone) == {"group_norm": 0, "instance_norm": 5, "conv_transpose": 0,
                                                 "subpixel": 2}


@pytest.mark.slow
def test_saved_model_signatures_equal_the_keras_model(attention_export):
    g_rgb = attention_export["models"]["g_rgb"]
    loaded = tf.saved_model.load(attention_export["version_dir"])
    assert set(loaded.signatures) == set(signatures.SIGNATURE_KEYS)
    x = np.random.default_rng(0).uniform(-1, 1, (3, IMAGE_SIZE, IMAGE_SIZE, 3)).astype(np.float32)
    condition = np.eye(8, dtype=np.float32)[[0, 4, 7]]
    got = loaded.signatures["generator"](image=tf.constant(x), condition=tf.constant(condition))["image"].numpy()
    expected = g_rgb([x, condition], training=False).numpy()
    np.testing.assert_allclose(got, expected, atol=1e-5)
    # The attention is in the served function: the output keeps (1 - mask) of the source.
    _, mask, colour = (t.numpy() for t in g_rgb.with_attention([x, condition]))
    np.testing.assert_allclose(got, mask * colour + (1 - mask) * x, atol=1e-5)

    images = np.stack([fixtures.draw_face(40, seed=s) for s in (1, 2)])
    served = loaded.signatures["serving_default"](images=tf.constant(images), expressions=tf.constant([1, 6]))
    model_input = signatures.to_model_input(images, IMAGE_SIZE)
    expected = signatures.to_uint8(g_rgb([model_input, tf.one_hot([1, 6], 8)], training=False), 40, 40).numpy()
    assert np.abs(served["images"].numpy().astype(int) - expected).max() <= 1


@pytest.mark.slow
@pytest.mark.parametrize("variant,min_psnr_db", [("fp32", 80.0), ("int8", 30.0)])
def test_tflite_is_builtin_only_and_matches_the_saved_model(attention_export, variant, min_psnr_db):
    path = os.path.join(attention_export["version_dir"], "tflite", tflite.file_name(variant))
    ok, ops = tflite.builtin_only(open(path, "rb").read())
    assert ok and "LOGISTIC" in ops, ops  # the mask's sigmoid
    images = tflite.images_from_records(attention_export["data_dir"], "test", IMAGE_SIZE, 8)
    conditions = tflite.conditions_for(len(images))
    expected = tflite.saved_model_generator(attention_export["version_dir"])(images, conditions)
    got = tflite.LiteGenerator(path)(images, conditions)
    assert tflite.compare(expected, got)["psnr_db"] >= min_psnr_db


@pytest.mark.slow
def test_lite_and_synthesize_accept_the_attention_export(attention_export):
    work = attention_export["root"] / "clis"
    photos = work / "photos"
    os.makedirs(photos)
    photo = str(photos / "face.png")
    write_image(photo, fixtures.rendered_face(identity=4, size=192))
    model = os.path.join(attention_export["version_dir"], "tflite", tflite.file_name("int8"))
    lite, synthesize = run_clis([
        ["-m", "expr3d.lite", f"--model={model}", f"--image={photo}", "--expression=happy",
         f"--output={work / 'lite' / 'happy.png'}"],
        ["-m", "expr3d.synthesize", f"--saved_model={attention_export['base']}", f"--images={photos}",
         "--expressions=happy,sad", f"--output={work / 'synthesized'}"],
    ])
    assert lite.returncode == 0, lite.stderr[-3000:]
    assert read_image(str(work / "lite" / "happy.png")).shape == (192, 192, 3)
    assert synthesize.returncode == 0, synthesize.stderr[-3000:]
    summary = json.loads((work / "synthesized" / "summary.json").read_text())
    assert [os.path.basename(p["image"]) for p in summary["processed"]] == ["face.png"]
