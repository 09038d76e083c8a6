import json
import os
import re

import numpy as np
import pytest
import tensorflow as tf

from expr3d.training import checkpoints
from tests import forked_cli


def _checkpoint(value):
    return tf.train.Checkpoint(v=tf.Variable(np.full(3, value, np.float32)), step=tf.Variable(0, dtype=tf.int64))


def test_save_keeps_the_last_k_and_restores_the_newest(tmp_path):
    ckpt = _checkpoint(1.0)
    manager = checkpoints.AtomicCheckpointer(str(tmp_path), ckpt, keep=2)
    assert manager.restore_latest() is None
    for step in (1, 2, 3):
        ckpt.v.assign(np.full(3, step, np.float32))
        manager.save(step)
    assert sorted(os.listdir(tmp_path)) == ["ckpt-000000002", "ckpt-000000003"]
    other = _checkpoint(0.0)
    assert checkpoints.AtomicCheckpointer(str(tmp_path), other, keep=2).restore_latest() == 3
    np.testing.assert_array_equal(other.v.numpy(), [3, 3, 3])


def test_half_written_checkpoints_are_never_picked_up(tmp_path):
    ckpt = _checkpoint(5.0)
    manager = checkpoints.AtomicCheckpointer(str(tmp_path), ckpt, keep=3)
    manager.save(5)
    # What a run killed mid-save leaves: a temp dir with a partial write, and a final-looking dir without index.
    os.makedirs(tmp_path / ".tmp-ckpt-000000009-abc")
    (tmp_path / ".tmp-ckpt-000000009-abc" / "ckpt.data-00000-of-00001").write_bytes(b"partial")
    os.makedirs(tmp_path / "ckpt-000000008")
    assert checkpoints.AtomicCheckpointer.list_steps(str(tmp_path)) == [5]
    other = _checkpoint(0.0)
    restarted = checkpoints.AtomicCheckpointer(str(tmp_path), other, keep=3)
    assert not (tmp_path / ".tmp-ckpt-000000009-abc").exists()  # cleaned on start
    assert restarted.restore_latest() == 5
    np.testing.assert_array_equal(other.v.numpy(), [5, 5, 5])


def test_config_diff_lists_changed_architecture_keys(tmp_path):
    saved = {"model_config": {"g_conv_dim": 64, "image_size": 128}, "geometry": "depth", "flags": {"seed": 1}}
    same = json.loads(json.dumps(saved))
    same["flags"]["seed"] = 2  # not an architecture key
    assert checkpoints.config_diff(saved, same, ("model_config", "geometry")) == ""
    changed = json.loads(json.dumps(saved))
    changed["model_config"]["g_conv_dim"] = 32
    changed["geometry"] = "normals"
    diff = checkpoints.config_diff(saved, changed, ("model_config", "geometry"))
    assert '-  "g_conv_dim": 64,' in diff and '+  "g_conv_dim": 32,' in diff and '+ "geometry": "normals"' in diff
    with pytest.raises(ValueError, match="keep_checkpoints"):
        checkpoints.AtomicCheckpointer(str(tmp_path), _checkpoint(0.0), keep=0)


def test_checkpoints_get_ordinary_permissions(tmp_path):
    from expr3d.storage import default_permissions

    prefix = checkpoints.AtomicCheckpointer(str(tmp_path / "ckpt"), _checkpoint(1.0), keep=1).save(1)
    assert os.stat(os.path.dirname(prefix)).st_mode & 0o777 == default_permissions(directory=True)


# --- damaged checkpoints: fall back to the previous complete one --------------------------------------------------

def _three_checkpoints(directory):
    ckpt = _checkpoint(0.0)
    manager = checkpoints.AtomicCheckpointer(str(directory), ckpt, keep=3)
    for step in (1, 2, 3):
        ckpt.v.assign(np.full(3, step, np.float32))
        manager.save(step)
    return [os.path.join(str(directory), f"ckpt-{step:09d}") for step in (1, 2, 3)]


