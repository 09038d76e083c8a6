"""`python -m expr3d.train` as a subprocess: end-to-end outputs, exact resume after SIGKILL and SIGTERM, NaN stop,
mirrored == single replica; and the bad-input errors (in-process, they stop before any training)."""
import glob
import json
import os
import signal
import subprocess
import time

import numpy as np
import pytest
import tensorflow as tf

from tests.training.conftest import IMAGE_SIZE
from tests import forked_cli

TINY_FLAGS = [
    "--g_conv_dim=8", "--g_num_res_blocks=0", "--d_conv_dim=8", "--d_num_layers=2",
    "--depth_g_conv_dim=8", "--depth_g_num_res_blocks=0", "--depth_d_conv_dim=8", "--depth_d_num_layers=2",
    "--perceptual_weight=0", "--batch_size=4", "--lr_decay_every=2", "--seed=7", "--op_determinism",
    # One traced graph per stage (critic + generator every iteration) keeps these subprocess runs short; the
    # n_critic > 1 schedule is covered in-process (test_loop.py).
    "--n_critic=1",
]
STEPS = ["--num_steps_depth=6", "--num_steps_gan=6"]
RUN_FLAGS = TINY_FLAGS + STEPS + ["--checkpoint_every=2", "--summary_every=1", "--sample_every=0", "--num_samples=2"]
ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONUNBUFFERED="1")
NETWORKS = ("g_rgb", "d_rgb", "g_depth", "d_depth")


HOOKS_RUNNER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "train_with_hooks.py")


def launch(args, log_path, hooks=()):
    """`python -m expr3d.train args`; with `hooks` (e.g. ["--nan_at_step=3"]), train_with_hooks.py instead."""
    log = open(log_path, "w")
    command = [HOOKS_RUNNER, *hooks] if hooks else ["-m", "expr3d.train"]
    return forked_cli.popen(command + args, stdout=log, stderr=subprocess.STDOUT,
                            env=ENV, cwd=os.path.dirname(os.path.dirname(os.path.dirname(__file__))))


def wait_for(path_glob, process, timeout=240):
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if glob.glob(path_glob):
            return True
        if process.poll() is not None:
            return False
        time.sleep(0.05)
    raise TimeoutError(path_glob)


def read_log(path):
    with open(path) as handle:
        return handle.read()


def checkpoint_weights(model_dir, stage):
    """Every variable of the newest checkpoint of `stage` (networks and optimizer slots), by checkpoint key."""
    directory = os.path.join(model_dir, stage, "checkpoints")
    latest = sorted(d for d in os.listdir(directory) if d.startswith("ckpt-"))[-1]
    reader = tf.train.load_checkpoint(os.path.join(directory, latest, "ckpt"))
    return latest, {
        key: reader.get_tensor(key)
        for key in reader.get_variable_to_shape_map()
        if "iterator" not in key and key != "_CHECKPOINTABLE_OBJECT_GRAPH"
    }


