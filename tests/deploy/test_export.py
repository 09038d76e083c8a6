"""expr3d.export: TF Serving layout, every signature reloaded in a fresh process vs the Keras models, saved_model_cli,
invalid inputs, version safety."""
import json
import os
import textwrap

import numpy as np
import pytest
import tensorflow as tf

from expr3d import export
from expr3d.deploy import signatures
from expr3d.labels import EXPRESSIONS
from tests.deploy import fixtures

# Runs in a fresh interpreter that imports only TensorFlow and numpy: the SavedModel must stand on its own, as in
# TF Serving. It runs every signature on the inputs in inputs.npz, then every invalid request, and saves the results.
FRESH_PROCESS = textwrap.dedent('''
    import json, sys
    import numpy as np
    import tensorflow as tf

    version_dir, inputs_path, out_path, errors_path = sys.argv[1:5]
    model = tf.saved_model.load(version_dir)
    sig = model.signatures
    data = np.load(inputs_path, allow_pickle=False)
    out = {}
    r = sig["serving_default"](images=tf.constant(data["images"]), expressions=tf.constant(data["ids"]))
    out["serving_default/images"] = r["images"].numpy()
    r = sig["serving_default"](images=tf.constant(data["images"]), expressions=tf.constant(5))
    out["serving_default_scalar/images"] = r["images"].numpy()
    encoded = [bytes(data["png_a"]), bytes(data["jpeg_b"])]
    r = sig["translate_encoded"](image_bytes=tf.constant(encoded), expressions=tf.constant(["Happy", "angry"]))
    for i, png in enumerate(r["image_bytes"].numpy()):
        out[f"translate_encoded/{i}"] = tf.io.decode_png(png).numpy()
    r = sig["estimate_depth"](images=tf.constant(data["images"]))
    out["estimate_depth/depth"] = r["depth"].numpy()
    out["estimate_depth/normals"] = r["normals"].numpy()
    r = sig["translate_all"](images=tf.constant(data["images"]))
    out["translate_all/images"] = r["images"].numpy()
    out["translate_all/expressions"] = r["expressions"].numpy().astype(str)
    r = sig["generator"](image=tf.constant(data["x"]), condition=tf.constant(data["condition"]))
    out["generator/image"] = r["image"].numpy()
    r = sig["generator"](image=tf.constant(data["x"]), condition=tf.constant(data["probabilities"]))
    out["generator_probabilities/image"] = r["image"].numpy()
    np.savez(out_path, **out)

    good = data["images"]
    png = bytes(data["png_a"])
    cases = {
        "rank3": ("serving_default", dict(images=good[0], expressions=[1])),
        "rank5": ("serving_default", dict(images=good[None], expressions=[1])),
        "channels4": ("serving_default", dict(images=np.zeros((1, 8, 8, 4), np.uint8), expressions=[1])),
        "gray": ("serving_default", dict(images=np.zeros((1, 8, 8, 1), np.uint8), expressions=[1])),
        "empty": ("serving_default", dict(images=np.zeros((0, 8, 8, 3), np.uint8), expressions=[1])),
        "zero_height": ("serving_default", dict(images=np.zeros((1, 0, 8, 3), np.uint8), expressions=[1])),
        "id_too_big": ("serving_default", dict(images=good, expressions=[1, 8])),
        "id_negative": ("serving_default", dict(images=good, expressions=[-1, 2])),
        "id_count": ("serving_default", dict(images=good, expressions=[1, 2, 3])),
        "id_rank2": ("serving_default", dict(images=good, expressions=[[1, 2]])),
        "bytes_garbage": ("translate_encoded", dict(image_bytes=[png, b"not an image"], expressions=["happy"])),
        "bytes_truncated": ("translate_encoded", dict(image_bytes=[png[:60]], expressions=["happy"])),
        "jpeg_truncated": ("translate_encoded", dict(image_bytes=[png, bytes(data["jpeg_b"])[:-200]],
                                                     expressions=["happy"])),
        "png_corrupt_inside": ("translate_encoded", dict(image_bytes=[png[:40] + b"\\x00" * 40 + png[80:]],
                                                         expressions=["happy"])),
        "bytes_empty": ("translate_encoded", dict(image_bytes=np.zeros((0,), object), expressions=["happy"])),
        "name_unknown": ("translate_encoded", dict(image_bytes=[png], expressions=["joyful"])),
        "name_count": ("translate_encoded", dict(image_bytes=[png, png], expressions=["happy", "sad", "fear"])),
        "depth_rank3": ("estimate_depth", dict(images=good[0])),
        "all_channels": ("translate_all", dict(images=np.zeros((1, 8, 8, 2), np.uint8))),
        # Decompression bombs: refused from their headers, before anything is decoded.
        "bomb_png": ("translate_encoded", dict(image_bytes=[png, bytes(data["bomb_png"])], expressions=["happy"])),
        "bomb_jpeg": ("translate_encoded", dict(image_bytes=[bytes(data["bomb_jpeg"])], expressions=["happy"])),
        # The raw generator: its condition and its size.
        "gen_sum": ("generator", dict(image=data["x"][:2], condition=np.eye(8)[[1, 2]] * [[0.5], [1.0]])),
        "gen_range": ("generator", dict(image=data["x"][:1], condition=[[1.5, -0.5, 0, 0, 0, 0, 0, 0]])),
        "gen_nan": ("generator", dict(image=data["x"][:1], condition=[[np.nan, 1, 0, 0, 0, 0, 0, 0]])),
        "gen_classes": ("generator", dict(image=data["x"][:1], condition=np.zeros((1, 7)))),
        "gen_count": ("generator", dict(image=data["x"][:2], condition=np.eye(8)[[1, 2, 3]])),
        "gen_stride": ("generator", dict(image=np.zeros((1, 30, 30, 3)), condition=np.eye(8)[[1]])),
        "gen_size": ("generator", dict(image=np.zeros((1, 64, 64, 3)), condition=np.eye(8)[[1]])),
    }
    errors = {}
    for name, (key, kwargs) in cases.items():
        dtypes = {"images": tf.uint8, "expressions": tf.int32 if key == "serving_default" else tf.string,
                  "image_bytes": tf.string, "image": tf.float32, "condition": tf.float32}
        try:
            sig[key](**{k: tf.constant(v, dtypes[k]) for k, v in kwargs.items()})
            errors[name] = {"type": None, "message": ""}
        except Exception as e:  # record what a client would see
            errors[name] = {"type": type(e).__name__, "message": getattr(e, "message", str(e))}
    with open(errors_path, "w") as f:
        json.dump(errors, f)
''')

