"""Stage 2 with an attention G_rgb (`--generator=attention`): the mask regularisers, the sample grid's mask rows, the
CLI end to end, and the resume checks (an attention run refuses `--generator=stargan`; an old run loads as StarGAN)."""
import glob
import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from expr3d import losses
from expr3d.imaging import grid as tile_grids
from expr3d.models import AttentionGenerator, ModelConfig, build_models
from expr3d.training import common, inputs, summaries
from expr3d.training.depth_guided_stargan import DepthGuidedStarGAN
from expr3d.training.loop import make_distributed_step
from tests.training.helpers import TINY_CONFIG, adam, fixed_batch
from tests import forked_cli

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def attention_networks(seed=0):
    keras.utils.set_random_seed(seed)
    return build_models(ModelConfig(**TINY_CONFIG, generator="attention"))


@pytest.mark.slow
def test_iterations_log_finite_mask_terms_that_enter_the_g_rgb_loss(tiny_dataset):
    batch = fixed_batch(tiny_dataset)
    networks = attention_networks()
    gan = DepthGuidedStarGAN(**networks, depth_weight=0.5, n_critic=1, lambda_mask=0.3, lambda_mask_tv=2.0)
    gan.compile(optimizers={key: adam(key) for key in networks})
    gan.build_optimizers()
    assert gan.uses_attention and {"g_mask", "g_mask_tv"} <= set(gan.log_names)
    step = make_distributed_step(tf.distribute.get_strategy(), gan, update_generator=True)
    history = [{k: float(v) for k, v in step(batch).items()} for _ in range(3)]
    for logs in history:
        assert {"g_mask", "g_mask_tv", "gd_total", "d_total"} <= set(logs)
        assert all(np.isfinite(value) for value in logs.values()), logs
        # Two masks (x -> x_t and the cycle), each in [0, 1].
        assert 0.0 < logs["g_mask"] < 2.0 and 0.0 <= logs["g_mask_tv"]
        expected = (logs["g_adv"] + logs["g_cls"] + 10.0 * logs["g_rec"] + 0.3 * logs["g_mask"]
                    + 2.0 * logs["g_mask_tv"])
        np.testing.assert_allclose(logs["g_rgb_total"], expected, rtol=1e-5)


@pytest.mark.slow  # in-process; ~35 s here under load
def test_mask_terms_are_the_regularisers_of_the_forward_and_cycle_masks(tiny_dataset):
    batch = fixed_batch(tiny_dataset, batch_size=2)
    networks = attention_networks()
    g_rgb = networks["g_rgb"]
    original = common.class_one_hot(batch["expression"], 8)
    target = common.class_one_hot(batch["target"], 8)
    fake, fake_mask, _ = g_rgb.with_attention([batch["image"], target])
    _, cycle_mask, _ = g_rgb.with_attention([fake, original])
    initial = g_rgb.get_weights()
    updated = {}
    for penalty, lambda_mask in (("copies", 5.0), ("edits", 0.0), ("edits", 5.0)):
        g_rgb.set_weights(initial)
        gan = DepthGuidedStarGAN(**networks, depth_weight=0.0, lambda_mask=lambda_mask, lambda_mask_tv=0.0,
                                 mask_penalty=penalty)
        gan.compile(optimizers={key: keras.optimizers.SGD(0.1, name=key) for key in networks})
        logs = gan.generator_step(batch)  # eager: the logs are computed before the update
        updated[penalty if lambda_mask else 0.0] = g_rgb.get_weights()
    np.testing.assert_allclose(float(logs["g_mask"]), float(losses.attention_sparsity_loss(fake_mask)
                                                            + losses.attention_sparsity_loss(cycle_mask)), rtol=1e-5)
    np.testing.assert_allclose(float(logs["g_mask_tv"]), float(losses.total_variation_loss(fake_mask)
                                                               + losses.total_variation_loss(cycle_mask)), rtol=1e-5)
    # The sparsity term's gradient reaches G_rgb: with it on, the attention head's bias moves further down.
    bias_index = [i for i, w in enumerate(g_rgb.weights) if w.path.endswith("attention_conv/bias")]
    assert len(bias_index) == 1
    assert updated["edits"][bias_index[0]][0] < updated[0.0][bias_index[0]][0]
    # GANimation's direction ("copies") moves it up: toward editing.
    assert updated["copies"][bias_index[0]][0] > updated[0.0][bias_index[0]][0]


@pytest.mark.slow  # 3 s in the full suite
def test_stargan_runs_log_no_mask_terms(tiny_dataset):
    keras.utils.set_random_seed(0)
    networks = build_models(ModelConfig(**TINY_CONFIG))
    gan = DepthGuidedStarGAN(**networks, depth_weight=0.0)
    gan.compile(optimizers={key: keras.optimizers.SGD(0.1, name=key) for key in networks})
    assert not gan.uses_attention and "g_mask" not in gan.log_names
    logs = gan.generator_step(fixed_batch(tiny_dataset, batch_size=2))
    assert not {"g_mask", "g_mask_tv"} & set(logs)


