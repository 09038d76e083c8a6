"""Tiny networks and a fixed real batch for in-process trainer tests."""
import keras
import tensorflow as tf

from expr3d.models import ModelConfig, build_models
from expr3d.training import inputs

TINY_CONFIG = dict(image_size=32, g_conv_dim=8, g_num_res_blocks=0, d_conv_dim=8, d_num_layers=2,
                   depth_g_conv_dim=8, depth_g_num_res_blocks=0, depth_d_conv_dim=8, depth_d_num_layers=2)


def tiny_networks(seed=0):
    keras.utils.set_random_seed(seed)
    return build_models(ModelConfig(**TINY_CONFIG))


def fixed_batch(data_dir, batch_size=4, geometry="depth", seed=0):
    """One real trainer batch (pipeline + training fields) as constant tensors."""
    batch = next(iter(inputs.training_dataset(data_dir, batch_size, 32, geometry, 8, seed=seed)))
    return {key: tf.constant(value.numpy()) for key, value in batch.items()}


def adam(name, learning_rate=1e-3):
    return keras.optimizers.Adam(learning_rate=learning_rate, beta_1=0.5, beta_2=0.999, name=name)


def sgd_one_step_trainer(stage, networks):
    """A built trainer of `stage` ("depth" or "gan") over `networks`, n_critic 1, plain SGD at lr 0.5.

    SGD's update is linear in the gradient, so a wrong scaling shows (Adam's first step is ~lr * sign(g): it would hide
    a factor of 2 while amplifying rounding noise on near-zero gradients). Build inside the strategy's scope.
    """
    from expr3d.training.depth_guided_stargan import DepthGuidedStarGAN
    from expr3d.training.depth_pretrainer import DepthPretrainer

    sgd = lambda name: keras.optimizers.SGD(learning_rate=0.5, name=name)  # noqa: E731
    if stage == "depth":
        trainer = DepthPretrainer(networks["g_depth"], networks["d_depth"], perceptual_weight=0.0, n_critic=1)
        trainer.compile(g_optimizer=sgd("g"), d_optimizer=sgd("d"))
    else:
        trainer = DepthGuidedStarGAN(**networks, depth_weight=0.5, n_critic=1)
        trainer.compile(optimizers={key: sgd(key) for key in networks})
    trainer.build_optimizers()
    return trainer
