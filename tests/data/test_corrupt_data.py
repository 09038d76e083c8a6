"""Corrupt and inconsistent data through every command that reads shards (subprocesses): each bad-data case ends in
ONE line on stderr naming the shard (and the record), no traceback, the documented exit code, and every
pre-existing file of the inputs and outputs byte-identical; with --skip_corrupt the same data goes through, and
the count of skipped records lands in the run's metadata (config.json, results.json, classifier.json,
expr3d_export.json). Plus the pipeline-level checks in-process (fast).

Each command gets the four cases that take different paths through it - a truncated shard (the shard-level count
check), a shard the card lists but is missing (refused up front), a record TensorFlow's parser rejects (missing
field / wrong type: found by a scan) and a record the pipeline's own checks reject (NaN depth / empty mask / size
unlike the card's) - with the record-level cases rotated so that every case runs through some command; every case
runs through the pipeline and the numpy reader in-process below. The subprocesses of one command run two at a time
(they are mostly TensorFlow's start-up).
"""
import concurrent.futures
import json
import os
import re

import pytest

from expr3d.data import dataset_card, pipeline, records, schema
from tests.data import corrupt
from tests.file_snapshots import snapshot, unchanged
from tests import forked_cli

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", KERAS_BACKEND="tensorflow", PYTHONUNBUFFERED="1")
TRAIN_FLAGS = ["--g_conv_dim=8", "--g_num_res_blocks=0", "--d_conv_dim=8", "--d_num_layers=2", "--depth_g_conv_dim=8",
               "--depth_g_num_res_blocks=0", "--depth_d_conv_dim=8", "--depth_d_num_layers=2", "--perceptual_weight=0",
               "--batch_size=4", "--n_critic=1", "--stage=depth", "--num_steps_depth=4", "--checkpoint_every=0",
               "--sample_every=0", "--num_samples=2", "--noprogress"]
CLASSIFIER_FLAGS = ["--epochs=1", "--width=4", "--batch_size=4", "--min_judge_accuracy=0"]
# Exit codes (expr3d/cli.py): bad data is bad input, 1; expr3d.train keeps its documented 2 for bad input.
EXIT = {"train": 2, "evaluate": 1, "classifier": 1, "export": 1, "ablation": 1}
# Which split each command reads first, so the damage is met.
SPLIT = {"train": "train", "evaluate": "test", "classifier": "train", "export": "test", "ablation": "train"}
COMMAND_CASES = {
    "train": ("truncated_shard", "missing_shard", "wrong_type", "nan_depth"),
    "evaluate": ("truncated_shard", "missing_shard", "missing_field", "zero_mask"),
    "classifier": ("truncated_shard", "missing_shard", "wrong_type", "size_mismatch"),
    "export": ("truncated_shard", "missing_shard", "missing_field", "nan_depth"),
    "ablation": ("truncated_shard",),  # its classifier step meets the damage; the line must reach the study's end
}
CASES = [(command, case) for command, cases in COMMAND_CASES.items() for case in cases]


def _run_all(commands, workers=2, timeout=600):
    """{name: CompletedProcess} of `python ARGS` for each (name, args), `workers` at a time."""
    def one(args):
        return forked_cli.run(list(args), cwd=REPO, env=ENV, capture_output=True, text=True,
                              timeout=timeout)

    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        futures = {name: pool.submit(one, args) for name, args in commands.items()}
        return {name: future.result() for name, future in futures.items()}


def _command(command, data_dir, work, run_dir, skip=False):
    """(args, output location) of `command` on `data_dir`, writing below `work`."""
    flag = ["--skip_corrupt"] if skip else []
    if command == "train":
        out = os.path.join(work, "run")
        return ["-m", "expr3d.train", f"--data_dir={data_dir}", f"--model_dir={out}", *TRAIN_FLAGS, *flag], out
    if command == "evaluate":
        out = os.path.join(work, "evaluation")
        return ["-m", "expr3d.evaluate", f"--model_dir={run_dir}", f"--data_dir={data_dir}", "--metrics=psnr",
                f"--output={out}", "--batch_size=4", "--noprogress", *flag], out
    if command == "classifier":
        out = os.path.join(work, "classifier")
        return ["-m", "expr3d.metrics.classifier", f"--data_dir={data_dir}", f"--output={out}", *CLASSIFIER_FLAGS,
                *flag], out
    if command == "export":
        out = os.path.join(work, "saved_models")
        return ["-m", "expr3d.export", f"--model_dir={run_dir}", f"--output={out}", "--tflite=fp32",
                f"--data_dir={data_dir}", "--parity_images=4", *flag], out
    out = os.path.join(work, "study")
    return ["-m", "expr3d.ablation", f"--root={out}", f"--data_dir={data_dir}", "--variants=baseline:depth_weight=0",
            "--seeds=0", f"--classifier_flags={' '.join(CLASSIFIER_FLAGS)}",
            f"--train_flags={' '.join(TRAIN_FLAGS)}", "--metrics=psnr", *flag], out