@pytest.mark.slow  # 3 s in the full suite
def test_sample_grid_shows_the_masks(tiny_dataset):
    gan = DepthGuidedStarGAN(**attention_networks(), depth_weight=0.0)
    samples = inputs.sample_batch(tiny_dataset, 2, 32, "depth")
    outputs = gan.sample_outputs(tf.constant(samples["image"]), tf.constant([3, 5]))
    assert outputs["attention"].shape == (2, 32, 32, 1)
    grid = summaries.render_samples(gan, samples, "depth", show_geometry=True)
    header = tile_grids.header_height(summaries.gan_column_labels(), 32)  # the column labels
    assert grid.shape[0] == header + 2 * 3 * 32 + 7 * 2  # per source: outputs, masks, geometry


# --- the CLI --------------------------------------------------------------------------------------------------------

CLI_FLAGS = [
    "--g_conv_dim=8", "--g_num_res_blocks=0", "--d_conv_dim=8", "--d_num_layers=2", "--depth_g_conv_dim=8",
    "--depth_g_num_res_blocks=0", "--depth_d_conv_dim=8", "--depth_d_num_layers=2", "--perceptual_weight=0",
    "--batch_size=4", "--seed=3", "--n_critic=1", "--depth_weight=0", "--num_steps_gan=2", "--checkpoint_every=0",
    "--summary_every=1", "--sample_every=0", "--num_samples=2", "--noprogress",
]