EXPECTED_ERRORS = {
    "rank3": "must be a batch of RGB images [N, H, W, 3] (rank 4)",
    "rank5": "must be a batch of RGB images [N, H, W, 3] (rank 4)",
    "channels4": "must have 3 channels",
    "gray": "must have 3 channels",
    "empty": "at least one image",
    "zero_height": "non-zero height and width",
    "id_too_big": "unknown expression id(s) in expressions:] [8]",
    "id_negative": "unknown expression id(s) in expressions:] [-1]",
    "id_count": "one expression id per image",
    "id_rank2": "scalar or a vector of expression ids",
    "bytes_garbage": "undecodable input at index(es)] [1]",
    "bytes_truncated": "image_bytes: undecodable input at index(es)] [0]",
    "jpeg_truncated": "image_bytes: undecodable input at index(es)] [1]",
    "png_corrupt_inside": "PNG",  # a complete file damaged inside: the decoder's own INVALID_ARGUMENT
    "bytes_empty": "image_bytes is empty",
    "name_unknown": "unknown expression name(s):] [joyful]",
    "name_count": "one expression name per image",
    "depth_rank3": "rank 4",
    "all_channels": "must have 3 channels",
    "bomb_png": "image_bytes: image(s) at index(es)] [1] [declare (height, width)] [[100000 100000]] [- more than "
                "the 16777216 pixels",
    "bomb_jpeg": "image_bytes: image(s) at index(es)] [0] [declare (height, width)] [[20000 30000]]",
    "gen_sum": "generator: condition rows must be one-hot or probabilities (values in [0, 1] summing to 1 within "
               "0.001); bad row(s)] [0] [with sums] [0.5]",
    "gen_range": "condition rows must be one-hot or probabilities",
    "gen_nan": "bad row(s)] [0] [with sums] [nan]",
    "gen_classes": "generator: condition must be [N, 8]",
    "gen_count": "generator: condition must be [N, 8], one row per image",
    "gen_stride": "generator: image height and width must be positive multiples of 4 (the generator down-samples "
                  "twice with stride 2)",
    "gen_size": "generator: image must be 32x32",
}


