import subprocess
import sys

import pytest

from expr3d import ablation


def test_parse_variant():
    assert ablation.parse_variant("depth:depth_weight=0.1;geometry=normals") == (
        "depth", ["--depth_weight=0.1", "--geometry=normals"])
    assert ablation.parse_variant("baseline:depth_weight=0") == ("baseline", ["--depth_weight=0"])
    with pytest.raises(ValueError, match="not flag=value"):
        ablation.parse_variant("x:depth_weight")
    with pytest.raises(ValueError, match="name:flag=value"):
        ablation.parse_variant(":depth_weight=0")


def test_flagfile_plans_every_variant_and_seed_with_one_judge():
    done = subprocess.run([sys.executable, "-m", "expr3d.ablation", "--flagfile=experiments/synthetic_ablation.flags",
                           "--dry_run"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    trains = [line for line in lines if "-m expr3d.train" in line and "--stage=depth" not in line]
    evaluations = [line for line in lines if "-m expr3d.evaluate" in line]
    assert len(trains) == 9 and len(evaluations) == 9
    assert sum("--depth_weight=0 " in line + " " for line in trains) == 3
    assert len({line.split("--num_steps_gan=")[1].split()[0] for line in trains}) == 1  # equal steps for every variant
    assert all("--depth_model_dir=runs/synthetic_ablation/judge_depth" in line for line in evaluations)
    judge = [line for line in lines if "--model_dir=runs/synthetic_ablation/judge_depth" in line]
    assert len(judge) == 1 and judge[0].endswith("--stage=depth")  # stage 1 only: never adapted to a generator
    assert "-m expr3d.compare" in lines[-1]
    # Seed-major, each run evaluated right after its training: an early stop leaves whole seeds.
    order = [line.split(" --model_dir=")[1].split()[0].rsplit("/", 1)[1] for line in lines if " --model_dir=" in line]
    order = [name for name in order if name != "judge_depth"]
    assert order[:6] == ["baseline_seed0"] * 2 + ["depth_seed0"] * 2 + ["depth_penalty_seed0"] * 2


def test_a_run_counts_as_trained_only_when_its_last_stage_finished(tmp_path):
    import json

    path = tmp_path / "config.json"
    assert not ablation.training_complete(str(path))
    config = {"flags": {"stage": "all", "num_steps_depth": 10, "num_steps_gan": 20}, "progress": {"depth": 10}}
    path.write_text(json.dumps(config))
    assert not ablation.training_complete(str(path))  # models exist after stage 1 too; not done
    config["progress"]["gan"] = 20
    path.write_text(json.dumps(config))
    assert ablation.training_complete(str(path))