@pytest.fixture(scope="module")
def attention_run(tiny_dataset, tmp_path_factory):
    """A 2-iteration plain (depth_weight 0) attention run trained by `python -m expr3d.train` (a subprocess)."""
    model_dir = str(tmp_path_factory.mktemp("attention_run") / "run")
    args = [f"--data_dir={tiny_dataset}", f"--model_dir={model_dir}"] + CLI_FLAGS
    result = forked_cli.run(["-m", "expr3d.train"] + args + ["--generator=attention"], cwd=REPO,
                            env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"), capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return {"model_dir": model_dir, "args": args}


@pytest.mark.slow
def test_cli_trains_and_exports_an_attention_generator(attention_run):
    from expr3d.run_dir import RunDir

    model_dir = attention_run["model_dir"]
    with open(os.path.join(model_dir, "config.json")) as handle:
        config = json.load(handle)
    assert config["model_config"]["generator"] == "attention"
    assert type(RunDir(model_dir).load_network("g_rgb")) is AttentionGenerator
    tags = set()
    for event_file in glob.glob(os.path.join(model_dir, "logs", "gan", "events.*")):
        for event in tf.compat.v1.train.summary_iterator(event_file):
            tags.update(value.tag for value in event.summary.value)
    assert {"gan/loss/g_mask", "gan/loss/g_mask_tv", "gan/samples"} <= tags


@pytest.mark.slow
def test_resuming_an_attention_run_as_stargan_is_refused_with_the_diff(attention_run):
    from tests.training.test_train_errors import usage_error

    message = usage_error(attention_run["args"] + ["--generator=stargan"])
    assert "holds a run with a different architecture or data stream" in message
    assert '-  "generator": "attention",' in message and '+  "generator": "stargan",' in message


@pytest.mark.slow
def test_an_old_run_config_without_the_generator_field_resumes_as_stargan(attention_run, tmp_path):
    from tests.training.test_train_errors import usage_error

    with open(os.path.join(attention_run["model_dir"], "config.json")) as handle:
        config = json.load(handle)
    del config["model_config"]["generator"]  # as written before the field existed
    old_dir = tmp_path / "old_run"
    os.makedirs(old_dir)
    with open(old_dir / "config.json", "w") as handle:
        json.dump(config, handle)
    args = [a.replace(attention_run["model_dir"], str(old_dir)) for a in attention_run["args"]]
    # The default (stargan) passes the architecture check: the run stops at the next check (no stage-1 checkpoint).
    message = usage_error([a for a in args if not a.startswith("--depth_weight")] + ["--stage=gan",
                                                                                     "--depth_weight=0.1"])
    assert message.startswith("--stage=gan with --depth_weight=0.1 needs the stage-1 checkpoint"), message
    message = usage_error(args + ["--generator=attention"])
    assert '-  "generator": "stargan",' in message and '+  "generator": "attention",' in message


def test_mask_penalty_copies_is_ganimations_direction():
    mask = np.full((2, 4, 4, 1), 0.25, np.float32)
    assert float(losses.attention_sparsity_loss(mask)) == 0.25
    assert float(losses.attention_sparsity_loss(mask, "copies")) == 0.75
    with pytest.raises(ValueError, match="penalise must be one of"):
        losses.attention_sparsity_loss(mask, "both")


@pytest.mark.slow  # 4 s in the full suite
def test_the_paired_term_also_reaches_the_colour_head_when_the_mask_is_shut(tiny_dataset):
    batch = fixed_batch(tiny_dataset, batch_size=2)
    # A target that differs from the source in a central square only, as a pair's mouth would.
    square = np.zeros((1, 32, 32, 1), np.float32)
    square[:, 10:20, 10:20] = 1.0
    batch["target_image"] = tf.clip_by_value(batch["image"] - 0.8 * square, -1.0, 1.0)
    networks = attention_networks()
    gan = DepthGuidedStarGAN(**networks, depth_weight=0.0, lambda_pair=2.0, lambda_mask=0.0, lambda_mask_tv=0.0)
    gan.compile(optimizers={key: keras.optimizers.SGD(0.1, name=key) for key in networks})
    output, mask, colour = networks["g_rgb"].with_attention(
        [batch["image"], tf.one_hot(batch["target"], 8)], training=True)
    region = losses.paired_edit_region(batch["image"], batch["target_image"])
    # The square, dilated by 2 pixels on each side (where the source was not already near -1).
    assert float(np.max(region[:, :8])) == 0.0 and float(np.min(region[:, 12:18, 12:18])) == 1.0
    expected = float(losses.l1_loss(batch["target_image"], output) + losses.mask_cross_entropy(region, mask)
                     + losses.l1_loss(batch["target_image"], colour, mask=region))
    logs = gan.generator_step(batch)
    np.testing.assert_allclose(float(logs["g_pair"]), expected, rtol=1e-5)


@pytest.mark.slow  # one generated paired dataset and 2 iterations, as a subprocess: ~40 s
@pytest.mark.parametrize("generator", ["attention", "attention_warp"])
def test_cli_trains_with_the_paired_term_on_generated_paired_data(tmp_path, generator):
    data_dir, model_dir = str(tmp_path / "data"), str(tmp_path / "run")
    args = [f"--data_dir={data_dir}", f"--model_dir={model_dir}"] + CLI_FLAGS + [
        f"--generator={generator}", "--generate_synthetic", "--synthetic_train_pairs", "--synthetic_identities=3",
        "--image_size=32", "--target_mode=paired", "--lambda_pair=1"]
    result = forked_cli.run(["-m", "expr3d.train"] + args, cwd=REPO,
                            env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"), capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    with open(os.path.join(model_dir, "config.json")) as handle:
        flags = json.load(handle)["flags"]
    assert (flags["target_mode"], flags["lambda_pair"], flags["synthetic_train_pairs"]) == ("paired", 1.0, True)
    tags = set()
    for event_file in glob.glob(os.path.join(model_dir, "logs", "gan", "events.*")):
        for event in tf.compat.v1.train.summary_iterator(event_file):
            tags.update(value.tag for value in event.summary.value)
    assert "gan/loss/g_pair" in tags


@pytest.mark.slow
def test_cli_refuses_paired_targets_on_an_unpaired_train_split(tiny_dataset, tmp_path):
    model_dir = str(tmp_path / "run")
    result = forked_cli.run(
        ["-m", "expr3d.train", f"--data_dir={tiny_dataset}", f"--model_dir={model_dir}"] + CLI_FLAGS
        + ["--target_mode=paired", "--lambda_pair=1"], cwd=REPO, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"),
        capture_output=True, text=True, timeout=300)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "--target_mode=paired" in lines[0] and "no paired records" in lines[0], lines
    assert not os.path.exists(model_dir)


@pytest.mark.slow  # 4 s in the full suite
def test_with_a_warp_the_paired_edit_region_is_where_the_target_differs_from_the_moved_source(tiny_dataset):
    from expr3d.models import AttentionWarpGenerator

    batch = fixed_batch(tiny_dataset, batch_size=2)
    keras.utils.set_random_seed(0)
    networks = build_models(ModelConfig(**TINY_CONFIG, generator="attention_warp"))
    g_rgb = networks["g_rgb"]
    assert isinstance(g_rgb, AttentionWarpGenerator)
    g_rgb.get_layer("flow_conv").bias.assign(np.array([0.0, np.arctanh(0.5)], np.float32))  # 1.6 px right
    condition = tf.one_hot(batch["target"], 8)
    output, mask, colour, moved = g_rgb.with_attention_and_source([batch["image"], condition], training=True)
    # A target that is the source moved as the flow moves it: the colour head has nothing to add.
    batch["target_image"] = moved
    region = losses.paired_edit_region(moved, batch["target_image"])
    assert float(np.max(region)) == 0.0 and float(np.max(losses.paired_edit_region(batch["image"], moved))) == 1.0
    gan = DepthGuidedStarGAN(**networks, depth_weight=0.0, lambda_pair=2.0, lambda_mask=0.0, lambda_mask_tv=0.0)
    gan.compile(optimizers={key: keras.optimizers.SGD(0.1, name=key) for key in networks})
    expected = float(losses.l1_loss(moved, output) + losses.mask_cross_entropy(region, mask)
                     + losses.l1_loss(moved, colour, mask=region))
    logs = gan.generator_step(batch)
    np.testing.assert_allclose(float(logs["g_pair"]), expected, rtol=1e-5)
