"""Tiny networks and a fixed real batch for in-process trainer tests."""
import keras
import tensorflow as tf

from expr3d.models import ModelConfig, build_models
from expr3d.training import inputs

TINY_CONFIG = dict(image_size=32, g_conv_dim=8, g_num_res_blocks=1, d_conv_dim=8, d_num_layers=3,
                   depth_g_conv_dim=8, depth_g_num_res_blocks=1, depth_d_conv_dim=8, depth_d_num_layers=3)


def tiny_networks(seed=0):
    keras.utils.set_random_seed(seed)
    return build_models(ModelConfig(**TINY_CONFIG))


def fixed_batch(data_dir, batch_size=4, geometry="depth", seed=0):
    """One real trainer batch (pipeline + training fields) as constant tensors."""
    batch = next(iter(inputs.training_dataset(data_dir, batch_size, 32, geometry, 8, seed=seed)))
    return {key: tf.constant(value.numpy()) for key, value in batch.items()}


def adam(name, learning_rate=1e-3):
    return keras.optimizers.Adam(learning_rate=learning_rate, beta_1=0.5, beta_2=0.999, name=name)
