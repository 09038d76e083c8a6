import json
import os

import cv2
import pytest

from expr3d import compare
from expr3d.metrics import loop
from tests.file_snapshots import snapshot, unchanged
from tests.metrics import fixtures
from tests import forked_cli


@pytest.fixture(scope="session")  # once per worker, however its tests are interleaved
def evaluations(tmp_path_factory):
    root = tmp_path_factory.mktemp("compare")
    data = fixtures.write_paired_dataset(str(root / "data"))
    embedding = str(root / "embedding.keras")
    fixtures.embedding_model().save(embedding)
    outputs = []
    for label, depth_weight, seed in (("baseline_seed0", 0.0, 0), ("baseline_seed1", 0.0, 1), ("depth_seed0", 0.1, 2)):
        run = fixtures.write_run(str(root / label), depth_weight=depth_weight, seed=seed)
        loop.evaluate(run, data, "psnr,ssim,identity", progress=False, identity_model=embedding, max_examples=8)
        outputs.append(os.path.join(run, "evaluation"))
    return root, outputs


@pytest.mark.slow
def test_cli_groups_seeds_into_mean_and_spread(evaluations):
    root, outputs = evaluations
    output = str(root / "comparison")
    runs = [os.path.dirname(outputs[0])] + outputs[1:]  # a run dir or an evaluation dir
    done = forked_cli.run(["-m", "expr3d.compare", *runs, f"--output={output}"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    with open(os.path.join(output, "comparison.json")) as f:
        summary = json.load(f)
    assert set(summary["groups"]) == {"baseline", "depth"}
    baseline = summary["groups"]["baseline"]["psnr"]
    assert baseline["n"] == 2 and baseline["std"] > 0
    markdown = open(os.path.join(output, "comparison.md")).read()
    assert "| baseline | – | no | 0.0 | 2 |" in markdown and "±" in markdown
    assert "| depth | depth | yes (critic) | 0.1 | 1 |" in markdown
    for name in ("learning_curves", "identity_histogram"):
        assert cv2.imread(os.path.join(output, "figures", f"{name}.png")) is not None


def test_missing_results_name_both_places(tmp_path):
    with pytest.raises(FileNotFoundError, match="evaluation/results.json"):
        compare.load_results(str(tmp_path))
    assert compare.group_label("depth-seed12") == "depth"
    assert compare.group_label("depth_seed1", "none") == "depth_seed1"


def test_comparison_names_the_fid_feature_extractor_and_flags_mixed_ones():
    from expr3d.metrics import report

    def doc(extractor, fid):
        return {"run": {"flags": {"depth_weight": 0}}, "metrics": {"fid": {"fid": fid, "fid_feature_extractor": extractor}}}

    same = report.comparison_markdown([("a", [doc("InceptionV3 pool3", 10.0)]), ("b", [doc("InceptionV3 pool3", 12.0)])])
    assert "FID/KID features: InceptionV3 pool3 (comparable only" in same and "MIXED" not in same
    mixed = report.comparison_markdown([("a", [doc("InceptionV3 pool3", 10.0)]), ("b", [doc("classifier", 3.0)])])
    assert "MIXED extractors" in mixed


@pytest.mark.slow
def test_cli_never_replaces_what_it_did_not_write(evaluations, tmp_path):
    root, outputs = evaluations
    output = tmp_path / "comparison"
    output.mkdir()
    (output / "notes.md").write_text("my notes")

    def run(*extra):
        return forked_cli.run(["-m", "expr3d.compare", *outputs[:2], f"--output={output}", *extra],
                              capture_output=True, text=True, timeout=300)

    assert run().returncode == 0
    user = snapshot(output / "notes.md")
    first = snapshot(output)
    again = run()
    assert again.returncode == 1 and "already holds comparison.json" in again.stderr and "--overwrite" in again.stderr
    assert snapshot(output) == first
    assert run("--overwrite").returncode == 0 and not unchanged(user, snapshot(output))
    # A name that was never written there by compare is refused even with --overwrite.
    other = tmp_path / "other"
    other.mkdir()
    (other / "comparison.md").write_text("my table")
    refused = forked_cli.run(["-m", "expr3d.compare", *outputs[:2], f"--output={other}",
                              "--overwrite"], capture_output=True, text=True, timeout=300)
    assert refused.returncode == 1 and "comparison.md, which this command writes but did not" in refused.stderr
    assert (other / "comparison.md").read_text() == "my table" and sorted(os.listdir(other)) == ["comparison.md"]


def _document(label, **metrics):
    return {"label": label, "metrics": {"m": metrics}}


def test_paired_differences_match_seeds_and_count_the_better_direction():
    groups = compare.group_documents([
        _document("baseline_seed0", expression_generation_rate=50.0, paired_l1=0.030),
        _document("baseline_seed1", expression_generation_rate=40.0, paired_l1=0.040),
        _document("baseline_seed2", expression_generation_rate=45.0, paired_l1=0.035),
        _document("depth_seed1", expression_generation_rate=44.0, paired_l1=0.041),
        _document("depth_seed0", expression_generation_rate=52.0, paired_l1=0.029),
        _document("depth_seed7", expression_generation_rate=99.0, paired_l1=0.001),  # no baseline of seed 7
    ])
    differences = compare.paired_differences(groups, "baseline")
    rate = differences["depth"]["expression_generation_rate"]
    assert rate["seeds"] == [0, 1] and rate["differences"] == pytest.approx([2.0, 4.0])
    assert rate["mean"] == pytest.approx(3.0) and rate["std"] == pytest.approx(2 ** 0.5)
    assert rate["t"] == pytest.approx(3.0 / (2 ** 0.5 / 2 ** 0.5)) and rate["better"] == 2
    l1 = differences["depth"]["paired_l1"]
    assert l1["differences"] == pytest.approx([-0.001, 0.001]) and l1["better"] == 1  # lower is better
    assert "background_l1" not in differences["depth"]
    table = compare.differences_markdown(differences, "baseline")
    assert "| depth | +3.00 ± 1.41 (t 3.0, 2/2) |" in table
    with pytest.raises(ValueError, match="--baseline='plain' is not one of the compared groups"):
        compare.paired_differences(groups, "plain")


@pytest.mark.slow
def test_cli_adds_the_paired_differences_and_refuses_an_unknown_baseline(evaluations, tmp_path):
    _, outputs = evaluations
    done = forked_cli.run(["-m", "expr3d.compare", *outputs, f"--output={tmp_path / 'c'}", "--baseline=nothing"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and "--baseline='nothing' is not one of the compared groups" in done.stderr
    assert not (tmp_path / "c" / "comparison.md").exists()
    done = forked_cli.run(["-m", "expr3d.compare", *outputs, f"--output={tmp_path / 'c'}", "--baseline=baseline"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads((tmp_path / "c" / "comparison.json").read_text())
    assert summary["paired_differences"]["baseline"] == "baseline"
    assert set(summary["paired_differences"]["groups"]) == {"depth"}
