"""The expression guide (`--expression_guide`, `--lambda_guide`): a frozen classifier's cross-entropy on the
translations in G_rgb's loss; the trainer term, the config's refusals and a training process that trains its own."""
import json

import numpy as np
import pytest
import tensorflow as tf

from expr3d import losses
from expr3d.metrics.classifier import save_classifier
from expr3d.metrics.expression_classifier import build_classifier
from expr3d.training.config import TrainConfig, UsageError
from expr3d.training.depth_guided_stargan import DepthGuidedStarGAN
from tests.training.helpers import adam, fixed_batch, tiny_networks


def _guide(seed=1):
    import keras

    keras.utils.set_random_seed(seed)
    return build_classifier(32, width=4)


@pytest.mark.slow  # ~4 s
def test_the_generator_minimises_the_frozen_guide_s_cross_entropy(tiny_dataset):
    networks = tiny_networks()
    guide = _guide()
    guide_weights = [w.copy() for w in guide.get_weights()]
    batch = fixed_batch(tiny_dataset)
    gan = DepthGuidedStarGAN(**networks, depth_weight=0.0, n_critic=1, expression_guide=guide, lambda_guide=3.0)
    gan.compile(optimizers={key: adam(key, 1e-3) for key in networks})
    gan.build_optimizers()
    assert "g_guide" in gan.log_names and gan.get_config()["lambda_guide"] == 3.0
    assert guide.trainable is False

    target = tf.one_hot(batch["target"], 8)
    fake = gan.g_rgb([batch["image"], target], training=True)
    expected = losses.classification_loss(guide(fake, training=False), batch["target"])
    logs = gan.generator_step(batch)
    assert float(logs["g_guide"]) == pytest.approx(float(expected), rel=1e-4)
    without = logs["g_rgb_total"] - 3.0 * logs["g_guide"]
    plain = logs["g_adv"] + logs["g_cls"] + 10.0 * logs["g_rec"]
    assert float(without) == pytest.approx(float(plain), rel=1e-5)
    # Frozen: the step moved G_rgb, not the guide (BatchNorm statistics included: it runs in inference mode).
    for before, after in zip(guide_weights, guide.get_weights()):
        np.testing.assert_array_equal(before, after)

    # The term's gradient reaches G_rgb: a few steps on the guide term alone lower it.
    alone = DepthGuidedStarGAN(**networks, depth_weight=0.0, n_critic=1, expression_guide=guide, lambda_guide=1.0,
                               lambda_cls=0.0, lambda_rec=0.0)
    alone.compile(optimizers={key: adam(key, 3e-3) for key in networks})
    alone.build_optimizers()
    first = float(alone.generator_step(batch)["g_guide"])
    for _ in range(12):
        last = float(alone.generator_step(batch)["g_guide"])
    assert last < first - 0.05, (first, last)


@pytest.mark.slow  # ~4 s
def test_the_feature_term_compares_the_guide_s_stage_maps_with_the_true_render_s(tiny_dataset):
    from expr3d.training.guide import with_features

    networks = tiny_networks()
    guide = _guide()
    batch = fixed_batch(tiny_dataset)
    batch["target_image"] = tf.reverse(batch["image"], axis=[0])  # any other faces as the "true renders"
    gan = DepthGuidedStarGAN(**networks, depth_weight=0.0, n_critic=1, expression_guide=guide,
                             lambda_guide_features=2.0, lambda_pair=1.0)
    gan.compile(optimizers={key: adam(key, 1e-3) for key in networks})
    gan.build_optimizers()
    assert "g_guide_features" in gan.log_names and "g_guide" not in gan.log_names
    features = with_features(guide)
    fake = gan.g_rgb([batch["image"], tf.one_hot(batch["target"], 8)], training=True)
    ours, theirs = features(fake, training=False)[1:], features(batch["target_image"], training=False)[1:]
    assert [f.shape[1] for f in ours] == [16, 8, 4, 2]  # the four stages of a 32 px guide (stem stride 2)
    expected = np.mean([float(tf.reduce_mean(tf.abs(a - b))) for a, b in zip(ours, theirs)])
    logs = gan.generator_step(batch)
    assert float(logs["g_guide_features"]) == pytest.approx(expected, rel=1e-4)
    # A translation that IS the true render scores 0.
    same = [float(tf.reduce_mean(tf.abs(a - b))) for a, b in zip(features(batch["target_image"])[1:], theirs)]
    assert max(same) == 0.0
    with pytest.raises(ValueError, match="needs paired batches"):
        gan.generator_step({k: v for k, v in batch.items() if k != "target_image"})


