"""The app in a real headless Chromium, served by expr3d.mobile from a real web export: a photo in, every expression
out, the same pixels as the Python LiteRT interpreter gives for the same crop, and each failure path's message."""
import base64
import json
import os
import shutil

import cv2
import numpy as np
import pytest

from tests.mobile import browser

pytestmark = pytest.mark.slow


def _write_photo(path, faces=((0, 1, 200, 100, 256),), size=(480, 640)):
    from expr3d.data.synthetic import render_example

    photo = np.full(size + (3,), 90, np.uint8)
    for identity, expression, x, y, side in faces:
        photo[y:y + side, x:x + side] = render_example(expression, image_size=side, identity=identity).image
    cv2.imwrite(str(path), cv2.cvtColor(photo, cv2.COLOR_RGB2BGR))
    return photo


@pytest.fixture(scope="module")
def world(exported, tmp_path_factory):
    browser.require_browser()
    from playwright.sync_api import sync_playwright

    from expr3d import mobile

    root = tmp_path_factory.mktemp("mobile")
    version_dir = exported["version_dir"]
    photo_path = root / "face.png"
    photo = _write_photo(photo_path)
    server = mobile.serve(version_dir, port=0)
    with sync_playwright() as playwright:
        chromium = browser.launch(playwright)
        yield {"root": root, "version_dir": version_dir, "web_dir": os.path.join(version_dir, "web"),
               "server": server, "photo": photo, "photo_path": str(photo_path), "playwright": playwright,
               "chromium": chromium}
        chromium.close()
    server.shutdown()
    server.server_close()


def _open(world, server=None, context=None):
    """A phone-sized page of the app, loaded and ready; records every request and page error."""
    context = context or world["chromium"].new_context(viewport=browser.PHONE)
    page = context.new_page()
    page.requests, page.errors = [], []
    page.on("request", lambda request: page.requests.append(request.url))
    page.on("pageerror", lambda error: page.errors.append(str(error)))
    page.goto((server or world["server"]).url)
    page.ready = page.evaluate("window.expr3d.ready")
    return page


def _upload(page, path):
    page.evaluate("window.expr3d.faces = null; window.expr3d.last = null")
    page.set_input_files("#file", path)


