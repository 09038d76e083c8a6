import sys

import pytest

from expr3d import ablation
from tests import forked_cli


# Tiny networks for the end-to-end studies. n_critic 1: one traced step function per stage (the n_critic schedule
# is tested in-process, test_loop.py); checkpoints at the end of each stage only, what a shared stage 1 is copied from.
TINY_TRAIN_FLAGS = ("--batch_size=4 --g_conv_dim=8 --g_num_res_blocks=0 --d_conv_dim=8 --d_num_layers=2 "
                    "--depth_g_conv_dim=8 --depth_g_num_res_blocks=0 --depth_d_conv_dim=8 --depth_d_num_layers=2 "
                    "--perceptual_weight=0 --n_critic=1 --checkpoint_every=0 --sample_every=0 --summary_every=1 "
                    "--progress=false")


def test_parse_variant():
    assert ablation.parse_variant("depth:depth_weight=0.1;geometry=normals") == (
        "depth", ["--depth_weight=0.1", "--geometry=normals"])
    assert ablation.parse_variant("baseline:depth_weight=0") == ("baseline", ["--depth_weight=0"])
    with pytest.raises(ValueError, match="not flag=value"):
        ablation.parse_variant("x:depth_weight")
    with pytest.raises(ValueError, match="name:flag=value"):
        ablation.parse_variant(":depth_weight=0")


