"""expr3d.export of a `--model=transfer` run: the transfer signatures reloaded in a fresh process against the Keras
networks (pairs, one exemplar for many faces, faces of different sizes, encoded bytes, the raw networks), the
in-graph refusals, and the TFLite transfer models through the LiteRT interpreter with their parity reports."""
import json
import os

import cv2
import numpy as np
import pytest

from expr3d.deploy import signatures, tflite
from tests.deploy import fixtures
from tests.deploy.conftest import run_cli, run_clis

# A fresh interpreter that imports only TensorFlow and numpy: the SavedModel stands on its own.
FRESH = r"""
import json, sys
import numpy as np
import tensorflow as tf

version_dir, inputs, output, errors_path = sys.argv[1:5]
data = np.load(inputs)
model = tf.saved_model.load(version_dir)
sig = model.signatures
out = {}
pair = sig["transfer"](images_a=tf.constant(data["a"]), images_b=tf.constant(data["b"]))
out["a_with_b"], out["b_with_a"] = pair["a_with_b"].numpy(), pair["b_with_a"].numpy()
default = sig["serving_default"](images_a=tf.constant(data["a"]), images_b=tf.constant(data["b"]))
out["default_a_with_b"] = default["a_with_b"].numpy()
one = sig["transfer"](images_a=tf.constant(data["a"]), images_b=tf.constant(data["b"][:1]))
out["one_a_with_b"], out["one_b_with_a"] = one["a_with_b"].numpy(), one["b_with_a"].numpy()
sizes = sig["transfer"](images_a=tf.constant(data["a"]), images_b=tf.constant(data["big"]))
out["sized_a_with_b"], out["sized_b_with_a"] = sizes["a_with_b"].numpy(), sizes["b_with_a"].numpy()
png = {side: [open(f"{inputs}.{side}{i}.png", "rb").read() for i in range(len(data["a"]))] for side in "ab"}
encoded = sig["transfer_encoded"](image_bytes_a=tf.constant(png["a"]), image_bytes_b=tf.constant(png["b"]))
out["encoded_a_with_b"] = np.stack([tf.io.decode_png(x).numpy() for x in encoded["a_with_b_bytes"]])
out["encoded_b_with_a"] = np.stack([tf.io.decode_png(x).numpy() for x in encoded["b_with_a_bytes"]])
raw = sig["transfer_generator"](image_a=tf.constant(data["x_a"]), image_b=tf.constant(data["x_b"]))
out["raw_a_with_b"], out["raw_b_with_a"] = raw["a_with_b"].numpy(), raw["b_with_a"].numpy()
out["depth"] = sig["estimate_depth"](images=tf.constant(data["a"]))["depth"].numpy()
errors = {}
for name, kwargs in {
    "counts": dict(images_a=data["a"], images_b=data["b"][:2]),
    "rank": dict(images_a=data["a"][0], images_b=data["b"]),
    "channels": dict(images_a=data["a"], images_b=data["b"][..., :2]),
}.items():
    try:
        sig["transfer"](**{key: tf.constant(value) for key, value in kwargs.items()})
        errors[name] = None
    except tf.errors.InvalidArgumentError as error:
        errors[name] = error.message
try:
    sig["transfer_encoded"](image_bytes_a=tf.constant([b"not an image"]), image_bytes_b=tf.constant(png["b"][:1]))
    errors["encoded"] = None
except tf.errors.InvalidArgumentError as error:
    errors["encoded"] = error.message
np.savez(output, **out)
json.dump({"errors": errors, "signatures": sorted(sig)}, open(errors_path, "w"))
"""


