"""build_stage: a TrainConfig and the networks -> the trainer the loop runs, by name from the STAGES registry."""
import pytest

from expr3d.training import stages
from expr3d.training.config import TrainConfig
from expr3d.training.depth_guided_stargan import DepthGuidedStarGAN
from expr3d.training.depth_pretrainer import DepthPretrainer
from tests.training.helpers import tiny_networks

CONFIG = TrainConfig(data_dir="/d", model_dir="/m", num_steps_depth=10, num_steps_gan=20, batch_size=8,
                     batch_size_depth=6, seed=5, perceptual_weight=0.0, n_critic=2, lambda_rec=3.0, g_lr=2e-4,
                     d_lr=1e-4, lr_decay_every=5, lr_decay_start=0.5, adam_epsilon=1e-8, adam_epsilon_mode="pytorch",
                     critic_warmup_steps=4)


def test_depth_stage():
    stage = stages.build_stage("depth", CONFIG, tiny_networks(), loss_scaled=False)
    assert isinstance(stage.trainer, DepthPretrainer) and stage.trainer.vgg is None
    assert (stage.name, stage.num_steps, stage.batch_size, stage.data_seed) == ("depth", 10, 6, 5)
    assert (stage.trainer.n_critic, stage.trainer.lambda_rec) == (2, 3.0)
    assert set(stage.schedules) == {"g_depth", "d_depth"}
    assert stage.schedules["g_depth"](0) == pytest.approx(2e-4)
    assert stage.schedules["d_depth"](10) < 1e-4  # decaying from iteration 5, in steps of 5
    assert stage.trainer.g_optimizer.built  # slots exist before a checkpoint restore


def test_gan_stage():
    stage = stages.build_stage("gan", CONFIG, tiny_networks(), loss_scaled=False)
    assert isinstance(stage.trainer, DepthGuidedStarGAN)
    assert (stage.name, stage.num_steps, stage.batch_size, stage.data_seed) == ("gan", 20, 8, 6)
    assert stage.trainer.critic_warmup_steps == 4 and stage.trainer.depth_weight == pytest.approx(0.1)
    assert set(stage.schedules) == {"g_rgb", "d_rgb", "g_depth", "d_depth"}
    assert stage.schedules["g_rgb"](0) == pytest.approx(2e-4) and stage.schedules["d_rgb"](0) == pytest.approx(1e-4)
    assert type(stage.trainer.optimizers["g_rgb"]).__name__ == "TorchAdam"  # --adam_epsilon_mode=pytorch


def test_a_new_family_plugs_into_the_registry(monkeypatch):
    def toy_stage(config, networks, loss_scaled, vgg=None):
        return stages.Stage(name="toy", trainer=object(), schedules={}, num_steps=config.num_steps_gan,
                            batch_size=config.batch_size, data_seed=config.seed)

    monkeypatch.setitem(stages.STAGES, "toy", toy_stage)
    built = stages.build_stage("toy", CONFIG, networks={}, loss_scaled=False)
    assert (built.name, built.num_steps, built.batch_size, built.data_seed) == ("toy", 20, 8, 5)
    with pytest.raises(ValueError, match="unknown stage 'nope'; known: depth, gan, toy"):
        stages.build_stage("nope", CONFIG, networks={}, loss_scaled=False)
