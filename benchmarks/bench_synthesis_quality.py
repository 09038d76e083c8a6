r"""The main command's figures (issue #12): train from nothing, time it, then judge the model as a user would.

    python benchmarks/bench_synthesis_quality.py --output=benchmarks/out/quality \
        [--flagfile=experiments/synthetic.flags] [--depth_judge_steps=8000] [--extra_train_flags="..."]

1. `python -m expr3d.train --flagfile=FLAGFILE --data_dir=OUT/data --model_dir=OUT/run` from nothing (fresh data and
   run folders under --output; data generation included in the time), wall-clock timed, with the load average at the
   start and the end (the 15-minute target is for an idle machine).
2. An independent depth judge: stage 1 only, another seed, `--depth_judge_steps` iterations on the same data
   (OUT/depth_judge; reused when present). It never trains against the evaluated run.
3. `python -m expr3d.evaluate` on the unseen test identities with the automatic expression judge (trained on other
   generated identities, cached) and `--depth_model_dir=OUT/depth_judge`: expression generation rate, paired SSIM/L1
   against the true target render, background error, geometry.
4. Prints each figure against its target.

Ratios are not needed here: the targets are absolute quality figures, and the time is one wall-clock run (the load
average says how idle the machine was).
"""
import argparse
import json
import os
import shlex
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Issue #12's targets.
TARGETS = {"minutes": 15.0, "expression_generation_rate": 85.0, "paired_ssim": 0.85, "paired_l1": 0.06,
           "background_l1": 0.02, "geometry_margin_points": 10.0}


def run(args, log_path):
    started = time.time()
    with open(log_path, "w") as log:
        result = subprocess.run([sys.executable, *args], cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
    if result.returncode:
        sys.exit(f"{' '.join(args[:3])} failed (exit {result.returncode}); see {log_path}")
    return time.time() - started


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", default="benchmarks/out/quality")
    parser.add_argument("--flagfile", default="experiments/synthetic.flags")
    parser.add_argument("--extra_train_flags", default="", help="appended to the training command (experiments)")
    parser.add_argument("--depth_judge_steps", type=int, default=8000)
    parser.add_argument("--evaluate_flags", default="", help="appended to the evaluation command")
    parser.add_argument("--skip_train", action="store_true", help="evaluate an existing OUT/run again")
    args = parser.parse_args()
    out = os.path.abspath(args.output)
    os.makedirs(out, exist_ok=True)
    data_dir, run_dir, judge_dir = (os.path.join(out, name) for name in ("data", "run", "depth_judge"))
    train = ["-m", "expr3d.train", f"--flagfile={args.flagfile}", f"--data_dir={data_dir}", f"--model_dir={run_dir}",
             *shlex.split(args.extra_train_flags)]
    timing = {}
    if not args.skip_train:
        if os.path.exists(run_dir) or os.path.exists(data_dir):
            sys.exit(f"{run_dir} or {data_dir} exists: the timed run starts from nothing; use another --output "
                     f"or --skip_train")
        load_before = os.getloadavg()[0]
        seconds = run(train, os.path.join(out, "train.log"))
        timing = {"train_seconds": round(seconds, 1), "load_average_start": load_before,
                  "load_average_end": os.getloadavg()[0], "command": "python " + " ".join(train)}
        print(f"main command: {seconds / 60:.1f} min (load average {load_before:.1f} -> {os.getloadavg()[0]:.1f})",
              flush=True)
    with open(os.path.join(run_dir, "config.json")) as handle:
        flags = json.load(handle)["flags"]
    if not os.path.isdir(os.path.join(judge_dir, "models")):
        judge = ["-m", "expr3d.train", f"--flagfile={args.flagfile}", f"--data_dir={data_dir}",
                 f"--model_dir={judge_dir}", "--stage=depth", "--seed=1", f"--num_steps_depth={args.depth_judge_steps}",
                 f"--image_size={flags['image_size']}", "--checkpoint_every=0", "--sample_every=0"]
        print(f"independent depth judge: {args.depth_judge_steps} stage-1 iterations, seed 1", flush=True)
        run(judge, os.path.join(out, "depth_judge.log"))
    evaluation = os.path.join(out, "evaluation")
    evaluate = ["-m", "expr3d.evaluate", f"--model_dir={run_dir}", f"--data_dir={data_dir}", f"--output={evaluation}",
                "--metrics=expression_generation_rate,paired,background,geometry,samples",
                f"--depth_model_dir={judge_dir}", "--overwrite", "--precision=auto",
                *shlex.split(args.evaluate_flags)]
    run(evaluate, os.path.join(out, "evaluate.log"))
    with open(os.path.join(evaluation, "results.json")) as handle:
        metrics = json.load(handle)["metrics"]
    rate = metrics["expression_generation_rate"]
    paired, background, geometry = metrics["paired"], metrics["background"], metrics["geometry"]
    figures = {
        "minutes": timing.get("train_seconds", float("nan")) / 60,
        "expression_generation_rate": rate["expression_generation_rate"],
        "judge_accuracy_on_test": rate["classifier_accuracy_on_evaluated_test_split"],
        "paired_ssim": paired["paired_ssim"], "paired_l1": paired["paired_l1"],
        "paired_l1_input": paired.get("paired_l1_input"),
        "background_l1": background["background_l1"],
        "geometry_target_accuracy": geometry["geometry_target_accuracy"],
        "geometry_real_estimate_accuracy": geometry["geometry_real_estimate_accuracy"],
    }
    rows = [
        ("main command, minutes", figures["minutes"], f"<= {TARGETS['minutes']:.0f}",
         figures["minutes"] <= TARGETS["minutes"]),
        ("expression generation rate %", figures["expression_generation_rate"],
         f">= {TARGETS['expression_generation_rate']:.0f}",
         figures["expression_generation_rate"] >= TARGETS["expression_generation_rate"]),
        ("paired SSIM", figures["paired_ssim"], f">= {TARGETS['paired_ssim']}",
         figures["paired_ssim"] >= TARGETS["paired_ssim"]),
        ("paired L1", figures["paired_l1"], f"<= {TARGETS['paired_l1']}", figures["paired_l1"] <= TARGETS["paired_l1"]),
        ("background |out - src|", figures["background_l1"], f"<= {TARGETS['background_l1']}",
         figures["background_l1"] <= TARGETS["background_l1"]),
        ("depth judged as target %", figures["geometry_target_accuracy"],
         f">= {figures['geometry_real_estimate_accuracy'] - TARGETS['geometry_margin_points']:.1f} (real renders' "
         f"estimate {figures['geometry_real_estimate_accuracy']:.1f} - 10)",
         figures["geometry_target_accuracy"] >= figures["geometry_real_estimate_accuracy"]
         - TARGETS["geometry_margin_points"]),
    ]
    print(f"\njudge accuracy on the real test faces: {figures['judge_accuracy_on_test']:.1f} %; returning the source "
          f"unchanged would score paired L1 {figures['paired_l1_input']:.3f}")
    print(f"{'figure':34s} {'value':>9s}  target")
    for name, value, target, met in rows:
        print(f"{name:34s} {value:9.3f}  {target}  {'met' if met else 'NOT met'}")
    with open(os.path.join(out, "figures.json"), "w") as handle:
        json.dump({"figures": figures, "timing": timing, "targets": TARGETS}, handle, indent=1)


if __name__ == "__main__":
    main()