@pytest.fixture(scope="session")  # once per worker, however its tests are interleaved
def world(tmp_path_factory):
    """A clean dataset (several shards per split) and a tiny run directory (for evaluate and export)."""
    from tests.metrics.fixtures import write_run

    root = tmp_path_factory.mktemp("corrupt_world")
    clean = corrupt.write_dataset(root / "clean")
    run_dir = write_run(str(root / "run"), logs=False)
    return {"root": root, "clean": clean, "run": run_dir}


_BAD_RUNS = {}


def _bad_runs(world, command):
    """Every case of `command` run on its own damaged copy, with a user's file in its output location (launched
    together on first use)."""
    if command in _BAD_RUNS:
        return _BAD_RUNS[command]
    commands, context = {}, {}
    for case in COMMAND_CASES[command]:
        work = world["root"] / f"{command}-{case}"
        data_dir, shard = corrupt.damaged_copy(world["clean"], work / "data", SPLIT[command], case,
                                               shard=-1 if SPLIT[command] == "train" else 0)
        args, out = _command(command, data_dir, str(work), world["run"])
        if command != "train":  # train refuses a folder that is not a run; its inputs are checked all the same
            os.makedirs(out)
            with open(os.path.join(out, "notes.txt"), "w") as handle:
                handle.write("a user's notes, not to be touched\n")
        watched = [data_dir, world["run"]] + ([out] if os.path.isdir(out) else [])
        context[(command, case)] = {"shard": shard, "out": out, "before": snapshot(*watched), "watched": watched}
        commands[(command, case)] = args
    results = _run_all(commands)
    _BAD_RUNS[command] = {key: dict(context[key], result=results[key]) for key in commands}
    return _BAD_RUNS[command]


