"""Byte-level snapshots of folders: the bad-input tests check that a refused or overwriting command left every
file it did not write exactly as it was."""
import hashlib
import os


def snapshot(*roots):
    """{path: sha256} of every file below `roots` (a file root is hashed itself); hidden temp files included."""
    out = {}
    for root in roots:
        root = str(root)
        if os.path.isfile(root):
            out[root] = _digest(root)
            continue
        for directory, _, files in os.walk(root):
            for name in files:
                path = os.path.join(directory, name)
                out[path] = _digest(path)
    return out


def _digest(path):
    with open(path, "rb") as handle:
        return hashlib.sha256(handle.read()).hexdigest()


def unchanged(before, after, ignore=()):
    """The paths of `before` whose bytes changed or that are gone (ignoring names in `ignore`)."""
    return sorted(p for p, digest in before.items()
                  if os.path.basename(p) not in ignore and after.get(p) != digest)