def png_bomb(width, height):
    """A complete, valid PNG of a few bytes whose IHDR declares width x height (decoding it would need W*H*3 bytes)."""
    import struct
    import zlib

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\x00" * 16)) + chunk(b"IEND", b""))


def jpeg_bomb(width, height):
    """A small complete JPEG whose frame header (SOF0) is patched to declare width x height."""
    data = bytearray(tf.io.encode_jpeg(np.zeros((8, 8, 3), np.uint8)).numpy())
    sof = data.index(b"\xff\xc0")
    data[sof + 5:sof + 9] = height.to_bytes(2, "big") + width.to_bytes(2, "big")
    return bytes(data)


def _reference_translate(g_rgb, images, ids, size):
    """What serving_default must compute, written out with plain TF ops and the Keras model."""
    x = tf.image.resize(tf.cast(images, tf.float32), [size, size], antialias=True) / 127.5 - 1.0
    y = g_rgb([tf.clip_by_value(x, -1.0, 1.0), tf.one_hot(ids, 8)], training=False)
    y = tf.image.resize(y, images.shape[1:3], antialias=True)
    return tf.cast(tf.clip_by_value(tf.round((y + 1.0) * 127.5), 0, 255), tf.uint8).numpy()


SAVED_MODEL_CLI = ["-m", "tensorflow.python.tools.saved_model_cli"]


def cli_commands(exported, work):
    """The fresh-process check of every signature and `saved_model_cli show` / `run` (run by conftest's `clis`)."""
    version_dir = exported["version_dir"]
    cli_images = np.stack([fixtures.draw_face(40, seed=5)])
    np.save(work / "cli_images.npy", cli_images)
    np.save(work / "cli_ids.npy", np.array([2], np.int32))
    images = np.stack([fixtures.draw_face(48, seed=s)[:, 4:44] for s in (1, 2)])  # [2, 48, 40, 3]
    png_a = tf.io.encode_png(images[0]).numpy()
    other = fixtures.draw_face(56, seed=3)
    jpeg_b = tf.io.encode_jpeg(other, quality=95).numpy()
    x = np.random.default_rng(0).uniform(-1, 1, (3, 32, 32, 3)).astype(np.float32)
    condition = np.eye(8, dtype=np.float32)[[0, 4, 7]]
    probabilities = np.full((3, 8), 0.05, np.float32) + 0.6 * condition  # rows sum to 1: not one-hot, accepted
    inputs = str(work / "inputs.npz")
    np.savez(inputs, images=images, ids=np.array([1, 6], np.int32), png_a=np.frombuffer(png_a, np.uint8),
             jpeg_b=np.frombuffer(jpeg_b, np.uint8), x=x, condition=condition, probabilities=probabilities,
             bomb_png=np.frombuffer(png_bomb(100000, 100000), np.uint8),
             bomb_jpeg=np.frombuffer(jpeg_bomb(30000, 20000), np.uint8))
    script = work / "fresh.py"
    script.write_text(FRESH_PROCESS)
    commands = {
        "fresh": [str(script), version_dir, inputs, str(work / "out.npz"), str(work / "errors.json")],
        "show": SAVED_MODEL_CLI + ["show", "--dir", version_dir, "--all"],
        "run": SAVED_MODEL_CLI + ["run", "--dir", version_dir, "--tag_set", "serve", "--signature_def",
                                  "serving_default", "--inputs",
                                  f"images={work / 'cli_images.npy'};expressions={work / 'cli_ids.npy'}",
                                  "--outdir", str(work / "cli_out")],
        "export_bad_dir": ["-m", "expr3d.export", f"--model_dir={work / 'nope'}", f"--output={work / 'out'}"],
        "export_existing_version": ["-m", "expr3d.export", f"--model_dir={exported['model_dir']}",
                                    f"--output={exported['base']}", "--version=1"],
    }
    context = dict(work=work, images=images, decoded_a=images[0], decoded_b=tf.io.decode_jpeg(jpeg_b).numpy(), x=x,
                   condition=condition, probabilities=probabilities, cli_images=cli_images, cli_out=work / "cli_out",
                   pb_mtime=os.stat(os.path.join(version_dir, "saved_model.pb")).st_mtime_ns)
    return commands, context


