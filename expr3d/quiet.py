"""Quiet start-up: TensorFlow's C++ start-up log only when `--verbosity` asks for it.

Quiet by default: TensorFlow's C++ start-up log (the absl::InitializeLog banner, "Could not find cuda drivers",
"failed call to cuInit", cpu_feature_guard/oneDNN notes, grappler's "remapper failed", ...) is not shown, nor
INFO-level Python log lines (e.g. TensorFlow's "... will be renamed to ..." while exporting; those are held back by
`expr3d.cli.run`, which sets absl's logging to WARNING). absl's `--verbosity` (`-v`) brings them back:

    (default)         warnings and errors; TensorFlow's C++ log off (TF_CPP_MIN_LOG_LEVEL=3, start-up lines dropped)
    --verbosity=0     also INFO log lines (absl's usual default)
    --verbosity=1     also DEBUG lines and TensorFlow's C++ log as TensorFlow prints it (higher: absl's vlog levels)

A TF_CPP_MIN_LOG_LEVEL already set in the environment is kept. `expr3d.cli.run` calls `quiet_start_up` right after
the flags are parsed, before any expr3d command imports TensorFlow (none does at module level: bad flags fail in
~1 s); `expr3d/__init__.py` calls it in the processes a quiet command starts (`QUIET_ENV`). Nothing here imports
TensorFlow or absl.
"""
import contextlib
import importlib.abc
import importlib.util
import os
import re
import sys
import tempfile

VERBOSE = 1  # --verbosity from which TensorFlow's C++ log is shown
QUIET_ENV = "EXPR3D_QUIET_START_UP"  # set for the processes a quiet command starts (expr3d/__init__.py reads it)
# The lines TensorFlow's C++ libraries print while `import tensorflow` runs, whatever TF_CPP_MIN_LOG_LEVEL says
# (XLA/CUDA stubs log through Abseil before anything could configure it): Abseil's banner, then glog-style records
# ("I0000 00:00:1796180651.444624    3156 cudart_stub.cc:31] Could not find cuda drivers ...") with their
# continuation lines.
_START_UP_BANNER = "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR"
_LOG_RECORD = re.compile(r"[IWEF]\d{4} \d\d:\d\d:\d+\.\d+ +\d+ [\w.+-]+:\d+\] ")
_CONTINUATIONS = ("To enable the following instructions:",)


def quiet_start_up(verbosity=None):
    """Quiet TensorFlow for this process and the ones it starts, unless `verbosity` (--verbosity, None when not
    given) >= VERBOSE: TF_CPP_MIN_LOG_LEVEL=3 unless already set, and `import tensorflow` with its C++ start-up lines
    dropped (`_QuietTensorFlowImport`). Must run before TensorFlow is imported; a no-op for what is already loaded."""
    marker = os.environ.get(QUIET_ENV)
    if verbosity is not None and verbosity >= VERBOSE:
        # A child of a quiet command asked for the log: undo what its parent set (not what the user set).
        if marker == "set":
            os.environ.pop("TF_CPP_MIN_LOG_LEVEL", None)
        os.environ.pop(QUIET_ENV, None)
        for finder in [f for f in sys.meta_path if isinstance(f, _QuietTensorFlowImport)]:
            sys.meta_path.remove(finder)
        return
    if marker is None:
        marker = "kept" if "TF_CPP_MIN_LOG_LEVEL" in os.environ else "set"
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        os.environ[QUIET_ENV] = marker
    _install_quiet_import()


def drop_start_up_lines(text):
    """`text` (what fd 2 received during `import tensorflow`) without TensorFlow's C++ log records."""
    kept, in_record = [], False
    for line in text.splitlines(keepends=True):
        if line.rstrip("\r\n") == _START_UP_BANNER or _LOG_RECORD.match(line):
            in_record = True
        elif not (in_record and line.startswith(_CONTINUATIONS)):
            in_record = False
            kept.append(line)
    return "".join(kept)


# What LiteRT's C++ runtime prints on stderr when it builds an interpreter, whatever any log level says.
_LITERT_INFO = ("INFO: Created TensorFlow Lite XNNPACK delegate for CPU.", "INFO: Initialized TensorFlow Lite runtime.")


def drop_litert_info(text):
    """`text` without LiteRT's interpreter-creation INFO lines."""
    return "".join(line for line in text.splitlines(keepends=True) if line.rstrip("\r\n") not in _LITERT_INFO)


def litert_info_dropped():
    """A context for building a LiteRT interpreter (and allocating its tensors, when XNNPACK is applied) without its
    INFO line on stderr; anything else written to fd 2 meanwhile is replayed."""
    return _start_up_lines_dropped(drop_litert_info)


@contextlib.contextmanager
def _start_up_lines_dropped(drop=None):
    """File descriptor 2 captured while the block runs, then replayed without TensorFlow's log records (or what
    `drop` removes; everything is replayed when the block raises). A no-op when fd 2 cannot be duplicated or no
    temporary file made."""
    drop = drop or drop_start_up_lines
    sys.stderr.flush()
    try:
        capture = tempfile.TemporaryFile()
    except OSError:  # no usable temporary directory: nothing is dropped
        yield
        return
    try:
        saved = os.dup(2)
    except OSError:
        capture.close()
        yield
        return
    os.dup2(capture.fileno(), 2)
    failed = True
    try:
        yield
        failed = False
    finally:
        try:
            sys.stderr.flush()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            text = capture.read().decode("utf-8", "replace")
            capture.close()
            text = text if failed else drop(text)
            if text:
                sys.stderr.write(text)
                sys.stderr.flush()


class _QuietLoader:
    """Wraps the `tensorflow` package's loader: its `exec_module` (the whole `import tensorflow`) runs with
    `_start_up_lines_dropped`."""

    def __init__(self, loader):
        self._loader = loader

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        try:
            with _start_up_lines_dropped():
                self._loader.exec_module(module)
        finally:
            module.__loader__ = self._loader  # later readers see TensorFlow's own loader
            if getattr(module, "__spec__", None) is not None:
                module.__spec__.loader = self._loader

    def __getattr__(self, name):
        return getattr(self._loader, name)


class _QuietTensorFlowImport(importlib.abc.MetaPathFinder):
    """A `sys.meta_path` finder that hands out `tensorflow`'s spec with `_QuietLoader` (once; then it leaves)."""

    def find_spec(self, name, path=None, target=None):
        if name != "tensorflow":
            return None
        if self in sys.meta_path:
            sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.loader is not None:
            spec.loader = _QuietLoader(spec.loader)
        return spec


def _install_quiet_import():
    if "tensorflow" not in sys.modules and not any(isinstance(f, _QuietTensorFlowImport) for f in sys.meta_path):
        sys.meta_path.insert(0, _QuietTensorFlowImport())

