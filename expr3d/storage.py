"""Writing the files one stage hands to the next: atomic writes, disk-full errors, and the library versions
recorded in what is written.

Atomic writes: a file is written to a hidden temporary beside its final name, fsync'ed, given the permissions a plain
`open()` would give, and renamed into place, so a reader never sees half a file:

    storage.atomic_write_json(path, document)            # or atomic_write_bytes(path, data)

Disk full (or a file-size limit) while writing checkpoints, models or exports: one line naming the path and the
bytes needed, instead of a traceback from deep inside TensorFlow or Keras.

    with storage.writing(final_path, needed_bytes=estimate):
        write_into_a_temporary_beside(final_path)    # the caller removes its temporary on failure

Recognised: OSError ENOSPC ("No space left on device"), EDQUOT (quota) and EFBIG (a file-size limit such as
`ulimit -f`), and TensorFlow's errors carrying those texts (its file system reports them as RESOURCE_EXHAUSTED /
OUT_OF_RANGE with the OS message).
"""
import contextlib
import errno
import importlib
import json
import os
import shutil
import sys
import tempfile

_DISK_FULL_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}
_DISK_FULL_TEXTS = ("No space left on device", "Disk quota exceeded", "File too large")


class DiskFullError(OSError):
    """Not enough space (or a file-size limit) to write `path`; the one-line message names it and the bytes needed.

    Raised with only a message (no errno / filename), so `str(error)` is the whole line.
    """


def is_disk_full(error):
    """Whether `error` (an OSError, or a TensorFlow error) says the disk, a quota or a file-size limit is full."""
    if isinstance(error, DiskFullError):
        return True
    if isinstance(error, OSError) and error.errno in _DISK_FULL_ERRNOS:
        return True
    text = str(getattr(error, "message", "") or error)
    return type(error).__module__.startswith("tensorflow") and any(t in text for t in _DISK_FULL_TEXTS)


def human(count):
    """Bytes as a short human-readable size."""
    value = float(count)
    for unit in ("bytes", "KB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            return f"{int(value)} bytes" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1000.0
    return f"{count} bytes"


def free_bytes(path):
    """Free bytes on the file system holding `path` (its nearest existing parent), or None."""
    path = os.path.abspath(path)
    while not os.path.exists(path):
        parent = os.path.dirname(path)
        if parent == path:
            return None
        path = parent
    try:
        return shutil.disk_usage(path).free
    except OSError:
        return None


def _reason(error):
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    text = str(getattr(error, "message", "") or error)
    return next((t for t in _DISK_FULL_TEXTS if t in text), "disk full")


def disk_full_error(path, needed_bytes, error, what="write"):
    """The one-line DiskFullError for `error` raised while writing `path` (`needed_bytes`: an estimate or None)."""
    needed = f"needs about {human(needed_bytes)} ({int(needed_bytes)} bytes)" if needed_bytes else "size unknown"
    free = free_bytes(path)
    free_text = f", {human(free)} free on that file system" if free is not None else ""
    return DiskFullError(f"not enough space to {what} {path}: {needed}{free_text} ({_reason(error)}); nothing was "
                         f"left there half-written - free some space and rerun")


@contextlib.contextmanager
def writing(path, needed_bytes=None, what="write"):
    """Turn a disk-full error raised inside the block into `disk_full_error(path, needed_bytes(...))`.

    `needed_bytes`: a number, or a callable computing it (called only on failure, e.g. an expensive estimate).
    """
    try:
        yield
    except DiskFullError:
        raise
    except Exception as error:  # noqa: BLE001 - only disk-full errors are translated, the rest re-raised
        if not is_disk_full(error):
            raise
        needed = needed_bytes() if callable(needed_bytes) else needed_bytes
        raise disk_full_error(path, needed, error, what) from None


def tree_bytes(path):
    """Bytes of the files below `path` (a file: its size), 0 if missing."""
    if os.path.isfile(path):
        return os.path.getsize(path)
    total = 0
    for directory, _, files in os.walk(path):
        for name in files:
            try:
                total += os.path.getsize(os.path.join(directory, name))
            except OSError:
                pass
    return total


def weights_bytes(*models):
    """Bytes of the weights of Keras models (what a `.keras` file or a SavedModel's variables roughly need)."""
    total = 0
    for model in models:
        if model is not None:
            total += sum(int(w.size) * w.dtype.itemsize for w in model.get_weights())
    return total


# --- atomic writes ----------------------------------------------------------------------------------------------------

def default_permissions(directory=False):
    """The mode a plain open()/mkdir() would give under the current umask (mkstemp/mkdtemp make 0600/0700)."""
    current = os.umask(0)
    os.umask(current)
    return (0o777 if directory else 0o666) & ~current


def publish(tmp, path):
    """Give a finished temporary file ordinary permissions and rename it into place."""
    os.chmod(tmp, default_permissions())
    os.replace(tmp, path)


def write_bytes_atomically(path, data):
    """Write `data` to `path` through a temporary file in the same folder and a rename: readers never see half."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        publish(tmp, path)  # mkstemp makes 0600; an output is an ordinary file
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise


def atomic_write_bytes(path, data):
    """`write_bytes_atomically`, a full disk (or a file-size limit) raising `DiskFullError` naming `path` and the
    bytes needed (the temporary is removed)."""
    with writing(path, len(data)):
        write_bytes_atomically(path, data)


def atomic_write_json(path, obj):
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=False) + "\n").encode())


def fsync_tree(directory):
    """fsync every file directly in `directory`, then the directory itself (before renaming it into place)."""
    for name in os.listdir(directory):
        path = os.path.join(directory, name)
        if os.path.isfile(path):
            with open(path, "rb") as handle:
                os.fsync(handle.fileno())
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# --- provenance -------------------------------------------------------------------------------------------------------

def library_versions(*names):
    """{name: version} of "python" and the given packages (e.g. "numpy", "tensorflow", "keras", "expr3d"), in the
    order given; a package without `__version__` reads "unknown". Imports each package named."""
    versions = {}
    for name in names:
        if name == "python":
            versions[name] = sys.version.split()[0]
        else:
            versions[name] = getattr(importlib.import_module(name), "__version__", "unknown")
    return versions