@pytest.fixture(scope="module")
def fresh(clis):
    """Every signature's outputs and error reports, computed in a fresh process from the exported SavedModel,
    plus `saved_model_cli show --all` and `saved_model_cli run` on .npy inputs."""
    results, context = clis["results"], clis["contexts"]["test_export"]
    result = results["fresh"]
    assert result.returncode == 0, result.stderr[-3000:]
    work = context["work"]
    outputs = dict(np.load(str(work / "out.npz")))
    errors = json.loads((work / "errors.json").read_text())
    return dict(context, outputs=outputs, errors=errors, shown=results["show"], ran=results["run"],
                export_bad_dir=results["export_bad_dir"], export_existing_version=results["export_existing_version"])


@pytest.mark.slow
def test_layout_is_tf_serving_and_atomic(exported):
    base, version_dir = exported["base"], exported["version_dir"]
    assert sorted(os.listdir(base)) == ["1"], "no temp directories may remain beside the version"
    for name in ("saved_model.pb", "variables", export.EXPORT_INFO, "tflite"):
        assert os.path.exists(os.path.join(version_dir, name)), name
    info = json.loads(open(os.path.join(version_dir, export.EXPORT_INFO)).read())
    assert info["image_size"] == 32 and info["geometry"] == "depth" and info["step"] == 4
    assert sorted(info["signatures"]) == sorted(signatures.SIGNATURE_KEYS)
    assert set(info["tflite"]) == {"fp32", "fp16", "int8", "int8_full"}
    assert info["max_encoded_pixels"] == signatures.MAX_ENCODED_PIXELS == 4096 * 4096
    # The served networks are the inference clones, checked against the trained ones at export time.
    clone_errors = info["inference_clone_max_abs_error"]
    assert len(clone_errors) == 2 and all(0 <= error < 1e-4 for error in clone_errors.values()), clone_errors


