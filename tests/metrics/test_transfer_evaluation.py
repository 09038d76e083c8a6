"""`expr3d.metrics.transfer_evaluation`: the probes on known cases, and `python -m expr3d.evaluate` on a tiny
transfer run against real procedural transfer ground truth (with a tiny AU judge and a tiny StarGAN run)."""
import json
import os

import cv2
import numpy as np
import pytest

from expr3d.metrics import transfer_evaluation
from tests import forked_cli

TINY_NETWORKS = ["--g_conv_dim=8", "--g_num_res_blocks=0", "--d_conv_dim=8", "--d_num_layers=2",
                 "--depth_g_conv_dim=8", "--depth_g_num_res_blocks=0", "--depth_d_conv_dim=8",
                 "--depth_d_num_layers=2", "--perceptual_weight=0", "--batch_size=4", "--num_steps_depth=2",
                 "--progress=false", "--seed=1"]


def test_metric_lists():
    assert transfer_evaluation.parse_transfer_metrics("all") == list(transfer_evaluation.TRANSFER_METRICS)
    assert transfer_evaluation.parse_transfer_metrics("samples, action_units,samples") == ["samples", "action_units"]
    with pytest.raises(ValueError, match="fid is not a metric of --model=transfer runs"):
        transfer_evaluation.parse_transfer_metrics("fid")


@pytest.fixture(scope="session")  # once per worker, however its tests are interleaved
def runs(au_data, tmp_path_factory):
    """tests/metrics/conftest.py's data and AU judge, a tiny transfer run and a tiny StarGAN run."""
    root = tmp_path_factory.mktemp("transfer_evaluation")
    data = au_data["data"]
    paths = {"root": root, "data": data, "transfer": str(root / "transfer"), "stargan": str(root / "stargan"),
             "au_judge": au_data["au_judge"]}
    for model, run, steps in (("transfer", paths["transfer"], 4), ("stargan", paths["stargan"], 2)):
        extra = ["--model=transfer", "--code_dim=16", "--n_critic=2"] if model == "transfer" else []
        done = forked_cli.run(["-m", "expr3d.train", f"--data_dir={data}", f"--model_dir={run}",
                               f"--num_steps_gan={steps}"] + extra + TINY_NETWORKS,
                              capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-2000:]
    return paths