@pytest.fixture(scope="session")  # once per worker, however its tests are interleaved
def transfer_export(tmp_path_factory):
    """A tiny transfer run exported by `python -m expr3d.export --tflite=fp32,int8`, and its signatures' outputs from
    a fresh process: {"run", "version_dir", "outputs", "inputs", "errors", "signatures", ...}."""
    root = tmp_path_factory.mktemp("transfer_export")
    data_dir = fixtures.make_dataset(str(root / "data"))
    model_dir = str(root / "run")
    models = fixtures.make_transfer_run(model_dir, data_dir)
    base = str(root / "saved_models" / "transfer")
    result = run_cli(["-m", "expr3d.export", f"--model_dir={model_dir}", f"--output={base}", "--tflite=fp32,int8",
                      f"--data_dir={data_dir}", "--parity_images=8"])
    assert result.returncode == 0, result.stderr[-3000:]
    version_dir = os.path.join(base, "1")

    rng = np.random.default_rng(0)
    faces = [fixtures.rendered_face(identity=i, expression=1 + i, size=48) for i in range(3)]
    a = np.stack(faces).astype(np.uint8)
    b = np.stack([fixtures.rendered_face(identity=3 + i, expression=7 - i, size=48) for i in range(3)]).astype(np.uint8)
    big = np.stack([fixtures.rendered_face(identity=6 + i, expression=2, size=80) for i in range(3)]).astype(np.uint8)
    x_a = rng.uniform(-1, 1, (2, 32, 32, 3)).astype(np.float32)
    x_b = rng.uniform(-1, 1, (2, 32, 32, 3)).astype(np.float32)
    inputs = {"a": a, "b": b, "big": big, "x_a": x_a, "x_b": x_b}
    np.savez(root / "inputs.npz", **inputs)
    for side in "ab":
        for i, image in enumerate(inputs[side]):
            cv2.imwrite(str(root / f"inputs.npz.{side}{i}.png"), image[..., ::-1])
    fresh = run_cli(["-c", FRESH, version_dir, str(root / "inputs.npz"), str(root / "out.npz"),
                     str(root / "errors.json")])
    assert fresh.returncode == 0, fresh.stderr[-3000:]
    report = json.load(open(root / "errors.json"))
    # synthesize --exemplar: two face photos and a landscape get a smiling exemplar's expression; an exemplar
    # without a face, and the expression export given an exemplar, are refused.
    photo_dir = root / "photos"
    photo_dir.mkdir()
    cv2.imwrite(str(photo_dir / "one.png"), fixtures.rendered_face(identity=5, expression=0, size=160)[..., ::-1])
    cv2.imwrite(str(photo_dir / "two.jpg"), fixtures.rendered_face(identity=6, expression=4, size=192)[..., ::-1])
    cv2.imwrite(str(photo_dir / "hills.png"), fixtures.no_face_image()[..., ::-1])
    smile = str(root / "smile.png")
    cv2.imwrite(smile, fixtures.rendered_face(identity=7, expression=1, size=160)[..., ::-1])
    hills = str(root / "exemplar_hills.png")
    cv2.imwrite(hills, fixtures.no_face_image()[..., ::-1])
    synthesize = ["-m", "expr3d.synthesize", f"--images={photo_dir}"]
    names = ("synthesize", "no_face_exemplar", "no_exemplar")
    runs = run_clis([synthesize + [f"--saved_model={base}", f"--exemplar={smile}", f"--output={root / 'out'}"],
                     synthesize + [f"--saved_model={base}", f"--exemplar={hills}", f"--output={root / 'out2'}"],
                     synthesize + [f"--saved_model={base}", f"--output={root / 'out3'}"]])
    return {"root": root, "data_dir": data_dir, "models": models, "version_dir": version_dir, "inputs": inputs,
            "outputs": dict(np.load(root / "out.npz")), "errors": report["errors"],
            "signatures": report["signatures"], "export_log": result.stderr, "synthesize": dict(zip(names, runs)),
            "smile": smile, "hills": hills}


def _swap(models, x_a, x_b):
    """The Keras networks' swap: (A with B's expression, B with A's)."""
    import tensorflow as tf

    encoder, decoder = models["encoder"], models["decoder"]
    x_a, x_b = tf.convert_to_tensor(x_a), tf.convert_to_tensor(x_b)
    code_a, free_a, _ = encoder(x_a, training=False)
    code_b, free_b, _ = encoder(x_b, training=False)
    return (np.asarray(decoder([free_a, code_b, x_a], training=False)),
            np.asarray(decoder([free_b, code_a, x_b], training=False)))


def _uint8_swap(models, a, b):
    import tensorflow as tf

    x_a = signatures.to_model_input(tf.constant(a), 32)
    x_b = signatures.to_model_input(tf.constant(b), 32)
    a_with_b, b_with_a = _swap(models, x_a, x_b)
    return (signatures.to_uint8(tf.constant(a_with_b), a.shape[1], a.shape[2]).numpy(),
            signatures.to_uint8(tf.constant(b_with_a), b.shape[1], b.shape[2]).numpy())


@pytest.mark.slow  # a tiny run, the export CLI with two TFLite conversions and a fresh reload: ~60 s here
def test_signatures_and_metadata(transfer_export):
    assert transfer_export["signatures"] == ["estimate_depth", "serving_default", "transfer", "transfer_encoded",
                                             "transfer_generator"]
    info = json.load(open(os.path.join(transfer_export["version_dir"], "expr3d_export.json")))
    assert info["family"] == "transfer" and info["signatures"] == sorted(transfer_export["signatures"])
    assert set(info["inference_clone_max_abs_error"]) == {"encoder", "decoder", "g_depth"}
    assert max(info["inference_clone_max_abs_error"].values()) < 1e-4
    assert set(info["tflite"]) == {"fp32", "int8"}
    assert info["tflite"]["fp32"]["file"] == "tflite/transfer_fp32.tflite"


