"""Atomic training checkpoints, exported `.keras` networks and the run's `config.json`.

A checkpoint is a directory `<dir>/ckpt-<step:09d>/` holding one `tf.train.Checkpoint` (prefix `ckpt`). It is written
under a temporary name in the same directory, its files are fsync'ed, and only then is it renamed into place: a
`ckpt-*` directory exists only when complete, so a run killed mid-write (SIGKILL, power loss) resumes from the last
complete one, and the half-written temporary directory is deleted on the next start. `tf.train.CheckpointManager`
writes the index, the data shards and its `checkpoint` state file one after the other, so it cannot give that
guarantee by itself.
"""

import difflib
import json
import os
import re
import shutil
import tempfile

import keras

from expr3d.data import records

_CHECKPOINT_RE = re.compile(r"^ckpt-(\d{9})$")
_TMP_PREFIX = ".tmp-ckpt-"
_PREFIX = "ckpt"


def _fsync_tree(directory):
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


class AtomicCheckpointer:
    """Saves and restores a `tf.train.Checkpoint` atomically, keeping the newest `keep` checkpoints.

    Args:
        directory: where `ckpt-<step>/` directories live (created if missing).
        checkpoint: the `tf.train.Checkpoint` to write / restore.
        keep: how many complete checkpoints to keep (the oldest are deleted after each save).

    Example:
    ```python
    checkpointer = AtomicCheckpointer(run_dir + "/gan/checkpoints", tf.train.Checkpoint(model=model), keep=3)
    step = checkpointer.restore_latest()  # None on a fresh run
    checkpointer.save(step=1000)
    ```
    """

    def __init__(self, directory, checkpoint, keep=3):
        if keep < 1:
            raise ValueError(f"--keep_checkpoints must be >= 1; got {keep}")
        self.directory = directory
        self.checkpoint = checkpoint
        self.keep = keep
        os.makedirs(directory, exist_ok=True)
        self.remove_incomplete()

    @staticmethod
    def list_steps(directory):
        """Steps of the complete checkpoints in `directory`, ascending."""
        if not os.path.isdir(directory):
            return []
        steps = []
        for name in os.listdir(directory):
            match = _CHECKPOINT_RE.match(name)
            if match and os.path.isfile(os.path.join(directory, name, _PREFIX + ".index")):
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
        tmp_dir = tempfile.mkdtemp(prefix=f"{_TMP_PREFIX}{step:09d}-", dir=self.directory)
        self.checkpoint.write(os.path.join(tmp_dir, _PREFIX))
        _fsync_tree(tmp_dir)
        os.chmod(tmp_dir, records.default_permissions(directory=True))
        os.replace(tmp_dir, final_dir)
        for old in self.list_steps(self.directory)[: -self.keep]:
            shutil.rmtree(os.path.join(self.directory, f"ckpt-{old:09d}"), ignore_errors=True)
        return os.path.join(final_dir, _PREFIX)

    def restore_latest(self):
        """Restore the newest complete checkpoint; return its step, or None when there is none."""
        prefix = self.latest_prefix(self.directory)
        if prefix is None:
            return None
        self.checkpoint.read(prefix).assert_existing_objects_matched().expect_partial()
        return int(_CHECKPOINT_RE.match(os.path.basename(os.path.dirname(prefix))).group(1))


def save_keras_models(models, directory):
    """Save each network as `<directory>/<name>.keras`, atomically (temp file in the same dir + rename)."""
    os.makedirs(directory, exist_ok=True)
    for name, model in models.items():
        final = os.path.join(directory, f"{name}.keras")
        handle, tmp = tempfile.mkstemp(prefix=f".{name}.tmp-", suffix=".keras", dir=directory)
        os.close(handle)
        try:
            model.save(tmp)
            with open(tmp, "rb") as stream:
                os.fsync(stream.fileno())
            os.chmod(tmp, records.default_permissions())
            os.replace(tmp, final)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)


def config_diff(saved, current, keys):
    """Lines of a unified diff between `saved[key]` and `current[key]` for `keys` ('' when they agree)."""
    a = json.dumps({k: saved.get(k) for k in keys}, indent=1, sort_keys=True).splitlines()
    b = json.dumps({k: current.get(k) for k in keys}, indent=1, sort_keys=True).splitlines()
    if a == b:
        return ""
    return "\n".join(difflib.unified_diff(a, b, "saved config.json", "these flags", lineterm="", n=0))


def write_run_config(path, config):
    records.atomic_write_json(path, config)


def read_run_config(path):
    if not os.path.exists(path):
        return None
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def load_keras_model(path):
    """Load one exported network (`MODEL_DIR/models/<name>.keras`)."""
    import expr3d.models  # noqa: F401  (registers the custom classes)

    return keras.saving.load_model(path, compile=False)


def checkpoint_exists(directory):
    return AtomicCheckpointer.latest_prefix(directory) is not None


def read_into(checkpoint, prefix):
    """Restore `checkpoint` from `prefix` (partial: only the objects `checkpoint` tracks must be present)."""
    status = checkpoint.read(prefix)
    status.expect_partial()
    return status


__all__ = [
    "AtomicCheckpointer",
    "checkpoint_exists",
    "config_diff",
    "load_keras_model",
    "read_into",
    "read_run_config",
    "save_keras_models",
    "write_run_config",
]
