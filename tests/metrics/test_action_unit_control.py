"""`expr3d.metrics.action_unit_control`: the dial and the pairing on known cases, and `python -m expr3d.evaluate`
on a tiny AU-conditioned run with a tiny AU judge."""
import json
import os

import cv2
import numpy as np
import pytest

from expr3d.labels import ACTION_UNITS, NUM_ACTION_UNITS
from expr3d.metrics import action_unit_control, transfer_evaluation
from tests import forked_cli

TINY = ["--g_conv_dim=8", "--g_num_res_blocks=0", "--d_conv_dim=8", "--d_num_layers=2", "--depth_g_conv_dim=8",
        "--depth_g_num_res_blocks=0", "--depth_d_conv_dim=8", "--depth_d_num_layers=2", "--perceptual_weight=0",
        "--batch_size=4", "--num_steps_depth=2", "--n_critic=2", "--progress=false", "--seed=4"]


def test_a_dial_keeps_the_face_s_other_action_units_and_sets_one():
    truth = np.full((2, NUM_ACTION_UNITS), 0.3, np.float32)
    truth[1, 0] = np.nan  # a missing AU is asked to be absent
    conditions = action_unit_control.dialled_conditions(truth, 12, levels=(0.0, 1.0)).reshape(2, 2, -1)
    column = ACTION_UNITS.index(12)
    assert conditions[0, :, column].tolist() == [0.0, 0.0] and conditions[1, :, column].tolist() == [1.0, 1.0]
    others = np.delete(conditions, column, axis=-1)
    assert np.allclose(others[:, 0], 0.3) and np.allclose(others[:, 1, 1:], 0.3) and np.all(others[:, 1, 0] == 0.0)


def test_each_face_is_paired_with_its_own_scene_under_another_expression():
    pair_id = np.array([7, 7, 7, 9, 9, -1, 4])
    expression = np.array([0, 0, 3, 1, 2, 5, 6])
    partner = action_unit_control.other_render_of_the_same_scene(pair_id, expression)
    assert partner.tolist() == [2, 2, 0, 4, 3, -1, -1]