def _evaluate(runs, *args):
    return forked_cli.run(["-m", "expr3d.evaluate", f"--data_dir={runs['data']}", "--progress=false", *args],
                          capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_evaluate_writes_every_transfer_metric_with_its_baselines_and_figures(runs):
    output = str(runs["root"] / "evaluation")
    done = _evaluate(runs, f"--model_dir={runs['transfer']}", f"--au_judge={runs['au_judge']}",
                     f"--stargan_model_dir={runs['stargan']}", "--probe_examples=64", f"--output={output}",
                     "--num_samples=3", f"--depth_model_dir={runs['stargan']}")
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.load(open(os.path.join(output, "results.json")))
    assert results["family"] == "transfer" and results["counts"] == {"transfers": 32}
    metrics = results["metrics"]
    assert set(metrics) == {"transfer_paired", "action_units", "transfer_depth", "disentanglement",
                            "stargan_comparison"}
    assert "--identity_model" in results["skipped"]["identity"]
    paired = metrics["transfer_paired"]
    # The truth differs from A only where the expression does: A unchanged is close, and nearly so outside the face.
    assert 0 < paired["source_l1"] < 0.2 and paired["background_l1_truth"] < 0.01
    assert 0 <= paired["transfer_ssim"] <= 1 and paired["transfer_l1"] > 0
    units = metrics["action_units"]
    assert 0 < units["au_mae"] < 1 and units["au_judge"] == os.path.abspath(runs["au_judge"])
    assert "code_au_mae" not in units and "au_mae_true_code" not in units  # a learned code: no AU reading
    # What B's label tells of its AUs: its class's train-split mean against B's AUs, recomputed from decoded faces.
    from expr3d.data.records import iterate_examples
    from expr3d.data.transfer import iterate_transfer_examples

    train = [(face.expression, face.action_units) for face in iterate_examples(runs["data"], "train")]
    means = {c: np.mean([aus for e, aus in train if e == c], axis=0) for c in {e for e, _ in train}}
    expected = np.mean([np.abs(means[t.exemplar.expression] - t.truth.action_units).mean()
                        for t in iterate_transfer_examples(runs["data"])])
    assert units["au_mae_class_mean"] == pytest.approx(expected, rel=1e-5)
    comparison = metrics["stargan_comparison"]
    assert comparison["au_mae_reduction_percent"] == pytest.approx(
        100 * (1 - units["au_mae"] / comparison["stargan_au_mae"]))
    assert metrics["transfer_depth"]["geometry_kind"] == "depth"
    assert metrics["transfer_depth"]["depth_model_dir"] == os.path.abspath(runs["stargan"])  # one fixed depth judge
    probe = metrics["disentanglement"]
    assert probe["train_faces"] == 64 and probe["test_faces"] == 32 and probe["code_dims"] == 16
    assert probe["free_r2"] == max(probe["free_r2_ridge"], probe["free_r2_mlp"])
    # What each feature does to the result (another face's AU-free map; A's own code): finite, and a change.
    assert 0 < probe["free_map_effect_l1"] < 2 and 0 < probe["code_effect_l1"] < 2
    arrays = np.load(os.path.join(output, "arrays.npz"))
    assert arrays["samples/source"].shape == (3, 32, 32, 3) and arrays["samples/stargan"].shape == (3, 32, 32, 3)
    assert arrays["action_units/per_au_error_result"].shape == (17,)
    # The self-transfer diagnostic (A decoded with the truth's own code): its per-AU errors average to its figure,
    # and it is another image than the swap (another code), so it reads differently.
    per_au = arrays["action_units/per_au_error_self_transfer"]
    assert units["au_mae_self_transfer"] == pytest.approx(float(per_au.mean()), rel=1e-6)
    assert units["au_mae_self_transfer"] != units["au_mae"] and 0 <= units["self_transfer_ssim"] <= 1
    for name in ("transfer_samples", "action_unit_errors"):
        assert cv2.imread(os.path.join(output, "figures", f"{name}.png")) is not None
    markdown = open(os.path.join(output, "results.md")).read()
    assert "| SSIM vs truth |" in markdown and "| AU MAE (AU judge) |" in markdown
    assert "| diagnostic: self-transfer (A with the truth's own code): AU MAE / SSIM |" in markdown
    assert (f"| diagnostic: B's class's mean AUs (train split) against B's AUs, no image | "
            f"{units['au_mae_class_mean']:.3f} |") in markdown
    assert "| diagnostic: L1 change of the result with another face's AU-free map / with A's own code |" in markdown
    # An existing evaluation is kept unless --overwrite.
    again = _evaluate(runs, f"--model_dir={runs['transfer']}", f"--au_judge={runs['au_judge']}",
                      "--metrics=transfer_paired", f"--output={output}")
    assert again.returncode == 1 and "--overwrite" in again.stderr.strip().splitlines()[-1]


@pytest.mark.slow
def test_each_family_refuses_the_other_family_s_metrics_naming_it(runs, tmp_path):
    done = _evaluate(runs, f"--model_dir={runs['transfer']}", "--metrics=fid,transfer_paired",
                     f"--output={tmp_path}/a")
    last = done.stderr.strip().splitlines()[-1]
    assert done.returncode == 1 and "--metrics=fid: metrics of --model=stargan runs" in last
    assert "holds a --model=transfer run" in last and not os.path.exists(tmp_path / "a")
    done = _evaluate(runs, f"--model_dir={runs['stargan']}", "--metrics=transfer_paired,action_units",
                     f"--output={tmp_path}/b")
    last = done.stderr.strip().splitlines()[-1]
    assert done.returncode == 1 and "--metrics=transfer_paired,action_units: metrics of --model=transfer runs" in last
    assert "holds a --model=stargan run" in last
    done = _evaluate(runs, f"--model_dir={runs['transfer']}", "--exemplar_reader=guide", f"--output={tmp_path}/g")
    last = done.stderr.strip().splitlines()[-1]
    assert done.returncode == 1 and "--exemplar_reader is an option of exemplar-transfer" in last
    assert "holds a --model=transfer run" in last


@pytest.mark.slow
def test_data_without_transfer_truth_and_a_bad_au_judge_are_named(runs, tmp_path):
    done = _evaluate(runs, f"--model_dir={runs['transfer']}", f"--data_dir={tmp_path}/missing",
                     f"--output={tmp_path}/c", f"--au_judge={runs['au_judge']}")
    assert done.returncode == 1 and f"{tmp_path}/missing" in done.stderr.strip().splitlines()[-1]
    done = _evaluate(runs, f"--model_dir={runs['transfer']}", f"--au_judge={tmp_path}",
                     "--metrics=action_units", f"--output={tmp_path}/d")
    last = done.stderr.strip().splitlines()[-1]
    assert done.returncode == 1 and last.startswith(f"expr3d.evaluate: error: --au_judge={tmp_path}: ")
    assert "is not an AU judge" in last


@pytest.mark.slow
def test_an_option_only_the_other_family_reads_is_refused_naming_it(runs, tmp_path):
    done = _evaluate(runs, f"--model_dir={runs['transfer']}", "--classifier=auto", f"--output={tmp_path}/e")
    last = done.stderr.strip().splitlines()[-1]
    assert done.returncode == 1 and "--classifier is an option of --model=stargan evaluations" in last
    done = _evaluate(runs, f"--model_dir={runs['stargan']}", f"--stargan_model_dir={runs['stargan']}",
                     f"--output={tmp_path}/f")
    last = done.stderr.strip().splitlines()[-1]
    assert done.returncode == 1 and "--stargan_model_dir is an option of --model=transfer evaluations" in last
    assert "holds a --model=stargan run" in last


@pytest.mark.slow  # one more tiny training process
def test_a_run_whose_code_is_the_au_estimate_gets_the_code_and_the_decoder_apart(runs, tmp_path):
    """--transfer_code=action_units: the code's own AU error on each exemplar (recomputed here from the saved encoder
    and the transfer split) and the decoder given the exemplar's true AUs, in the results and the report; a learned
    code's run has neither (the first test's run)."""
    from expr3d.data.transfer import make_transfer_dataset
    from expr3d.run_dir import RunDir

    run = str(tmp_path / "au_code")
    done = forked_cli.run(["-m", "expr3d.train", f"--data_dir={runs['data']}", f"--model_dir={run}",
                           "--num_steps_gan=2", "--model=transfer", "--transfer_code=action_units", "--n_critic=2"]
                          + TINY_NETWORKS, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    output = str(tmp_path / "evaluation")
    done = _evaluate(runs, f"--model_dir={run}", f"--au_judge={runs['au_judge']}", "--metrics=action_units",
                     f"--output={output}")
    assert done.returncode == 0, done.stderr[-3000:]
    units = json.load(open(os.path.join(output, "results.json")))["metrics"]["action_units"]
    encoder = RunDir(run).load_network("encoder")
    errors = [np.abs(np.asarray(encoder(batch["exemplar"]["image"], training=False)[0])
                     - np.asarray(batch["truth"]["action_units"])) for batch in make_transfer_dataset(runs["data"], 16)]
    assert units["code_au_mae"] == pytest.approx(float(np.concatenate(errors).mean()), abs=1e-5)
    # The decoder given the truth draws another image than given the estimate, so the judge reads it differently.
    assert 0 < units["au_mae_true_code"] < 1 and units["au_mae_true_code"] != units["au_mae"]
    markdown = open(os.path.join(output, "results.md")).read()
    assert ("| diagnostic (the code is the AU estimate): the code's AU error on B / the decoder given B's true AUs | "
            f"{units['code_au_mae']:.3f} / {units['au_mae_true_code']:.3f} |") in markdown
