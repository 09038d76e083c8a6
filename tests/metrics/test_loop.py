import json
import os

import pytest

from expr3d import outputs
from expr3d.metrics import loop
from expr3d.metrics.context import EvaluationError
from tests.file_snapshots import snapshot, unchanged
from tests.metrics import fixtures


@pytest.fixture(scope="module")
def paths(tmp_path_factory):
    root = tmp_path_factory.mktemp("evaluate")
    return dict(fixtures.build_all(str(root)), root=root)


@pytest.mark.slow  # 6 s in the full suite
def test_identity_generator_scores_perfect_cycle_and_input_baseline(paths):
    document = loop.evaluate(paths["identity_run"], paths["data"], "psnr,ssim,paired,geometry",
                             output=str(paths["root"] / "ident"), progress=False)
    metrics = document["metrics"]
    assert metrics["psnr"]["psnr"] == 100.0  # G(G(x)) = x: capped infinity
    assert metrics["ssim"]["ssim"] == pytest.approx(1.0, abs=1e-6)
    # G(x, t) = x, so the paired error equals the "do nothing" baseline, and is 0 exactly when t = source
    assert metrics["paired"]["paired_l1"] == pytest.approx(metrics["paired"]["paired_l1_input"])
    assert metrics["paired"]["paired_l1"] > 0
    assert document["run"]["geometry"] == "–"  # depth_weight 0: a plain StarGAN row
    assert metrics["geometry"]["geometry_rigid_l1"] == pytest.approx(metrics["geometry"]["geometry_rigid_l1_real"])


@pytest.mark.slow  # 3 s in the full suite
def test_missing_inception_weights_skip_fid_and_the_rest_still_runs(paths, monkeypatch, tmp_path):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    document = loop.evaluate(paths["run"], paths["data"], "fid,kid,psnr", output=str(paths["root"] / "noinc"),
                             progress=False, max_examples=8)
    assert set(document["metrics"]) == {"psnr"}
    for name in ("fid", "kid"):
        assert "--inception_weights" in document["skipped"][name]
        assert os.path.join(str(tmp_path), "models", "inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5") \
            in document["skipped"][name]
    assert document["counts"]["test_images"] == 8


@pytest.mark.slow  # 8 s in the full suite
def test_deterministic_for_a_seed(paths):
    kwargs = dict(fid_feature_model=paths["features"], progress=False, seed=3, max_examples=8)
    a = loop.evaluate(paths["run"], paths["data"], "kid,psnr", output=str(paths["root"] / "d1"), **kwargs)
    b = loop.evaluate(paths["run"], paths["data"], "kid,psnr", output=str(paths["root"] / "d2"), **kwargs)
    assert a["metrics"] == b["metrics"]


@pytest.mark.slow  # 2 s in the full suite
def test_bad_run_directories_and_existing_output(paths, tmp_path):
    with pytest.raises(EvaluationError, match="config.json is missing"):
        loop.evaluate(str(tmp_path), paths["data"], "psnr", output=str(tmp_path / "o"))
    empty_run = tmp_path / "run"
    (empty_run / "gan" / "checkpoints" / "ckpt-000000002").mkdir(parents=True)
    (empty_run / "config.json").write_text(json.dumps({"flags": {}, "model_config": fixtures.TINY}))
    with pytest.raises(EvaluationError, match="models/g_rgb.keras is missing.*has checkpoints"):
        loop.evaluate(str(empty_run), paths["data"], "psnr", output=str(tmp_path / "o"))
    # An earlier evaluation's output (its own, not another test's: the fast subset runs this test alone).
    earlier = str(tmp_path / "earlier")
    loop.evaluate(paths["run"], paths["data"], "psnr", output=earlier, progress=False, max_examples=8, num_samples=2)
    with pytest.raises(outputs.OutputError, match=r"already holds .*results.json.*pass --overwrite"):
        loop.evaluate(paths["run"], paths["data"], "psnr", output=earlier)


@pytest.mark.slow  # 6 s in the full suite
def test_output_check_covers_everything_it_writes_and_overwrite_only_its_own(paths, tmp_path):
    out = tmp_path / "eval"
    kwargs = dict(progress=False, max_examples=8, num_samples=2)
    loop.evaluate(paths["run"], paths["data"], "psnr,ssim", output=str(out), **kwargs)
    os.remove(out / "results.json")  # what is left (results.md, figures) still says "an earlier evaluation"
    with pytest.raises(outputs.OutputError, match=r"already holds .*results.md"):
        loop.evaluate(paths["run"], paths["data"], "psnr", output=str(out), **kwargs)
    (out / "figures" / "mine.png").write_bytes(b"user figure")
    (out / "notes.txt").write_text("mine")
    user = snapshot(out / "figures" / "mine.png", out / "notes.txt")
    loop.evaluate(paths["run"], paths["data"], "psnr", output=str(out), overwrite=True, **kwargs)
    assert not unchanged(user, snapshot(out)) and (out / "results.json").exists()
    # A file of a name evaluate writes, that it did not write: refused even with --overwrite, left as it was.
    foreign = tmp_path / "foreign"
    (foreign / "figures").mkdir(parents=True)
    (foreign / "figures" / "samples.png").write_bytes(b"someone's samples")
    with pytest.raises(outputs.OutputError, match="figures/samples.png, which this command writes but did not"):
        loop.evaluate(paths["run"], paths["data"], "psnr", output=str(foreign), overwrite=True, **kwargs)
    assert (foreign / "figures" / "samples.png").read_bytes() == b"someone's samples"