@pytest.fixture(scope="module")
def runs(tiny_dataset, tmp_path_factory):
    """Starts the reference run and the mirrored check in the background (2 cores: they overlap with the
    interrupted chain that the resume test drives in the foreground)."""
    root = tmp_path_factory.mktemp("runs")
    reference = str(root / "reference")
    procs = {"reference": launch([f"--data_dir={tiny_dataset}", f"--model_dir={reference}"] + RUN_FLAGS,
                                 root / "reference.log")}
    mirrored_log = open(root / "mirrored.log", "w")
    # The repository on the path: the script imports expr3d whether or not the package is installed.
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    procs["mirrored"] = forked_cli.popen(
        [os.path.join(os.path.dirname(__file__), "mirrored_check.py"), tiny_dataset],
        stdout=mirrored_log, stderr=subprocess.STDOUT,
        env=dict(ENV, PYTHONPATH=os.pathsep.join(filter(None, [repo, ENV.get("PYTHONPATH")]))),
        cwd=os.path.dirname(os.path.dirname(os.path.dirname(__file__))))
    yield {"root": root, "data": tiny_dataset, "reference": reference, "procs": procs}
    for proc in procs.values():
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def finish(runs, name, timeout=600):
    proc = runs["procs"][name]
    proc.wait(timeout=timeout)
    return proc.returncode, read_log(runs["root"] / f"{name}.log")


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_nan_stop_then_resume_after_sigterm_and_sigkill_equals_uninterrupted(runs):
    root, model_dir = runs["root"], str(runs["root"] / "interrupted")
    args = [f"--data_dir={runs['data']}", f"--model_dir={model_dir}"] + RUN_FLAGS
    depth_dir = os.path.join(model_dir, "depth", "checkpoints")

    # 1. NaN images at iteration index 3 of stage 1: exit 3 naming the terms and the iteration; the last good
    #    checkpoint (iteration 2) stays and nothing is written after it.
    first = launch(args, root / "nan.log", hooks=["--nan_at_step=3"])
    first.wait(timeout=300)
    log = read_log(root / "nan.log")
    assert first.returncode == 3, log
    assert "non-finite loss in stage depth at iteration 4" in log and "d_total=nan" in log, log
    assert sorted(os.listdir(depth_dir)) == ["ckpt-000000002"]
    # 2. Resume; SIGTERM during stage 1: the run checkpoints where it is and exits with 143.
    second = launch(args, root / "terminated.log", hooks=["--step_delay=0.3"])
    assert wait_for(os.path.join(depth_dir, "ckpt-000000004"), second), read_log(root / "terminated.log")
    second.send_signal(signal.SIGTERM)
    second.wait(timeout=120)
    log = read_log(root / "terminated.log")
    assert second.returncode == 143, log
    assert "stage depth resumes at iteration 2" in log
    assert "SIGTERM received; checkpointed stage depth at iteration" in log
    stopped_at = int(log.split("checkpointed stage depth at iteration ")[1].split(";")[0])
    assert 4 <= stopped_at <= 6
    assert os.path.isdir(os.path.join(depth_dir, f"ckpt-{stopped_at:09d}"))
    # 3. Resume; SIGKILL during stage 2 as soon as its first checkpoint is complete.
    third = launch(args, root / "killed.log", hooks=["--step_delay=0.3"])
    assert wait_for(os.path.join(model_dir, "gan", "checkpoints", "ckpt-000000002"), third), read_log(root / "killed.log")
    third.send_signal(signal.SIGKILL)
    third.wait()
    assert f"stage depth resumes at iteration {stopped_at}" in read_log(root / "killed.log")
    # 4. Resume to the end.
    fourth = launch(args, root / "resumed.log")
    fourth.wait(timeout=300)
    log = read_log(root / "resumed.log")
    assert fourth.returncode == 0, log
    assert "stage gan resumes at iteration" in log

    code, log = finish(runs, "reference")
    assert code == 0, log
    for stage in ("depth", "gan"):
        name_ref, reference = checkpoint_weights(runs["reference"], stage)
        name_res, resumed = checkpoint_weights(model_dir, stage)
        assert name_ref == name_res == "ckpt-000000006"
        assert reference.keys() == resumed.keys()
        differing = [key for key in reference if not np.allclose(resumed[key], reference[key], rtol=0, atol=1e-6)]
        assert not differing, (stage, differing[:5])


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_cli_end_to_end_outputs(runs):
    code, log = finish(runs, "reference")
    assert code == 0, log
    model_dir = runs["reference"]
    for name in NETWORKS:
        assert os.path.getsize(os.path.join(model_dir, "models", f"{name}.keras")) > 0
    config = json.load(open(os.path.join(model_dir, "config.json")))
    assert config["model_config"]["image_size"] == IMAGE_SIZE
    assert config["flags"]["num_steps_gan"] == 6 and config["progress"] == {"depth": 6, "gan": 6}
    # The defaults: penalty on the critic, Keras init and Adam epsilon, all recorded.
    assert config["flags"]["confidence_penalty_on"] == "critic" and config["model_config"]["init"] == "keras"
    assert (config["flags"]["adam_epsilon"], config["flags"]["adam_epsilon_mode"]) == (1e-7, "keras")
    assert config["dataset"]["splits"]["train"]["num_examples"] == 24
    assert "tensorflow" in config["versions"]
    # keep_checkpoints=3 with a checkpoint every 2 of 6 iterations: 2, 4, 6 kept, nothing half-written.
    assert sorted(os.listdir(os.path.join(model_dir, "gan", "checkpoints"))) == [
        "ckpt-000000002", "ckpt-000000004", "ckpt-000000006"]
    assert os.path.exists(os.path.join(model_dir, "samples", "gan-000000006.png"))
    grid = tf.io.decode_png(tf.io.read_file(os.path.join(model_dir, "samples", "gan-latest.png"))).numpy()
    # A header strip naming the columns, then 2 sources x (image row + depth row), 1 + 8 columns of 32 px with 2 px
    # gutters.
    from expr3d.imaging import grid as tile_grids
    from expr3d.training import summaries

    header = tile_grids.header_height(summaries.gan_column_labels(), 32)
    assert grid.shape == (header + 4 * 32 + 5 * 2, 9 * 32 + 10 * 2, 3)
    tags = {}
    for path in glob.glob(os.path.join(model_dir, "logs", "*", "events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                tags.setdefault(value.tag, value.metadata.plugin_data.plugin_name)
    for tag in ("depth/loss/g_pix", "depth/loss/d_gp", "depth/loss/d_conf", "depth/loss/d_entropy",
                "depth/loss/g_entropy", "gan/loss/g_rec", "gan/loss/gd_cls", "gan/loss/dd_gp", "gan/loss/dd_conf",
                "gan/loss/dd_entropy", "gan/loss/gd_entropy", "gan/learning_rate/g_rgb"):
        assert tags.get(tag) == "scalars", sorted(tags)
    assert tags.get("gan/samples") == "images" and tags.get("gan/flags") == "text"


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_mirrored_two_replicas_equal_one(runs):
    code, log = finish(runs, "mirrored")
    assert code == 0, log
    report = json.loads(log.split("REPORT ", 1)[1].splitlines()[0])
    assert report["replicas"] == 2
    assert report["indivisible_batch_error"].startswith(
        "--batch_size=3 is not divisible by the 2 replicas of --strategy=mirrored")
    for stage in ("depth", "gan"):
        result = report[stage]
        assert result["max_update"] > 1e-3  # the step did move the weights
        mismatched = {name: (value, result["logs_2"][name]) for name, value in result["logs_1"].items()
                      if result["logs_2"][name] != pytest.approx(value, rel=1e-4, abs=1e-5)}
        assert not mismatched, (stage, mismatched)
        assert result["max_weight_diff"] <= 1e-4 * result["max_update"] + 1e-6, result


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_resuming_with_other_architecture_flags_is_refused_with_a_diff(runs):
    from tests.training.test_train_errors import usage_error

    code, log = finish(runs, "reference")
    assert code == 0, log
    args = [f"--data_dir={runs['data']}", f"--model_dir={runs['reference']}"] + RUN_FLAGS
    message = usage_error([a for a in args if not a.startswith("--g_conv_dim")] + ["--g_conv_dim=16"])
    assert "holds a run with a different architecture or data stream" in message
    assert '-  "g_conv_dim": 8,' in message and '+  "g_conv_dim": 16,' in message
