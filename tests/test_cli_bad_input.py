"""Every CLI against bad input, as a user would run it (subprocesses): the documented exit code (expr3d.cli), ONE line
on stderr naming the culprit flag or file, no traceback, and every file that existed in the input and output locations
byte-identical afterwards (nothing created either).

The cases are grouped per CLI; a CLI's cases run concurrently. Bad flags fail while parsing, before TensorFlow is
imported, so most cases take about a second.
"""
import os
import struct
import subprocess
import zlib

import cv2
import numpy as np
import pytest

from expr3d import cli
from tests.file_snapshots import snapshot, unchanged
from tests import forked_cli

pytestmark = pytest.mark.slow  # all subprocesses
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
USAGE, ERROR = cli.EXIT_USAGE, cli.EXIT_ERROR
# TensorFlow's C++ start-up lines, printed before TF_CPP_MIN_LOG_LEVEL is read (not ours to silence).
NOISE = ("WARNING: All log messages before absl::InitializeLog()", "I0000 ", "E0000 ", "W0000 ")


def png_bomb(width, height):
    """A valid PNG of ~70 bytes whose header declares width x height pixels."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\x00" * 16)) + chunk(b"IEND", b""))


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Inputs and pre-existing outputs every case points at (none may change): {name: path}."""
    root = tmp_path_factory.mktemp("bad_input")
    paths = {"root": root}

    def write(rel, data):
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return str(path)

    paths["photo"] = write("in/photo.png", cv2.imencode(".png", np.full((64, 64, 3), 90, np.uint8))[1].tobytes())
    paths["bomb"] = write("in/bomb.png", png_bomb(100000, 100000))
    paths["not_image"] = write("in/notes.png", b"this is text, not a PNG")
    paths["text_file"] = write("in/file.txt", b"a user's file")
    paths["fake_model"] = write("in/model.tflite", b"not a flatbuffer")
    paths["bad_results"] = os.path.dirname(write("in/eval_bad/results.json", b"{ truncated"))
    paths["empty_dir"] = str(root / "in" / "empty")
    os.makedirs(paths["empty_dir"])
    # prepare: one unreadable image and one whose name is not UTF-8: nothing can be written.
    paths["prepare_images"] = os.path.dirname(write("in/prepare/happy/a.png", b"not an image"))[:-len("/happy")]
    write(os.fsdecode(b"in/prepare/happy/caf\xe9.png"), cv2.imencode(".png", np.zeros((64, 64, 3), np.uint8))[1])
    paths["depth_dir"] = str(root / "in" / "depth")
    os.makedirs(paths["depth_dir"])
    # An output folder holding a user's files (and a file of a name the tools write, which is theirs, not ours).
    paths["out"] = os.path.dirname(write("out/notes.txt", b"my notes"))
    write("out/comparison.md", b"my own comparison")
    write("out/results.json", b'{"mine": true}')
    write("out/report.txt", b"my own report")
    paths["out_file"] = write("out/existing.png", b"an existing output photo")
    return paths


