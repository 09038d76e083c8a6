"""Multi-worker training against one process, on the synthetic flagfile's networks and data (#15's figures).

    python benchmarks/bench_multi_worker.py [--steps=20] [--work_dir=/tmp/expr3d_bench_multi_worker]

Runs, one after the other (never side by side: the figures are ratios inside one run of this script):
  1. one process using both cores, `experiments/synthetic48.flags` (float32, --op_determinism), `--steps` iterations of
     each stage;
  2. the same through `python -m expr3d.launch --workers=2` (sharded by data: the same batches as one process, so
     the weights compare), each worker limited to one thread
     (TF_NUM_INTRAOP_THREADS=1, TF_NUM_INTEROP_THREADS=1): 2 workers x 1 core;
  3. and 4. both again with `--adam_epsilon=1` (Adam's update proportional to the gradient: see
     tests/training/test_multi_worker.py for why the default epsilon amplifies rounding);
  5. an all-reduce probe: two workers all-reduce gradients of the synthetic networks' shapes (D_rgb + D_depth every
     iteration, G_rgb + G_depth every n_critic-th), the way the optimizers do, 20 times.
Prints the seconds per iteration of each stage (from the checkpoint times, so start-up and tracing are excluded),
their ratio, the all-reduce share of a two-worker iteration, and max |dw| between 1 and 2 workers (networks; every
variable) for both epsilons.
"""
import argparse
import glob
import json
import os
import shutil
import subprocess
import sys
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROBE = os.path.join(REPO, "benchmarks", "multi_worker_allreduce_probe.py")


def train_flags(args, model_dir, extra=()):
    return ["--flagfile=experiments/synthetic48.flags", f"--data_dir={args.data_dir}", f"--model_dir={model_dir}",
            f"--num_steps_depth={args.steps}", f"--num_steps_gan={args.steps}", f"--checkpoint_every={args.every}",
            "--keep_checkpoints=100", "--sample_every=0", "--summary_every=1000", "--mixed_precision=float32",
            "--op_determinism", "--progress=false", "--worker_sharding=data", *extra]


def run(command, env, log):
    start = time.monotonic()
    with open(log, "w") as handle:
        code = subprocess.call(command, cwd=REPO, env=env, stdout=handle, stderr=subprocess.STDOUT)
    if code:
        sys.exit(f"{' '.join(command)} failed ({code}); see {log}")
    return time.monotonic() - start


def seconds_per_iteration(model_dir, stage, every):
    """From the modification times of the checkpoints after the first (which includes tracing)."""
    directories = sorted(glob.glob(os.path.join(model_dir, stage, "checkpoints", "ckpt-*")))
    times = [os.path.getmtime(os.path.join(d, "ckpt.index")) for d in directories]
    return (times[-1] - times[0]) / (every * (len(times) - 1))


def weights(model_dir, stage):
    import tensorflow as tf

    directory = sorted(glob.glob(os.path.join(model_dir, stage, "checkpoints", "ckpt-*")))[-1]
    reader = tf.train.load_checkpoint(os.path.join(directory, "ckpt"))
    return {key: reader.get_tensor(key) for key, dtype in reader.get_variable_to_dtype_map().items()
            if dtype != tf.string and "iterator" not in key}


def max_difference(run_a, run_b, stage):
    a, b = weights(run_a, stage), weights(run_b, stage)
    every = max(float(np.max(np.abs(a[k].astype(np.float64) - b[k]))) for k in a)
    networks = max(float(np.max(np.abs(a[k].astype(np.float64) - b[k]))) for k in a if "_trainable_variables/" in k)
    return networks, every


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--every", type=int, default=5, help="checkpoint cadence (the timing points)")
    parser.add_argument("--data_dir", default="data/synthetic48")
    parser.add_argument("--work_dir", default="/tmp/expr3d_bench_multi_worker")
    args = parser.parse_args()
    # Only what an earlier run of this script wrote is removed; anything else in --work_dir stops it.
    ours = {f"{kind}{name}{ext}" for kind in ("one_process", "two_workers") for name in ("", "_eps1")
            for ext in ("", ".log")} | {"allreduce.log"}
    os.makedirs(args.work_dir, exist_ok=True)
    foreign = sorted(set(os.listdir(args.work_dir)) - ours)
    if foreign:
        sys.exit(f"--work_dir={args.work_dir} holds {', '.join(foreign[:3])}, not written by this script: choose "
                 f"another --work_dir")
    for name in ours:
        path = os.path.join(args.work_dir, name)
        if os.path.isdir(path):
            shutil.rmtree(path)
        elif os.path.exists(path):
            os.remove(path)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    one_core = dict(env, TF_NUM_INTRAOP_THREADS="1", TF_NUM_INTEROP_THREADS="1")
    launch = [sys.executable, "-m", "expr3d.launch", "--workers=2", "--"]
    runs = {}
    for name, epsilon in (("", ()), ("_eps1", ("--adam_epsilon=1",))):
        one, two = (os.path.join(args.work_dir, f"{kind}{name}") for kind in ("one_process", "two_workers"))
        runs[f"one_process{name}"] = run([sys.executable, "-m", "expr3d.train", *train_flags(args, one, epsilon)],
                                         env, one + ".log")
        runs[f"two_workers{name}"] = run(launch + train_flags(args, two, epsilon), one_core, two + ".log")
    probe_log = os.path.join(args.work_dir, "allreduce.log")
    run([sys.executable, "-m", "expr3d.launch", "--workers=2", f"--program={PROBE}", "--",
         "--flagfile=experiments/synthetic48.flags", f"--data_dir={args.data_dir}", "--model_dir=/nonexistent"],
        one_core, probe_log)
    probe = json.loads([line for line in open(probe_log) if "ALLREDUCE " in line][0].split("ALLREDUCE ", 1)[1])

    report = {"steps": args.steps, "wall_seconds": {k: round(v, 1) for k, v in runs.items()}}
    for stage in ("depth", "gan"):
        one = seconds_per_iteration(os.path.join(args.work_dir, "one_process"), stage, args.every)
        two = seconds_per_iteration(os.path.join(args.work_dir, "two_workers"), stage, args.every)
        report[stage] = {"s_per_it_one_process_2_cores": round(one, 4), "s_per_it_2_workers_1_core": round(two, 4),
                         "ratio_2_workers_over_1_process": round(two / one, 3)}
        for name in ("", "_eps1"):
            networks, every = max_difference(os.path.join(args.work_dir, f"two_workers{name}"),
                                              os.path.join(args.work_dir, f"one_process{name}"), stage)
            report[stage][f"max_dw_networks{name or '_default_eps'}"] = networks
            report[stage][f"max_dw_every_variable{name or '_default_eps'}"] = every
    allreduce = probe["critic_seconds"] + probe["generator_seconds"] / probe["n_critic"]
    report["allreduce"] = dict(probe, per_gan_iteration_seconds=round(allreduce, 5),
                               share_of_a_2_worker_gan_iteration=round(allreduce / report["gan"]
                                                                       ["s_per_it_2_workers_1_core"], 4))
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
