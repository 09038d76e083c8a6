"""Output folders a command owns only in part: what it wrote is listed, so `--overwrite` removes only that.

Every command that writes into a folder (a dataset, an evaluation, a comparison, a photo batch, a classifier) keeps a
manifest there, `.expr3d-written.json`, listing per command the files (and folders) it created, relative to the
folder. A name is
listed *before* its file is created, so a crash can leave a listed name without its file (harmless) but never a file
of ours that is not listed. Then:

- without `--overwrite`, a folder that holds any listed file, or any file the command is about to write, is refused;
- with `--overwrite`, the listed files are removed (and folders the command created, if that leaves them empty); a
  file of the same name as one the command writes but not listed (someone else's) is refused even then: the
  command never replaces what it did not write;
- nothing else in the folder is read, moved or removed;
- no output may be one of the command's inputs (`check_not_input`).

Folders written before manifests existed are recognised by each command's `legacy` list (files that command is known
to have written, e.g. a dataset card whose provenance names it), so `--overwrite` keeps working on them.
"""

import contextlib
import fcntl
import glob
import json
import os

from expr3d import storage

MANIFEST_NAME = ".expr3d-written.json"
MANIFEST_VERSION = 1


class OutputError(ValueError):
    """An output location that is unsafe to write: the message is one line naming the flag and the path."""


def _realpath(path):
    return os.path.realpath(os.path.abspath(path))


def same_file(a, b):
    """True when `a` and `b` name the same file (also through links), whether or not they exist yet."""
    if os.path.exists(a) and os.path.exists(b):
        return os.path.samefile(a, b)
    return _realpath(a) == _realpath(b)


def is_inside(path, folder):
    """True when `path` is `folder` or lies below it (after resolving links)."""
    path, folder = _realpath(path), _realpath(folder)
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def _pairs(paths):
    """(flag, path) pairs from a {flag: path} dict or an iterable of pairs (one flag may name several paths)."""
    return list(paths.items()) if isinstance(paths, dict) else list(paths or ())


def check_not_input(outputs, inputs):
    """Refuse any output that is also an input. `outputs`/`inputs`: {flag: path} or (flag, path) pairs; empty paths
    are ignored."""
    for out_flag, out_path in _pairs(outputs):
        if not out_path:
            continue
        for in_flag, in_path in _pairs(inputs):
            if in_path and same_file(out_path, in_path):
                raise OutputError(f"{out_flag}={out_path} is the same file as {in_flag}={in_path}: a command never "
                                  f"writes over its own input; choose another {out_flag}")


def check_output_file(path, flag, overwrite, inputs=None):
    """A single output file: refuse an input, a folder, or an existing file without `overwrite`."""
    check_not_input({flag: path}, inputs or {})
    if os.path.isdir(path):
        raise OutputError(f"{flag}={path} is a folder; give a file name")
    if os.path.lexists(path) and not overwrite:
        raise OutputError(f"{flag}={path} exists; pass --overwrite to replace it")
    parent = os.path.dirname(os.path.abspath(path))
    if os.path.exists(parent) and not os.path.isdir(parent):
        raise OutputError(f"{flag}={path}: {parent} is not a folder")


