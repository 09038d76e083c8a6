"""Atomic training checkpoints (the run directory's `<stage>/checkpoints/`; the rest of it is `expr3d.run_dir`).

A checkpoint is a directory `<dir>/ckpt-<step:09d>/` holding one `tf.train.Checkpoint` (prefix `ckpt`). It is written
under a temporary name in the same directory, its files are fsync'ed, and only then is it renamed into place: a
`ckpt-*` directory exists only when complete, so a run killed mid-write (SIGKILL, power loss) resumes from the last
complete one, and the half-written temporary directory is deleted on the next start. `tf.train.CheckpointManager`
writes the index, the data shards and its `checkpoint` state file one after the other, so it cannot give that
guarantee by itself.

A checkpoint damaged after it was written (a truncated or corrupted data file, a missing or corrupted index) is not
trusted: `restore_latest` falls back to the newest one that reads, warns naming the damaged ones and moves them
aside to `ckpt-<step>.damaged` (kept for inspection, never read again); only when none is readable does it raise
CheckpointError naming every file it tried. A save that runs out of disk space (or into a file-size limit) leaves
nothing under a final name and raises `expr3d.storage.DiskFullError` naming the path and the bytes needed.
"""

import difflib
import json
import os
import re
import shutil
import tempfile

from expr3d import storage

_CHECKPOINT_RE = re.compile(r"^ckpt-(\d{9})$")
_DAMAGED_SUFFIX = ".damaged"
_TMP_PREFIX = ".tmp-ckpt-"
_PREFIX = "ckpt"


class CheckpointError(ValueError):
    """No checkpoint of a run directory can be read; the one-line message names the files and why."""


def _first_line(error):
    text = str(getattr(error, "message", "") or error).strip()
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("{{function_node"):
            return line[:300]
    return type(error).__name__


def is_iterator_mismatch(error):
    """Whether a restore failed because the saved data position does not fit this input pipeline (its stages
    changed, e.g. --skip_corrupt toggled), not because the checkpoint is damaged."""
    return "Failed to restore dataset iterator" in str(getattr(error, "message", "") or error)


_LATE_MISMATCH = re.compile(r"Expected \d+ components but got \d+")


def is_late_iterator_mismatch(error):
    """Whether reading a RESTORED data position failed because its buffered elements have another structure than
    this pipeline's (a run checkpointed by an expr3d whose records parsed to other fields): the restore itself
    succeeds and the first batches fail."""
    return bool(_LATE_MISMATCH.search(str(getattr(error, "message", "") or error)))


def _read_errors():
    import tensorflow as tf

    # What reading a damaged checkpoint raises: DataLossError (checksum), NotFoundError (missing index or data),
    # OpError (corrupt index), IndexError ("Read less bytes than requested": truncated data), ValueError.
    return (tf.errors.OpError, IndexError, ValueError, OSError)


def _checkpoint_bytes(checkpoint):
    """The exact size of `checkpoint` written now (to TensorFlow's in-memory file system), or None."""
    import uuid

    import tensorflow as tf

    directory = f"ram://expr3d-size-{uuid.uuid4().hex}"
    try:
        checkpoint.write(f"{directory}/{_PREFIX}")
        return sum(tf.io.gfile.stat(f"{directory}/{name}").length for name in tf.io.gfile.listdir(directory))
    except Exception:  # noqa: BLE001 - an estimate for an error message: never fail because of it
        return None
    finally:
        try:
            tf.io.gfile.rmtree(directory)
        except Exception:  # noqa: BLE001
            pass


