"""expr3d.mobile's server: what it serves, what it refuses (path traversal in every spelling), its headers, how
--model is resolved, and the CLI's messages. A real server on 127.0.0.1 and real HTTP; no browser needed."""
import http.client
import json
import os
import re
import subprocess
import sys

import pytest

from expr3d import mobile
from expr3d.deploy import web

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _web_folder(path, manifest=None):
    os.makedirs(path, exist_ok=True)
    for name in web.REQUIRED_FILES:
        with open(os.path.join(path, name), "wb") as f:
            f.write(b"x")
    with open(os.path.join(path, web.MANIFEST), "w") as f:
        json.dump(manifest or {"format": web.FORMAT}, f)
    return str(path)


def _app_folder(path):
    os.makedirs(os.path.join(path, "vendor", "litertjs-core", "wasm"), exist_ok=True)
    os.makedirs(os.path.join(path, "node_modules", "x"), exist_ok=True)
    with open(os.path.join(path, "index.html"), "w") as f:
        f.write('<html><script type="importmap">{"imports": {}}</script></html>')
    for name in ("app.js", "package.json", ".gitignore", "vendor/litertjs-core/index.js",
                 "vendor/litertjs-core/wasm/a.wasm", "node_modules/x/secret.js", "notes.py"):
        with open(os.path.join(path, name), "w") as f:
            f.write("//")
    return str(path)


@pytest.fixture
def folders(tmp_path):
    app = _app_folder(tmp_path / "app")
    model = _web_folder(tmp_path / "web")
    with open(tmp_path / "secret.txt", "w") as f:
        f.write("outside")
    os.symlink(tmp_path / "secret.txt", os.path.join(model, "escape.tflite"))
    os.symlink(tmp_path / "secret.txt", os.path.join(app, "vendor", "escape.js"))
    os.symlink(tmp_path / "secret.txt", os.path.join(app, "escape.js"))
    return os.path.realpath(app), os.path.realpath(model)


@pytest.mark.parametrize("path, status, served", [
    ("/", 200, "index.html"),
    ("/app.js", 200, "app.js"),
    ("/app.js?v=2", 200, "app.js"),
    ("/vendor/litertjs-core/index.js", 200, "vendor/litertjs-core/index.js"),
    ("/vendor/litertjs-core/wasm/a.wasm", 200, "vendor/litertjs-core/wasm/a.wasm"),
    ("/model/manifest.json", 200, "MODEL/manifest.json"),
    ("/model/face_detector.tflite", 200, "MODEL/face_detector.tflite"),
    ("/../secret.txt", 404, None),
    ("/model/../../secret.txt", 404, None),
    ("/vendor/../app.js", 404, None),
    ("/model/..%2f..%2fsecret.txt", 400, None),
    ("/model/%2e%2e/secret.txt", 400, None),
    ("/model/..%5csecret.txt", 400, None),
    ("/model\\..\\secret.txt", 400, None),
    ("/model/manifest.json%00.png", 400, None),
    ("//etc/passwd", 404, None),
    ("/model/escape.tflite", 404, None),  # a symlink out of the model folder
    ("/vendor/escape.js", 404, None),  # ... and out of vendor/
    ("/escape.js", 404, None),  # ... and out of the app folder
    ("/package.json", 404, None),
    ("/node_modules/x/secret.js", 404, None),
    ("/.gitignore", 404, None),
    ("/model/.hidden", 404, None),
    ("/notes.py", 404, None),
    ("/model", 404, None),
    ("/model/", 404, None),
    ("/model/a/b", 404, None),
    ("relative", 400, None),
])
def test_route_serves_the_app_and_the_model_folder_and_nothing_else(folders, path, status, served):
    app, model = folders
    got_status, got_path = mobile.route(path, app, model)
    assert got_status == status
    if served:
        expected = os.path.join(model, served[6:]) if served.startswith("MODEL/") else os.path.join(app, served)
        assert got_path == os.path.realpath(expected)
    else:
        assert got_path is None


def _raw(server, method, path):
    host, port = server.server_address[:2]
    connection = http.client.HTTPConnection(host, port, timeout=10)
    connection.putrequest(method, path, skip_host=False, skip_accept_encoding=True)  # sent exactly as given
    connection.endheaders()
    response = connection.getresponse()
    body = response.read()
    connection.close()
    return response, body


