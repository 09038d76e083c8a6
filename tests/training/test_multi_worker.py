"""--strategy=multi_worker with real worker processes on 127.0.0.1, started by `python -m expr3d.launch`: two workers
train what one process trains; a worker stopped by SIGTERM or killed by SIGKILL costs at most the iterations since
the last checkpoint, and the job resumes to the uninterrupted result; no process outlives its launcher; bad cluster
descriptions fail in bounded time with one line.

Weights are compared with `--adam_epsilon=1`: with Adam's default epsilon a gradient that is zero but for rounding
(a bias in front of a normalisation) moves its weight by about ±lr either way, so two correct runs whose float sums
differ in the last bit end up ~1e-4 apart (one process on 2 devices vs 1 device does too); an epsilon of 1 keeps the
update proportional to the gradient, and rounding differences stay rounding differences.
"""
import json
import os
import re
import signal
import subprocess
import time

import numpy as np
import pytest
import tensorflow as tf

from tests import forked_cli
from tests.training.test_train import TINY_FLAGS, read_log, wait_for

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HOOKS_RUNNER = os.path.join(REPO, "tests", "training", "train_with_hooks.py")
COMMON = TINY_FLAGS + ["--adam_epsilon=1", "--checkpoint_every=2", "--summary_every=1", "--sample_every=0",
                       "--num_samples=2", "--keep_checkpoints=10"]
# Compared with one process: sharded by data (the tiny set's 2 train shards would be sharded by file).
FLAGS = COMMON + ["--worker_sharding=data"]
STEPS = ["--num_steps_depth=4", "--num_steps_gan=10"]
TOLERANCE = 1e-6  # the single-process resume test's (np.allclose atol)


def _env(scratch):
    # TMPDIR: where the non-chief workers put their scratch run directories (checked to be removed).
    return dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONUNBUFFERED="1", TMPDIR=str(scratch))


def launch(args, log_path, scratch, workers=2, hooks=(), grace=5, start="fork"):
    program = [f"--program={HOOKS_RUNNER}"] if hooks else []
    log = open(log_path, "w")
    argv = ["-m", "expr3d.launch", f"--workers={workers}", f"--grace_seconds={grace}", f"--start={start}", *program,
            "--", *hooks, *args]
    return forked_cli.popen(argv, stdout=log, stderr=subprocess.STDOUT, env=_env(scratch), cwd=REPO)


def worker_pids(log_path, timeout=60):
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        pids = dict((int(i), int(p)) for i, p in re.findall(r"expr3d\.launch: worker (\d+) at \S+, pid (\d+)",
                                                            read_log(log_path)))
        if len(pids) == 2:
            return pids
        time.sleep(0.05)
    raise TimeoutError(read_log(log_path))