class AtomicCheckpointer:
    """Saves and restores a `tf.train.Checkpoint` atomically, keeping the newest `keep` checkpoints.

    Args:
        directory: where `ckpt-<step>/` directories live (created if missing).
        checkpoint: the `tf.train.Checkpoint` to write / restore.
        keep: how many complete checkpoints to keep (the oldest are deleted after each save).
        restore_from: where `restore_latest` reads (default `directory`). Another directory (a multi-worker run's
            non-chief workers restore from the chief's checkpoints and write their own copies to a scratch
            directory) is only read: its damaged checkpoints are reported, not moved aside.

    Example:
    ```python
    checkpointer = AtomicCheckpointer(run_dir + "/gan/checkpoints", tf.train.Checkpoint(model=model), keep=3)
    step = checkpointer.restore_latest()  # None on a fresh run
    checkpointer.save(step=1000)
    ```
    """

    def __init__(self, directory, checkpoint, keep=3, restore_from=None):
        if keep < 1:
            raise ValueError(f"--keep_checkpoints must be >= 1; got {keep}")
        self.directory = directory
        self.restore_from = restore_from or directory
        self.checkpoint = checkpoint
        self.keep = keep
        self.restored_prefix = None
        os.makedirs(directory, exist_ok=True)
        self.remove_incomplete()

    @staticmethod
    def list_steps(directory, with_index=True):
        """Steps of the complete checkpoints in `directory` (`with_index=False`: every `ckpt-<step>` directory,
        damaged ones without an index too), ascending."""
        if not os.path.isdir(directory):
            return []
        steps = []
        for name in os.listdir(directory):
            match = _CHECKPOINT_RE.match(name)
            if match and (not with_index or os.path.isfile(os.path.join(directory, name, _PREFIX + ".index"))):
                steps.append(int(match.group(1)))
        return sorted(steps)

    @classmethod
    def latest_prefix(cls, directory):
        """The checkpoint prefix of the newest complete checkpoint in `directory`, or None."""
        steps = cls.list_steps(directory)
        if not steps:
            return None
        return os.path.join(directory, f"ckpt-{steps[-1]:09d}", _PREFIX)

    def remove_incomplete(self):
        for name in os.listdir(self.directory):
            if name.startswith(_TMP_PREFIX):
                shutil.rmtree(os.path.join(self.directory, name), ignore_errors=True)

    def save(self, step):
        """Write the checkpoint for `step` atomically; return its prefix."""
        final_dir = os.path.join(self.directory, f"ckpt-{step:09d}")
        if os.path.isfile(os.path.join(final_dir, _PREFIX + ".index")):
            # This step is already saved, and a step number identifies the whole training state: keep the complete
            # copy rather than delete-then-rename (a kill in between would leave no checkpoint of this step).
            return os.path.join(final_dir, _PREFIX)
        if os.path.exists(final_dir):
            shutil.rmtree(final_dir)  # a foreign or incomplete directory under the final name (never ours)
        with storage.writing(final_dir, lambda: _checkpoint_bytes(self.checkpoint), what="write the checkpoint"):
            tmp_dir = tempfile.mkdtemp(prefix=f"{_TMP_PREFIX}{step:09d}-", dir=self.directory)
            try:
                self.checkpoint.write(os.path.join(tmp_dir, _PREFIX))
                storage.fsync_tree(tmp_dir)
                os.chmod(tmp_dir, storage.default_permissions(directory=True))
                os.replace(tmp_dir, final_dir)
            except BaseException:
                shutil.rmtree(tmp_dir, ignore_errors=True)  # frees the space; a reader never looks at it anyway
                raise
        for old in self.list_steps(self.directory)[: -self.keep]:
            shutil.rmtree(os.path.join(self.directory, f"ckpt-{old:09d}"), ignore_errors=True)
        return os.path.join(final_dir, _PREFIX)

    def restore_latest(self, warn=None):
        """Restore the newest checkpoint that reads; return its step, or None when there is none.

        Damaged newer ones are skipped: `warn` (a callable, default: stderr) gets one line naming them, and they are
        moved aside to `ckpt-<step>.damaged` once an older one has been restored. Raises CheckpointError naming the
        files when checkpoints exist but none reads; an iterator that does not fit the saved data position
        (`is_iterator_mismatch`) is re-raised as is.
        """
        restored, prefix, damaged = read_latest(self.restore_from, self.checkpoint)
        report_damaged(damaged, prefix, warn, move=self.restore_from == self.directory)
        self.restored_prefix = prefix
        return restored


