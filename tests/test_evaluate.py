"""`python -m expr3d.evaluate`: the command line over `expr3d.metrics.loop` (tests/metrics/test_loop.py)."""
import json
import os

import cv2
import pytest

from tests.metrics import fixtures
from tests import forked_cli


@pytest.fixture(scope="module")
def paths(tmp_path_factory):
    root = tmp_path_factory.mktemp("evaluate")
    return dict(fixtures.build_all(str(root)), root=root)


@pytest.mark.slow
def test_cli_end_to_end_writes_results_tables_and_figures(paths):
    output = str(paths["root"] / "cli")
    command = ["-m", "expr3d.evaluate", f"--model_dir={paths['run']}", f"--data_dir={paths['data']}",
               "--metrics=all", f"--output={output}", f"--classifier={paths['perfect']}", "--min_judge_accuracy=0",
               f"--fid_feature_model={paths['features']}", f"--identity_model={paths['embedding']}",
               "--batch_size=8", "--num_samples=3", "--label=tiny_seed0"]
    done = forked_cli.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "evaluate:" in done.stderr and "ETA" in done.stderr  # the progress line
    with open(os.path.join(output, "results.json")) as f:
        results = json.load(f)
    assert results["skipped"] == {}
    assert set(results["metrics"]) == {"expression_generation_rate", "fid", "kid", "psnr", "ssim", "identity",
                                       "geometry", "paired", "background", "samples", "critic_accuracy"}
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


@pytest.mark.slow  # a subprocess evaluate run, ~30 s here
def test_cli_exits_1_with_the_reasons_when_every_metric_was_skipped(paths, tmp_path):
    # results.json records why; the exit code says nothing was measured (docs/reliability.md).
    output = str(tmp_path / "nothing")
    env = dict(os.environ, KERAS_HOME=str(tmp_path), TF_CPP_MIN_LOG_LEVEL="3")  # no InceptionV3 weights there
    done = forked_cli.run(["-m", "expr3d.evaluate", f"--model_dir={paths['run']}",
                           f"--data_dir={paths['data']}", "--metrics=fid", f"--output={output}", "--max_examples=8",
                           "--progress=false"], capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 1, done.stderr[-2000:]
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("expr3d.evaluate: error: no metric computed: all 1 requested were skipped (fid: ")
    assert "--inception_weights" in last and "Traceback" not in done.stderr
    with open(os.path.join(output, "results.json")) as f:
        assert set(json.load(f)["skipped"]) == {"fid"}


def test_list_metrics_names_every_kind_of_run_and_its_metrics():
    done = forked_cli.run(["-m", "expr3d.evaluate", "--list_metrics"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    for heading in ("--model=stargan runs:", "--model=transfer runs:", "--condition=action_units runs:",
                    "exemplar-transfer (--condition=action_units with --exemplar_reader) runs:"):
        assert heading in done.stdout, heading
    for metric in ("expression_generation_rate", "disentanglement", "stargan_comparison", "au_dial"):
        assert f"  {metric} " in done.stdout, metric