@pytest.mark.slow
def test_every_signature_matches_the_keras_models(exported, fresh):
    models = exported["models"]
    g_rgb, g_depth = models["g_rgb"], models["g_depth"]
    out, images = fresh["outputs"], fresh["images"]

    expected = _reference_translate(g_rgb, images, np.array([1, 6]), 32)
    got = out["serving_default/images"]
    assert got.shape == images.shape and got.dtype == np.uint8
    assert np.abs(got.astype(int) - expected).max() <= 1
    scalar = _reference_translate(g_rgb, images, np.array([5, 5]), 32)
    assert np.abs(out["serving_default_scalar/images"].astype(int) - scalar).max() <= 1
    # The trained generator depends on the target: different ids give different faces.
    assert np.abs(expected.astype(int) - scalar).mean() > 0.5

    for i, (decoded, name) in enumerate(((fresh["decoded_a"], "happy"), (fresh["decoded_b"], "anger"))):
        reference = _reference_translate(g_rgb, decoded[None], np.array([EXPRESSIONS.index(name)]), 32)[0]
        got = out[f"translate_encoded/{i}"]
        assert got.shape == decoded.shape, "each encoded image comes back at its own size"
        assert np.abs(got.astype(int) - reference).max() <= 1

    x = tf.clip_by_value(tf.image.resize(tf.cast(images, tf.float32), [32, 32], antialias=True) / 127.5 - 1, -1, 1)
    geometry = g_depth.to_geometry(x)
    depth = tf.reduce_mean(geometry, axis=-1, keepdims=True)
    expected_depth = tf.clip_by_value(tf.image.resize(depth, images.shape[1:3]), -1, 1).numpy()
    np.testing.assert_allclose(out["estimate_depth/depth"], expected_depth, atol=1e-4)
    normals = out["estimate_depth/normals"]
    assert normals.shape == images.shape[:3] + (3,)
    np.testing.assert_allclose(np.linalg.norm(normals, axis=-1), 1.0, atol=1e-4)
    assert (normals[..., 2] > 0).all(), "visible normals face the camera (+z)"
    expected_normals = tf.math.l2_normalize(
        tf.image.resize(signatures.normals_from_depth(depth), images.shape[1:3]), axis=-1).numpy()
    np.testing.assert_allclose(normals, expected_normals, atol=1e-4)

    all_images = out["translate_all/images"]
    assert all_images.shape == (2, 8) + images.shape[1:]
    assert (out["translate_all/expressions"] == np.array([EXPRESSIONS, EXPRESSIONS])).all()
    for k in range(8):
        reference = _reference_translate(g_rgb, images, np.array([k, k]), 32)
        assert np.abs(all_images[:, k].astype(int) - reference).max() <= 1, EXPRESSIONS[k]

    expected_raw = g_rgb([fresh["x"], fresh["condition"]], training=False).numpy()
    np.testing.assert_allclose(out["generator/image"], expected_raw, atol=1e-5)
    # Probabilities (rows summing to 1) pass the generator's condition check.
    expected_soft = g_rgb([fresh["x"], fresh["probabilities"]], training=False).numpy()
    np.testing.assert_allclose(out["generator_probabilities/image"], expected_soft, atol=1e-5)


@pytest.mark.slow
def test_max_encoded_pixels_is_the_bound_and_is_read_before_decoding(deploy_run):
    # export's --max_encoded_pixels reaches the graph: a 40x48 PNG passes at 1920 pixels, not at 1919.
    g_rgb = deploy_run["models"]["g_rgb"]
    png, jpeg = (tf.io.encode_png(np.zeros((40, 48, 3), np.uint8)), tf.io.encode_jpeg(np.zeros((40, 48, 3), np.uint8)))
    ok = signatures.ServingFunctions(g_rgb, None, 32, max_encoded_pixels=40 * 48)
    assert ok.translate_encoded(tf.stack([png, jpeg]), tf.constant("happy"))["image_bytes"].shape == (2,)
    tight = tf.function(signatures.ServingFunctions(g_rgb, None, 32, max_encoded_pixels=40 * 48 - 1).translate_encoded)
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match=r"index\(es\)\] \[0 1\] \[declare \(height, width\)\] \[\[40 48\]\s*\[40 48\]\].*1919 pixels"):
        tight(tf.stack([png, jpeg]), tf.constant("happy"))
    with pytest.raises(ValueError, match="max_encoded_pixels must be >= 1"):
        signatures.ServingFunctions(g_rgb, None, 32, max_encoded_pixels=0)


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(EXPECTED_ERRORS))
def test_invalid_input_is_invalid_argument_saying_what_is_wrong(fresh, case):
    error = fresh["errors"][case]
    assert error["type"] == "InvalidArgumentError", (case, error)
    assert EXPECTED_ERRORS[case] in error["message"], (case, error["message"][:500])


