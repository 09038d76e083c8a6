"""Serve the browser app (mobile/) with a web export, for a desktop browser or a phone on the same network.

    python -m expr3d.mobile --model=saved_models/expr3d            # the newest version with a web/ folder
    python -m expr3d.mobile --model=saved_models/expr3d/3/web --port=8000
    python -m expr3d.mobile --model=... --host=0.0.0.0 --certfile=cert.pem --keyfile=key.pem   # a phone (HTTPS)

Serves exactly two things: the app's files (mobile/: the page, its modules and vendor/, which `npm ci` fills from the
npm packages) at /, and the files of the web folder at /model/. Nothing else: no directory listings, no dot files, no
node_modules, and no path escapes the two folders (`..`, encoded slashes or backslashes and symlinks pointing out are
refused with 404/400). Binds 127.0.0.1 unless --host says otherwise. The responses carry cross-origin isolation
(COOP/COEP, so LiteRT.js can use its threaded WebAssembly build) and a Content-Security-Policy that lets the page
connect only to this server.

The page runs everything on the device: the server never receives a photo (it has no upload route).
"""
import base64
import hashlib
import http.server
import os
import re
import socket
import ssl
import sys
import threading
import urllib.parse

from absl import flags

from expr3d import cli

PROGRAM = "expr3d.mobile"
APP_FILES = re.compile(r"^[A-Za-z0-9_-]+\.(html|js|css|json|webmanifest|png|svg|ico)$")
VENDOR_DIR = "vendor"
MODEL_PREFIX = "model"
CONTENT_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8", ".css": "text/css",
                 ".json": "application/json", ".webmanifest": "application/manifest+json", ".png": "image/png",
                 ".svg": "image/svg+xml", ".ico": "image/x-icon", ".wasm": "application/wasm",
                 ".tflite": "application/octet-stream"}


class MobileError(ValueError):
    """Bad --model / --app_dir (the message names the flag and says what to do)."""


def default_app_dir():
    """mobile/ beside the expr3d package (a clone's top level)."""
    return os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "mobile")


def resolve_model(path):
    """The web folder for --model: a web folder itself, an export version (<version>/web) or a model base path (its
    newest version that has web/). MobileError naming what is missing."""
    from expr3d.deploy import web

    if not os.path.isdir(path):
        raise MobileError(f"--model={path!r} is not a directory")
    if os.path.isfile(os.path.join(path, web.MANIFEST)):
        candidate = path
    elif os.path.isdir(os.path.join(path, web.WEB_DIR)):
        candidate = os.path.join(path, web.WEB_DIR)
    else:
        versions = sorted((int(name) for name in os.listdir(path) if name.isdigit()), reverse=True)
        with_web = [v for v in versions if os.path.isdir(os.path.join(path, str(v), web.WEB_DIR))]
        if not with_web:
            raise MobileError(f"--model={path!r} holds no web export (no manifest.json, no web/ folder, no version "
                              f"with one{f'; versions: {versions}' if versions else ''}); export with "
                              f"`python -m expr3d.export --model_dir=RUN --output={path} --web`")
        candidate = os.path.join(path, str(with_web[0]), web.WEB_DIR)
    try:
        web.check_web_folder(candidate)
    except ValueError as e:
        raise MobileError(f"--model: {e}") from None
    return os.path.abspath(candidate)


def check_app_dir(app_dir):
    for name in ("index.html", "app.js"):
        if not os.path.isfile(os.path.join(app_dir, name)):
            raise MobileError(f"--app_dir={app_dir!r} has no {name}: point it at the repository's mobile/ folder")
    runtime = os.path.join(app_dir, VENDOR_DIR, "litertjs-core", "index.js")
    if not os.path.isfile(runtime):
        raise MobileError(f"{runtime} is missing: the app's runtime comes from npm; run `npm ci --prefix {app_dir}` "
                          f"(it copies LiteRT.js into {os.path.join(app_dir, VENDOR_DIR)})")
    return os.path.abspath(app_dir)


