"""TFLite variants: builtin ops only, parity with the SavedModel through the LiteRT interpreter, reports and sizes."""
import json
import os

import numpy as np
import pytest

from expr3d.deploy import tflite

# Loose enough for a 4-step tiny model, tight enough to catch a wrong conversion (a broken model is < 15 dB).
MIN_PSNR_DB = {"fp32": 80.0, "fp16": 50.0, "int8": 30.0, "int8_full": 22.0}


@pytest.fixture(scope="module")
def reference(exported):
    images = tflite.images_from_records(exported["data_dir"], "test", 32, 8)
    conditions = tflite.conditions_for(len(images))
    outputs = tflite.saved_model_generator(os.path.join(exported["version_dir"]))(images, conditions)
    return images, conditions, outputs


@pytest.mark.slow
@pytest.mark.parametrize("variant", tflite.VARIANTS)
def test_variant_is_builtin_only_and_matches_the_saved_model(exported, reference, variant):
    directory = os.path.join(exported["version_dir"], "tflite")
    path = os.path.join(directory, tflite.file_name(variant))
    report = json.loads(open(path[:-len(".tflite")] + ".json").read())
    assert report["size_bytes"] == os.path.getsize(path)
    assert report["builtin_ops_only"] and not any(op.startswith("Flex") for op in report["ops"])
    # The inference clone's graph: 4-D instance norm and sub-pixel up-sampling, no run-time-shaped TRANSPOSE_CONV.
    assert "CONV_2D" in report["ops"] and "DEPTH_TO_SPACE" in report["ops"]
    assert "TRANSPOSE_CONV" not in report["ops"]
    assert "test" in report["parity"]["source"], "parity is measured on the real test split"

    images, conditions, expected = reference
    generator = tflite.LiteGenerator(path)
    assert generator.image_size == 32
    got = generator(images, conditions)
    figures = tflite.compare(expected, got)
    assert figures["psnr_db"] >= MIN_PSNR_DB[variant], (variant, figures)
    # The stored report describes the same model on the same images.
    assert report["parity"]["psnr_db"] == pytest.approx(figures["psnr_db"], rel=1e-3, abs=1e-3) or np.isinf(
        figures["psnr_db"])
    ok, ops = tflite.builtin_only(open(path, "rb").read())
    assert ok and "DELEGATE" not in ops
    if variant == "int8_full":
        assert "QUANTIZE" in ops and "train" in report["representative_set"]
    # A batch of one (the phone's case) runs too: the batch dimension is dynamic.
    np.testing.assert_allclose(generator(images[:1], conditions[:1]), got[:1], atol=1e-5)


@pytest.mark.slow
def test_sizes_shrink_with_quantisation(exported):
    info = json.loads(open(os.path.join(exported["version_dir"], "expr3d_export.json")).read())["tflite"]
    sizes = {variant: info[variant]["size_bytes"] for variant in tflite.VARIANTS}
    assert sizes["fp16"] < 0.7 * sizes["fp32"] and sizes["int8"] < 0.5 * sizes["fp32"]


def test_parse_variants_and_compare():
    assert tflite.parse_variants("fp16, int8") == ("fp16", "int8")
    assert tflite.parse_variants("all") == tflite.VARIANTS
    assert tflite.parse_variants("") == ()
    with pytest.raises(ValueError, match="int4"):
        tflite.parse_variants("fp32,int4")
    a = np.zeros((1, 4, 4, 3), np.float32)
    b = a.copy()
    b[0, 0, 0, 0] = 0.2
    figures = tflite.compare(a, b)
    assert figures["max_abs_error"] == pytest.approx(0.2) and figures["max_abs_error_uint8"] == 25
    assert figures["psnr_db"] == pytest.approx(10 * np.log10(1 / (0.01 / 48)), rel=1e-4)
    assert tflite.compare(a, a)["psnr_db"] == float("inf")


def test_lite_generator_rejects_a_non_model(tmp_path):
    bogus = tmp_path / "x.tflite"
    bogus.write_bytes(b"not a flatbuffer")
    with pytest.raises(ValueError, match="x.tflite"):
        tflite.LiteGenerator(str(bogus))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        tflite.LiteGenerator(str(tmp_path / "missing.tflite"))
