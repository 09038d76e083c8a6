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
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

from tests import forked_cli
from tests.training.test_train import TINY_FLAGS, checkpoint_weights, read_log, wait_for

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HOOKS_RUNNER = os.path.join(REPO, "tests", "training", "train_with_hooks.py")
FLAGS = TINY_FLAGS + ["--adam_epsilon=1", "--checkpoint_every=2", "--summary_every=1", "--sample_every=0",
                      "--num_samples=2", "--keep_checkpoints=10"]
STEPS = ["--num_steps_depth=4", "--num_steps_gan=4"]
TOLERANCE = 1e-6  # the single-process resume test's (np.allclose atol)


def _env(scratch):
    # TMPDIR: where the non-chief workers put their scratch run directories (checked to be removed).
    return dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONUNBUFFERED="1", TMPDIR=str(scratch))


def launch(args, log_path, scratch, workers=2, hooks=(), grace=5):
    program = [f"--program={HOOKS_RUNNER}"] if hooks else []
    log = open(log_path, "w")
    argv = ["-m", "expr3d.launch", f"--workers={workers}", f"--grace_seconds={grace}", *program, "--", *hooks, *args]
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


def assert_same_weights(run_a, run_b, stage, atol, rtol, networks_only=False):
    """Every variable of the newest checkpoints (networks and optimizer slots, or the networks' weights only)
    within np.allclose(atol, rtol)."""
    name_a, a = checkpoint_weights(run_a, stage)
    name_b, b = checkpoint_weights(run_b, stage)
    assert name_a == name_b and a.keys() == b.keys()
    if networks_only:  # the networks' variables are checkpointed through their optimizers
        a = {key: value for key, value in a.items() if "/_trainable_variables/" in key}
        assert len(a) > 10
    differing = [key for key in a if not np.allclose(a[key], b[key], rtol=rtol, atol=atol)]
    assert not differing, (stage, differing[:5])


def moved(run, stage):
    """How far the networks moved over the last two iterations (the last two checkpoints)."""
    directory = os.path.join(run, stage, "checkpoints")
    first, last = (tf.train.load_checkpoint(os.path.join(directory, name, "ckpt"))
                   for name in sorted(os.listdir(directory))[-2:])
    return max(float(np.max(np.abs(last.get_tensor(key) - first.get_tensor(key))))
               for key in last.get_variable_to_shape_map() if "/_trainable_variables/" in key)


def single_process(args, log_path):
    done = forked_cli.run(["-m", "expr3d.train", *args], capture_output=True, text=True, env=_env("/tmp"), cwd=REPO,
                          timeout=600)
    open(log_path, "w").write(done.stderr)
    assert done.returncode == 0, done.stderr
    return done


