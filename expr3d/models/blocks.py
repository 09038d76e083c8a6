"""Building blocks shared by the StarGAN-style generators.

Instance normalisation is Keras' `GroupNormalization(groups=-1)` (one group per
channel, affine scale/offset) with PyTorch's epsilon 1e-5, as in StarGAN's
`nn.InstanceNorm2d(affine=True)`. It always normalises with the statistics of
the current image (StarGAN's `track_running_stats=True` running averages are
not reproduced: they only change StarGAN's eval mode, and make outputs depend
on the batch history).
"""

import keras
from keras import ops

INSTANCE_NORM_EPSILON = 1e-5


def serializable_dtype(dtype):
    """A `dtype` constructor argument in a form `get_config` can hold."""
    if dtype is None or isinstance(dtype, str):
        return dtype
    return keras.dtype_policies.serialize(dtype)


def instance_norm(name, dtype=None):
    """Affine instance normalisation (`GroupNormalization(groups=-1)`).

    Args:
        name: layer name.
        dtype: dtype policy; `None` uses the global policy.
    """
    return keras.layers.GroupNormalization(
        groups=-1, epsilon=INSTANCE_NORM_EPSILON, name=name, dtype=dtype
    )


def residual_block(x, filters, name, dtype=None):
    """StarGAN residual block on a functional tensor.

    conv3x3 - IN - ReLU - conv3x3 - IN, plus the identity. The convolutions
    have no bias (the instance norm's offset makes it redundant).

    Args:
        x: input tensor `[B, H, W, filters]`.
        filters: channel count (input and output).
        name: prefix of the block's layer names.
        dtype: dtype policy; `None` uses the global policy.
    """
    y = keras.layers.Conv2D(
        filters, 3, padding="same", use_bias=False, name=f"{name}_conv1", dtype=dtype
    )(x)
    y = instance_norm(f"{name}_norm1", dtype)(y)
    y = keras.layers.ReLU(name=f"{name}_relu", dtype=dtype)(y)
    y = keras.layers.Conv2D(
        filters, 3, padding="same", use_bias=False, name=f"{name}_conv2", dtype=dtype
    )(y)
    y = instance_norm(f"{name}_norm2", dtype)(y)
    return keras.layers.Add(name=f"{name}_add", dtype=dtype)([x, y])


@keras.saving.register_keras_serializable(package="expr3d")
class ConditionConcat(keras.layers.Layer):
    """Tiles a per-image condition vector over the image and concatenates it.

    `[B, H, W, C]` image and `[B, D]` condition give `[B, H, W, C + D]`, the
    StarGAN way of conditioning the generator on a target domain.

    Args:
        **kwargs: standard layer arguments (`name`, `dtype`, ...).

    Example:
    >>> layer = ConditionConcat()
    >>> layer([keras.ops.zeros((2, 8, 8, 3)), keras.ops.ones((2, 5))]).shape
    (2, 8, 8, 8)
    """

    def call(self, inputs):
        image, condition = inputs
        condition = ops.cast(condition, image.dtype)
        shape = ops.shape(image)
        cond_dim = condition.shape[-1]
        tiled = ops.broadcast_to(
            ops.reshape(condition, (-1, 1, 1, cond_dim)),
            (shape[0], shape[1], shape[2], cond_dim),
        )
        return ops.concatenate([image, tiled], axis=-1)

    def compute_output_shape(self, input_shape):
        image_shape, condition_shape = input_shape
        channels = None
        if image_shape[-1] is not None and condition_shape[-1] is not None:
            channels = image_shape[-1] + condition_shape[-1]
        return tuple(image_shape[:-1]) + (channels,)