def test_the_trainer_refuses_a_weight_without_a_guide():
    with pytest.raises(ValueError, match="lambda_guide / lambda_guide_features > 0 need an expression_guide "):
        DepthGuidedStarGAN(**tiny_networks(), depth_weight=0.0, lambda_guide=1.0)
    gan = DepthGuidedStarGAN(**tiny_networks(), depth_weight=0.0, expression_guide=_guide(), lambda_guide=0.0)
    assert gan.expression_guide is None and "g_guide" not in gan.log_names


def test_config_refusals():
    base = dict(data_dir="data", model_dir="runs/a")
    TrainConfig(**base, expression_guide="train", lambda_guide=1.0).validate()
    with pytest.raises(UsageError, match="--lambda_guide=1.0 needs --expression_guide"):
        TrainConfig(**base, lambda_guide=1.0).validate()
    with pytest.raises(UsageError, match="--expression_guide=train has no effect with --lambda_guide=0"):
        TrainConfig(**base, expression_guide="train").validate()
    # A guide copied into a reader has its effect without the guide's terms.
    TrainConfig(**base, expression_guide="train", model="transfer", transfer_code="guide").validate()
    with pytest.raises(UsageError, match="--lambda_guide_features=1.0 needs --target_mode=paired"):
        TrainConfig(**base, expression_guide="train", lambda_guide_features=1.0).validate()
    TrainConfig(**base, expression_guide="train", lambda_guide_features=1.0, target_mode="paired").validate()
    # With AU conditions the guide is an AU regressor (tests/training/test_action_unit_condition.py).
    TrainConfig(**base, expression_guide="train", lambda_guide=1.0, condition="action_units",
                depth_weight=0).validate()
    # The transfer family's guide is an AU regressor; its feature term needs the true renders too.
    TrainConfig(**base, expression_guide="train", lambda_guide=1.0, model="transfer").validate()
    with pytest.raises(UsageError, match="--lambda_guide_features=1.0 needs --target_mode=paired"):
        TrainConfig(**base, expression_guide="train", lambda_guide_features=1.0, model="transfer").validate()


def _train_command(tiny_dataset, model_dir, *extra):
    from tests.training.test_train import TINY_FLAGS

    return ["-m", "expr3d.train", f"--data_dir={tiny_dataset}", f"--model_dir={model_dir}", *TINY_FLAGS,
            "--depth_weight=0", "--checkpoint_every=0", "--sample_every=0", "--num_samples=2", "--progress=false",
            *extra]