def gone(pids, timeout=10):
    """True once none of `pids` is a live process (a zombie counts as gone: it runs nothing)."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        alive = []
        for pid in pids:
            try:
                with open(f"/proc/{pid}/stat") as handle:
                    if handle.read().split(")")[-1].split()[0] != "Z":
                        alive.append(pid)
            except FileNotFoundError:
                pass
        if not alive:
            return True
        time.sleep(0.1)
    return False


def checkpoint_at(model_dir, stage, step=None):
    """Every variable of the checkpoint of `step` (default: the newest), by key."""
    directory = os.path.join(model_dir, stage, "checkpoints")
    name = f"ckpt-{step:09d}" if step is not None else sorted(os.listdir(directory))[-1]
    reader = tf.train.load_checkpoint(os.path.join(directory, name, "ckpt"))
    return name, {key: reader.get_tensor(key) for key, dtype in reader.get_variable_to_dtype_map().items()
                  if dtype != tf.string and "iterator" not in key}


def assert_same_weights(run_a, run_b, stage, atol, rtol, networks_only=False, step=None):
    """Every variable of the checkpoints of `step` (default: the newest; networks and optimizer slots, or the
    networks' weights only) within np.allclose(atol, rtol)."""
    name_a, a = checkpoint_at(run_a, stage, step)
    name_b, b = checkpoint_at(run_b, stage, step)
    assert name_a == name_b and a.keys() == b.keys()
    if networks_only:  # the networks' variables are checkpointed through their optimizers
        a = {key: value for key, value in a.items() if "/_trainable_variables/" in key}
        assert len(a) > 10
    differing = [key for key in a if not np.allclose(a[key], b[key], rtol=rtol, atol=atol)]
    assert not differing, (stage, differing[:5])


def moved(run, stage):
    """How far the networks moved over the last two iterations (the checkpoints two apart)."""
    directory = os.path.join(run, stage, "checkpoints")
    first, last = (tf.train.load_checkpoint(os.path.join(directory, name, "ckpt"))
                   for name in sorted(os.listdir(directory))[-3::2])
    return max(float(np.max(np.abs(last.get_tensor(key) - first.get_tensor(key))))
               for key in last.get_variable_to_shape_map() if "/_trainable_variables/" in key)


def single_process(args, log_path):
    done = forked_cli.run(["-m", "expr3d.train", *args], capture_output=True, text=True, env=_env("/tmp"), cwd=REPO,
                          timeout=600)
    open(log_path, "w").write(done.stderr)
    assert done.returncode == 0, done.stderr
    return done


@pytest.fixture(scope="module")
def reference(tiny_dataset, tmp_path_factory):
    """One uninterrupted process, checkpointing every iteration (the interrupted job stops at an iteration of its
    own choosing)."""
    root = tmp_path_factory.mktemp("multi_worker")
    args = [f"--data_dir={tiny_dataset}", *FLAGS, *STEPS]
    model_dir = str(root / "one_process")
    single_process(args + [f"--model_dir={model_dir}", "--checkpoint_every=1"], root / "one.log")
    return {"root": root, "args": args, "model_dir": model_dir}


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_two_workers_killed_and_stopped_resume_to_what_one_process_trains(reference):
    """The whole job on two workers: stage 1 uninterrupted, stage 2 killed (SIGKILL of worker 1), resumed, then
    stopped (SIGTERM to worker 1, a preemption notice). Both stages end with the networks one uninterrupted process
    trains: the same batches, so the same updates up to the rounding of the two workers' gradient sums (measured:
    within 4e-7, while two iterations move the networks ~1.5e-5)."""
    root = reference["root"]
    scratch = root / "scratch"
    scratch.mkdir()
    run = str(root / "two_workers")
    args = reference["args"] + [f"--model_dir={run}"]
    gan_checkpoints = os.path.join(run, "gan", "checkpoints")
    # 1. SIGKILL worker 1 once stage 2's first checkpoint is complete: the launcher stops worker 0 and says why.
    first = launch(args, root / "kill.log", scratch, hooks=["--step_delay=0.2"])
    pids = worker_pids(root / "kill.log")
    assert wait_for(os.path.join(gan_checkpoints, "ckpt-000000002"), first), read_log(root / "kill.log")
    os.kill(pids[1], signal.SIGKILL)
    code = first.wait(timeout=120)
    log = read_log(root / "kill.log")
    assert code == 137, log
    assert "expr3d.launch: worker 1 exited with status -9 (killed by SIGKILL); stopping the others" in log
    assert "data sharded by data" in log  # the chief's warning
    assert gone(pids.values())
    # Stage 1 ran uninterrupted on two workers: the chief wrote the run a single process writes.
    assert_same_weights(run, reference["model_dir"], "depth", atol=TOLERANCE, rtol=0, networks_only=True)
    assert moved(reference["model_dir"], "depth") > 10 * TOLERANCE
    config = json.loads(open(os.path.join(run, "config.json")).read())
    assert config["num_workers"] == 2 and config["num_replicas"] == 2 and config["flags"]["strategy"] == "multi_worker"
    assert sorted(os.listdir(os.path.join(run, "models"))) == ["d_depth.keras", "d_rgb.keras", "g_depth.keras", "g_rgb.keras"]
    # 2. Resume; SIGTERM to worker 1 after the next checkpoint: both workers checkpoint the same iteration, exit 143.
    second = launch(args, root / "term.log", scratch, hooks=["--step_delay=0.2"])
    pids = worker_pids(root / "term.log")
    assert wait_for(os.path.join(gan_checkpoints, "ckpt-000000004"), second), read_log(root / "term.log")
    os.kill(pids[1], signal.SIGTERM)
    assert second.wait(timeout=120) == 143, read_log(root / "term.log")
    log = read_log(root / "term.log")
    assert "stage gan resumes at iteration 2" in log
    stopped = re.findall(r"\[worker \d\] expr3d\.train: SIGTERM received; checkpointed stage gan at iteration (\d+)",
                         log)
    assert len(stopped) == 2 and len(set(stopped)) == 1, log  # both workers, the same iteration
    assert gone(pids.values())
    # The stopped job's last checkpoint holds the networks the uninterrupted process had at that iteration.
    stopped_at = int(stopped[0])
    assert_same_weights(run, reference["model_dir"], "gan", atol=TOLERANCE, rtol=0, networks_only=True,
                        step=stopped_at)
    assert moved(reference["model_dir"], "gan") > 10 * TOLERANCE
    assert os.listdir(scratch) == []  # every scratch copy removed, the killed worker's too (the launcher's)


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_sharded_by_file_a_resumed_job_restores_every_worker_s_own_data_position(tiny_dataset, tmp_path):
    """2 train shards, 2 workers: sharded by file (the default's choice), each worker its own shard and share of
    the batch. The job's checkpoints after iteration 2 are then removed, as if it had been preempted there (SIGTERM
    and SIGKILL are tested above), and the same command resumes it: the chief's data position comes from its
    checkpoint, worker 1's from worker_data/, and iteration 6 ends with the networks and optimizer state the
    uninterrupted job had (stage 1: the cheaper graph)."""
    import shutil

    scratch = tmp_path / "scratch"
    scratch.mkdir()
    run = str(tmp_path / "run")
    args = [f"--data_dir={tiny_dataset}", f"--model_dir={run}", *COMMON, "--stage=depth", "--num_steps_depth=6"]
    job = launch(args, tmp_path / "whole.log", scratch)
    assert job.wait(timeout=300) == 0, read_log(tmp_path / "whole.log")
    assert ("data sharded by file: worker k reads train shards k, k + 2, ... of 2, and makes its own 1/2 of each "
            "batch") in read_log(tmp_path / "whole.log")
    assert json.load(open(os.path.join(run, "config.json")))["data_stream"]["worker_sharding"] == \
        "file over 2 workers"
    checkpoints, positions = (os.path.join(run, "depth", name) for name in ("checkpoints", "worker_data/worker-1"))
    assert sorted(os.listdir(positions)) == [f"ckpt-{step:09d}" for step in (2, 4, 6)]
    shutil.copytree(os.path.join(checkpoints, "ckpt-000000006"), tmp_path / "uninterrupted" / "depth" /
                    "checkpoints" / "ckpt-000000006")
    for step in (4, 6):
        for directory in (checkpoints, positions):
            shutil.rmtree(os.path.join(directory, f"ckpt-{step:09d}"))
    job = launch(args, tmp_path / "resume.log", scratch)
    assert job.wait(timeout=300) == 0, read_log(tmp_path / "resume.log")
    log = read_log(tmp_path / "resume.log")
    assert "stage depth resumes at iteration 2" in log and "starts afresh" not in log
    assert_same_weights(run, str(tmp_path / "uninterrupted"), "depth", atol=TOLERANCE, rtol=0)
    assert os.listdir(scratch) == []


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_worker_that_never_comes_up_is_named_in_bounded_time(tiny_dataset, tmp_path):
    from expr3d.launch import free_ports
    from expr3d.training.cluster import tf_config

    addresses = [f"127.0.0.1:{port}" for port in free_ports(2)]
    env = dict(_env(tmp_path), TF_CONFIG=tf_config(addresses, 0))
    start = time.monotonic()
    done = forked_cli.run(["-m", "expr3d.train", f"--data_dir={tiny_dataset}", f"--model_dir={tmp_path / 'run'}",
                           "--strategy=multi_worker", "--worker_startup_timeout=3", *TINY_FLAGS],
                          capture_output=True, text=True, env=env, cwd=REPO, timeout=240)
    assert done.returncode == -signal.SIGKILL, done.stderr  # killed by its watchdog (cluster.StartupWatchdog)
    assert f"expr3d.train: error: worker 1 ({addresses[1]}) did not come up within 3 s" in done.stderr
    assert time.monotonic() - start < 120


@pytest.mark.slow
def test_cluster_and_launcher_mistakes_are_one_line_before_training(tiny_dataset, tmp_path):
    base = [f"--data_dir={tiny_dataset}", f"--model_dir={tmp_path / 'run'}", *TINY_FLAGS]
    env = _env(tmp_path)
    env.pop("TF_CONFIG", None)
    cases = [
        (["-m", "expr3d.train", *base, "--strategy=multi_worker"], env, "python -m expr3d.launch --workers=N"),
        (["-m", "expr3d.train", *base, "--strategy=multi_worker"], dict(env, TF_CONFIG="{oops"),
         "TF_CONFIG is not valid JSON"),
        (["-m", "expr3d.train", *base, "--strategy=multi_worker", "--cpu_devices=2"],
         dict(env, TF_CONFIG='{"cluster": {"worker": ["127.0.0.1:1"]}, "task": {"type": "worker", "index": 0}}'),
         "--cpu_devices=2 splits one machine's CPU"),
        (["-m", "expr3d.launch", "--workers=2", "--", *base, "--strategy=mirrored"], env,
         "--strategy=mirrored: the launcher's workers train with --strategy=multi_worker"),
        (["-m", "expr3d.launch", "--workers=2"], env, "give the training flags after --"),
    ]
    for argv, case_env, expected in cases:
        done = forked_cli.run(argv, capture_output=True, text=True, env=case_env, cwd=REPO, timeout=120)
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        assert done.returncode == 2, (argv, done.stderr)
        assert len(lines) == 1 and expected in lines[0], (argv, done.stderr)
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
@pytest.mark.timeout(300)
@pytest.mark.parametrize("start", ["fork", "exec"])
def test_workers_die_with_a_killed_launcher(tiny_dataset, tmp_path, start):
    flags = [f"--data_dir={tiny_dataset}", f"--model_dir={tmp_path / 'run'}", *TINY_FLAGS, "--num_steps_depth=50"]
    process = launch(flags, tmp_path / "killed.log", tmp_path, start=start)
    pids = worker_pids(tmp_path / "killed.log")
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=60)
    assert gone(pids.values(), timeout=20), read_log(tmp_path / "killed.log")
