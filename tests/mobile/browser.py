"""A real headless Chromium (Debian's `chromium`, driven by Playwright's Python package without its own browser
download) for the app's tests.

Where Chromium or the npm runtime (mobile/vendor/, `npm ci --prefix mobile`) is missing, the tests skip with the
reason; `.ci/run` installs both and sets EXPR3D_REQUIRE_OPTIONAL=1 (for every optional part the tests need), which
turns the skip into a failure.
"""
import os
import shutil
import time

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
APP_DIR = os.path.join(REPO, "mobile")
# The flags the probe of this machine found necessary: no sandbox as root, no GPU, no background connections to
# Google's hosts (refused here, and never wanted from a test).
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-quic", "--disable-dev-shm-usage"]
PHONE = {"width": 390, "height": 844}


def chromium_path():
    return os.environ.get("EXPR3D_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")


def require_browser():
    """Skip (or, under EXPR3D_REQUIRE_OPTIONAL=1, fail) when the browser tests cannot run here."""
    missing = []
    if not chromium_path():
        missing.append("Debian's chromium (apt-get install chromium)")
    if not os.path.isfile(os.path.join(APP_DIR, "vendor", "litertjs-core", "index.js")):
        missing.append("the app's runtime (npm ci --prefix mobile)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        missing.append("playwright (pip install -e '.[test]')")
    if missing:
        message = "browser tests need " + " and ".join(missing)
        if os.environ.get("EXPR3D_REQUIRE_OPTIONAL") == "1":
            pytest.fail(message)
        pytest.skip(message)


def launch(playwright, extra_args=()):
    return playwright.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS + list(extra_args))


def wait_for(page, expression, timeout=60.0):
    """Poll a JavaScript expression until it is truthy (the page's CSP forbids Playwright's string evaluation in the
    page, which wait_for_function needs); returns its value."""
    deadline = time.monotonic() + timeout
    while True:
        value = page.evaluate(expression)
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {expression}; status: "
                                 f"{page.text_content('#status')!r}")
        time.sleep(0.05)