@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.parametrize("command, case", CASES)
def test_bad_data_ends_in_one_line_naming_the_shard(world, command, case):
    run = _bad_runs(world, command)[(command, case)]
    result = run["result"]
    assert result.returncode == EXIT[command], result.stderr[-3000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    line = corrupt.last_line(result.stderr)
    assert re.search(corrupt.message_pattern(case, run["shard"]), line), line
    assert " error: " in line and (command == "ablation" or "--skip_corrupt" in line), line
    assert not unchanged(run["before"], snapshot(*run["watched"]))
    if command == "train":
        assert not os.path.isdir(os.path.join(run["out"], "depth", "checkpoints")) or not os.listdir(
            os.path.join(run["out"], "depth", "checkpoints"))
    elif command == "export":
        assert sorted(os.listdir(run["out"])) == ["notes.txt"]  # no version, no hidden temporary
    elif command in ("evaluate", "classifier"):
        assert sorted(os.listdir(run["out"])) == ["notes.txt"]


# --- --skip_corrupt: the same damage goes through, counted ------------------------------------------------------

def _mixed_damage(data_dir, split, truncate=True):
    """Three bad records in the split's first shard and (`truncate`) a truncated last shard; returns the expected
    skip count."""
    corrupt.damage(data_dir, split, "nan_depth", shard=0, indices=[0])
    corrupt.damage(data_dir, split, "missing_field", shard=0, indices=[1])
    corrupt.damage(data_dir, split, "zero_mask", shard=0, indices=[2])
    if not truncate:
        return 3
    last = corrupt.damage(data_dir, split, "truncated_shard", shard=-1)
    card = dataset_card.read_dataset_card(data_dir)
    listed = card["splits"][split]["shards"][-1]["num_examples"]
    return 3 + listed - corrupt.readable_records(last)


@pytest.fixture(scope="session")  # once per worker, however its tests are interleaved
def skip_runs(world):
    commands, context = {}, {}
    for command in ("train", "evaluate", "classifier", "export"):
        work = world["root"] / f"skip-{command}"
        data_dir, _ = corrupt.damaged_copy(world["clean"], work / "data", SPLIT[command], "zero_mask", shard=0,
                                           indices=[])
        # export reads faces until it has --parity_images of them: only the first shard's damage is met.
        expected = _mixed_damage(data_dir, SPLIT[command], truncate=command != "export")
        args, out = _command(command, data_dir, str(work), world["run"], skip=True)
        before = snapshot(data_dir)
        commands[command] = args
        context[command] = {"data": data_dir, "out": out, "expected": expected, "before": before}
    results = _run_all(commands)
    return {key: dict(context[key], result=results[key]) for key in commands}


@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.parametrize("command", ["train", "evaluate", "classifier", "export"])
def test_skip_corrupt_goes_through_and_counts_what_it_skipped(skip_runs, command):
    run = skip_runs[command]
    result, expected = run["result"], run["expected"]
    assert result.returncode == 0, result.stderr[-3000:]
    assert not unchanged(run["before"], snapshot(run["data"]))
    if command == "train":
        with open(os.path.join(run["out"], "config.json")) as handle:
            config = json.load(handle)
        assert config["skipped_records"] == {"train": expected, "test": 0}
        assert config["flags"]["skip_corrupt"] is True and len(config["skipped_problems"]) == 4
        assert f"skipping {expected} of 24 'train' records" in result.stderr
        assert config["progress"] == {"depth": 4}
    elif command == "evaluate":
        with open(os.path.join(run["out"], "results.json")) as handle:
            results = json.load(handle)
        assert results["counts"]["skipped_records"] == expected
        assert results["counts"]["test_images"] == 8 - expected
        assert results["flags"]["skip_corrupt"] is True and len(results["skipped_problems"]) == 4
    elif command == "classifier":
        with open(os.path.join(run["out"], "classifier.json")) as handle:
            metadata = json.load(handle)
        data = os.path.abspath(run["data"])
        assert metadata["skipped_records"] == {f"{data} train": expected, f"{data} test": 0}
        assert metadata["flags"]["skip_corrupt"] is True
    else:
        # The parity set reads the test split until it has 4 faces: the 3 bad records of the first shard are met.
        with open(os.path.join(run["out"], "1", "expr3d_export.json")) as handle:
            info = json.load(handle)
        assert info["skipped_corrupt_records"] == 3
        assert info["tflite"]["fp32"]["parity"]["skipped_corrupt_records"] == 3
        assert info["tflite"]["fp32"]["parity"]["images"] == 4


@pytest.mark.slow
def test_ablation_passes_skip_corrupt_to_every_reader():
    done = forked_cli.run(["-m", "expr3d.ablation", "--flagfile=experiments/synthetic_ablation48.flags",
                           "--dry_run", "--skip_corrupt"], cwd=REPO, env=ENV, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    readers = [line for line in done.stdout.splitlines()
               if any(f"-m expr3d.{m}" in line for m in ("train", "evaluate", "metrics.classifier"))]
    assert readers and all("--skip_corrupt" in line for line in readers)


# --- in-process: the pipeline names every case, and counts it ---------------------------------------------------

@pytest.mark.slow  # in-process, but four tf.data pipelines per case: 9-70 s each here under load
@pytest.mark.parametrize("case", corrupt.CASES)
def test_pipeline_names_the_shard_and_record_in_both_modes(world, tmp_path, case):
    data_dir, shard = corrupt.damaged_copy(world["clean"], tmp_path / "data", "train", case,
                                           indices=None if case in ("truncated_shard", "missing_shard") else [1, 3])
    pattern = corrupt.message_pattern(case, shard)
    for training in (False, True):
        with pytest.raises(schema.RecordError) as error:
            dataset = pipeline.make_dataset(data_dir, "train", 4, training=training)
            for _ in zip(range(40), pipeline.checked(dataset, data_dir, ["train"])):
                pass
        assert re.search(pattern, str(error.value)) and "\n" not in str(error.value), str(error.value)
    report = pipeline.scan_split(data_dir, "train")
    lost = 8 if case == "missing_shard" else 8 - corrupt.readable_records(shard) if case == "truncated_shard" else 2
    assert report["skipped"] == lost and report["records"] == 24
    assert all(re.search(pattern, line) for line in report["problems"]), report["problems"]
    if case != "missing_shard":
        kept = sum(int(batch["image"].shape[0])
                   for batch in pipeline.make_dataset(data_dir, "train", 4, training=False, skip_corrupt=True))
        assert kept == 24 - lost
    else:  # listed but missing: skipped with a warning in --skip_corrupt mode
        kept = sum(int(batch["image"].shape[0])
                   for batch in pipeline.make_dataset(data_dir, "train", 4, training=False, skip_corrupt=True))
        assert kept == 16


@pytest.mark.slow
def test_numpy_reader_applies_the_same_checks(world, tmp_path):
    """`records.iterate_examples` (export's parity faces) refuses what the tf.data pipeline refuses."""
    for case in corrupt.CASES:
        data_dir, shard = corrupt.damaged_copy(world["clean"], tmp_path / case, "test", case, shard=0,
                                               indices=None if case in ("truncated_shard", "missing_shard") else [2])
        with pytest.raises(schema.RecordError) as error:
            list(records.iterate_examples(data_dir, "test"))
        assert re.search(corrupt.message_pattern(case, shard), str(error.value)), (case, str(error.value))
        stats, lines = {}, []
        kept = list(records.iterate_examples(data_dir, "test", skip_corrupt=True, stats=stats, log=lines.append))
        assert len(kept) + stats["skipped"] == 8 and stats["skipped"] >= 1 and lines, (case, stats)
