"""expr3d.export of an AU-conditioned run (`--condition=action_units`): its signatures reloaded in a fresh process
against the Keras generator, the in-graph refusals, the TFLite au_generator with its parity report, and the tools
that take other exports refusing it."""
import contextlib
import json
import os

import numpy as np
import pytest

from expr3d.deploy import signatures, tflite
from expr3d.labels import NUM_ACTION_UNITS
from tests.deploy import fixtures
from tests.deploy.conftest import run_cli

FRESH = r"""
import json, sys
import numpy as np
import tensorflow as tf

version_dir, inputs, output, errors_path = sys.argv[1:5]
data = np.load(inputs)
sig = tf.saved_model.load(version_dir).signatures
out = {"each": sig["translate_action_units"](images=tf.constant(data["faces"]),
                                             action_units=tf.constant(data["units"]))["images"].numpy(),
       "one": sig["serving_default"](images=tf.constant(data["faces"]),
                                     action_units=tf.constant(data["units"][0]))["images"].numpy(),
       "raw": sig["au_generator"](image=tf.constant(data["x"]), action_units=tf.constant(data["units"]))["image"].numpy()}
errors = {}
for name, units in {"width": data["units"][:, :8], "range": data["units"] * 3.0,
                    "count": data["units"][:2]}.items():
    try:
        sig["translate_action_units"](images=tf.constant(data["faces"]), action_units=tf.constant(units))
        errors[name] = None
    except tf.errors.InvalidArgumentError as error:
        errors[name] = error.message
np.savez(output, **out)
json.dump({"errors": errors, "signatures": sorted(sig)}, open(errors_path, "w"))
"""
# The dial on a photo: the export with an AU reader, reloaded in a fresh process.
FRESH_READER = r"""
import json, sys
import numpy as np
import tensorflow as tf

version_dir, inputs, output, errors_path = sys.argv[1:5]
data = np.load(inputs)
sig = tf.saved_model.load(version_dir).signatures
faces = tf.constant(data["faces"])
changed = sig["translate_action_unit_changes"](images=faces, changes=tf.constant(data["changes"]))
out = {"read": sig["read_action_units"](images=faces)["action_units"].numpy(),
       "changed": changed["images"].numpy(), "asked": changed["action_units"].numpy(),
       "one": sig["translate_action_unit_changes"](images=faces, changes=tf.constant(data["changes"][0]))[
           "images"].numpy()}
# The exemplar transfer: every face given the second face's AUs as read, and it given each face's.
swap = sig["transfer"](images_a=faces, images_b=faces[1:2])
out.update(a_with_b=swap["a_with_b"].numpy(), b_with_a=swap["b_with_a"].numpy())
png = [tf.io.encode_png(face).numpy() for face in data["faces"]]
swap = sig["transfer_encoded"](image_bytes_a=tf.constant(png), image_bytes_b=tf.constant(png[1:2]))
out["a_with_b_decoded"] = np.stack([tf.io.decode_png(b).numpy() for b in swap["a_with_b_bytes"].numpy()])
errors = {}
try:
    sig["transfer"](images_a=faces, images_b=faces[:2])
    errors["pairs"] = None
except tf.errors.InvalidArgumentError as error:
    errors["pairs"] = error.message
for name, changes in {"range": data["changes"] * 3.0, "width": data["changes"][:, :5]}.items():
    try:
        sig["translate_action_unit_changes"](images=faces, changes=tf.constant(changes))
        errors[name] = None
    except tf.errors.InvalidArgumentError as error:
        errors[name] = error.message
np.savez(output, **out)
json.dump({"errors": errors, "signatures": sorted(sig)}, open(errors_path, "w"))
"""
TINY = ["--g_conv_dim=8", "--g_num_res_blocks=0", "--d_conv_dim=8", "--d_num_layers=2", "--depth_g_conv_dim=8",
        "--depth_g_num_res_blocks=0", "--depth_d_conv_dim=8", "--depth_d_num_layers=2", "--perceptual_weight=0",
        "--batch_size=4", "--num_steps_depth=2", "--n_critic=2", "--progress=false", "--seed=2"]


