import json
import os
import subprocess
import sys

import cv2
import pytest

from expr3d import evaluate
from expr3d import outputs
from tests.file_snapshots import snapshot, unchanged
from tests.metrics import fixtures


@pytest.fixture(scope="module")
def paths(tmp_path_factory):
    root = tmp_path_factory.mktemp("evaluate")
    out = fixtures.build_all(str(root))
    out["root"] = root
    return out


@pytest.mark.slow
def test_cli_end_to_end_writes_results_tables_and_figures(paths):
    output = str(paths["root"] / "cli")
    command = [sys.executable, "-m", "expr3d.evaluate", f"--model_dir={paths['run']}", f"--data_dir={paths['data']}",
               "--metrics=all", f"--output={output}", f"--classifier={paths['perfect']}", "--min_judge_accuracy=0",
               f"--fid_feature_model={paths['features']}", f"--identity_model={paths['embedding']}",
               "--batch_size=8", "--num_samples=3", "--label=tiny_seed0"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "evaluate:" in done.stderr and "ETA" in done.stderr  # the progress line
    with open(os.path.join(output, "results.json")) as f:
        results = json.load(f)
    assert results["skipped"] == {}
    assert set(results["metrics"]) == {"expression_generation_rate", "fid", "kid", "psnr", "ssim", "identity",
                                       "geometry", "paired", "background", "samples"}
    assert results["flags"]["classifier"] == paths["perfect"] and results["flags"]["batch_size"] == 8
    assert results["versions"]["tensorflow"] and results["versions"]["keras"]
    assert results["run"]["flags"]["depth_weight"] == 0.1 and results["run"]["geometry"] == "depth"
    assert results["counts"] == {"test_images": 16, "targets": list(range(8)), "translations": 128,
                                 "skipped_records": 0}
    assert results["metrics"]["fid"]["fid_real_count"] == 16 and results["metrics"]["fid"]["fid_generated_count"] == 128
    assert any("16 real" in w for w in results["warnings"])  # too few samples for a stable FID
    assert results["metrics"]["paired"]["paired_count"] == 128
    assert results["metrics"]["identity"]["identity_count"] == 128
    assert set(results["timing_seconds"]) >= {"total", "network/translate", "metric/fid"}
    for name in ("confusion_matrix", "learning_curves", "identity_histogram", "samples"):
        path = os.path.join(output, "figures", f"{name}.png")
        assert cv2.imread(path) is not None, path
    with open(os.path.join(output, "results.md")) as f:
        markdown = f.read()
    assert "| method | geometry | conf. penalty | acc % | FID | PSNR | SSIM |" in markdown
    assert "| tiny_seed0 | depth | yes (critic) |" in markdown


def test_identity_generator_scores_perfect_cycle_and_input_baseline(paths):
    document = evaluate.evaluate(paths["identity_run"], paths["data"], "psnr,ssim,paired,geometry",
                                 output=str(paths["root"] / "ident"), progress=False)
    metrics = document["metrics"]
    assert metrics["psnr"]["psnr"] == 100.0  # G(G(x)) = x: capped infinity
    assert metrics["ssim"]["ssim"] == pytest.approx(1.0, abs=1e-6)
    # G(x, t) = x, so the paired error equals the "do nothing" baseline, and is 0 exactly when t = source
    assert metrics["paired"]["paired_l1"] == pytest.approx(metrics["paired"]["paired_l1_input"])
    assert metrics["paired"]["paired_l1"] > 0
    assert document["run"]["geometry"] == "–"  # depth_weight 0: a plain StarGAN row
    assert metrics["geometry"]["geometry_rigid_l1"] == pytest.approx(metrics["geometry"]["geometry_rigid_l1_real"])


def test_missing_inception_weights_skip_fid_and_the_rest_still_runs(paths, monkeypatch, tmp_path):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    document = evaluate.evaluate(paths["run"], paths["data"], "fid,kid,psnr", output=str(paths["root"] / "noinc"),
                                 progress=False, max_examples=8)
    assert set(document["metrics"]) == {"psnr"}
    for name in ("fid", "kid"):
        assert "--inception_weights" in document["skipped"][name]
        assert os.path.join(str(tmp_path), "models", "inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5") \
            in document["skipped"][name]
    assert document["counts"]["test_images"] == 8


def test_deterministic_for_a_seed(paths):
    kwargs = dict(fid_feature_model=paths["features"], progress=False, seed=3, max_examples=8)
    a = evaluate.evaluate(paths["run"], paths["data"], "kid,psnr", output=str(paths["root"] / "d1"), **kwargs)
    b = evaluate.evaluate(paths["run"], paths["data"], "kid,psnr", output=str(paths["root"] / "d2"), **kwargs)
    assert a["metrics"] == b["metrics"]


def test_bad_run_directories_and_existing_output(paths, tmp_path):
    with pytest.raises(evaluate.EvaluationError, match="config.json is missing"):
        evaluate.evaluate(str(tmp_path), paths["data"], "psnr", output=str(tmp_path / "o"))
    empty_run = tmp_path / "run"
    (empty_run / "gan" / "checkpoints" / "ckpt-000000002").mkdir(parents=True)
    (empty_run / "config.json").write_text(json.dumps({"flags": {}, "model_config": fixtures.TINY}))
    with pytest.raises(evaluate.EvaluationError, match="models/g_rgb.keras is missing.*has checkpoints"):
        evaluate.evaluate(str(empty_run), paths["data"], "psnr", output=str(tmp_path / "o"))
    with pytest.raises(outputs.OutputError, match=r"already holds .*results.json.*pass --overwrite"):
        evaluate.evaluate(paths["run"], paths["data"], "psnr", output=str(paths["root"] / "d1"))


def test_output_check_covers_everything_it_writes_and_overwrite_only_its_own(paths, tmp_path):
    out = tmp_path / "eval"
    kwargs = dict(progress=False, max_examples=8, num_samples=2)
    evaluate.evaluate(paths["run"], paths["data"], "psnr,ssim", output=str(out), **kwargs)
    os.remove(out / "results.json")  # what is left (results.md, figures) still says "an earlier evaluation"
    with pytest.raises(outputs.OutputError, match=r"already holds .*results.md"):
        evaluate.evaluate(paths["run"], paths["data"], "psnr", output=str(out), **kwargs)
    (out / "figures" / "mine.png").write_bytes(b"user figure")
    (out / "notes.txt").write_text("mine")
    user = snapshot(out / "figures" / "mine.png", out / "notes.txt")
    evaluate.evaluate(paths["run"], paths["data"], "psnr", output=str(out), overwrite=True, **kwargs)
    assert not unchanged(user, snapshot(out)) and (out / "results.json").exists()
    # A file of a name evaluate writes, that it did not write: refused even with --overwrite, left as it was.
    foreign = tmp_path / "foreign"
    (foreign / "figures").mkdir(parents=True)
    (foreign / "figures" / "samples.png").write_bytes(b"someone's samples")
    with pytest.raises(outputs.OutputError, match="figures/samples.png, which this command writes but did not"):
        evaluate.evaluate(paths["run"], paths["data"], "psnr", output=str(foreign), overwrite=True, **kwargs)
    assert (foreign / "figures" / "samples.png").read_bytes() == b"someone's samples"


def test_cli_exits_1_with_the_reasons_when_every_metric_was_skipped(paths, tmp_path):
    # results.json records why; the exit code says nothing was measured (docs/reliability.md).
    output = str(tmp_path / "nothing")
    env = dict(os.environ, KERAS_HOME=str(tmp_path), TF_CPP_MIN_LOG_LEVEL="3")  # no InceptionV3 weights there
    done = subprocess.run([sys.executable, "-m", "expr3d.evaluate", f"--model_dir={paths['run']}",
                           f"--data_dir={paths['data']}", "--metrics=fid", f"--output={output}", "--max_examples=8",
                           "--progress=false"], capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 1, done.stderr[-2000:]
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("expr3d.evaluate: error: no metric computed: all 1 requested were skipped (fid: ")
    assert "--inception_weights" in last and "Traceback" not in done.stderr
    with open(os.path.join(output, "results.json")) as f:
        assert set(json.load(f)["skipped"]) == {"fid"}