def test_a_real_server_sends_isolation_and_csp_headers_and_refuses_escapes(folders):
    app, model = folders
    server = mobile.MobileServer("127.0.0.1", 0, app, model)
    import threading

    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        response, body = _raw(server, "GET", "/")
        assert response.status == 200 and body.startswith(b"<html>")
        assert response.getheader("Content-Type").startswith("text/html")
        assert response.getheader("Cross-Origin-Opener-Policy") == "same-origin"
        assert response.getheader("Cross-Origin-Embedder-Policy") == "require-corp"
        csp = response.getheader("Content-Security-Policy")
        assert "default-src 'self'" in csp and "connect-src 'self'" in csp
        assert re.search(r"script-src 'self' 'wasm-unsafe-eval' 'sha256-[A-Za-z0-9+/=]+'", csp)
        response, _ = _raw(server, "GET", "/vendor/litertjs-core/wasm/a.wasm")
        assert response.getheader("Content-Type") == "application/wasm"
        for path in ("/../secret.txt", "/model/..%2fsecret.txt", "/model/escape.tflite"):
            response, body = _raw(server, "GET", path)
            assert response.status in (400, 404) and b"outside" not in body, path
        response, body = _raw(server, "HEAD", "/app.js")
        assert response.status == 200 and body == b""
        response, _ = _raw(server, "POST", "/model/manifest.json")
        assert response.status == 405
    finally:
        server.shutdown()
        server.server_close()


def test_the_import_map_hash_is_the_one_chromium_computes():
    # The CSP source for the real page's inline import map: sha256 of the script's text, base64.
    import base64
    import hashlib

    html = open(os.path.join(REPO, "mobile", "index.html"), encoding="utf-8").read()
    text = re.search(r'<script type="importmap">(.*?)</script>', html, re.S).group(1)
    expected = base64.b64encode(hashlib.sha256(text.encode()).digest()).decode()
    assert mobile.import_map_hash(os.path.join(REPO, "mobile")) == f"'sha256-{expected}'"


def test_model_resolves_a_base_path_a_version_or_the_web_folder(tmp_path):
    base = tmp_path / "saved_models" / "m"
    for version in (1, 2):
        _web_folder(base / str(version) / "web")
    os.makedirs(base / "3")  # a newer version exported without --web
    assert mobile.resolve_model(str(base)) == str(base / "2" / "web")
    assert mobile.resolve_model(str(base / "1")) == str(base / "1" / "web")
    assert mobile.resolve_model(str(base / "1" / "web")) == str(base / "1" / "web")


def test_model_errors_name_what_is_missing(tmp_path):
    with pytest.raises(mobile.MobileError, match="is not a directory"):
        mobile.resolve_model(str(tmp_path / "nope"))
    os.makedirs(tmp_path / "plain" / "1")
    with pytest.raises(mobile.MobileError, match=r"holds no web export .*versions: \[1\].*--web"):
        mobile.resolve_model(str(tmp_path / "plain"))
    old = _web_folder(tmp_path / "old" / "web")
    os.remove(os.path.join(old, "generator_fp16.tflite"))
    with pytest.raises(mobile.MobileError, match="has no generator_fp16.tflite: not a web export of this version"):
        mobile.resolve_model(str(tmp_path / "old"))
    wrong = _web_folder(tmp_path / "wrong", manifest={"format": "expr3d web v0"})
    with pytest.raises(mobile.MobileError, match="format 'expr3d web v0'"):
        mobile.resolve_model(wrong)


def test_an_app_folder_without_its_npm_runtime_says_to_run_npm_ci(tmp_path):
    app = _app_folder(tmp_path / "app")
    os.remove(os.path.join(app, "vendor", "litertjs-core", "index.js"))
    with pytest.raises(mobile.MobileError, match=r"npm ci --prefix"):
        mobile.check_app_dir(app)


def _cli(args, timeout=30):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    return subprocess.run([sys.executable, "-m", "expr3d.mobile", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=timeout)


def test_cli_refuses_a_folder_without_a_web_export_in_one_line(tmp_path):
    os.makedirs(tmp_path / "m" / "1")
    result = _cli([f"--model={tmp_path / 'm'}"])
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("expr3d.mobile: ") and "holds no web export" in lines[0]


@pytest.mark.skipif(not os.path.isfile(os.path.join(REPO, "mobile", "vendor", "litertjs-core", "index.js")),
                    reason="needs `npm ci --prefix mobile`")
def test_cli_on_all_interfaces_says_what_it_exposes(tmp_path):
    model = _web_folder(tmp_path / "web")
    process = subprocess.Popen([sys.executable, "-m", "expr3d.mobile", f"--model={model}", "--host=0.0.0.0",
                                "--port=0"], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        lines = [process.stdout.readline() for _ in range(3)]
    finally:
        process.terminate()
        process.wait(timeout=10)
    assert lines[0].startswith("expr3d.mobile: serving http://127.0.0.1:")
    assert "exposes the app's files and the model folder's files (and nothing else)" in lines[1]
    assert "https://" in lines[2]