def report_damaged(damaged, prefix, warn=None, move=True):
    """Warn about the damaged checkpoints `read_latest` skipped and (`move`) move them aside
    (`ckpt-<step>.damaged`)."""
    if not damaged:
        return
    moved = _move_aside(damaged) if move else []
    (warn or _warn)(
        f"damaged checkpoint(s) {'; '.join(f'{path} ({why})' for path, why in damaged)}: restored the previous "
        f"complete one, {prefix}" + (f"; moved the damaged ones aside to {', '.join(moved)}" if moved else ""))


def _warn(message):
    import sys

    print(f"warning: {message}", file=sys.stderr, flush=True)


def _move_aside(damaged):
    moved = []
    for path, _ in damaged:
        target = path + _DAMAGED_SUFFIX
        suffix = 1
        while os.path.exists(target):
            suffix += 1
            target = f"{path}{_DAMAGED_SUFFIX}{suffix}"
        try:
            os.replace(path, target)
            moved.append(target)
        except OSError:
            pass
    return moved


def read_latest(directory, checkpoint):
    """Read the newest readable checkpoint of `directory` into `checkpoint`: (step, prefix, damaged) with damaged
    [(directory of a newer unreadable checkpoint, why)], or (None, None, []) when there is none.

    Every object `checkpoint` tracks must be in the saved one; the saved one may hold more (stage 2 reading stage
    1's networks). CheckpointError naming the files when checkpoints exist but none reads.
    """
    damaged = []
    for step in reversed(AtomicCheckpointer.list_steps(directory, with_index=False)):
        step_dir = os.path.join(directory, f"ckpt-{step:09d}")
        prefix = os.path.join(step_dir, _PREFIX)
        if not os.path.isfile(prefix + ".index"):
            damaged.append((step_dir, f"{_PREFIX}.index is missing"))
            continue
        try:
            checkpoint.read(prefix).assert_existing_objects_matched().expect_partial()
        except _read_errors() as error:
            if is_iterator_mismatch(error):
                raise
            damaged.append((step_dir, _first_line(error)))
            continue
        return step, prefix, damaged
    if damaged:
        raise CheckpointError(
            f"no readable checkpoint in {directory}: " + "; ".join(f"{path} ({why})" for path, why in damaged)
            + " - restore the directory from a backup, or move it away to start the stage afresh")
    return None, None, []


def config_diff(saved, current, keys):
    """Lines of a unified diff between `saved[key]` and `current[key]` for `keys` ('' when they agree)."""
    a = json.dumps({k: saved.get(k) for k in keys}, indent=1, sort_keys=True).splitlines()
    b = json.dumps({k: current.get(k) for k in keys}, indent=1, sort_keys=True).splitlines()
    if a == b:
        return ""
    return "\n".join(difflib.unified_diff(a, b, "saved config.json", "these flags", lineterm="", n=0))


def holds(prefix, key):
    """Whether the checkpoint `prefix` saved an object under the top-level `key`."""
    import tensorflow as tf

    return any(name == key or name.startswith(key + "/") for name, _ in tf.train.list_variables(prefix))


def checkpoint_exists(directory):
    return AtomicCheckpointer.latest_prefix(directory) is not None


def read_into(checkpoint, prefix):
    """Restore `checkpoint` from `prefix` (partial: only the objects `checkpoint` tracks must be present)."""
    status = checkpoint.read(prefix)
    status.expect_partial()
    return status


__all__ = [
    "AtomicCheckpointer",
    "CheckpointError",
    "is_iterator_mismatch",
    "read_latest",
    "report_damaged",
    "checkpoint_exists",
    "config_diff",
    "read_into",
]
