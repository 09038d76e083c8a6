"""Disk full while checkpointing or exporting, for real: the commands run in subprocesses under a file-size limit
(RLIMIT_FSIZE, no root needed: a write past the limit fails with EFBIG, "File too large", as a full disk fails
with ENOSPC; Python ignores the SIGXFSZ that comes with it). Each ends in one line naming the path and the bytes
needed, and leaves nothing half-written where a reader would take it."""
import os
import re
import subprocess
import sys
import textwrap

import pytest

from tests.data.corrupt import last_line

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", KERAS_BACKEND="tensorflow", PYTHONUNBUFFERED="1")

# The limit is set by a tiny launcher that then exec()s Python, not by a preexec_fn: a preexec_fn runs Python in
# the forked child of a multi-threaded process (TensorFlow, the pytest-xdist worker), which can deadlock before exec.
LAUNCHER = ("import os, resource, sys; limit = int(sys.argv[1]); "
            "resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit)); "
            "os.execv(sys.executable, [sys.executable] + sys.argv[2:])")


def _run(args, limit, timeout=300):
    return subprocess.run([sys.executable, "-c", LAUNCHER, str(int(limit))] + list(args), cwd=REPO, env=ENV,
                          capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow  # in-process; ~30 s here under load
def test_checkpoint_and_model_saves_fail_whole_naming_path_and_size(tmp_path):
    """AtomicCheckpointer.save and RunDir.save_networks past the limit: DiskFullError, no final file, no temporary,
    the previous checkpoint and models intact."""
    script = textwrap.dedent(f"""
        import json, os
        import keras, numpy as np, tensorflow as tf
        from expr3d import storage
        from expr3d.run_dir import RunDir
        from expr3d.training import checkpoints
        root = {str(tmp_path)!r}
        small = tf.Variable(np.zeros(1000, np.float32))
        ckpt = tf.train.Checkpoint(v=small)
        manager = checkpoints.AtomicCheckpointer(os.path.join(root, "ckpt"), ckpt, keep=3)
        manager.save(1)                                   # 4 KB: under the limit
        ckpt.big = tf.Variable(np.zeros(200_000, np.float32))
        out = {{}}
        try:
            manager.save(2)                               # 800 KB: over it
        except storage.DiskFullError as error:
            out["checkpoint"] = str(error)
        small_model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
        big_model = keras.Sequential([keras.Input((400,)), keras.layers.Dense(500)])
        models = os.path.join(root, "models")
        RunDir(root).save_networks({{"a": small_model, "b": small_model}})
        before = {{n: open(os.path.join(models, n), "rb").read() for n in os.listdir(models)}}
        try:
            RunDir(root).save_networks({{"a": small_model, "b": big_model}})
        except storage.DiskFullError as error:
            out["models"] = str(error)
        out["models_unchanged"] = before == {{n: open(os.path.join(models, n), "rb").read()
                                              for n in os.listdir(models)}}
        print(json.dumps(out))
    """)
    done = _run(["-c", script], limit=200_000)
    assert done.returncode == 0, done.stderr[-3000:]
    import json

    out = json.loads(done.stdout.strip().splitlines()[-1])
    ckpt_dir = tmp_path / "ckpt"
    assert re.match(rf"not enough space to write the checkpoint {re.escape(str(ckpt_dir))}/ckpt-000000002: needs "
                    rf"about .* \(\d+ bytes\).*File too large", out["checkpoint"]), out["checkpoint"]
    assert int(re.search(r"\((\d+) bytes\)", out["checkpoint"]).group(1)) > 800_000
    assert sorted(os.listdir(ckpt_dir)) == ["ckpt-000000001"]  # no ckpt-2, no hidden temporary
    assert re.match(rf"not enough space to save the network {re.escape(str(tmp_path / 'models' / 'b.keras'))}: "
                    r"needs about", out["models"]), out["models"]
    assert out["models_unchanged"] and sorted(os.listdir(tmp_path / "models")) == ["a.keras", "b.keras"]


@pytest.mark.slow
def test_train_stops_with_one_line_when_the_checkpoint_does_not_fit(tmp_path):
    from tests.training.conftest import write_tiny_dataset

    data_dir = write_tiny_dataset(str(tmp_path / "data"))
    model_dir = tmp_path / "run"
    flags = ["--g_conv_dim=8", "--g_num_res_blocks=0", "--d_conv_dim=8", "--d_num_layers=2", "--depth_g_conv_dim=8",
             "--depth_g_num_res_blocks=0", "--depth_d_conv_dim=8", "--depth_d_num_layers=2", "--perceptual_weight=0",
             "--batch_size=4", "--n_critic=1", "--stage=depth", "--num_steps_depth=2", "--checkpoint_every=0",
             "--sample_every=0", "--num_samples=2", "--noprogress"]
    # 1 MB: config.json, logs, samples and the tiny .keras networks fit; the checkpoint (networks, Adam slots and
    # the data position, ~10 MB) does not.
    done = _run(["-m", "expr3d.train", f"--data_dir={data_dir}", f"--model_dir={model_dir}"] + flags, limit=1_000_000)
    assert done.returncode == 1, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    line = last_line(done.stderr)
    checkpoint = model_dir / "depth" / "checkpoints" / "ckpt-000000002"
    assert re.match(rf"expr3d.train: error: not enough space to write the checkpoint {re.escape(str(checkpoint))}: "
                    r"needs about .* \(\d+ bytes\)", line), line
    assert os.listdir(model_dir / "depth" / "checkpoints") == []  # neither the checkpoint nor its temporary
    assert not (model_dir / "models").exists() or all(
        not name.startswith(".") for name in os.listdir(model_dir / "models"))


@pytest.mark.slow
def test_export_stops_with_one_line_and_leaves_no_version(tmp_path):
    from tests.metrics.fixtures import write_run

    run_dir = write_run(str(tmp_path / "run"), logs=False)
    output = tmp_path / "saved_models"
    output.mkdir()
    (output / "README.txt").write_text("a user's file\n")
    done = _run(["-m", "expr3d.export", f"--model_dir={run_dir}", f"--output={output}"], limit=100_000)
    assert done.returncode == 1, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    line = last_line(done.stderr)
    assert re.match(rf"expr3d.export: error: not enough space to export the SavedModel to "
                    rf"{re.escape(str(output / '1'))}: needs about .* \(\d+ bytes\)", line), line
    assert sorted(os.listdir(output)) == ["README.txt"]  # no version 1, no hidden temporary


@pytest.mark.parametrize("errno_name", ["ENOSPC", "EDQUOT", "EFBIG"])
def test_disk_full_errors_are_recognised(errno_name, tmp_path):
    import errno

    from expr3d import storage

    error = OSError(getattr(errno, errno_name), os.strerror(getattr(errno, errno_name)))
    assert storage.is_disk_full(error) and not storage.is_disk_full(OSError(errno.EACCES, "Permission denied"))
    with pytest.raises(storage.DiskFullError, match=r"needs about 1.5 MB \(1500000 bytes\)"):
        with storage.writing(str(tmp_path / "x"), 1_500_000):
            raise error