@pytest.mark.slow  # two training processes: ~25 s
def test_train_trains_its_guide_once_and_a_resume_reuses_it(tiny_dataset, tmp_path):
    from tests import forked_cli

    model_dir = tmp_path / "run"
    command = _train_command(tiny_dataset, model_dir, "--expression_guide=train", "--lambda_guide=1",
                             "--guide_epochs=1")
    done = forked_cli.run(command + ["--num_steps_gan=2", "--guide_width=32"], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "training the expression guide" in done.stderr
    assert "warning: --guide_width=32 is the automatic expression judge's width" in done.stderr
    guide_dir = model_dir / "guide"
    metadata = json.loads((guide_dir / "classifier.json").read_text())
    assert metadata["image_size"] == 32 and metadata["epochs"] == 1 and metadata["width"] == 32
    # A resume keeps the guide it trained: another width is refused, naming both, before any work.
    refused = forked_cli.run(command + ["--num_steps_gan=3"], capture_output=True, text=True, timeout=300)
    assert refused.returncode == 2, refused.stderr[-3000:]
    assert (f"{guide_dir} is this run's guide of width 32, not --guide_width=16: resume with --guide_width=32"
            in refused.stderr)
    command += ["--guide_width=32"]
    config = json.loads((model_dir / "config.json").read_text())
    assert config["flags"]["expression_guide"] == "train" and config["flags"]["lambda_guide"] == 1.0
    written = (guide_dir / "classifier.keras").stat().st_mtime_ns

    done = forked_cli.run(command + ["--num_steps_gan=3"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "training the expression guide" not in done.stderr and "expression guide" in done.stderr
    assert (guide_dir / "classifier.keras").stat().st_mtime_ns == written


def test_train_refuses_a_missing_guide_directory_before_any_work(tiny_dataset, tmp_path):
    from tests import forked_cli

    missing = tmp_path / "no_guide"
    done = forked_cli.run(_train_command(tiny_dataset, tmp_path / "run", f"--expression_guide={missing}",
                                         "--lambda_guide=1", "--num_steps_gan=2"),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stderr[-2000:]
    assert f"--expression_guide={missing}" in done.stderr and "classifier.keras is missing" in done.stderr
    assert not (tmp_path / "run" / "gan").exists()


def test_a_saved_guide_is_loaded_frozen_and_its_size_checked(tmp_path):
    from expr3d.training.guide import load_guide

    save_classifier(_guide(), {"classes": ["neutral", "happy", "sad", "surprise", "fear", "disgust", "anger",
                                           "contempt"], "image_size": 32}, str(tmp_path / "g"))
    config = TrainConfig(data_dir="d", model_dir=str(tmp_path / "run"), expression_guide=str(tmp_path / "g"),
                         lambda_guide=1.0, image_size=32)
    model = load_guide(config)
    assert model.trainable is False and model.output_shape == (None, 8)
    with pytest.raises(ValueError, match="trained on 32x32"):
        load_guide(config.replace(image_size=64))


def test_generator_warmup_needs_the_paired_term():
    base = dict(data_dir="data", model_dir="runs/a")
    with pytest.raises(UsageError, match="--generator_warmup_steps=5 trains G_rgb on the paired terms"):
        TrainConfig(**base, generator_warmup_steps=5).validate()
    TrainConfig(**base, generator_warmup_steps=5, lambda_pair=1.0, target_mode="paired").validate()


@pytest.mark.slow  # ~3 s
def test_with_critic_augment_the_guide_reads_the_augmented_translation(tiny_dataset):
    from expr3d.training import critic_augment

    networks = tiny_networks()
    guide = _guide()
    batch = fixed_batch(tiny_dataset)
    batch["critic_augment"] = tf.random.stateless_uniform([4, 3, 7], seed=[1, 2])
    gan = DepthGuidedStarGAN(**networks, depth_weight=0.0, n_critic=1, expression_guide=guide, lambda_guide=1.0,
                             critic_augment="translation,cutout,colour")
    gan.compile(optimizers={key: adam(key, 1e-3) for key in networks})
    gan.build_optimizers()
    fake = gan.g_rgb([batch["image"], tf.one_hot(batch["target"], 8)], training=True)
    view = critic_augment.augment(fake, batch["critic_augment"][:, 2], gan.critic_augment)
    expected = losses.classification_loss(guide(view, training=False), batch["target"])
    plain = losses.classification_loss(guide(fake, training=False), batch["target"])
    logs = gan.generator_step(batch)
    assert float(logs["g_guide"]) == pytest.approx(float(expected), rel=1e-4)
    assert abs(float(expected) - float(plain)) > 1e-4  # the augmentation changed what the guide read


@pytest.mark.slow  # ~6 s
def test_a_guide_built_under_a_mixed_policy_gives_float32_terms(tiny_dataset):
    """expr3d.train sets the run's policy (bf16 where the CPU has it) before it trains its guide."""
    import keras

    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        guide = _guide()
        networks = tiny_networks()
        batch = fixed_batch(tiny_dataset)
        batch["target_image"] = tf.reverse(batch["image"], axis=[0])
        gan = DepthGuidedStarGAN(**networks, depth_weight=0.0, n_critic=1, expression_guide=guide, lambda_guide=1.0,
                                 lambda_guide_features=1.0, lambda_pair=1.0)
        gan.compile(optimizers={key: adam(key, 1e-3) for key in networks})
        gan.build_optimizers()
        logs = gan.generator_warmup_step(batch)
        assert logs["g_guide"].dtype == tf.float32 and logs["g_guide_features"].dtype == tf.float32
    finally:
        keras.config.set_dtype_policy(previous)


@pytest.mark.slow  # ~10 s
def test_a_classifier_trained_under_a_mixed_global_policy_is_saved_in_float32(tiny_dataset, tmp_path):
    import keras

    from expr3d.metrics.classifier import train_classifier
    from expr3d.metrics.expression_classifier import load_classifier

    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        train_classifier(str(tiny_dataset), str(tmp_path / "guide"), epochs=1, batch_size=8, width=4,
                         precision="mixed_bfloat16")
    finally:
        keras.config.set_dtype_policy(previous)
    model = load_classifier(str(tmp_path / "guide")).model
    assert {layer.dtype_policy.compute_dtype for layer in model.layers if layer.weights} == {"float32"}