def run_cases(cases, timeout=600):
    """Run `cases` ([(id, argv, ...)], argv after `python`) at most 4 at a time; {id: CompletedProcess}."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", KERAS_BACKEND="tensorflow")
    env.pop(cli.TRACEBACK_ENV, None)
    results, pending = {}, list(cases)
    while pending:
        batch, pending = pending[:4], pending[4:]
        running = [(case[0], forked_cli.popen([*case[1]], cwd=REPO, env=env, stdout=subprocess.PIPE,
                                              stderr=subprocess.PIPE, text=True, errors="backslashreplace"))
                   for case in batch]
        for name, process in running:
            try:
                stdout, stderr = process.communicate(timeout=timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                stdout, stderr = process.communicate()
            results[name] = subprocess.CompletedProcess(name, process.returncode, stdout, stderr)
    return results


def stderr_lines(result):
    return [line for line in result.stderr.splitlines() if line.strip() and not line.startswith(NOISE)]


def check_cases(world, program, cases):
    """Run `cases` [(id, argv, exit code, culprit text, one_line)] and check each; the world stays as it was."""
    before = snapshot(world["root"])
    results = run_cases([(case[0], case[1]) for case in cases])
    failures = []
    for name, _, code, culprit, strict in cases:
        result = results[name]
        lines = stderr_lines(result)
        errors = [line for line in lines if line.startswith(f"{program}: error: ")]
        problems = []
        if result.returncode != code:
            problems.append(f"exit code {result.returncode}, expected {code}")
        if "Traceback" in result.stderr:
            problems.append("a traceback")
        if strict and len(lines) != 1:
            problems.append(f"{len(lines)} lines on stderr, expected one")
        if len(errors) != 1 or (lines and lines[-1] != errors[0]):
            problems.append("not exactly one error line, last")
        elif culprit not in errors[0]:
            problems.append(f"the error line does not name {culprit!r}")
        if problems:
            failures.append(f"{name}: {'; '.join(problems)}\n    stderr: {result.stderr[-1500:]!r}")
    after = snapshot(world["root"])
    assert not failures, "\n".join(failures)
    assert not unchanged(before, after), unchanged(before, after)
    assert sorted(after) == sorted(before), sorted(set(after) - set(before))  # nothing written either


@pytest.mark.slow
def test_train(world):
    data, out = world["empty_dir"], os.path.join(world["root"], "new_run")
    base = ["-m", "expr3d.train", f"--data_dir={data}", f"--model_dir={out}"]
    check_cases(world, "expr3d.train", [
        ("batch_size", base + ["--batch_size=0"], USAGE, "--batch_size=0", True),
        ("batch_size_depth", base + ["--batch_size_depth=-2"], USAGE, "--batch_size_depth=-2", True),
        ("image_size_stride", base + ["--image_size=30"], USAGE, "--image_size=30: must be a multiple of 4", True),
        ("lr_decay_start", base + ["--lr_decay_start=1.5"], USAGE, "--lr_decay_start=1.5", True),
        ("learning_rate", base + ["--g_lr=0"], USAGE, "--g_lr=0", True),
        ("beta2", base + ["--beta2=1"], USAGE, "--beta2=1", True),
        ("negative_weight", base + ["--lambda_gp=-1"], USAGE, "--lambda_gp=-1", True),
        ("keep_checkpoints", base + ["--keep_checkpoints=0"], USAGE, "--keep_checkpoints=0", True),
        ("seed", base + ["--seed=-1"], USAGE, "--seed=-1", True),
        ("not_a_number", base + ["--num_steps_gan=many"], USAGE, "--num_steps_gan=many", True),
        ("unknown_flag", base + ["--batchsize=8"], USAGE, "batchsize", True),
        ("positional", base + ["extra"], USAGE, "extra", True),
        ("model_dir_is_file", ["-m", "expr3d.train", f"--data_dir={data}", f"--model_dir={world['text_file']}"],
         USAGE, f"--model_dir={world['text_file']} is a file", True),
        ("model_dir_not_a_run", ["-m", "expr3d.train", f"--data_dir={data}", f"--model_dir={world['out']}"],
         USAGE, f"--model_dir={world['out']} is not an expr3d run", True),
    ])


def test_evaluate(world):
    base = ["-m", "expr3d.evaluate", f"--model_dir={world['empty_dir']}", f"--data_dir={world['empty_dir']}",
            f"--output={world['out']}"]
    check_cases(world, "expr3d.evaluate", [
        ("batch_size", base + ["--batch_size=0"], USAGE, "--batch_size=0", True),
        ("max_examples", base + ["--max_examples=0"], USAGE, "--max_examples=0", True),
        ("num_samples", base + ["--num_samples=-1"], USAGE, "--num_samples=-1", True),
        ("metrics", base + ["--metrics=psnr,fidd"], USAGE, "unknown metric 'fidd'", True),
        ("min_judge_accuracy", base + ["--min_judge_accuracy=80"], USAGE, "--min_judge_accuracy=80", True),
        ("judge_epochs", base + ["--judge_epochs=0"], USAGE, "--judge_epochs=0", True),
        ("missing_data_dir", ["-m", "expr3d.evaluate", f"--model_dir={world['empty_dir']}"], USAGE,
         "--data_dir is required", True),
        ("positional", base + ["psnr"], USAGE, "psnr", True),
        # The output location is checked before the run is read: an earlier results.json is kept.
        ("existing_results", base, ERROR, "already holds results.json", True),
        ("not_a_run", base[:-1] + [f"--output={world['root']}/evaluation"], ERROR,
         f"{world['empty_dir']}/config.json is missing", True),
    ])


def test_export(world):
    base = ["-m", "expr3d.export", f"--model_dir={world['empty_dir']}", f"--output={world['out']}"]
    check_cases(world, "expr3d.export", [
        ("missing_output", ["-m", "expr3d.export", f"--model_dir={world['empty_dir']}"], USAGE,
         "--output is required", True),
        ("tflite_variant", base + ["--tflite=fp8"], USAGE, "--tflite=fp8: unknown variant(s) ['fp8']", True),
        ("max_encoded_pixels", base + ["--max_encoded_pixels=0"], USAGE, "--max_encoded_pixels=0", True),
        ("version", base + ["--version=-1"], USAGE, "--version=-1", True),
        ("parity_images", base + ["--parity_images=0"], USAGE, "--parity_images=0", True),
        ("output_is_file", ["-m", "expr3d.export", f"--model_dir={world['empty_dir']}",
                            f"--output={world['text_file']}"], ERROR, f"--output={world['text_file']!r}", True),
        ("not_a_run", base, ERROR, f"{world['empty_dir']}/config.json is missing", True),
    ])


def test_lite(world):
    out = os.path.join(world["root"], "lite_out.png")
    base = ["-m", "expr3d.lite", f"--model={world['fake_model']}", f"--image={world['photo']}", f"--output={out}"]
    check_cases(world, "expr3d.lite", [
        ("expression", base + ["--expression=joyful"], USAGE, "--expression=joyful", True),
        ("output_format", base[:-1] + [f"--output={out[:-4]}.txt"], USAGE, "must be a file name ending in", True),
        ("num_threads", base + ["--num_threads=0"], USAGE, "--num_threads=0", True),
        ("action_units", base + ["--action_units=AU12+0.5;AU4+0.1"], USAGE, "--action_units=AU12+0.5;AU4+0.1: takes one edit", True),
        ("missing_model", ["-m", "expr3d.lite", f"--image={world['photo']}", f"--output={out}"], USAGE,
         "--model is required", True),
        ("bomb", base[:-2] + [f"--image={world['bomb']}", f"--output={out}"], ERROR,
         "declares 100000x100000 pixels", True),
        ("not_an_image", base[:-2] + [f"--image={world['not_image']}", f"--output={out}"], ERROR,
         world["not_image"], True),
        ("missing_image", base[:-2] + [f"--image={world['photo']}x", f"--output={out}"], ERROR,
         f"{world['photo']}x", True),
        ("invalid_model", base, ERROR, f"{world['fake_model']} is not a valid TFLite model", True),
        ("existing_output", base[:-1] + [f"--output={world['out_file']}"], ERROR, "exists; pass --overwrite", True),
    ])


def test_synthesize(world):
    out = os.path.join(world["root"], "synth_out")
    base = ["-m", "expr3d.synthesize", f"--saved_model={world['empty_dir']}", f"--images={world['photo']}",
            f"--output={out}"]
    check_cases(world, "expr3d.synthesize", [
        ("batch_size", base + ["--batch_size=0"], USAGE, "--batch_size=0", True),
        ("expressions", base + ["--expressions=happy,joyful"], USAGE, "--expressions=happy,joyful", True),
        ("action_units", base + ["--action_units=AU12*2"], USAGE, "'AU12*2' is not AUn+x", True),
        ("missing_images", base[:3] + [base[4]], USAGE, "--images is required", True),
        ("no_images", base[:3] + [f"--images={world['empty_dir']}", base[4]], ERROR, "holds no image files", True),
        ("no_saved_model", base, ERROR, f"--saved_model={world['empty_dir']!r} holds no saved_model.pb", True),
    ])


def test_compare(world):
    out = os.path.join(world["root"], "compare_out")
    check_cases(world, "expr3d.compare", [
        ("no_inputs", ["-m", "expr3d.compare", f"--output={out}"], USAGE, "no evaluation given", True),
        ("group", ["-m", "expr3d.compare", world["bad_results"], "--group=seeds"], USAGE, "--group", True),
        ("missing", ["-m", "expr3d.compare", world["empty_dir"], f"--output={out}"], ERROR,
         f"{world['empty_dir']}: no results.json", True),
        ("corrupt", ["-m", "expr3d.compare", world["bad_results"], f"--output={out}"], ERROR,
         f"{world['bad_results']}/results.json is not a valid results file", True),
        ("foreign_output", ["-m", "expr3d.compare", world["bad_results"], f"--output={world['out']}",
                            "--overwrite"], ERROR, "comparison.md", True),
    ])


def test_ablation(world):
    base = ["-m", "expr3d.ablation", f"--root={world['root']}/ablation", "--dry_run"]
    check_cases(world, "expr3d.ablation", [
        ("num_identities", base + ["--num_identities=1"], USAGE, "--num_identities=1", True),
        ("image_size", base + ["--image_size=40"], USAGE, "--image_size=40", True),
        ("seeds", base + ["--seeds=0,one"], USAGE, "--seeds", True),
        ("variant", base + ["--variants=bad name:depth_weight=0"], USAGE, "--variants", True),
        ("duplicate_variant", base + ["--variants=a:depth_weight=0,a:depth_weight=0.1"], USAGE, "['a']", True),
        ("positional", base + ["now"], USAGE, "now", True),
    ])


def test_classifier(world):
    base = ["-m", "expr3d.metrics.classifier", f"--data_dir={world['empty_dir']}",
            f"--output={world['root']}/classifier"]
    check_cases(world, "expr3d.metrics.classifier", [
        ("epochs", base + ["--epochs=0"], USAGE, "--epochs=0", True),
        ("batch_size", base + ["--batch_size=0"], USAGE, "--batch_size=0", True),
        ("learning_rate", base + ["--learning_rate=-0.1"], USAGE, "--learning_rate=-0.1", True),
        ("image_size", base + ["--image_size=4"], USAGE, "--image_size=4", True),
        ("min_judge_accuracy", base + ["--min_judge_accuracy=1.5"], USAGE, "--min_judge_accuracy=1.5", True),
        ("missing_output", base[:3], USAGE, "--output is required", True),
        ("positional", base + ["go"], USAGE, "go", True),
    ])


def test_synthetic_data(world):
    base = ["-m", "expr3d.data.synthetic", f"--output={world['root']}/synthetic"]
    check_cases(world, "expr3d.data.synthetic", [
        ("num_identities", base + ["--num_identities=1"], USAGE, "--num_identities=1", True),
        ("image_size", base + ["--image_size=40"], USAGE, "--image_size=40: must be a multiple of 16", True),
        ("test_fraction", base + ["--test_fraction=1"], USAGE, "--test_fraction=1", True),
        ("workers", base + ["--workers=0"], USAGE, "--workers=0", True),
        ("examples_per_shard", base + ["--examples_per_shard=0"], USAGE, "--examples_per_shard=0", True),
        ("missing_output", base[:2], USAGE, "--output is required", True),
        ("positional", base + ["64"], USAGE, "64", True),
        ("output_is_file", ["-m", "expr3d.data.synthetic", f"--output={world['text_file']}"], ERROR,
         f"--output={world['text_file']} is a file", True),
    ])


def test_prepare(world):
    base = ["-m", "expr3d.data.prepare", "--dataset=folder", f"--images={world['prepare_images']}",
            "--depth_source=depth_dir", f"--depth_dir={world['depth_dir']}"]
    new_out = f"--output={world['root']}/prepared"
    check_cases(world, "expr3d.data.prepare", [
        ("image_size", base + [new_out, "--image_size=30"], USAGE, "--image_size=30", True),
        ("workers", base + [new_out, "--workers=0"], USAGE, "--workers=0", True),
        ("test_split", base + [new_out, "--test_split=1"], USAGE, "--test_split=1", True),
        ("threshold", base + [new_out, "--min_coverage=2"], USAGE, "--min_coverage=2", True),
        ("rafd_angles", base + [new_out, "--rafd_angles=91"], USAGE, "--rafd_angles", True),
        ("missing_dataset", base[:2] + base[3:] + [new_out], USAGE, "--dataset is required", True),
        ("images_not_a_folder", base[:3] + [f"--images={world['photo']}"] + base[4:] + [new_out], ERROR,
         f"--images={world['photo']} is not a directory", True),
        ("output_inside_input", base + [f"--output={world['prepare_images']}/out"], ERROR,
         "never writes into its inputs", True),
        ("foreign_output", base + [f"--output={world['out']}", "--overwrite"], ERROR, "report.txt", True),
    ])


def test_prepare_with_every_input_skipped_exits_1_with_the_count(tmp_path, world):
    # Runs (and writes its report), but no face can be written: an unreadable image and a non-UTF-8 name, each
    # skipped by name without stopping the run; the exit code says nothing was prepared.
    out = tmp_path / "prepared"
    before = snapshot(world["root"])
    result = run_cases([("all_skipped", ["-m", "expr3d.data.prepare", "--dataset=folder",
                                         f"--images={world['prepare_images']}", "--depth_source=depth_dir",
                                         f"--depth_dir={world['depth_dir']}", f"--output={out}"])])["all_skipped"]
    assert result.returncode == ERROR, result.stderr[-2000:]
    errors = [line for line in stderr_lines(result) if "error" in line]
    assert errors == [stderr_lines(result)[-1]] and "Traceback" not in result.stderr
    assert errors[0].startswith("expr3d.data.prepare: error: no face written: 2 skipped (non_utf8_name 1, "
                                "unreadable_image 1) of 2 listed")
    report = (out / "report.txt").read_text(encoding="utf-8")
    assert "happy/caf\\xe9.png" in report and "not valid UTF-8" in report
    assert not unchanged(before, snapshot(world["root"]))