@pytest.fixture(scope="session")  # once per worker, however its tests are interleaved
def au_export(tmp_path_factory):
    """A tiny AU run (its G_rgb with --condition_norms: the conditional norms go through export, TFLite and the
    web folder too) and its export with TFLite and the web folder."""
    root = tmp_path_factory.mktemp("au_export")
    data, run, base = str(root / "data"), str(root / "run"), str(root / "saved_models" / "au")
    done = run_cli(["-m", "expr3d.train", f"--data_dir={data}", f"--model_dir={run}", "--generate_synthetic",
                    "--synthetic_identities=6", "--image_size=32", "--condition=action_units", "--depth_weight=0",
                    "--num_steps_gan=4", "--sample_every=4", "--condition_norms"] + TINY, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    done = run_cli(["-m", "expr3d.export", f"--model_dir={run}", f"--output={base}", "--tflite=fp32", "--web",
                    f"--data_dir={data}", "--parity_images=4"], timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert ("has no AU guide, so read_action_units, translate_action_unit_changes and transfer are not exported"
            in done.stderr)
    version_dir = os.path.join(base, "1")
    rng = np.random.default_rng(0)
    faces = rng.integers(0, 256, (3, 40, 40, 3), dtype=np.uint8)
    units = (rng.uniform(size=(3, NUM_ACTION_UNITS)) * (rng.uniform(size=(3, NUM_ACTION_UNITS)) < 0.4)).astype(
        np.float32)
    x = rng.uniform(-1, 1, (3, 32, 32, 3)).astype(np.float32)
    inputs = str(root / "inputs.npz")
    np.savez(inputs, faces=faces, units=units, x=x)
    done = run_cli(["-c", FRESH, version_dir, inputs, str(root / "out.npz"), str(root / "errors.json")])
    assert done.returncode == 0, done.stderr[-3000:]
    return {"root": root, "data": data, "run": run, "version_dir": version_dir, "faces": faces, "units": units,
            "x": x, "out": dict(np.load(str(root / "out.npz"))), **json.load(open(root / "errors.json"))}


def _keras(au_export, faces, units):
    import tensorflow as tf

    from expr3d.run_dir import RunDir

    g_rgb = RunDir(au_export["run"]).load_network("g_rgb")
    x = signatures.to_model_input(tf.constant(faces), 32)
    out = g_rgb([x, tf.constant(units)], training=False)
    return signatures.to_uint8(out, faces.shape[1], faces.shape[2]).numpy(), g_rgb


@pytest.fixture(scope="session")
def reader_export(au_export):
    """The same run exported again (version 2, TFLite and web folder too) with an AU reader (`--au_reader`: a tiny
    AU regressor of its data), its dial signatures called in a fresh process."""
    from expr3d.metrics.au_judge import train_au_regressor

    root = au_export["root"]
    reader = str(root / "au_reader")
    train_au_regressor(au_export["data"], reader, epochs=1, width=8, log=open(os.devnull, "w"))
    base = str(root / "saved_models" / "au")
    done = run_cli(["-m", "expr3d.export", f"--model_dir={au_export['run']}", f"--output={base}",
                    f"--au_reader={reader}", "--tflite=fp32", "--web", f"--data_dir={au_export['data']}",
                    "--parity_images=4"], timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    version_dir = os.path.join(base, "2")
    changes = np.zeros((3, NUM_ACTION_UNITS), np.float32)
    changes[:, 8] = [0.7, -0.4, 0.0]  # AU12 up, down, unchanged
    changes[1, 2] = 1.0  # and AU4 to full on the second face
    inputs = str(root / "reader_inputs.npz")
    np.savez(inputs, faces=au_export["faces"], changes=changes)
    done = run_cli(["-c", FRESH_READER, version_dir, inputs, str(root / "reader_out.npz"),
                    str(root / "reader_errors.json")])
    assert done.returncode == 0, done.stderr[-3000:]
    return {"reader": reader, "version_dir": version_dir, "changes": changes,
            "out": dict(np.load(str(root / "reader_out.npz"))), **json.load(open(root / "reader_errors.json"))}


@pytest.mark.slow
def test_with_a_reader_a_dial_keeps_the_face_s_own_action_units(au_export, reader_export):
    import tensorflow as tf

    from expr3d.metrics.au_judge import load_au_regressor

    info = json.load(open(os.path.join(reader_export["version_dir"], "expr3d_export.json")))
    assert info["action_unit_reader"]["path"] == os.path.abspath(reader_export["reader"])
    assert {"read_action_units", "translate_action_unit_changes"} <= set(reader_export["signatures"])
    reader = load_au_regressor(reader_export["reader"])
    expected_read = reader.predict(signatures.to_model_input(tf.constant(au_export["faces"]), 32).numpy())
    out = reader_export["out"]
    assert np.abs(out["read"] - expected_read).max() < 1e-4
    asked = np.clip(expected_read + reader_export["changes"], 0.0, 1.0)
    assert np.abs(out["asked"] - asked).max() < 1e-4  # the face's own AUs, one or two moved
    expected, _ = _keras(au_export, au_export["faces"], out["asked"])
    assert np.abs(out["changed"].astype(int) - expected).max() <= 1
    one = np.clip(expected_read + reader_export["changes"][0], 0.0, 1.0)  # one change for every face
    assert np.abs(out["one"].astype(int) - _keras(au_export, au_export["faces"], one)[0]).max() <= 1
    assert "changes must be changes in [-1, 1]" in reader_export["errors"]["range"]
    assert f"changes must be [N, {NUM_ACTION_UNITS}]" in reader_export["errors"]["width"]


@pytest.mark.slow
def test_with_a_reader_the_export_transfers_an_exemplar_s_aus_as_a_transfer_export_does(au_export, reader_export):
    assert {"transfer", "transfer_encoded"} <= set(reader_export["signatures"])
    out, faces = reader_export["out"], au_export["faces"]
    read = out["read"]  # read_action_units' reading of each face (checked against the reader above)
    expected, _ = _keras(au_export, faces, np.repeat(read[1:2], 3, axis=0))  # every face with face 1's AUs
    assert out["a_with_b"].shape == faces.shape and np.abs(out["a_with_b"].astype(int) - expected).max() <= 1
    expected, _ = _keras(au_export, np.repeat(faces[1:2], 3, axis=0), read)  # face 1 with each face's AUs
    assert np.abs(out["b_with_a"].astype(int) - expected).max() <= 1
    # The encoded variant gives the same faces (PNG in, PNG out).
    assert np.abs(out["a_with_b_decoded"].astype(int) - out["a_with_b"]).max() <= 1
    assert "images_a and images_b must hold the same number of faces" in reader_export["errors"]["pairs"]


@pytest.mark.slow
def test_synthesize_edits_the_action_units_of_every_photo_keeping_the_rest(au_export, reader_export, tmp_path):
    import cv2

    from expr3d import synthesize
    from expr3d.data.synthetic import render_example

    photos = tmp_path / "photos"
    photos.mkdir()
    cv2.imwrite(str(photos / "face.png"), cv2.cvtColor(render_example(3, image_size=160, identity=1).image,
                                                       cv2.COLOR_RGB2BGR))
    output = tmp_path / "out"
    done = run_cli(["-m", "expr3d.synthesize", f"--saved_model={reader_export['version_dir']}",
                    f"--images={photos}", "--action_units=AU12+0.5; AU4=1,AU26-0.2", f"--output={output}"])
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.load(open(output / "summary.json"))
    assert summary["action_units"] == ["AU12+0.5", "AU4=1_AU26-0.2"]
    [entry] = summary["processed"]
    read = np.asarray(entry["action_units"]["read"], np.float32)
    edits = synthesize.parse_action_unit_edits("AU12+0.5; AU4=1,AU26-0.2")
    for name, edit in edits:
        asked = np.asarray(entry["action_units"]["asked"][name], np.float32)
        assert np.abs(asked - synthesize.asked_action_units(read, edit)).max() < 1e-3, name
        assert cv2.imread(str(output / "face" / f"{name}.png")) is not None
    assert cv2.imread(str(output / "grid.png")) is not None
    # Without a reader in the export, and without edits: refused, naming what is missing.
    for args, message in (([f"--saved_model={au_export['version_dir']}", "--action_units=AU12+0.5"],
                           "has no AU reader (read_action_units)"),
                          ([f"--saved_model={reader_export['version_dir']}"], "pass --action_units=EDITS")):
        done = run_cli(["-m", "expr3d.synthesize", *args, f"--images={photos}", f"--output={tmp_path}/x"])
        last = done.stderr.strip().splitlines()[-1]
        assert done.returncode == 1 and message in last and not os.path.exists(tmp_path / "x"), last


@pytest.mark.slow
def test_synthesize_gives_every_photo_an_exemplar_s_aus_through_the_reader_export(au_export, reader_export,
                                                                                  tmp_path):
    import cv2

    from expr3d.data.synthetic import render_example

    photos = tmp_path / "photos"
    photos.mkdir()
    cv2.imwrite(str(photos / "face.png"), cv2.cvtColor(render_example(0, image_size=160, identity=1).image,
                                                       cv2.COLOR_RGB2BGR))
    exemplar = str(tmp_path / "smile.png")
    cv2.imwrite(exemplar, cv2.cvtColor(render_example(1, image_size=160, identity=2).image, cv2.COLOR_RGB2BGR))
    output = tmp_path / "out"
    done = run_cli(["-m", "expr3d.synthesize", f"--saved_model={reader_export['version_dir']}",
                    f"--images={photos}", f"--exemplar={exemplar}", f"--output={output}"])
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.load(open(output / "summary.json"))
    assert summary["expressions"] == ["exemplar"] and len(summary["processed"]) == 1
    # The photo at its own size with the face redrawn, the crops beside it.
    source = cv2.imread(str(photos / "face.png"))
    result = cv2.imread(str(output / "face" / "exemplar.png"))
    assert result.shape == source.shape and np.abs(result.astype(int) - source).max() > 0
    for name in ("face/face_exemplar.png", "exemplar_face.png", "grid.png"):
        assert cv2.imread(str(output / name)) is not None, name
    # Without a reader in the export, or with AU edits as well: refused before anything is written.
    for args, message in (([f"--saved_model={au_export['version_dir']}"], "without an AU reader"),
                          ([f"--saved_model={reader_export['version_dir']}", "--action_units=AU12+0.5"],
                           "--exemplar and --action_units: give one")):
        done = run_cli(["-m", "expr3d.synthesize", *args, f"--images={photos}", f"--exemplar={exemplar}",
                        f"--output={tmp_path}/x"])
        last = done.stderr.strip().splitlines()[-1]
        assert done.returncode == 1 and message in last and not os.path.exists(tmp_path / "x"), last


@pytest.mark.slow
def test_lite_edits_a_photo_s_action_units_with_the_tflite_reader_and_generator(au_export, reader_export, tmp_path):
    import cv2

    from expr3d import synthesize
    from expr3d.data.synthetic import render_example

    photo = str(tmp_path / "face.png")
    cv2.imwrite(photo, cv2.cvtColor(render_example(3, image_size=160, identity=1).image, cv2.COLOR_RGB2BGR))
    model = os.path.join(reader_export["version_dir"], "tflite", "au_generator_fp32.tflite")
    done = run_cli(["-m", "expr3d.lite", f"--model={model}", f"--image={photo}", "--action_units=AU12+0.5,AU4=1",
                    f"--output={tmp_path}/out.png"])
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    read = np.asarray(result["action_units"]["read"], np.float32)
    [(_, edit)] = synthesize.parse_action_unit_edits("AU12+0.5,AU4=1")
    assert np.abs(np.asarray(result["action_units"]["asked"]) - synthesize.asked_action_units(read, edit)).max() < 1e-3
    assert cv2.imread(str(tmp_path / "out.png")) is not None
    # An AU generator asked for an expression, or for AUs without a reader beside it: one line naming what is missing.
    no_reader = os.path.join(au_export["version_dir"], "tflite", "au_generator_fp32.tflite")
    for args, message in (([f"--model={model}", "--expression=happy"], "is an AU generator: pass --action_units"),
                          ([f"--model={no_reader}", "--action_units=AU12+0.5"], "no au_reader_*.tflite beside")):
        done = run_cli(["-m", "expr3d.lite", *args, f"--image={photo}", f"--output={tmp_path}/x.png"])
        last = done.stderr.strip().splitlines()[-1]
        assert done.returncode == 1 and message in last and not os.path.exists(tmp_path / "x.png"), last


@pytest.mark.slow
def test_a_bad_au_reader_is_refused_naming_the_flag(au_export, tmp_path):
    done = run_cli(["-m", "expr3d.export", f"--model_dir={au_export['run']}", f"--output={tmp_path}/au",
                    f"--au_reader={tmp_path}/nothing"], timeout=300)
    last = done.stderr.strip().splitlines()[-1]
    assert done.returncode == 1 and f"--au_reader={tmp_path}/nothing" in last and "au_regressor.keras" in last, last
    assert not os.path.exists(tmp_path / "au")


@pytest.mark.slow
def test_the_signatures_translate_as_the_keras_generator(au_export):
    info = json.load(open(os.path.join(au_export["version_dir"], "expr3d_export.json")))
    assert info["condition"] == "action_units" and info["family"] == "stargan"
    assert info["model_config"]["condition_norms"] is True
    assert au_export["signatures"] == ["au_generator", "serving_default", "translate_action_units"]
    expected, g_rgb = _keras(au_export, au_export["faces"], au_export["units"])
    assert au_export["out"]["each"].shape == (3, 40, 40, 3)
    assert np.abs(au_export["out"]["each"].astype(int) - expected).max() <= 1
    one, _ = _keras(au_export, au_export["faces"], np.repeat(au_export["units"][:1], 3, axis=0))
    assert np.abs(au_export["out"]["one"].astype(int) - one).max() <= 1  # one vector for every face
    raw = np.asarray(g_rgb([au_export["x"], au_export["units"]], training=False))
    assert np.abs(au_export["out"]["raw"] - raw).max() < 1e-4


@pytest.mark.slow
def test_bad_action_units_are_invalid_argument_naming_them(au_export):
    errors = au_export["errors"]
    assert f"action_units must be [N, {NUM_ACTION_UNITS}]" in errors["width"]
    assert "action_units must be intensities in [0, 1]" in errors["range"]
    assert f"action_units must be [N, {NUM_ACTION_UNITS}]" in errors["count"]


@pytest.mark.slow
def test_tflite_au_generator_matches_the_saved_model(au_export):
    path = fixtures.au_tflite_with_parity(au_export["version_dir"])
    runner = tflite.LiteRunner(path, tflite.ACTION_UNITS)
    out = runner.run(image=au_export["x"], action_units=au_export["units"])["image"]
    assert np.abs(out - au_export["out"]["raw"]).max() < 1e-3
    with pytest.raises(ValueError, match="has no 'generator' signature"):
        tflite.LiteGenerator(path)


@pytest.mark.slow
def test_synthesize_refuses_an_au_export_naming_what_it_takes(au_export, tmp_path):
    import cv2

    photo = str(tmp_path / "face.png")
    cv2.imwrite(photo, au_export["faces"][0])
    done = run_cli(["-m", "expr3d.synthesize", f"--saved_model={au_export['version_dir']}", f"--images={photo}",
                    "--expressions=happy", f"--output={tmp_path}/out"])
    last = done.stderr.strip().splitlines()[-1]
    assert done.returncode == 1 and "export of an AU-conditioned run (--condition=action_units)" in last
    assert "translate_action_units" in last and not os.path.exists(tmp_path / "out")


def _face_photo(path, expression, identity):
    """A 640x480 photo at `path` with one procedural face of class `expression` in it."""
    import cv2

    from expr3d.data.synthetic import render_example

    photo = np.full((480, 640, 3), 90, np.uint8)
    photo[100:356, 200:456] = render_example(expression, image_size=256, identity=identity).image
    cv2.imwrite(str(path), cv2.cvtColor(photo, cv2.COLOR_RGB2BGR))
    return str(path)


@contextlib.contextmanager
def _app_page(version_dir):
    """The app on `version_dir`'s web folder in headless Chromium at a phone viewport, loaded and ready."""
    from expr3d import mobile
    from tests.mobile import browser

    browser.require_browser()
    from playwright.sync_api import sync_playwright

    server = mobile.serve(version_dir, port=0)
    try:
        with sync_playwright() as playwright:
            chromium = browser.launch(playwright)
            page = chromium.new_page(viewport=browser.PHONE)
            page.goto(server.url)
            assert page.evaluate("window.expr3d.ready"), page.text_content("#status")
            yield page
            chromium.close()
    finally:
        server.shutdown()
        server.server_close()


def _move_the_smile_slider(version_dir, root):
    """In the browser: the app on `version_dir`'s web folder, a face photo, AU12 (the lip-corner puller) moved to
    0.8 as a finger would. Returns the page's hooks: what it read (`read`, None without a reader), the sliders
    before the move, and the translation (`last`)."""
    from tests.mobile import browser

    photo_path = _face_photo(root / "au_face.png", 1, 0)
    with _app_page(version_dir) as page:
        assert page.locator("#action-units input[type=range]").count() == NUM_ACTION_UNITS
        assert "procedural" in page.text_content("#notice")
        page.set_input_files("#file", photo_path)
        browser.wait_for(page, "document.getElementById('status').textContent.startsWith('Face found')")
        sliders = page.evaluate("[...document.querySelectorAll('#action-units input')].map((e) => Number(e.value))")
        hooks = {"read": page.evaluate("window.expr3d.read"), "sliders": sliders,
                 "status": page.text_content("#status"), "crop": page.evaluate("Array.from(window.expr3d.state.crop)")}
        page.locator("#action-units input").nth(8).evaluate(
            "(el) => { el.value = '0.8'; el.dispatchEvent(new Event('change')); }")
        hooks["last"] = browser.wait_for(page, "window.expr3d.last")
    return hooks


@pytest.mark.slow
def test_the_web_export_and_the_app_drive_the_generator_with_action_unit_sliders(au_export):
    """An AU run's web folder (`--web`): batch-1 au_generator models; in the browser, one slider per AU, and the
    page's output equals the Python interpreter's on the page's own crop and AU vector."""
    from expr3d.deploy import web

    manifest = web.check_web_folder(os.path.join(au_export["version_dir"], "web"))
    assert manifest["condition"] == "action_units" and manifest["input_order"] == ["image", "action_units"]
    assert manifest["trained_on"]["kind"] == "procedural" and "reader" not in manifest
    hooks = _move_the_smile_slider(au_export["version_dir"], au_export["root"])
    assert hooks["read"] is None and hooks["sliders"] == [0.0] * NUM_ACTION_UNITS  # no reader: the sliders start at 0
    last = hooks["last"]
    units = np.asarray(last["vector"], np.float32)
    assert units[8] == pytest.approx(0.8) and units.sum() == pytest.approx(0.8)
    model = tflite.LiteRunner(os.path.join(au_export["version_dir"], "web", manifest["models"]["int8"]["file"]),
                              tflite.ACTION_UNITS)
    crop = np.asarray(last["crop"], np.float32).reshape(1, 32, 32, 3)
    expected = model.run(image=crop, action_units=units[None])["image"][0]
    assert np.abs(np.asarray(last["output"], np.float32).reshape(32, 32, 3) - expected).max() < 1 / 127.5


@pytest.mark.slow
def test_the_tflite_reader_reads_as_the_saved_model(reader_export):
    info = json.load(open(os.path.join(reader_export["version_dir"], "expr3d_export.json")))
    entry = info["au_reader_tflite"]["fp32"]
    assert entry["file"] == "tflite/au_reader_fp32.tflite" and entry["parity"]["max_abs_error"] < 1e-4
    path = os.path.join(reader_export["version_dir"], entry["file"])
    ok, ops = tflite.builtin_only(open(path, "rb").read())
    assert ok, ops
    faces = np.random.default_rng(3).uniform(-1, 1, (2, 32, 32, 3)).astype(np.float32)
    got = tflite.LiteRunner(path, tflite.AU_READER).run(image=faces)["action_units"]
    expected = tflite.saved_model_signature(reader_export["version_dir"], tflite.AU_READER)({"image": faces})
    assert np.abs(got - expected["action_units"]).max() < 1e-4


@pytest.mark.slow
def test_with_a_reader_the_app_s_sliders_start_where_the_face_is(reader_export, au_export):
    """The web folder carries the reader; the page reads the face's AUs into the sliders, and moving one slider
    asks for that AU and keeps the others as read."""
    from expr3d.deploy import web

    folder = os.path.join(reader_export["version_dir"], "web")
    manifest = web.check_web_folder(folder)
    assert manifest["reader"]["file"] == "au_reader_fp16.tflite" and manifest["reader"]["input_order"] == ["image"]
    assert manifest["reader"]["parity"]["max_abs_error"] < 0.01
    hooks = _move_the_smile_slider(reader_export["version_dir"], au_export["root"])
    crop = np.asarray(hooks["crop"], np.float32).reshape(1, 32, 32, 3)
    reader = tflite.LiteRunner(os.path.join(folder, manifest["reader"]["file"]), tflite.AU_READER)
    expected = reader.run(image=crop)["action_units"][0]
    read = np.asarray(hooks["read"], np.float32)
    assert np.abs(read - expected).max() < 1e-3
    assert np.allclose(hooks["sliders"], read, atol=1e-6) and "action units as read" in hooks["status"]
    asked = read.copy()
    asked[8] = 0.8
    assert np.allclose(hooks["last"]["vector"], asked, atol=1e-6)


@pytest.mark.slow
def test_with_a_reader_the_app_copies_the_expression_of_another_photo(reader_export, au_export):
    """The exemplar transfer in the browser: a second photo's face read by the TFLite reader, its AUs asked of the
    first face (the sliders show them); a photo without a face is refused, and nothing is drawn."""
    import cv2

    from tests.mobile import browser

    root = au_export["root"]
    paths = {"photo": _face_photo(root / "copy_photo.png", 0, 0),
             "exemplar": _face_photo(root / "copy_exemplar.png", 1, 3), "hills": str(root / "copy_hills.png")}
    cv2.imwrite(paths["hills"], np.tile(np.linspace(40, 200, 640, dtype=np.uint8)[None, :, None], (480, 1, 3)))
    folder = os.path.join(reader_export["version_dir"], "web")
    with _app_page(reader_export["version_dir"]) as page:
        assert page.locator("#exemplar").is_disabled()  # no face to copy onto yet
        page.set_input_files("#file", paths["photo"])
        browser.wait_for(page, "document.getElementById('status').textContent.startsWith('Face found')")
        page.set_input_files("#exemplar", paths["hills"])
        browser.wait_for(page, "document.getElementById('status').textContent.startsWith('No face found')")
        assert page.evaluate("window.expr3d.last") is None and page.evaluate("window.expr3d.exemplar") is None
        page.set_input_files("#exemplar", paths["exemplar"])
        last = browser.wait_for(page, "window.expr3d.last")
        exemplar = page.evaluate("window.expr3d.exemplar")
        own = page.evaluate("window.expr3d.read")
        sliders = page.evaluate("[...document.querySelectorAll('#action-units input')].map((e) => Number(e.value))")
    manifest = json.load(open(os.path.join(folder, "manifest.json")))
    reader = tflite.LiteRunner(os.path.join(folder, manifest["reader"]["file"]), tflite.AU_READER)
    read = reader.run(image=np.asarray(exemplar["crop"], np.float32).reshape(1, 32, 32, 3))["action_units"][0]
    assert np.abs(np.asarray(exemplar["read"]) - read).max() < 1e-3
    assert last["label"] == "the expression of copy_exemplar.png"
    assert np.allclose(last["vector"], exemplar["read"], atol=1e-6)
    assert np.allclose(sliders, exemplar["read"], atol=1e-6)
    assert np.abs(np.asarray(own) - np.asarray(exemplar["read"])).max() > 0  # another face, another reading
    generator = tflite.LiteRunner(os.path.join(folder, manifest["models"]["int8"]["file"]), tflite.ACTION_UNITS)
    expected = generator.run(image=np.asarray(last["crop"], np.float32).reshape(1, 32, 32, 3),
                             action_units=np.asarray(last["vector"], np.float32)[None])["image"][0]
    assert np.abs(np.asarray(last["output"], np.float32).reshape(32, 32, 3) - expected).max() < 1 / 127.5
