import json
import os

import numpy as np
import pytest
import tensorflow as tf

from expr3d.training import checkpoints


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


def test_checkpoints_and_keras_files_get_ordinary_permissions(tmp_path):
    import keras

    from expr3d.data.records import default_permissions

    prefix = checkpoints.AtomicCheckpointer(str(tmp_path / "ckpt"), _checkpoint(1.0), keep=1).save(1)
    assert os.stat(os.path.dirname(prefix)).st_mode & 0o777 == default_permissions(directory=True)
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    checkpoints.save_keras_models({"tiny": model}, str(tmp_path / "models"))
    saved = tmp_path / "models" / "tiny.keras"
    assert os.stat(saved).st_mode & 0o777 == default_permissions()
    assert sorted(os.listdir(tmp_path / "models")) == ["tiny.keras"]
