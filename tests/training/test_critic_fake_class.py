"""The K+1-class critic (`--critic_fake_class`): D_rgb's head has a ninth logit, "generated", trained on the
translations in its critic step; the model config, the trainer, the objective, the flag and a training run."""
import dataclasses
import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from expr3d import losses
from expr3d.models import ModelConfig, build_models
from expr3d.training import objectives
from expr3d.training.config import TrainConfig, UsageError
from expr3d.training.depth_guided_stargan import DepthGuidedStarGAN
from tests.training.helpers import TINY_CONFIG, adam, fixed_batch


def _networks(fake_class, seed=0):
    keras.utils.set_random_seed(seed)
    return build_models(ModelConfig(**TINY_CONFIG, critic_fake_class=fake_class))


def test_model_config_adds_one_logit_to_d_rgb_only():
    networks = _networks(True)
    assert networks["d_rgb"].num_classes == 9 and networks["d_depth"].num_classes == 8
    _, logits = networks["d_rgb"](np.zeros((2, 32, 32, 3), np.float32))
    assert logits.shape == (2, 9)
    assert ModelConfig.from_dict({k: v for k, v in ModelConfig(**TINY_CONFIG).to_dict().items()
                                  if k != "critic_fake_class"}).critic_fake_class is False  # older run configs
    with pytest.raises(ValueError, match="critic_fake_class needs the stargan family with condition 'expression'"):
        ModelConfig(**TINY_CONFIG, critic_fake_class=True, condition="action_units")
    with pytest.raises(ValueError, match="critic_fake_class must be a bool"):
        ModelConfig(**TINY_CONFIG, critic_fake_class=1)


@pytest.mark.slow  # ~3 s
def test_the_critic_learns_the_translations_as_the_generated_class(tiny_dataset):
    networks = _networks(True)
    batch = fixed_batch(tiny_dataset)
    d_rgb, image = networks["d_rgb"], batch["image"]
    fake = tf.reverse(image, axis=[2])  # any other images
    logs = objectives.critic_loss(d_rgb, image, fake, batch["expression"], batch["alpha"], 2.0, 10.0, fake_class=8)
    assert list(logs) == ["d_adv", "d_cls", "d_gp", "d_cls_fake", "d_total"]
    _, fake_cls = d_rgb(fake, training=True)
    expected = losses.classification_loss(fake_cls, tf.fill([4], tf.constant(8, batch["expression"].dtype)))
    assert float(logs["d_cls_fake"]) == pytest.approx(float(expected), rel=1e-5)
    total = logs["d_adv"] + 2.0 * (logs["d_cls"] + logs["d_cls_fake"]) + 10.0 * logs["d_gp"]
    np.testing.assert_allclose(float(logs["d_total"]), float(total), rtol=1e-6)
    with pytest.raises(ValueError, match="class for generated inputs"):
        aus = objectives.ActionUnitTarget(tf.zeros([4, 17]), tf.ones([4, 17]), False)
        objectives.critic_loss(d_rgb, image, fake, aus, batch["alpha"], 2.0, 10.0, fake_class=8)

    # In the trainer: the term is logged and trained; a few critic steps raise D_rgb's "generated" logit on the
    # translations and not on the real faces.
    gan = DepthGuidedStarGAN(**networks, depth_weight=0.0, n_critic=1, critic_fake_class=True)
    gan.compile(optimizers={key: adam(key, 3e-3) for key in networks})
    gan.build_optimizers()
    assert "d_cls_fake" in gan.log_names and gan.get_config()["critic_fake_class"] is True
    target = tf.one_hot(batch["target"], 8)

    def generated_probability(images):
        return float(tf.reduce_mean(tf.nn.softmax(d_rgb(images, training=False)[1])[:, 8]))

    translations = gan.g_rgb([image, target], training=False)
    before = generated_probability(translations), generated_probability(image)
    for _ in range(15):
        logs = gan.critic_step(batch)
    assert "d_cls_fake" in logs
    after = generated_probability(translations), generated_probability(image)
    assert after[0] > before[0] + 0.2 and after[0] > after[1] + 0.2, (before, after)


def test_the_trainer_checks_the_head_and_the_condition():
    with pytest.raises(ValueError, match="num_classes \\+ 1 = 9 logits; got 8"):
        DepthGuidedStarGAN(**_networks(False), depth_weight=0.0, critic_fake_class=True)
    with pytest.raises(ValueError, match="needs condition='expression'"):
        DepthGuidedStarGAN(**_networks(False), depth_weight=0.0, critic_fake_class=True, condition="action_units")


def test_config_flag_model_config_and_refusals():
    base = dict(data_dir="data", model_dir="runs/a")
    config = TrainConfig(**base, critic_fake_class=True, image_size=64).validate()
    assert config.model_config().critic_fake_class is True and config.model_config().critic_dim == 9
    with pytest.raises(UsageError, match="--critic_fake_class adds a class to D_rgb's expression head"):
        TrainConfig(**base, critic_fake_class=True, condition="action_units", depth_weight=0).validate()
    with pytest.raises(UsageError, match="--critic_fake_class=True is a setting of --model=stargan"):
        TrainConfig(**base, critic_fake_class=True, model="transfer").validate()
    assert "critic_fake_class" in {field.name for field in dataclasses.fields(TrainConfig)}


@pytest.mark.slow  # a training process and its resume refusal: ~20 s
def test_train_cli_trains_it_records_it_and_refuses_to_resume_without_it(tiny_dataset, tmp_path):
    from tests import forked_cli
    from tests.training.test_train import TINY_FLAGS

    model_dir = tmp_path / "run"
    command = ["-m", "expr3d.train", f"--data_dir={tiny_dataset}", f"--model_dir={model_dir}", *TINY_FLAGS,
               "--depth_weight=0", "--num_steps_gan=2", "--checkpoint_every=0", "--sample_every=0",
               "--num_samples=2", "--progress=false"]
    done = forked_cli.run(command + ["--critic_fake_class"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    config = json.loads((model_dir / "config.json").read_text())
    assert config["flags"]["critic_fake_class"] is True and config["model_config"]["critic_fake_class"] is True
    d_rgb = keras.saving.load_model(str(model_dir / "models" / "d_rgb.keras"), compile=False)
    assert d_rgb.num_classes == 9
    done = forked_cli.run(command[:-1] + ["--num_steps_gan=4", "--nocritic_fake_class"], capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 2 and "critic_fake_class" in done.stderr, done.stderr[-2000:]