@pytest.fixture(scope="session")  # once per worker, however its tests are interleaved
def au_run(au_data, tmp_path_factory):
    """tests/metrics/conftest.py's data and AU judge, and a tiny AU-conditioned run trained on them."""
    root = tmp_path_factory.mktemp("au_control")
    run = str(root / "run")
    done = forked_cli.run(["-m", "expr3d.train", f"--data_dir={au_data['data']}", f"--model_dir={run}",
                           "--condition=action_units", "--depth_weight=0", "--num_steps_gan=4", "--sample_every=4"]
                          + TINY, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return {"root": root, "data": au_data["data"], "run": run, "judge": au_data["au_judge"]}


@pytest.mark.slow
def test_evaluate_reads_the_dialled_and_targeted_action_units_back(au_run):
    output = str(au_run["root"] / "evaluation")
    done = forked_cli.run(["-m", "expr3d.evaluate", f"--model_dir={au_run['run']}", f"--data_dir={au_run['data']}",
                           f"--au_judge={au_run['judge']}", "--max_examples=12", f"--output={output}"],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "evaluate AU control:" in done.stderr  # the progress line
    results = json.load(open(os.path.join(output, "results.json")))
    assert results["condition"] == "action_units" and set(results["metrics"]) == set(action_unit_control.AU_METRICS)
    dial = results["metrics"]["au_dial"]
    assert dial["faces"] == 12 and 0 <= dial["dial_mae"] <= 1 and set(dial["units"]) == set(
        action_unit_control.DIAL_UNITS)
    assert results["metrics"]["au_paired"]["pairs"] > 0
    arrays = np.load(os.path.join(output, "arrays.npz"))
    assert arrays["au_sweep/images"].shape == (7, 5, 32, 32, 3)
    assert cv2.imread(os.path.join(output, "figures", "au_sweep.png")) is not None
    # This data has no dial renders: the truth's own reading of a dial is absent, and said so.
    assert dial["judge_dial_floor_mae"] is None and dial["judge_dial_floor_dials"] == 0
    assert dial["true_dials_generator_mae"] is None and dial["true_dials_source_mae"] is None
    markdown = open(os.path.join(output, "results.md")).read()
    assert "| dialled single AU, read-back MAE |" in markdown and "no true dial renders in the data" in markdown
    sample = cv2.imread(os.path.join(au_run["run"], "samples", "gan-latest.png"))
    assert sample is not None and sample.shape[1] > 9 * 32  # source + 8 AU columns


@pytest.mark.slow
def test_on_data_with_true_dial_renders_the_dial_is_also_asked_of_the_dials_base_renders(au_run, tmp_path):
    from expr3d.data.synthetic import dataset

    data = str(tmp_path / "dials")
    dataset.generate_dataset(data, num_identities=6, image_size=32, seed=5, test_fraction=0.34, workers=1,
                             progress=False, preview=False, train_pairs=True, train_dial_renders=8)
    output = str(tmp_path / "evaluation")
    done = forked_cli.run(["-m", "expr3d.evaluate", f"--model_dir={au_run['run']}", f"--data_dir={data}",
                           f"--au_judge={au_run['judge']}", "--metrics=au_dial", "--max_examples=4",
                           f"--output={output}", "--progress=false"], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    dial = json.load(open(os.path.join(output, "results.json")))["metrics"]["au_dial"]
    assert dial["judge_dial_floor_dials"] > 0
    for key in ("judge_dial_floor_mae", "true_dials_generator_mae", "true_dials_source_mae"):
        assert 0 <= dial[key] <= 1, (key, dial[key])
    markdown = open(os.path.join(output, "results.md")).read()
    assert f"| the same, on the data's {dial['judge_dial_floor_dials']} TRUE dial pairs" in markdown


@pytest.mark.slow
def test_an_au_run_evaluated_as_an_exemplar_transfer_draws_a_with_b_s_aus_as_the_reader_reads_them(au_run):
    """`--exemplar_reader`: B's AUs read by an AU regressor other than the judge, A drawn by G_rgb with them, scored
    by the transfer metrics; recomputed here from the saved networks."""
    from expr3d.data.transfer import make_transfer_dataset
    from expr3d.metrics.au_judge import load_au_regressor, train_au_regressor
    from expr3d.run_dir import RunDir

    reader_dir = str(au_run["root"] / "reader")
    if not os.path.exists(reader_dir):
        train_au_regressor(au_run["data"], reader_dir, epochs=1, width=4, seed=3, log=open(os.devnull, "w"))
    done = forked_cli.run(["-m", "expr3d.evaluate", f"--model_dir={au_run['run']}", f"--data_dir={au_run['data']}",
                           f"--au_judge={au_run['judge']}", f"--exemplar_reader={reader_dir}", "--num_samples=2",
                           "--progress=false"], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    output = os.path.join(au_run["run"], "evaluation_transfer")  # the default: beside, not over, the AU evaluation
    results = json.load(open(os.path.join(output, "results.json")))
    assert results["route"]["exemplar_reader"] == os.path.abspath(reader_dir)
    assert set(results["metrics_requested"]) == set(transfer_evaluation.EXEMPLAR_METRICS)
    units = results["metrics"]["action_units"]
    g_rgb = RunDir(au_run["run"]).load_network("g_rgb")
    reader, judge = load_au_regressor(reader_dir), load_au_regressor(au_run["judge"])
    errors, code_errors = [], []
    for batch in make_transfer_dataset(au_run["data"], 16):
        truth = np.asarray(batch["truth"]["action_units"])
        code = np.clip(reader.predict(batch["exemplar"]["image"]), 0, 1)
        drawn = np.asarray(g_rgb([np.asarray(batch["source"]["image"]), code], training=False))
        errors.append(np.abs(judge.predict(drawn) - truth))
        code_errors.append(np.abs(code - truth))
    assert units["au_mae"] == pytest.approx(float(np.concatenate(errors).mean()), abs=1e-4)
    assert units["code_au_mae"] == pytest.approx(float(np.concatenate(code_errors).mean()), abs=1e-5)
    assert -1 <= results["metrics"]["transfer_paired"]["transfer_ssim"] <= 1  # SSIM of a 4-step run may be < 0
    markdown = open(os.path.join(output, "results.md")).read()
    assert f"B's AUs read by `{os.path.abspath(reader_dir)}`" in markdown
    assert cv2.imread(os.path.join(output, "figures", "transfer_samples.png")) is not None


@pytest.mark.slow
def test_an_exemplar_evaluation_refuses_the_judge_as_reader_a_missing_guide_and_the_probes(au_run, tmp_path):
    for args, message in (([f"--exemplar_reader={au_run['judge']}"], "is the AU judge itself"),
                          (["--exemplar_reader=guide"], "trained without an AU guide (--expression_guide)"),
                          (["--exemplar_reader=guide", "--metrics=disentanglement"],
                           "--metrics=disentanglement: metrics of --model=transfer runs"),
                          (["--exemplar_reader=guide", "--probe_examples=20"],
                           "--probe_examples is an option of --model=transfer evaluations")):
        done = forked_cli.run(["-m", "expr3d.evaluate", f"--model_dir={au_run['run']}",
                               f"--data_dir={au_run['data']}", f"--au_judge={au_run['judge']}",
                               f"--output={tmp_path}/x", "--progress=false", *args],
                              capture_output=True, text=True, timeout=300)
        last = done.stderr.strip().splitlines()[-1]
        assert done.returncode == 1 and message in last, (args, last)
    assert not os.path.exists(tmp_path / "x" / "results.json")


@pytest.mark.slow
def test_an_au_run_refuses_expression_metrics_and_options_naming_its_kind(au_run, tmp_path):
    for args, message in ((["--metrics=expression_generation_rate"],
                           "--metrics=expression_generation_rate: metrics of --model=stargan runs"),
                          (["--classifier=auto"], "--classifier is an option of --model=stargan evaluations"),
                          (["--metrics=transfer_paired"],
                           "--metrics=transfer_paired: metrics of --model=transfer runs"),
                          ([f"--stargan_model_dir={au_run['run']}"],
                           "add --exemplar_reader=guide")):
        done = forked_cli.run(["-m", "expr3d.evaluate", f"--model_dir={au_run['run']}",
                               f"--data_dir={au_run['data']}", f"--output={tmp_path}/x", *args],
                              capture_output=True, text=True, timeout=300)
        last = done.stderr.strip().splitlines()[-1]
        assert done.returncode == 1 and message in last and "holds a --condition=action_units run" in last, last


@pytest.mark.slow
def test_the_comparison_figure_refuses_an_au_run_naming_its_condition(au_run, tmp_path):
    done = forked_cli.run(["-m", "expr3d.figure", f"--data_dir={au_run['data']}", f"--run=AU={au_run['run']}",
                           f"--output={tmp_path}/figure.png"], capture_output=True, text=True, timeout=300)
    last = done.stderr.strip().splitlines()[-1]
    assert done.returncode == 1 and "holds a --condition=action_units run" in last, last
    assert "this tool takes --condition=expression runs" in last and not os.path.exists(tmp_path / "figure.png")