@pytest.fixture(scope="module")
def runs(tiny_dataset, tmp_path_factory):
    """Two uninterrupted runs of both stages with one seed: two workers (the launcher) and one process, side by
    side (2 cores)."""
    root = tmp_path_factory.mktemp("multi_worker")
    (root / "scratch").mkdir()
    args = [f"--data_dir={tiny_dataset}", *FLAGS, *STEPS]
    two = launch(args + [f"--model_dir={root / 'two_workers'}"], root / "two.log", root / "scratch")
    single_process(args + [f"--model_dir={root / 'one_process'}"], root / "one.log")
    assert two.wait(timeout=600) == 0, read_log(root / "two.log")
    return {"root": root, "args": args, "scratch": root / "scratch", "two_workers": str(root / "two_workers"),
            "one_process": str(root / "one_process")}


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_two_workers_train_what_one_process_trains(runs):
    log = read_log(runs["root"] / "two.log")
    assert "[worker 0] expr3d.train: done" in log and "[worker 1] expr3d.train: done" in log
    for stage in ("depth", "gan"):
        # The same batches, so the same networks: the two workers' gradient sums round differently from one
        # process's sum over the whole batch (measured: networks within 2e-7 after 4 iterations of each stage,
        # Adam's moments of G_rgb within ~1 % of their largest value), while two iterations move them ~1.5e-5.
        assert_same_weights(runs["two_workers"], runs["one_process"], stage, atol=TOLERANCE, rtol=0,
                            networks_only=True)
        assert moved(runs["one_process"], stage) > 10 * TOLERANCE
    # The chief wrote the run as one process does; worker 1 wrote only a scratch copy, now removed.
    run, reference = runs["two_workers"], runs["one_process"]
    assert sorted(os.listdir(run)) == sorted(os.listdir(reference))
    assert sorted(os.listdir(os.path.join(run, "models"))) == sorted(os.listdir(os.path.join(reference, "models")))
    config = json.loads(open(os.path.join(run, "config.json")).read())
    assert config["num_workers"] == 2 and config["num_replicas"] == 2 and config["flags"]["strategy"] == "multi_worker"
    assert os.listdir(runs["scratch"]) == []
    assert gone(worker_pids(runs["root"] / "two.log").values())


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_a_stopped_or_killed_worker_costs_only_the_iterations_since_the_last_checkpoint(runs):
    root, scratch = runs["root"], runs["scratch"]
    run = str(root / "preempted")
    args = runs["args"] + [f"--model_dir={run}"]
    # 1. SIGTERM to worker 1 in stage 1 (a preemption notice): the workers agree on the iteration, both checkpoint
    #    it and exit 143.
    first = launch(args, root / "term.log", scratch, hooks=["--step_delay=0.3"])
    pids = worker_pids(root / "term.log")
    assert wait_for(os.path.join(run, "depth", "checkpoints", "ckpt-000000002"), first), read_log(root / "term.log")
    os.kill(pids[1], signal.SIGTERM)
    assert first.wait(timeout=120) == 143, read_log(root / "term.log")
    log = read_log(root / "term.log")
    stopped = re.findall(r"\[worker \d\] expr3d\.train: SIGTERM received; checkpointed stage depth at iteration (\d+)",
                         log)
    assert len(stopped) == 2 and len(set(stopped)) == 1, log  # both workers, the same iteration
    stopped_at = int(stopped[0])
    assert 2 <= stopped_at < 4 and os.path.isdir(os.path.join(run, "depth", "checkpoints", f"ckpt-{stopped_at:09d}"))
    assert gone(pids.values())
    # 2. Resume; SIGKILL worker 1 in stage 2 once its first checkpoint is complete: the launcher stops worker 0.
    second = launch(args, root / "kill.log", scratch, hooks=["--step_delay=0.3"])
    pids = worker_pids(root / "kill.log")
    assert wait_for(os.path.join(run, "gan", "checkpoints", "ckpt-000000002"), second), read_log(root / "kill.log")
    os.kill(pids[1], signal.SIGKILL)
    code = second.wait(timeout=120)
    log = read_log(root / "kill.log")
    assert code == 137, log
    assert f"stage depth resumes at iteration {stopped_at}" in log
    assert "expr3d.launch: worker 1 exited with status -9 (killed by SIGKILL); stopping the others" in log
    assert gone(pids.values())
    # 3. Resume to the end: the weights of the uninterrupted two-worker run.
    third = launch(args, root / "resume.log", scratch)
    assert third.wait(timeout=300) == 0, read_log(root / "resume.log")
    assert "stage gan resumes at iteration" in read_log(root / "resume.log")
    for stage in ("depth", "gan"):
        assert_same_weights(run, runs["two_workers"], stage, atol=TOLERANCE, rtol=0)
    assert os.listdir(scratch) == []


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_worker_that_never_comes_up_is_named_in_bounded_time(tiny_dataset, tmp_path):
    from expr3d.launch import free_ports
    from expr3d.training.cluster import tf_config

    addresses = [f"127.0.0.1:{port}" for port in free_ports(2)]
    env = dict(_env(tmp_path), TF_CONFIG=tf_config(addresses, 0))
    start = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "expr3d.train", f"--data_dir={tiny_dataset}",
                           f"--model_dir={tmp_path / 'run'}", "--strategy=multi_worker", "--worker_startup_timeout=5",
                           *TINY_FLAGS], capture_output=True, text=True, env=env, cwd=REPO, timeout=240)
    assert done.returncode == -signal.SIGKILL, done.stderr  # killed by its watchdog (cluster.StartupWatchdog)
    assert f"expr3d.train: error: worker 1 ({addresses[1]}) did not come up within 5 s" in done.stderr
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
def test_a_batch_the_workers_cannot_share_stops_every_worker(tiny_dataset, tmp_path):
    flags = [f"--data_dir={tiny_dataset}", f"--model_dir={tmp_path / 'run'}", *TINY_FLAGS, "--batch_size=3"]
    process = launch(flags, tmp_path / "batch.log", tmp_path)
    assert process.wait(timeout=240) == 2
    log = read_log(tmp_path / "batch.log")
    assert "--batch_size=3 is not divisible by the 2 replicas of --strategy=multi_worker" in log, log


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_workers_die_with_a_killed_launcher(tiny_dataset, tmp_path):
    flags = [f"--data_dir={tiny_dataset}", f"--model_dir={tmp_path / 'run'}", *TINY_FLAGS, "--num_steps_depth=50"]
    process = launch(flags, tmp_path / "killed.log", tmp_path)
    pids = worker_pids(tmp_path / "killed.log")
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=60)
    assert gone(pids.values(), timeout=20), read_log(tmp_path / "killed.log")