def _damage(step_dir, how):
    data, index = os.path.join(step_dir, "ckpt.data-00000-of-00001"), os.path.join(step_dir, "ckpt.index")
    if how == "missing_index":
        os.remove(index)
        return
    path = index if how == "corrupt_index" else data
    with open(path, "rb") as handle:
        content = bytearray(handle.read())
    if how == "truncated_data":
        content = content[: len(content) // 2]
    else:  # flip one byte in the middle: a checksum mismatch
        content[len(content) // 2] ^= 0xFF
    with open(path, "wb") as handle:
        handle.write(bytes(content))


@pytest.mark.parametrize("how", ["truncated_data", "missing_index", "corrupt_index", "flipped_data"])
def test_a_damaged_latest_checkpoint_falls_back_to_the_previous_one(tmp_path, how):
    dirs = _three_checkpoints(tmp_path)
    _damage(dirs[2], how)
    restored, warnings = _checkpoint(0.0), []
    manager = checkpoints.AtomicCheckpointer(str(tmp_path), restored, keep=3)
    assert manager.restore_latest(warn=warnings.append) == 2
    np.testing.assert_array_equal(restored.v.numpy(), [2, 2, 2])
    assert len(warnings) == 1 and dirs[2] in warnings[0] and manager.restored_prefix == os.path.join(dirs[1], "ckpt")
    # The damaged one is kept for inspection under a name no reader takes, so step 3 can be saved afresh.
    assert os.path.isdir(dirs[2] + ".damaged") and not os.path.exists(dirs[2])
    assert checkpoints.AtomicCheckpointer.list_steps(str(tmp_path)) == [1, 2]
    manager.save(3)
    assert checkpoints.AtomicCheckpointer(str(tmp_path), _checkpoint(0.0), keep=3).restore_latest() == 3


def test_no_readable_checkpoint_stops_naming_every_file(tmp_path):
    dirs = _three_checkpoints(tmp_path)
    for step_dir, how in zip(dirs, ("truncated_data", "missing_index", "flipped_data")):
        _damage(step_dir, how)
    with pytest.raises(checkpoints.CheckpointError) as error:
        checkpoints.AtomicCheckpointer(str(tmp_path), _checkpoint(0.0), keep=3).restore_latest()
    message = str(error.value)
    assert "\n" not in message and message.startswith(f"no readable checkpoint in {tmp_path}")
    assert all(step_dir in message for step_dir in dirs) and "ckpt.index is missing" in message
    assert sorted(os.listdir(tmp_path)) == [os.path.basename(d) for d in dirs]  # nothing moved when none reads


@pytest.mark.slow  # in-process; two stage loops with checkpoints: ~60 s here under load
def test_stage_loop_resumes_with_another_input_pipeline(tiny_dataset, tmp_path):
    """A run checkpointed by the strict pipeline resumes with --skip_corrupt's (other tf.data stages, so the saved
    data position does not fit): networks, optimizers and the step are restored, the data stream starts afresh."""
    from tests.training.test_loop import _loop

    # 1 then 2 iterations: critic updates only (n_critic 3), one traced step function per loop.
    loop, trainer, _ = _loop(tiny_dataset, str(tmp_path), num_steps=1)
    assert loop.run() == "complete"
    weights = trainer.d_depth.get_weights()
    loop, trainer, _ = _loop(tiny_dataset, str(tmp_path), num_steps=2, skip_corrupt=True)
    warnings = []
    loop.warn = warnings.append
    assert loop.restore() == 1
    assert len(warnings) == 1 and "data position" in warnings[0] and "ckpt-000000001" in warnings[0]
    for restored, saved in zip(trainer.d_depth.get_weights(), weights):
        np.testing.assert_array_equal(restored, saved)
    assert loop.run() == "complete" and int(trainer.iteration.numpy()) == 2


@pytest.mark.slow
def test_train_resumes_from_the_previous_checkpoint_when_the_latest_is_damaged(tiny_dataset, tmp_path):
    """The CLI: a truncated latest checkpoint is named in a warning, moved aside, and the run resumes from the one
    before (subprocess, 2 + 1 tiny iterations)."""

    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONUNBUFFERED="1")
    model_dir = tmp_path / "run"
    flags = [f"--data_dir={tiny_dataset}", f"--model_dir={model_dir}", "--g_conv_dim=8", "--g_num_res_blocks=0",
             "--d_conv_dim=8", "--d_num_layers=2", "--depth_g_conv_dim=8", "--depth_g_num_res_blocks=0",
             "--depth_d_conv_dim=8", "--depth_d_num_layers=2", "--perceptual_weight=0", "--batch_size=4",
             "--n_critic=1", "--stage=depth", "--checkpoint_every=1", "--sample_every=0", "--num_samples=2",
             "--noprogress"]

    def train(steps):
        return forked_cli.run(["-m", "expr3d.train", *flags, f"--num_steps_depth={steps}"], cwd=repo,
                              env=env, capture_output=True, text=True, timeout=300)

    first = train(2)
    assert first.returncode == 0, first.stderr[-3000:]
    checkpoint_dir = model_dir / "depth" / "checkpoints"
    damaged = str(checkpoint_dir / "ckpt-000000002")
    _damage(damaged, "truncated_data")
    second = train(3)
    assert second.returncode == 0, second.stderr[-3000:]
    assert re.search(rf"warning: damaged checkpoint\(s\) {re.escape(damaged)} \(.*\): restored the previous complete "
                     rf"one, {re.escape(str(checkpoint_dir / 'ckpt-000000001' / 'ckpt'))}", second.stderr), second.stderr
    assert f"resumes at iteration 1 from {checkpoint_dir / 'ckpt-000000001' / 'ckpt'}" in second.stderr
    assert sorted(os.listdir(checkpoint_dir)) == ["ckpt-000000001", "ckpt-000000002", "ckpt-000000002.damaged",
                                                  "ckpt-000000003"]


def test_late_iterator_mismatch_is_recognised_by_its_message():
    assert checkpoints.is_late_iterator_mismatch(RuntimeError(
        "{{function_node __wrapped__IteratorGetNext}} Expected 13 components but got 12. [Op:IteratorGetNext]"))
    assert not checkpoints.is_late_iterator_mismatch(RuntimeError("Expected a tensor but got 12"))