@pytest.mark.slow
def test_transfer_matches_the_keras_networks_for_pairs_one_exemplar_and_other_sizes(transfer_export):
    out, inputs, models = transfer_export["outputs"], transfer_export["inputs"], transfer_export["models"]
    a, b, big = inputs["a"], inputs["b"], inputs["big"]
    expected_a, expected_b = _uint8_swap(models, a, b)
    for got, expected in ((out["a_with_b"], expected_a), (out["b_with_a"], expected_b),
                          (out["default_a_with_b"], expected_a)):
        assert got.shape == expected.shape == (3, 48, 48, 3) and got.dtype == np.uint8
        assert np.abs(got.astype(int) - expected).max() <= 1
    # One exemplar for every face: each A with B[0]'s expression; B[0] with each A's.
    one_a, one_b = _uint8_swap(models, a, np.repeat(b[:1], 3, axis=0))
    assert np.abs(out["one_a_with_b"].astype(int) - one_a).max() <= 1
    assert out["one_b_with_a"].shape == (3, 48, 48, 3) and np.abs(out["one_b_with_a"].astype(int) - one_b).max() <= 1
    # Faces of different sizes: each result at its own face's size.
    sized_a, sized_b = _uint8_swap(models, a, big)
    assert out["sized_a_with_b"].shape == (3, 48, 48, 3) and out["sized_b_with_a"].shape == (3, 80, 80, 3)
    assert np.abs(out["sized_a_with_b"].astype(int) - sized_a).max() <= 1
    assert np.abs(out["sized_b_with_a"].astype(int) - sized_b).max() <= 1
    # A swap changes the face: the result is not the input returned.
    assert np.abs(out["a_with_b"].astype(int) - a).mean() > 0.5


@pytest.mark.slow
def test_encoded_and_raw_signatures(transfer_export):
    out, inputs, models = transfer_export["outputs"], transfer_export["inputs"], transfer_export["models"]
    # PNG round trip is lossless: the bytes signature gives the uint8 signature's pixels.
    assert np.array_equal(out["encoded_a_with_b"], out["a_with_b"])
    assert np.array_equal(out["encoded_b_with_a"], out["b_with_a"])
    raw_a, raw_b = _swap(models, inputs["x_a"], inputs["x_b"])
    assert np.abs(out["raw_a_with_b"] - raw_a).max() < 1e-4 and np.abs(out["raw_b_with_a"] - raw_b).max() < 1e-4
    assert out["depth"].shape == (3, 48, 48, 1)


@pytest.mark.slow
def test_bad_requests_are_invalid_argument_naming_the_input(transfer_export):
    errors = transfer_export["errors"]
    assert "images_a and images_b must hold the same number of faces" in errors["counts"]
    assert "3 and 2" in " ".join(errors["counts"].split()) or ("3" in errors["counts"] and "2" in errors["counts"])
    assert "images_a must be a batch of RGB images" in errors["rank"]
    assert "images_b must have 3 channels" in errors["channels"]
    assert "image_bytes_a: undecodable input at index(es)" in errors["encoded"]


@pytest.mark.slow
@pytest.mark.parametrize("variant, min_psnr_db", [("fp32", 80.0), ("int8", 25.0)])
def test_tflite_transfer_is_builtin_only_and_matches_the_saved_model(transfer_export, variant, min_psnr_db):
    directory = os.path.join(transfer_export["version_dir"], "tflite")
    path = os.path.join(directory, tflite.file_name(variant, tflite.TRANSFER))
    ok, ops = tflite.builtin_only(open(path, "rb").read())
    assert ok, ops
    report = json.load(open(path[:-len(".tflite")] + ".json"))
    assert report["signature"] == "transfer_generator" and set(report["outputs"]) == {"a_with_b", "b_with_a"}
    assert report["parity"]["psnr_db"] >= min_psnr_db
    images = tflite.images_from_records(transfer_export["data_dir"], "test", 32, 6)
    partners = images[::-1].copy()
    reference = tflite.saved_model_signature(transfer_export["version_dir"], tflite.TRANSFER)(
        {"image_a": images, "image_b": partners})
    lite = tflite.LiteTransfer(path)
    assert lite.image_size == 32
    a_with_b, b_with_a = lite(images, partners)
    for got, name in ((a_with_b, "a_with_b"), (b_with_a, "b_with_a")):
        assert tflite.compare(reference[name], got)["psnr_db"] >= min_psnr_db
    # The expression runner refuses a transfer model, naming what it has.
    with pytest.raises(ValueError, match="has no 'generator' signature.*transfer_generator"):
        tflite.LiteGenerator(path)