def import_map_hash(app_dir):
    """CSP source for the page's inline import map (the only inline script)."""
    with open(os.path.join(app_dir, "index.html"), encoding="utf-8") as f:
        html = f.read()
    match = re.search(r'<script type="importmap">(.*?)</script>', html, re.S)
    if not match:
        return None
    digest = hashlib.sha256(match.group(1).encode("utf-8")).digest()
    return "'sha256-" + base64.b64encode(digest).decode("ascii") + "'"


def content_security_policy(app_dir):
    inline = import_map_hash(app_dir)
    return "; ".join([
        "default-src 'self'",
        f"script-src 'self' 'wasm-unsafe-eval'{' ' + inline if inline else ''}",
        "worker-src 'self' blob:",
        "connect-src 'self'",
        "img-src 'self' blob: data:",
        "media-src 'self' blob: mediastream:",
        "style-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'none'",
    ])


def _inside(root, path):
    """The real path of `path` when it is a regular file inside `root` (symlinks resolved), else None."""
    real = os.path.realpath(path)
    if os.path.commonpath([real, root]) != root or not os.path.isfile(real):
        return None
    return real


def route(raw_path, app_dir, model_dir):
    """(status, file path or None) for a request path. Pure, so the refusals are testable one by one."""
    path = raw_path.split("?", 1)[0].split("#", 1)[0]
    lowered = path.lower()
    # Encoded separators and dots would pass the split below and mean something else to the file system.
    if "%2f" in lowered or "%5c" in lowered or "%2e" in lowered or "\\" in path or "%00" in lowered:
        return 400, None
    parts = urllib.parse.unquote(path).split("/")
    if parts[0] != "":
        return 400, None
    parts = parts[1:]
    if parts == [""]:
        parts = ["index.html"]
    if any(part in ("", ".", "..") or part.startswith(".") for part in parts):
        return 404, None
    if parts[0] == MODEL_PREFIX:
        if len(parts) != 2:
            return 404, None
        found = _inside(model_dir, os.path.join(model_dir, parts[1]))
        return (200, found) if found else (404, None)
    if (len(parts) == 1 and not APP_FILES.match(parts[0])) or parts[0] in ("node_modules", "package.json",
                                                                           "package-lock.json"):
        return 404, None
    if len(parts) > 1 and parts[0] != VENDOR_DIR:
        return 404, None
    root = app_dir if len(parts) == 1 else os.path.join(app_dir, VENDOR_DIR)
    found = _inside(os.path.realpath(root), os.path.join(app_dir, *parts))
    return (200, found) if found else (404, None)


class Handler(http.server.BaseHTTPRequestHandler):
    server_version = "expr3d-mobile"
    sys_version = ""

    def _send(self, head_only):
        status, path = route(self.path, self.server.app_dir, self.server.model_dir)
        if status != 200:
            body = f"{status} {'bad request' if status == 400 else 'not found'}\n".encode()
            self.send_response(status)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self._common_headers()
            self.end_headers()
            if not head_only:
                self.wfile.write(body)
            return
        with open(path, "rb") as f:
            data = f.read()
        self.send_response(200)
        self.send_header("Content-Type", CONTENT_TYPES.get(os.path.splitext(path)[1], "application/octet-stream"))
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-cache")
        self._common_headers()
        self.end_headers()
        if not head_only:
            self.wfile.write(data)

    def _common_headers(self):
        self.send_header("Cross-Origin-Opener-Policy", "same-origin")
        self.send_header("Cross-Origin-Embedder-Policy", "require-corp")
        self.send_header("Cross-Origin-Resource-Policy", "same-origin")
        self.send_header("Content-Security-Policy", self.server.csp)
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Referrer-Policy", "no-referrer")

    def do_GET(self):  # noqa: N802 (http.server's names)
        self._send(head_only=False)

    def do_HEAD(self):  # noqa: N802
        self._send(head_only=True)

    def _refuse(self):
        self.send_response(405)
        self.send_header("Allow", "GET, HEAD")
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_POST = do_PUT = do_DELETE = do_PATCH = _refuse

    def log_message(self, format, *args):  # noqa: A002 (http.server's signature)
        if self.server.verbose:
            sys.stderr.write(f"{PROGRAM}: {self.address_string()} {format % args}\n")


class MobileServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, host, port, app_dir, model_dir, verbose=False, certfile=None, keyfile=None):
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.address_family = family
        super().__init__((host, port), Handler)
        self.app_dir, self.model_dir, self.verbose = app_dir, model_dir, verbose
        self.csp = content_security_policy(app_dir)
        self.scheme = "http"
        if certfile:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(certfile, keyfile)
            self.socket = context.wrap_socket(self.socket, server_side=True)
            self.scheme = "https"

    @property
    def url(self):
        host, port = self.server_address[:2]
        shown = "127.0.0.1" if host in ("0.0.0.0", "") else host
        return f"{self.scheme}://{shown}:{port}/"


def serve(model, host="127.0.0.1", port=8000, app_dir=None, verbose=False, certfile=None, keyfile=None):
    """A started MobileServer (serving in a daemon thread) for `model`; `.shutdown()` stops it."""
    model_dir = resolve_model(model)
    app_dir = check_app_dir(app_dir or default_app_dir())
    server = MobileServer(host, port, app_dir, model_dir, verbose, certfile, keyfile)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


FLAGS = flags.FLAGS


def define_flags():
    flags.DEFINE_string("model", None, "A web export: saved_models/NAME (its newest version with web/), "
                        "saved_models/NAME/VERSION or the web folder itself.")
    flags.DEFINE_string("host", "127.0.0.1", "Address to bind. 0.0.0.0 serves the app to your network (a phone).")
    flags.DEFINE_integer("port", 8000, "Port (0: any free port, printed).")
    flags.DEFINE_string("app_dir", None, "The app folder (default: the repository's mobile/).")
    flags.DEFINE_string("certfile", None, "TLS certificate (PEM) for https://: a phone's browser opens the camera "
                        "only on a secure page.")
    flags.DEFINE_string("keyfile", None, "TLS private key (PEM) for --certfile.")
    flags.DEFINE_bool("verbose", False, "Log every request.")
    cli.required("model")
    cli.in_range("port", 0, 65535)


def main(argv):
    cli.no_arguments(argv)
    if FLAGS.keyfile and not FLAGS.certfile:
        return cli.fail(PROGRAM, "--keyfile needs --certfile")
    for name in ("certfile", "keyfile"):
        value = getattr(FLAGS, name)
        if value and not os.path.isfile(value):
            return cli.fail(PROGRAM, f"--{name}={value!r} does not exist")
    try:
        server = serve(FLAGS.model, FLAGS.host, FLAGS.port, FLAGS.app_dir, FLAGS.verbose, FLAGS.certfile,
                       FLAGS.keyfile)
    except MobileError as e:
        return cli.fail(PROGRAM, str(e))
    except OSError as e:
        return cli.fail(PROGRAM, f"cannot listen on {FLAGS.host}:{FLAGS.port} ({e.strerror or e}); pick another "
                                 f"--port")
    print(f"{PROGRAM}: serving {server.url} (app: {server.app_dir}; model: {server.model_dir})", flush=True)
    if FLAGS.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"{PROGRAM}: --host={FLAGS.host} exposes the app's files and the model folder's files (and nothing "
              f"else) to every device that can reach this computer; photos are never sent here.", flush=True)
        if server.scheme == "http":
            print(f"{PROGRAM}: a phone opens the camera only on https:// (pass --certfile/--keyfile, docs/mobile.md); "
                  f"choosing a photo works over http.", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.shutdown()
    return 0


def run_cli():
    """`python -m expr3d.mobile` and the `expr3d-mobile` console script."""
    define_flags()
    cli.run(main, PROGRAM)


if __name__ == "__main__":
    run_cli()