@pytest.mark.slow
def test_saved_model_cli_show_lists_the_named_signatures(fresh):
    shown = fresh["shown"]
    assert shown.returncode == 0, shown.stderr[-2000:]
    for key in signatures.SIGNATURE_KEYS:
        assert f"signature_def['{key}']" in shown.stdout, key
    for name in ("inputs['images']", "inputs['expressions']", "inputs['image_bytes']", "outputs['image_bytes']",
                 "outputs['depth']", "outputs['normals']", "inputs['condition']"):
        assert name in shown.stdout, name


@pytest.mark.slow
def test_saved_model_cli_run_on_npy_inputs(exported, fresh):
    ran = fresh["ran"]
    assert ran.returncode == 0, ran.stderr[-2000:]
    got = np.load(fresh["cli_out"] / "images.npy")
    images = fresh["cli_images"]
    expected = _reference_translate(exported["models"]["g_rgb"], images, np.array([2]), 32)
    assert got.shape == images.shape and np.abs(got.astype(int) - expected).max() <= 1


@pytest.mark.slow
def test_refuses_to_replace_a_version_and_numbers_the_next(exported, fresh):
    base, version_dir = exported["base"], exported["version_dir"]
    pb = os.path.join(version_dir, "saved_model.pb")
    result = fresh["export_existing_version"]
    assert result.returncode == 1
    assert "already exists" in result.stderr and "--overwrite" in result.stderr
    assert os.stat(pb).st_mtime_ns == fresh["pb_mtime"]
    assert sorted(os.listdir(base)) == ["1"]
    assert export.resolve_version(base) == 2
    assert export.resolve_version(base, 7) == 7
    assert export.resolve_version(base, 1, overwrite=True) == 1
    with pytest.raises(export.ExportError, match="non-negative integer"):
        export.resolve_version(base, -1)


@pytest.mark.slow
def test_an_au_reader_for_an_expression_run_is_refused_naming_the_flag(deploy_run, tmp_path):
    with pytest.raises(export.ExportError, match=r"--au_reader=.*reader: a reader of a photo's AUs serves runs "
                                                 r"trained with --condition=action_units"):
        export.export(deploy_run["model_dir"], str(tmp_path / "m"), au_reader=str(tmp_path / "reader"),
                      log=lambda _: None)
    assert not (tmp_path / "m").exists()


@pytest.mark.slow
def test_overwrite_replaces_a_version_atomically(deploy_run, tmp_path):
    base = tmp_path / "m"
    (base / "3").mkdir(parents=True)
    (base / "3" / "stale-file").write_text("an older export")
    with pytest.raises(export.ExportError, match="already exists"):
        export.export(deploy_run["model_dir"], str(base), version=3, log=lambda _: None)
    target = export.export(deploy_run["model_dir"], str(base), version=3, overwrite=True, log=lambda _: None)
    assert sorted(os.listdir(base)) == ["3"]
    assert not os.path.exists(base / "3" / "stale-file"), "the old version is replaced as a whole"
    assert "serving_default" in tf.saved_model.load(target).signatures


@pytest.mark.slow
def test_bad_run_dirs_name_the_problem(fresh, tmp_path):
    result = fresh["export_bad_dir"]
    assert result.returncode == 1 and "is not a directory" in result.stderr
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "config.json").write_text(json.dumps({"model_config": fixtures.TINY}))
    with pytest.raises(ValueError, match="g_rgb.keras is missing"):
        export.export(str(tmp_path / "run"), str(tmp_path / "out"))
    assert not os.path.exists(tmp_path / "out" / "1")