def test_every_expression_matches_the_python_interpreter_on_the_page_s_own_crop(world):
    from expr3d.deploy.tflite import LiteGenerator
    from expr3d.imaging import blazeface, crops
    from expr3d.imaging.pixels import from_uint8

    page = _open(world)
    assert page.ready, page.text_content("#status")
    manifest = json.load(open(os.path.join(world["web_dir"], "manifest.json")))
    size = manifest["image_size"]
    _upload(page, world["photo_path"])
    browser.wait_for(page, "window.expr3d.faces !== null")
    assert "Face found" in page.text_content("#status")

    # The page found the face where the Python detector finds it, and cut (nearly) the same crop.
    python_face = blazeface.BlazeFace()(world["photo"])[0]
    page_face = page.evaluate("window.expr3d.faces[0]")
    assert np.allclose(page_face["box"], python_face.box, atol=2.5)
    python_crop = blazeface.face_crop(python_face, size)
    generator = LiteGenerator(os.path.join(world["web_dir"], manifest["models"]["int8"]["file"]))
    expected_crop = from_uint8(crops.warp_image(world["photo"], python_crop.matrix, size))

    for index, name in enumerate(manifest["expressions"]):
        page.evaluate("window.expr3d.last = null")
        page.click(f'button[data-expression="{name}"]')
        last = browser.wait_for(page, "window.expr3d.last")
        crop = np.asarray(last["crop"], np.float32).reshape(size, size, 3)
        output = np.asarray(last["output"], np.float32).reshape(size, size, 3)
        reference = generator(crop[None], np.eye(8, dtype=np.float32)[[index]])[0]
        # Same model, same input: LiteRT.js's WebAssembly build and the Python interpreter agree within the int8
        # model's own error against float. On an idle machine they are identical; on a loaded one (two busy loops
        # beside this test, or CI's machine) one pair of interpreter instances in a few differs by a mean of 3e-3
        # (max 0.023) on one expression, and repeats that exactly on every further run of the page: the int8 model
        # quantises activations on the fly, so a last-bit difference moves a rounding step that travels through the
        # later layers (which side's set-up differs is not found yet). A wrong crop or condition is 0.2 away.
        difference = np.abs(output - reference)
        stats = (f"{name}: max {difference.max():.4f}, 99th percentile {np.quantile(difference, 0.99):.4f}, mean "
                 f"{difference.mean():.1e}, int8 parity max {manifest['models']['int8']['parity']['max_abs_error']:.4f}")
        assert difference.mean() < 1e-2, stats
        assert difference.max() <= max(manifest["models"]["int8"]["parity"]["max_abs_error"], 4 / 127.5), stats
        assert last["label"] == name and last["generatorMs"] > 0
        assert np.abs(crop - expected_crop).mean() < 0.06
        assert np.allclose(last["matrix"], python_crop.matrix, atol=0.05 * np.abs(python_crop.matrix).max())

    # The pasted photo: untouched far from the face, edited on it.
    png = page.evaluate("document.getElementById('photo').toDataURL('image/png')")  # lossless
    shown = cv2.cvtColor(cv2.imdecode(np.frombuffer(base64.b64decode(png.split(",", 1)[1]), np.uint8),
                                      cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    x, y, w, h = python_face.box
    far = np.ones(shown.shape[:2], bool)
    far[int(y - h):int(y + 2 * h), int(x - w):int(x + 2 * w)] = False
    assert np.array_equal(shown[far], world["photo"][far])
    assert np.abs(shown.astype(int) - world["photo"]).sum() > 0
    # Nothing left this machine's loopback, and the page raised no error.
    origin = world["server"].url.rstrip("/")
    assert page.requests and all(url.startswith(origin + "/") for url in page.requests), page.requests
    assert page.errors == []
    assert "ms" in page.text_content("#timing")
    page.context.close()


def test_a_photo_without_a_face_and_a_file_that_is_not_an_image_get_their_messages(world):
    page = _open(world)
    sky = world["root"] / "sky.png"
    image = np.zeros((300, 400, 3), np.uint8)
    image[...] = np.linspace(60, 220, 400)[None, :, None].astype(np.uint8)
    cv2.imwrite(str(sky), image)
    _upload(page, str(sky))
    browser.wait_for(page, "window.expr3d.faces !== null")
    assert page.text_content("#status").startswith("No face found in sky.png")
    assert page.get_attribute("#status", "class") == "error"
    assert page.is_disabled('button[data-expression="happy"]')

    text = world["root"] / "notes.png"
    text.write_text("this is not a picture")
    page.evaluate("window.expr3d.errors = []")
    page.set_input_files("#file", str(text))
    message = browser.wait_for(page, "window.expr3d.errors[0]")
    assert message.startswith("notes.png is not an image this browser can read")
    page.context.close()


def test_a_huge_photo_is_downscaled_before_detection(world):
    big = world["root"] / "huge.png"
    _write_photo(big, faces=((1, 2, 1600, 900, 1000),), size=(3000, 4000))
    page = _open(world)
    _upload(page, str(big))
    browser.wait_for(page, "window.expr3d.faces !== null", timeout=90)
    assert "Face found" in page.text_content("#status")
    assert page.evaluate("[window.expr3d.state.photo.width, window.expr3d.state.photo.height]") == [1024, 768]
    page.context.close()


def test_several_faces_edit_the_most_confident_and_say_so(world):
    path = world["root"] / "two.png"
    _write_photo(path, faces=((0, 1, 20, 100, 240), (3, 4, 380, 120, 240)))
    page = _open(world)
    _upload(page, str(path))
    browser.wait_for(page, "window.expr3d.faces !== null")
    assert "2 faces found: editing the most confident one" in page.text_content("#status")
    page.context.close()


def test_a_wrong_model_file_shows_its_message(world, tmp_path):
    from expr3d import mobile

    broken = tmp_path / "web"
    shutil.copytree(world["web_dir"], broken)
    (broken / "generator_int8.tflite").write_bytes(b"\0" * 4096)
    server = mobile.serve(str(broken), port=0)
    try:
        page = _open(world, server=server)
        assert page.ready is False
        status = page.text_content("#status")
        assert status.startswith("Model failed to load: generator:") and "not a TFLite model" in status
        page.context.close()
    finally:
        server.shutdown()
        server.server_close()


def test_the_camera_denied_and_a_camera_photo_edited(world):
    context = world["chromium"].new_context(viewport=browser.PHONE)  # no permission granted: getUserMedia refused
    page = _open(world, context=context)
    page.click("#camera")
    message = browser.wait_for(page, "window.expr3d.errors[0]")
    assert message.startswith("Camera access was denied") or message.startswith("No camera could be opened")
    context.close()

    # Chromium's fake camera playing our face photo as a video: the frame is taken, the face found and edited.
    video = world["root"] / "face.y4m"
    _write_y4m(video, world["photo"])
    fake = browser.launch(world["playwright"], ["--use-fake-device-for-media-stream",
                                                f"--use-file-for-fake-video-capture={video}"])
    try:
        context = fake.new_context(viewport=browser.PHONE, permissions=["camera"])
        page = _open(world, context=context)
        page.click("#camera")
        browser.wait_for(page, "!document.getElementById('snap').hidden && document.getElementById('video').videoWidth")
        page.click("#snap")
        browser.wait_for(page, "window.expr3d.faces !== null")
        assert page.text_content("#status").startswith("Face found in the camera photo")
        page.click('button[data-expression="happy"]')
        assert browser.wait_for(page, "window.expr3d.last")["label"] == "happy"
    finally:
        fake.close()


def _write_y4m(path, rgb, frames=3):
    """A short raw video (YUV4MPEG2, 4:2:0) of one RGB picture, for Chromium's fake camera."""
    height, width = rgb.shape[:2]
    planes = cv2.cvtColor(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), cv2.COLOR_BGR2YUV_I420).tobytes()
    with open(path, "wb") as f:
        f.write(f"YUV4MPEG2 W{width} H{height} F30:1 Ip A1:1 C420jpeg\n".encode())
        for _ in range(frames):
            f.write(b"FRAME\n" + planes)


def test_works_offline_once_loaded(world):
    from expr3d import mobile

    server = mobile.serve(world["version_dir"], port=0)
    page = _open(world, server=server)
    assert page.ready
    browser.wait_for(page, "window.expr3d.offlineReady")
    server.shutdown()
    server.server_close()  # the network is gone: every request now fails unless the service worker has the file
    page.reload()
    assert page.evaluate("window.expr3d.ready"), page.text_content("#status")
    _upload(page, world["photo_path"])
    browser.wait_for(page, "window.expr3d.faces !== null")
    page.click('button[data-expression="surprise"]')
    assert browser.wait_for(page, "window.expr3d.last")["label"] == "surprise"
    page.context.close()