@pytest.mark.slow
def test_flagfile_plans_every_variant_and_seed_with_one_judge():
    done = forked_cli.run(["-m", "expr3d.ablation", "--flagfile=experiments/synthetic_ablation48.flags",
                           "--dry_run"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    trains = [line for line in lines if "-m expr3d.train" in line and "--stage=depth" not in line]
    evaluations = [line for line in lines if "-m expr3d.evaluate" in line]
    assert len(trains) == 12 and len(evaluations) == 12
    assert sum("--depth_weight=0 " in line + " " for line in trains) == 3
    # The penalty's side is explicit in both penalty variants.
    assert sum("--confidence_penalty_on=critic" in line for line in trains) == 3
    assert sum("--confidence_penalty_on=generator" in line for line in trains) == 3
    assert len({line.split("--num_steps_gan=")[1].split()[0] for line in trains}) == 1  # equal steps for every variant
    assert all("--depth_model_dir=runs/synthetic_ablation48/judge_depth" in line for line in evaluations)
    judge = [line for line in lines if "--model_dir=runs/synthetic_ablation48/judge_depth" in line]
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


def test_flag_value_is_the_last_occurrence():
    assert ablation.flag_value(["--a=1", "--depth_weight=0.1", "--depth_weight=0"], "depth_weight") == "0"
    assert ablation.flag_value(["--a=1"], "depth_weight", 0.1) == 0.1


@pytest.mark.slow
def test_shared_depth_pretraining_plans_a_copy_and_stage_two_for_depth_runs_only():
    done = forked_cli.run(["-m", "expr3d.ablation", "--flagfile=experiments/synthetic_ablation48.flags",
                           "--shared_depth_pretraining", "--dry_run"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    copies = [line for line in lines if line.startswith("copy ")]
    # 3 depth-guided variants (depth, penalty on the critic, penalty on the generator) x 3 seeds.
    assert len(copies) == 9 and all(line.startswith("copy runs/synthetic_ablation48/judge_depth/depth/checkpoints ->")
                                    for line in copies)
    trains = [line for line in lines if "-m expr3d.train" in line and "judge_depth" not in line]
    assert sum(line.endswith("--stage=gan") for line in trains) == 9
    assert not any("--stage=gan" in line for line in trains if "baseline_seed" in line)


def test_copy_stage_one_is_atomic_and_names_a_missing_source(tmp_path, capsys):
    source = tmp_path / "judge" / "depth" / "checkpoints" / "ckpt-5"
    source.mkdir(parents=True)
    (source / "data").write_text("weights")
    step = ablation.CopyStageOne(str(tmp_path / "judge"), str(tmp_path / "run"))
    assert step() == 0
    assert (tmp_path / "run" / "depth" / "checkpoints" / "ckpt-5" / "data").read_text() == "weights"
    assert [p.name for p in (tmp_path / "run" / "depth").iterdir()] == ["checkpoints"]  # no temp dir left
    assert ablation.CopyStageOne(str(tmp_path / "nothing"), str(tmp_path / "run2"))() == 1
    assert "nothing/depth/checkpoints is missing" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_tiny_study_end_to_end_with_shared_depth_pretraining(tmp_path):
    import json
    import os

    root = tmp_path / "study"
    common = "--num_steps_depth=4 --num_steps_gan=3 " + TINY_TRAIN_FLAGS
    command = ["-m", "expr3d.ablation", f"--root={root}", f"--data_dir={tmp_path / 'data'}",
               "--num_identities=5", "--image_size=32", "--images_per_identity=2", "--seeds=0",
               "--variants=baseline:depth_weight=0,depth:depth_weight=0.1", f"--train_flags={common}",
               "--classifier_flags=--epochs=1 --max_steps_per_epoch=4 --width=4 --batch_size=4 --min_judge_accuracy=0",
               "--shared_depth_pretraining",
               "--metrics=expression_generation_rate,geometry",
               "--evaluate_flags=--progress=false --batch_size=8 --min_judge_accuracy=0"]
    done = forked_cli.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]
    assert "needs at least 3" in done.stderr  # one seed: warned
    with open(root / "depth_seed0" / "config.json") as f:
        config = json.load(f)
    assert config["flags"]["stage"] == "gan" and config["progress"]["gan"] == 3
    assert "stage gan starts from the stage-1 networks" in done.stderr
    assert not os.path.exists(root / "depth_seed0" / "depth" / "samples")  # no own stage 1
    with open(root / "depth_seed0" / "evaluation" / "results.json") as f:
        geometry = json.load(f)["metrics"]["geometry"]
    assert 0.0 <= geometry["geometry_real_accuracy"] <= 100.0
    assert (root / "comparison" / "comparison.md").exists()
    again = forked_cli.run(command, capture_output=True, text=True, timeout=600)  # a finished study: all skipped
    assert again.returncode == 0 and "stage 1 of depth_seed0: done already" in again.stderr


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_an_in_process_training_run_does_not_depend_on_the_run_before_it(tmp_path):
    # The study trains every run in its own process (InProcess): a run must give the same weights whatever ran
    # before it there. B, then another variant A (another generator), then B again: both Bs equal, tensor for
    # tensor.
    from tests.training.conftest import write_tiny_dataset
    from tests.training.test_train import TINY_FLAGS, checkpoint_weights

    data = write_tiny_dataset(str(tmp_path / "data"))
    common = [sys.executable, "-m", "expr3d.train", f"--data_dir={data}", *TINY_FLAGS, "--num_steps_depth=2",
              "--num_steps_gan=2", "--checkpoint_every=0", "--sample_every=0", "--num_samples=2", "--progress=false"]
    runs = [("b1", ["--depth_weight=0", "--generator=attention"]), ("a", ["--depth_weight=0"]),
            ("b2", ["--depth_weight=0", "--generator=attention"])]
    for name, variant in runs:
        assert ablation.InProcess(common + [f"--model_dir={tmp_path / name}"] + variant)() == (0, "")
    name_1, first = checkpoint_weights(str(tmp_path / "b1"), "gan")
    name_2, second = checkpoint_weights(str(tmp_path / "b2"), "gan")
    assert name_1 == name_2 and first.keys() == second.keys()
    assert [key for key in first if not (first[key] == second[key]).all()] == []


def test_shared_generator_warmup_plans_one_warmup_per_seed_and_copies_it_to_depth_term_variants():
    import types

    plan_flags = types.SimpleNamespace(
        root="r", data_dir="d", num_identities=4, image_size=32, data_seed=0, images_per_identity=8, train_pairs=True,
        classifier_data_dir=None, classifier_identities=4, classifier_data_seed=1, classifier_flags="",
        skip_corrupt=False, judge=None, metrics="paired", evaluate_flags="")
    plan_flags.variants = ["baseline:depth_weight=0", "depth:depth_weight=0.3",
                           "penalty:depth_weight=0.1;confidence_penalty=0.1;confidence_penalty_on=generator",
                           "normals:depth_weight=0.1;geometry=normals", "wider:depth_weight=0.1;g_conv_dim=16"]
    plan_flags.seeds = ["0", "1"]
    plan_flags.train_flags = "--generator_warmup_steps=4 --num_steps_gan=6 --geometry=depth"
    plan_flags.shared_depth_pretraining = True
    plan_flags.shared_generator_warmup = True
    steps = ablation.plan(plan_flags)
    names = [what for what, _, _ in steps]
    assert names[0] == "data" and "--train_pairs" in steps[0][1]
    for seed in ("0", "1"):
        # The first run of each seed trains the warm-up; the depth-term variants copy it at iteration 4.
        warmups = [step for step in steps if step[0].startswith("generator warm-up of") and step[0].endswith(seed)]
        # The donor is the first depth-guided run (its checkpoint holds every optimizer); it trains first.
        assert [what for what, _, _ in warmups] == [f"generator warm-up of baseline_seed{seed}",
                                                    f"generator warm-up of penalty_seed{seed}"]
        assert warmups[0][1].source == f"r/depth_seed{seed}/gan/checkpoints/ckpt-000000004"
        assert warmups[0][1].guide_source == f"r/depth_seed{seed}/guide"
        trains = [what for what in names if what.startswith("train ") and what.endswith(f"seed{seed}")]
        assert trains[:2] == [f"train depth_seed{seed}", f"train baseline_seed{seed}"]
    # Another geometry trains its own stage 1 (the judge's depth networks do not suit it) and its own warm-up;
    # another generator shares the stage 1 but not the warm-up.
    assert "stage 1 of wider_seed0" in names
    normals = [command for what, command, _ in steps if what in ("stage 1 of normals_seed0", "shared stage 1 (normals)")]
    assert normals[0].command[-2:] == ["--geometry=normals", "--stage=depth"] and "--model_dir=r/stage1_normals" in \
        normals[0].command
    assert normals[1].source == "r/stage1_normals/depth/checkpoints"
    assert names.count("shared stage 1 (normals)") == 1
    assert "stage 1 of baseline_seed0" in names  # with a shared warm-up every run of the judge's geometry takes it
    evaluations = [command for what, command, _ in steps if what.startswith("evaluate ")]
    assert all("--depth_model_dir=r/judge_depth" in command.command for command in evaluations)
    plan_flags.independent_depth_judge = True
    steps = ablation.plan(plan_flags)
    judges = [command.command for what, command, _ in steps if what == "independent depth judge"]
    assert len(judges) == 1 and "--seed=1" in judges[0] and judges[0][-1] == "--stage=depth"
    evaluations = [command for what, command, _ in steps if what.startswith("evaluate ")]
    assert all("--depth_model_dir=r/judge_depth_independent" in command.command for command in evaluations)
    assert all(command.source.startswith("r/judge_depth/") for what, command, _ in steps
               if what.startswith("stage 1") and "normals" not in what)
    plan_flags.shared_depth_pretraining = False
    with pytest.raises(ablation.cli.UsageError, match="--shared_generator_warmup needs --shared_depth_pretraining"):
        ablation.plan(plan_flags)


def test_copy_warmup_copies_checkpoint_and_guide_and_names_a_missing_source(tmp_path, capsys):
    source = tmp_path / "donor" / "gan" / "checkpoints" / "ckpt-000000004"
    source.mkdir(parents=True)
    (source / "ckpt.index").write_text("index")
    (tmp_path / "donor" / "guide").mkdir()
    (tmp_path / "donor" / "guide" / "classifier.keras").write_text("guide")
    step = ablation.CopyWarmup(str(tmp_path / "donor"), str(tmp_path / "run"), 4)
    assert step() == 0
    assert (tmp_path / "run" / "gan" / "checkpoints" / "ckpt-000000004" / "ckpt.index").read_text() == "index"
    assert (tmp_path / "run" / "guide" / "classifier.keras").read_text() == "guide"
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["gan", "guide"]  # no temp dir left
    assert ablation.CopyWarmup(str(tmp_path / "donor"), str(tmp_path / "run2"), 8)() == 1
    assert "ckpt-000000008 is missing" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_a_shared_generator_warmup_gives_the_same_networks_as_training_it_again(tmp_path):
    # With --shared_generator_warmup the plain variant resumes from the depth-guided one's warm-up checkpoint (and
    # its guide); trained again from the same stage 1 with the same flags, it trains its own guide and warm-up. The
    # final stage-2 checkpoints must be the same, tensor for tensor (the warm-up reads no depth term; exact resume
    # does the rest).
    from tests.training.test_train import checkpoint_weights

    common = ("--num_steps_depth=2 --num_steps_gan=4 --generator_warmup_steps=2 --batch_size=4 --g_conv_dim=8 "
              "--g_num_res_blocks=0 --d_conv_dim=8 --d_num_layers=2 --depth_g_conv_dim=8 --depth_g_num_res_blocks=0 "
              "--depth_d_conv_dim=8 --depth_d_num_layers=2 --perceptual_weight=0 --n_critic=1 --generator=attention "
              "--target_mode=paired --lambda_pair=10 --expression_guide=train --guide_epochs=1 "
              "--lambda_guide_features=1 --checkpoint_every=2 --keep_checkpoints=3 --sample_every=0 --summary_every=1 "
              "--progress=false --op_determinism")  # bit for bit needs deterministic kernels (the guide's too)
    root, data = tmp_path / "study", tmp_path / "data"
    command = ["-m", "expr3d.ablation", f"--root={root}", f"--data_dir={data}", "--num_identities=4",
               "--image_size=32", "--images_per_identity=8", "--train_pairs", "--seeds=0",
               "--variants=baseline:depth_weight=0,depth:depth_weight=0.1", f"--train_flags={common}",
               "--classifier_flags=--epochs=1 --max_steps_per_epoch=2 --width=4 --batch_size=4 --min_judge_accuracy=0",
               "--shared_depth_pretraining", "--shared_generator_warmup", "--metrics=paired",
               "--evaluate_flags=--progress=false --batch_size=8 --min_judge_accuracy=0"]
    done = forked_cli.run(command, capture_output=True, text=True, timeout=800)
    assert done.returncode == 0, done.stderr[-4000:]
    assert "generator warm-up of baseline_seed0" in done.stderr
    assert done.stderr.index("train depth_seed0") < done.stderr.index("train baseline_seed0")  # the donor first
    baseline_log = done.stderr.split("train baseline_seed0")[-1]
    assert "training the expression guide" not in baseline_log and "resum" in baseline_log.lower()

    own = tmp_path / "own"
    assert ablation.CopyStageOne(str(root / "judge_depth"), str(own))() == 0
    again = forked_cli.run(["-m", "expr3d.train", f"--data_dir={data}", f"--model_dir={own}", "--seed=0",
                            *common.split(), "--depth_weight=0", "--stage=gan"],
                           capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "training the expression guide" in again.stderr
    name_shared, weights_shared = checkpoint_weights(str(root / "baseline_seed0"), "gan")
    name_own, weights_own = checkpoint_weights(str(own), "gan")
    assert name_shared == name_own == "ckpt-000000004" and weights_shared.keys() == weights_own.keys()
    assert [key for key in weights_own if not (weights_own[key] == weights_shared[key]).all()] == []


@pytest.mark.slow
@pytest.mark.parametrize("flagfile, warmup", [("synthetic_ablation", 3000), ("synthetic_ablation_warmup1500", 1500)])
def test_the_64px_flagfiles_plan_six_variants_over_five_seeds_with_shared_work(flagfile, warmup):
    done = forked_cli.run(["-m", "expr3d.ablation", f"--flagfile=experiments/{flagfile}.flags", "--dry_run"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    trains = [line for line in lines if "-m expr3d.train" in line and "--stage=depth" not in line]
    assert len(trains) == 30 and all("--stage=gan" in line for line in trains)
    assert "--train_pairs" in lines[0]
    # One warm-up per seed (depth_seedK); baseline, depth03 and both penalty variants copy it; normals trains its own.
    warmups = [line for line in lines if line.startswith("copy ") and f"/gan/checkpoints/ckpt-{warmup:09d}" in line]
    assert len(warmups) == 20 and not any("normals" in line for line in warmups)
    assert sum("stage1_normals/depth/checkpoints ->" in line for line in lines) == 5
    assert all("judge_depth_independent" in line for line in lines if "-m expr3d.evaluate" in line)
    assert "--baseline=baseline" in lines[-1]


def _transfer_plan_flags(**overrides):
    import types

    plan_flags = types.SimpleNamespace(
        root="r", data_dir="d", num_identities=10, image_size=32, data_seed=0, images_per_identity=2, train_pairs=True,
        transfer_pairs=1, classifier_data_dir="other", classifier_identities=4, classifier_data_seed=1,
        classifier_flags="", skip_corrupt=False, judge=None, metrics="transfer_paired,action_units",
        evaluate_flags="", variants=["shao:depth_weight=0", "depth:depth_weight=0.1"], seeds=["0", "1"],
        train_flags="--model=transfer --num_steps_gan=6", shared_depth_pretraining=True,
        shared_generator_warmup=False, independent_depth_judge=True)
    for name, value in overrides.items():
        setattr(plan_flags, name, value)
    return plan_flags


def test_a_transfer_study_renders_the_transfer_truth_and_is_judged_by_one_au_judge_not_a_classifier():
    steps = ablation.plan(_transfer_plan_flags())
    names = [what for what, _, _ in steps]
    assert "--transfer_pairs=1" in steps[0][1] and "--train_pairs" in steps[0][1]
    assert not any(name.startswith("classifier") for name in names)  # no expression classifier, nor its data
    evaluations = [command.command for what, command, _ in steps if what.startswith("evaluate ")]
    assert len(evaluations) == 4
    for command in evaluations:
        assert "--judge_cache_dir=r/judges" in command and "--depth_model_dir=r/judge_depth_independent" in command
        assert not any(argument.startswith("--classifier") for argument in command)
    trains = {what: command.command for what, command, _ in steps if what.startswith("train ")}
    assert trains["train depth_seed1"][-1] == "--stage=gan"  # the transfer stage from the shared stage 1
    assert "--stage=gan" not in trains["train shao_seed1"]
    assert steps[-1][1][2] == "expr3d.compare" and "--baseline=shao" in steps[-1][1]


def test_a_transfer_study_refuses_data_without_transfer_truth_and_a_shared_warmup():
    with pytest.raises(ablation.cli.UsageError, match="needs --transfer_pairs > 0"):
        ablation.plan(_transfer_plan_flags(transfer_pairs=0))
    with pytest.raises(ablation.cli.UsageError, match="--shared_generator_warmup is for StarGAN studies"):
        ablation.plan(_transfer_plan_flags(shared_generator_warmup=True,
                                           train_flags="--model=transfer --generator_warmup_steps=2"))


def test_a_transfer_run_counts_as_trained_when_its_transfer_stage_finished(tmp_path):
    import json

    path = tmp_path / "config.json"
    config = {"flags": {"model": "transfer", "stage": "all", "num_steps_depth": 10, "num_steps_gan": 20},
              "progress": {"depth": 10, "transfer": 19}}
    path.write_text(json.dumps(config))
    assert not ablation.training_complete(str(path))
    config["progress"]["transfer"] = 20
    path.write_text(json.dumps(config))
    assert ablation.training_complete(str(path))


@pytest.mark.slow
def test_the_transfer_flagfile_plans_two_variants_over_three_seeds():
    done = forked_cli.run(["-m", "expr3d.ablation", "--flagfile=experiments/synthetic_ablation_transfer.flags",
                           "--dry_run"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert "--transfer_pairs=25" in lines[0] and "--image_size=48" in lines[0]
    trains = [line for line in lines if "-m expr3d.train" in line and "--stage=depth" not in line]
    assert len(trains) == 6 and all("--model=transfer" in line for line in trains)
    assert sum(line.endswith("--stage=gan") for line in trains) == 3  # the depth runs: stage 1 shared
    evaluations = [line for line in lines if "-m expr3d.evaluate" in line]
    assert len(evaluations) == 6 and all("--judge_cache_dir=runs/synthetic_ablation_transfer/judges" in line
                                         for line in evaluations)
    assert "--baseline=shao" in lines[-1]


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_tiny_transfer_study_end_to_end(tmp_path):
    import json

    root = tmp_path / "study"
    common = ("--model=transfer --num_steps_depth=3 --num_steps_gan=2 --code_dim=16 --target_mode=paired "
              "--lambda_pair=10 " + TINY_TRAIN_FLAGS)
    command = ["-m", "expr3d.ablation", f"--root={root}", f"--data_dir={tmp_path / 'data'}", "--num_identities=10",
               "--image_size=32", "--images_per_identity=8", "--train_pairs", "--transfer_pairs=1", "--seeds=0",
               "--variants=shao:depth_weight=0,depth:depth_weight=0.1", f"--train_flags={common}",
               "--shared_depth_pretraining", "--metrics=transfer_paired,transfer_depth",
               "--evaluate_flags=--progress=false --batch_size=8"]
    done = forked_cli.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]
    with open(root / "depth_seed0" / "config.json") as f:
        config = json.load(f)
    assert config["flags"]["stage"] == "gan" and config["progress"]["transfer"] == 2
    with open(root / "comparison" / "comparison.json") as f:
        comparison = json.load(f)
    differences = comparison["paired_differences"]["groups"]["depth"]
    assert {"transfer_ssim", "transfer_l1", "depth_l1"} <= set(differences)
    markdown = (root / "comparison" / "comparison.md").read_text()
    assert "| AU error vs exemplar | SSIM vs truth | L1 vs truth |" in markdown  # the transfer's own table
    assert "| depth | depth | yes (critic) | 0.1 | 1 |" in markdown and "| shao | – | no | 0.0 | 1 |" in markdown