@pytest.mark.slow  # 6 s in the full suite
def test_the_expression_tools_refuse_a_transfer_run_and_export_takes_it(tmp_path):
    """Without training: a transfer run directory is refused by the expression loader, naming both families."""
    from expr3d.run_dir import RunDir, RunDirError

    data_dir = fixtures.make_dataset(str(tmp_path / "data"), num_train=8, num_test=2)
    fixtures.make_transfer_run(str(tmp_path / "run"), data_dir, steps=1)
    run = RunDir(str(tmp_path / "run"))
    with pytest.raises(RunDirError, match="--model=transfer run.*takes --model=stargan runs"):
        run.load_generators()
    loaded = run.load_transfer()
    assert loaded.image_size == 32 and loaded.g_depth is not None
    assert {"encoder", "decoder", "g_depth"} <= set(run.networks())


@pytest.mark.slow
def test_synthesize_gives_every_photo_the_exemplars_expression(transfer_export):
    result = transfer_export["synthesize"]["synthesize"]
    assert result.returncode == 0, result.stderr[-3000:]
    out = transfer_export["root"] / "out"
    summary = json.load(open(out / "summary.json"))
    assert summary["expressions"] == ["exemplar"] and summary["exemplar"] == transfer_export["smile"]
    assert [os.path.basename(entry["image"]) for entry in summary["processed"]] == ["one.png", "two.jpg"]
    assert [os.path.basename(path) for path in summary["no_face"]] == ["hills.png"]
    for stem in ("one", "two"):
        photo = cv2.imread(str(out / stem / "exemplar.png"))
        source = cv2.imread(str(transfer_export["root"] / "photos" / (stem + (".png" if stem == "one" else ".jpg"))))
        assert photo.shape == source.shape
        assert (out / stem / "face_exemplar.png").exists()
    assert cv2.imread(str(out / "exemplar_face.png")) is not None and cv2.imread(str(out / "grid.png")) is not None


@pytest.mark.slow
def test_synthesize_refuses_an_exemplar_without_a_face_and_a_transfer_export_without_exemplar(transfer_export):
    from tests.test_cli_bad_input import NOISE

    for name, words, folder in (("no_face_exemplar", ("--exemplar=", "no face found in the exemplar photo"), "out2"),
                                ("no_exemplar", ("--model=transfer run: pass --exemplar=PHOTO",), "out3")):
        result = transfer_export["synthesize"][name]
        lines = [line for line in result.stderr.strip().splitlines() if not line.startswith(NOISE)]
        assert result.returncode == 1 and len(lines) == 1, result.stderr[-2000:]
        assert all(word in lines[0] for word in words), lines[0]
        assert not (transfer_export["root"] / folder).exists()  # nothing written


@pytest.mark.slow  # one export with the fp32 TFLite model
@pytest.mark.parametrize("decoder", ["generator", "generator_warp"])
def test_the_generator_decoder_exports_to_serving_and_tflite_with_parity(tmp_path, decoder):
    """--transfer_decoder=generator: the code tiled over the source image at full size, as the StarGAN exports; with
    --condition_norms (the code also sets every norm's scale and offset), so those layers convert too. The warp
    decoder's flow (moving pixels in this run) converts to TFLite gathers."""
    from expr3d.models.transfer import DECODERS

    data_dir = fixtures.make_dataset(str(tmp_path / "data"), num_train=8, num_test=8)
    models = fixtures.make_transfer_run(str(tmp_path / "run"), data_dir, steps=2, decoder=decoder,
                                        condition_norms=True)
    assert type(models["decoder"]) is DECODERS[decoder]
    base = str(tmp_path / "saved_models" / "transfer")
    result = run_cli(["-m", "expr3d.export", f"--model_dir={tmp_path / 'run'}", f"--output={base}", "--tflite=fp32",
                      f"--data_dir={data_dir}", "--parity_images=4"])
    assert result.returncode == 0, result.stderr[-3000:]
    info = json.load(open(os.path.join(base, "1", "expr3d_export.json")))
    assert "transfer" in info["signatures"] and info["inference_clone_max_abs_error"]["decoder"] < 1e-4
    report = json.load(open(os.path.join(base, "1", "tflite", "transfer_fp32.json")))
    assert report["parity"]["psnr_db"] >= 80.0
    images = tflite.images_from_records(data_dir, "test", 32, 4)
    reference = tflite.saved_model_signature(os.path.join(base, "1"), tflite.TRANSFER)(
        {"image_a": images, "image_b": images[::-1].copy()})
    expected_a, _ = _swap(models, images, images[::-1].copy())  # the signature on model-range images
    np.testing.assert_allclose(np.asarray(reference["a_with_b"]), np.asarray(expected_a), atol=1e-4)