class OutputFolder:
    """A folder a command writes into, owning only the files it lists in its manifest.

    Args:
        path: the folder (created by `claim` when missing).
        flag: the flag that named it, for messages (e.g. "--output").
        tool: the command, recorded in the manifest (e.g. "expr3d.evaluate").

    Example:
    ```python
    folder = OutputFolder(output, "--output", "expr3d.compare")
    folder.claim(overwrite, will_write=["comparison.md", "comparison.json", "figures/*.png"])
    path = folder.file("comparison.md")  # listed, parent folders made
    ```
    """

    def __init__(self, path, flag, tool):
        self.path = os.path.abspath(path)
        self.flag = flag
        self.tool = tool

    # --- the manifest -------------------------------------------------------------------------------------------

    @property
    def manifest_path(self):
        return os.path.join(self.path, MANIFEST_NAME)

    def _read_all(self):
        if not os.path.isfile(self.manifest_path):
            return {}
        try:
            with open(self.manifest_path, encoding="utf-8") as handle:
                written = json.load(handle)["written"]
            if not isinstance(written, dict):
                raise TypeError("'written' is not a mapping")
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise OutputError(f"{self.flag}={self.path}: its list of written files {MANIFEST_NAME} is unreadable "
                              f"({error}); move the folder aside or remove that file by hand") from None
        return written

    def _read(self):
        entries = self._read_all().get(self.tool, [])
        return [e for e in entries if isinstance(e, str) and self._safe_name(e)]

    @staticmethod
    def _safe_name(name):
        # Never follow a manifest outside its folder (a hand-edited "../x" must not make us delete x).
        return not os.path.isabs(name) and ".." not in name.replace("\\", "/").split("/")

    @contextlib.contextmanager
    def _locked(self):
        # Workers of one command may record concurrently: an exclusive lock on the folder itself (no lock file).
        fd = os.open(self.path, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _write(self, entries):
        # Each command owns its own list: two commands writing into one folder never take each other's files.
        written = self._read_all()
        written[self.tool] = sorted(set(entries))
        document = {"version": MANIFEST_VERSION, "written": {k: v for k, v in sorted(written.items()) if v}}
        storage.write_bytes_atomically(self.manifest_path, (json.dumps(document, indent=1) + "\n").encode())

    def written(self):
        """Names listed as written by a command (existing or not), sorted."""
        return sorted(set(self._read()))

    def record(self, *names):
        """List `names` (relative paths; a trailing "/" marks a folder) as written. Call before creating them."""
        os.makedirs(self.path, exist_ok=True)
        with self._locked():
            entries = self._read()
            new = [n for n in names if n not in entries]
            if new:
                self._write(entries + new)

    def adopt(self, names):
        """List those of `names` that exist (files an earlier version of the command wrote without a manifest)."""
        present = [n for n in names if os.path.lexists(os.path.join(self.path, n.rstrip("/")))]
        if present:
            self.record(*present)

    def makedirs(self, name):
        """Make the folder `name` (and its parents), recording those this call creates. Returns its path."""
        self.file(name.rstrip("/") + "/")
        return os.path.join(self.path, name.rstrip("/"))

    def file(self, name):
        """Record `name` and return its absolute path, with its parent folders made (those made here recorded)."""
        parts = name.rstrip("/").split("/")
        folders = ["/".join(parts[:i]) + "/" for i in range(1, len(parts))] + ([name] if name.endswith("/") else [])
        new = [f for f in folders if not os.path.isdir(os.path.join(self.path, f))]
        self.record(*new, *([] if name.endswith("/") else [name]))
        path = os.path.join(self.path, name.rstrip("/"))
        os.makedirs(path if name.endswith("/") else os.path.dirname(path), exist_ok=True)
        return path

    # --- before writing ----------------------------------------------------------------------------------------

    def _existing(self, patterns):
        """Relative names of existing files and folders matching `patterns` (glob, "/" separated; a folder's name
        ends with "/")."""
        found = set()
        for pattern in patterns:
            for path in glob.glob(os.path.join(glob.escape(self.path), pattern.rstrip("/"))):
                rel = os.path.relpath(path, self.path).replace(os.sep, "/")
                if rel != MANIFEST_NAME:
                    found.add(rel + ("/" if os.path.isdir(path) else ""))
        return sorted(found)

    def claim(self, overwrite, will_write=(), legacy=(), inputs=None, keep=()):
        """Check the folder before a command writes, and with `overwrite` remove what it wrote there before.

        Args:
            overwrite: the command's --overwrite.
            will_write: names or glob patterns ("*" stays within a folder) of what the command is about to write.
            legacy: names this command is known to have written there before manifests existed (owned too).
            inputs: the command's inputs, {flag: path} or (flag, path) pairs; refused if one would be written over
                or removed.
            keep: listed names not to remove (e.g. a file the user edited since).
        Returns the names removed.
        """
        owned_existing = self.check(overwrite, will_write, legacy, inputs)
        self.adopt(legacy)
        return self.remove_written(owned_existing, keep=keep) if overwrite else []

    def check(self, overwrite, will_write=(), legacy=(), inputs=None):
        """`claim` without removing anything: returns the owned names present (to remove later)."""
        if os.path.lexists(self.path) and not os.path.isdir(self.path):
            raise OutputError(f"{self.flag}={self.path} is a file, not a folder")
        owned = set(self.written()) | set(legacy)
        owned_existing = sorted(n for n in owned if os.path.lexists(os.path.join(self.path, n.rstrip("/"))))
        planned = self._existing(will_write) if os.path.isdir(self.path) else []
        for flag, path in _pairs(inputs):
            if not path:
                continue
            for name in set(owned_existing) | set(planned):
                target = os.path.join(self.path, name.rstrip("/"))
                if same_file(target, path) or (os.path.isdir(target) and is_inside(path, target)):
                    raise OutputError(f"{self.flag}={self.path} would replace {flag}={path}: a command never writes "
                                      f"over its own input; choose another {self.flag}")
        foreign = [n for n in planned if n not in owned and not n.endswith("/")]
        if foreign:
            raise OutputError(f"{self.flag}={self.path} holds {_names(foreign)}, which this command writes but did "
                              f"not write there; move it away or choose another {self.flag} (never replaced, even "
                              f"with --overwrite)")
        if not overwrite:
            present = sorted(set(owned_existing) | set(planned))
            present = [n for n in present if not n.endswith("/")] or present  # name files, not their folders
            if present:
                raise OutputError(f"{self.flag}={self.path} already holds {_names(present)} from an earlier run; "
                                  f"pass --overwrite to replace them (nothing else there is touched) or choose "
                                  f"another {self.flag}")
        return owned_existing

    def remove_written(self, names=None, keep=()):
        """Remove the listed files (all by default), then listed folders left empty; unlist them. Returns names."""
        entries = self.written()
        names = sorted(set(entries if names is None else names) - set(keep))
        removed = []
        for name in sorted((n for n in names if not n.endswith("/")), reverse=True):
            path = os.path.join(self.path, name)
            if os.path.isfile(path) or os.path.islink(path):
                os.remove(path)
                removed.append(name)
        for name in sorted((n for n in names if n.endswith("/")), key=len, reverse=True):
            path = os.path.join(self.path, name.rstrip("/"))
            if os.path.isdir(path) and not os.listdir(path):
                os.rmdir(path)
                removed.append(name)
        if os.path.isdir(self.path) and entries:
            with self._locked():
                left = [e for e in self._read() if e not in names or e in keep
                        or os.path.lexists(os.path.join(self.path, e.rstrip("/")))]
                self._write(left)
        return removed


def _names(names, limit=4):
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")
