"""`python -m expr3d.train --model=transfer` end to end: stage 1, the transfer stage, checkpoints, resume, exported
networks, TensorBoard terms and the sample grid; and what it refuses."""
import glob
import json
import os

import pytest
import tensorflow as tf

from expr3d.models import AUAdversary, TransferDecoder, TransferEncoder
from tests import forked_cli

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FLAGS = ["--model=transfer", "--g_conv_dim=8", "--g_num_res_blocks=0", "--d_conv_dim=8", "--d_num_layers=2",
         "--depth_g_conv_dim=8", "--depth_g_num_res_blocks=0", "--depth_d_conv_dim=8", "--depth_d_num_layers=2",
         "--code_dim=16", "--perceptual_weight=0", "--batch_size=4", "--seed=3", "--n_critic=2",
         "--num_steps_depth=2", "--checkpoint_every=3", "--sample_every=3", "--progress=false"]


def _train(args):
    return forked_cli.run(["-m", "expr3d.train"] + args, cwd=REPO,
                          env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"), capture_output=True, text=True, timeout=600)


@pytest.mark.slow  # renders 10 identities, one guide epoch in-process, then one training process
def test_a_run_interrupted_while_training_its_au_guide_resumes_the_guide_after_its_last_epoch(tmp_path):
    from expr3d.metrics.au_judge import train_au_regressor
    from expr3d.training.config import TrainConfig
    from expr3d.training.guide import GUIDE_BATCH_SIZE

    data, model_dir = str(tmp_path / "data"), tmp_path / "run"
    done = forked_cli.run(["-m", "expr3d.data.synthetic", f"--output={data}", "--image_size=32",
                           "--num_identities=10", "--train_pairs", "--workers=1"], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    # What a run killed after the guide's first epoch leaves: its staging folder and its training state.
    os.makedirs(model_dir / "guide.partial")
    assert train_au_regressor(data, str(model_dir / "guide.partial"), epochs=2, batch_size=GUIDE_BATCH_SIZE,
                              width=TrainConfig.guide_width, seed=3, desc="AU guide",
                              resume_dir=str(model_dir / "guide.resume"), stop_after_epochs=1) is None
    result = _train([f"--data_dir={data}", f"--model_dir={model_dir}", "--image_size=32", "--target_mode=paired",
                     "--lambda_pair=10", "--expression_guide=train", "--lambda_guide=1", "--guide_epochs=2",
                     "--depth_weight=0", "--mixed_precision=float32", "--num_steps_gan=1",
                     "--transfer_decoder=generator_warp", "--transfer_code=guide", "--transfer_code_teacher"]
                    + FLAGS)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "AU guide: resuming after epoch 1 of 2" in result.stderr
    metadata = json.loads((model_dir / "guide" / "au_regressor.json").read_text())
    assert metadata["resumed_after_epoch"] == 1 and len(metadata["train_history"]) == 2
    assert not os.path.exists(model_dir / "guide.partial") and not os.path.exists(model_dir / "guide.resume")
    # --transfer_code=guide: the exported encoder reads its code with the finished guide, unchanged by training.
    import keras
    import numpy as np

    from expr3d.run_dir import RunDir

    encoder = RunDir(str(model_dir)).load_network("encoder")
    assert encoder.get_config()["code"] == "guide" and encoder.output[0].shape[-1] == 17
    guide = keras.saving.load_model(str(model_dir / "guide" / "au_regressor.keras"), compile=False)
    for mine, theirs in zip(encoder.get_layer("code_reader").get_weights(), guide.get_weights(), strict=True):
        np.testing.assert_array_equal(mine, theirs)
    # Resumed from its checkpoint, the copy is still the guide's.
    result = _train([f"--data_dir={data}", f"--model_dir={model_dir}", "--image_size=32", "--target_mode=paired",
                     "--lambda_pair=10", "--expression_guide=train", "--lambda_guide=1", "--guide_epochs=2",
                     "--depth_weight=0", "--mixed_precision=float32", "--num_steps_gan=2",
                     "--transfer_decoder=generator_warp", "--transfer_code=guide", "--transfer_code_teacher"]
                    + FLAGS)
    assert result.returncode == 0 and "stage transfer resumes at iteration 1" in result.stderr, result.stderr[-3000:]
    encoder = RunDir(str(model_dir)).load_network("encoder")
    for mine, theirs in zip(encoder.get_layer("code_reader").get_weights(), guide.get_weights(), strict=True):
        np.testing.assert_array_equal(mine, theirs)
    # Another run given that guide with another reader width stops before stage 1, naming the width to pass.
    result = _train([f"--data_dir={data}", f"--model_dir={tmp_path / 'other'}", "--image_size=32",
                     "--target_mode=paired", "--lambda_pair=10", f"--expression_guide={model_dir / 'guide'}",
                     "--transfer_code=guide", "--guide_width=8", "--num_steps_gan=1"] + FLAGS)
    last = result.stderr.strip().splitlines()[-1]
    assert result.returncode != 0 and "is an AU guide of width 16; --transfer_code=guide copies it into a reader of " \
        "--guide_width=8: pass --guide_width=16" in last, result.stderr[-2000:]
    assert not os.path.exists(tmp_path / "other" / "depth")


@pytest.mark.slow  # paired procedural faces of 10 identities rendered by the chief, 3 transfer iterations on two workers
def test_cli_trains_on_two_workers_and_exports_the_paired_transfer_model(tmp_path):
    from expr3d.run_dir import RunDir

    model_dir = str(tmp_path / "run")
    args = [f"--data_dir={tmp_path}/data", f"--model_dir={model_dir}", "--generate_synthetic",
            "--synthetic_identities=10", "--synthetic_train_pairs", "--synthetic_train_swap_pairs",
            "--synthetic_transfer_pairs=1", "--image_size=32", "--target_mode=paired", "--lambda_pair=10",
            "--pair_exemplar=partner"] + FLAGS
    # The whole run on two workers (the chief renders the data; the transfer family trains across workers as the
    # StarGAN does: resuming on workers is tests/training/test_multi_worker.py's).
    result = forked_cli.run(["-m", "expr3d.launch", "--workers=2", "--grace_seconds=5", "--"] + args
                            + ["--num_steps_gan=4", "--summary_every=1"], cwd=REPO,
                            env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"),
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "[worker 0] expr3d.train: stage transfer starts from the stage-1 networks" in result.stderr
    assert "[worker 1] expr3d.train: stage transfer starts from the stage-1 networks" in result.stderr
    with open(os.path.join(tmp_path, "data", "dataset_card.json")) as handle:
        card = json.load(handle)
    assert card["splits"]["train"]["num_pairs"] > 0 and card["splits"]["transfer"]["num_examples"] == 16
    assert card["swap_partners"]["split"] == "train"  # the paired term decodes with swap partners' codes
    with open(os.path.join(model_dir, "config.json")) as handle:
        config = json.load(handle)
    assert config["model_config"]["family"] == "transfer" and config["progress"]["transfer"] == 4
    assert config["num_workers"] == 2
    run = RunDir(model_dir)
    assert type(run.load_network("encoder")) is TransferEncoder
    assert type(run.load_network("decoder")) is TransferDecoder
    assert type(run.load_network("adversary")) is AUAdversary
    assert {os.path.basename(p) for p in glob.glob(os.path.join(model_dir, "models", "*.keras"))} == {
        "encoder.keras", "decoder.keras", "adversary.keras", "d_rgb.keras", "d_swap.keras", "g_depth.keras",
        "d_depth.keras", "d_depth_au.keras"}
    assert os.path.isfile(os.path.join(model_dir, "samples", "transfer-000000003.png"))
    tags = set()
    for event_file in glob.glob(os.path.join(model_dir, "logs", "transfer", "events.*")):
        for event in tf.compat.v1.train.summary_iterator(event_file):
            tags.update(value.tag for value in event.summary.value)
    assert {"transfer/loss/t_confusion", "transfer/loss/adv_au", "transfer/loss/t_swap", "transfer/loss/gd_au",
            "transfer/loss/t_pair", "transfer/samples"} <= tags, tags
    # The family is part of the architecture: resuming as the StarGAN is refused with the diff.
    result = _train([a for a in args if a not in ("--model=transfer", "--pair_exemplar=partner")]
                    + ["--num_steps_gan=6"])
    assert result.returncode == 2
    assert '-  "family": "transfer",' in result.stderr and '+  "family": "stargan",' in result.stderr


@pytest.mark.slow
def test_cli_refuses_the_transfer_model_on_data_without_action_units(tiny_dataset, tmp_path):
    model_dir = str(tmp_path / "run")  # the tiny dataset: hemispheres with expression labels, no AUs
    result = _train([f"--data_dir={tiny_dataset}", f"--model_dir={model_dir}", "--num_steps_gan=2"] + FLAGS)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("expr3d.train: error: --model=transfer needs action-unit intensities"), \
        lines
    assert "--action_units_csv" in lines[0] and not os.path.exists(model_dir)


@pytest.mark.slow
def test_cli_refuses_swap_partners_on_data_without_them(tmp_path):
    data_dir = str(tmp_path / "data")  # paired procedural faces, no swap partners
    from expr3d.data.synthetic import dataset

    dataset.generate_dataset(data_dir, num_identities=4, image_size=32, seed=0, test_fraction=0.5,
                             images_per_identity=8, workers=1, progress=False, preview=False, train_pairs=True)
    result = _train([f"--data_dir={data_dir}", f"--model_dir={tmp_path}/run", "--num_steps_gan=2",
                     "--target_mode=paired", "--lambda_pair=1", "--pair_exemplar=partner"] + FLAGS)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"expr3d.train: error: --pair_exemplar=partner: the train split of --data_dir={data_dir} has no swap "
        f"partners; render one with --generate_synthetic --synthetic_train_pairs --synthetic_train_swap_pairs into "
        f"a new --data_dir, or `python -m expr3d.data.synthetic --train_pairs --train_swap_pairs`"]
    assert not os.path.exists(f"{tmp_path}/run")


@pytest.mark.slow
def test_cli_refuses_stargan_settings_with_the_transfer_model(tiny_dataset, tmp_path):
    result = _train([f"--data_dir={tiny_dataset}", f"--model_dir={tmp_path}/run", "--num_steps_gan=2",
                     "--generator=attention"] + FLAGS)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "expr3d.train: error: --generator=attention is a setting of --model=stargan; --model=transfer does not use it "
        "(leave it at its default)"]


@pytest.mark.slow  # renders 10 identities, then two training processes
def test_a_transfer_run_trains_its_au_guide_once_warms_up_and_a_resume_reuses_it(tmp_path):
    model_dir = tmp_path / "run"
    args = [f"--data_dir={tmp_path}/data", f"--model_dir={model_dir}", "--generate_synthetic",
            "--synthetic_identities=10", "--synthetic_train_pairs", "--image_size=32", "--target_mode=paired",
            "--lambda_pair=10", "--expression_guide=train", "--lambda_guide=1", "--lambda_guide_features=2",
            "--guide_epochs=1", "--depth_weight=0", "--mixed_precision=mixed_bfloat16",
            # The first iteration is the encoder and decoder's warm-up (its guide terms are logged too).
            "--generator_warmup_steps=1", "--nogenerator_warmup_cycle", "--summary_every=1",
            "--transfer_code=action_units", "--transfer_decoder=generator", "--condition_norms",
            "--adversary_readout=grid", "--transfer_encoder=split", "--transfer_code_detached",
            "--transfer_code_teacher"] + FLAGS
    result = _train(args + ["--num_steps_gan=2"])
    assert result.returncode == 0, result.stderr[-3000:]
    assert "training the AU guide" in result.stderr and "AU guide" in result.stderr
    guide_dir = model_dir / "guide"
    metadata = json.loads((guide_dir / "au_regressor.json").read_text())
    assert metadata["kind"] == "au_regressor" and metadata["image_size"] == 32 and metadata["epochs"] == 1
    assert not os.path.exists(str(guide_dir) + ".partial") and not os.path.exists(str(guide_dir) + ".resume")
    from expr3d.run_dir import RunDir

    encoder = RunDir(str(model_dir)).load_network("encoder")  # the explicit code: the 17 AU intensities
    assert encoder.get_config()["code"] == "action_units" and encoder.output[0].shape[-1] == 17
    assert encoder.get_config()["trunks"] == "split"
    flags = json.loads((model_dir / "config.json").read_text())["flags"]
    assert flags["transfer_code_detached"] is True and flags["transfer_code_teacher"] is True
    assert type(RunDir(str(model_dir)).load_network("decoder")).__name__ == "TransferGeneratorDecoder"
    assert RunDir(str(model_dir)).load_network("adversary").get_config()["readout"] == "grid"
    written = (guide_dir / "au_regressor.keras").stat().st_mtime_ns
    # Trained under the run's mixed policy, saved in float32 (as the expression guide and the judges are).
    import keras

    saved = keras.saving.load_model(str(guide_dir / "au_regressor.keras"), compile=False)
    assert {layer.dtype_policy.name for layer in saved.layers} == {"float32"}
    logged = set()
    for path in glob.glob(str(model_dir / "logs" / "**" / "events.out.tfevents.*"), recursive=True):
        for event in tf.compat.v1.train.summary_iterator(path):
            logged.update(value.tag for value in event.summary.value)
    assert any(tag.endswith("g_guide") for tag in logged) and any(tag.endswith("g_guide_features") for tag in logged)

    result = _train(args + ["--num_steps_gan=3", "--nogenerate_synthetic"])
    assert result.returncode == 0, result.stderr[-3000:]
    assert "training the AU guide" not in result.stderr and "AU guide" in result.stderr
    assert (guide_dir / "au_regressor.keras").stat().st_mtime_ns == written

