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

from expr3d.models.initializers import layer_initializers

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


def residual_block(x, filters, name, dtype=None, init="keras", condition=None):
    """StarGAN residual block on a functional tensor.

    conv3x3 - IN - ReLU - conv3x3 - IN, plus the identity. The convolutions
    have no bias (the instance norm's offset makes it redundant).

    Args:
        x: input tensor `[B, H, W, filters]`.
        filters: channel count (input and output).
        name: prefix of the block's layer names.
        dtype: dtype policy; `None` uses the global policy.
        init: weight initialisation, "keras" or "stargan"
            (`expr3d.models.initializers`).
        condition: a `[B, D]` functional tensor: each instance norm's scale and offset also follow it
            (`ConditionalAffine`, `--condition_norms`); None: StarGAN's block.
    """
    y = keras.layers.Conv2D(
        filters, 3, padding="same", use_bias=False, name=f"{name}_conv1", dtype=dtype,
        **layer_initializers(init),
    )(x)
    y = conditioned(instance_norm(f"{name}_norm1", dtype)(y), condition, f"{name}_norm1", dtype)
    y = keras.layers.ReLU(name=f"{name}_relu", dtype=dtype)(y)
    y = keras.layers.Conv2D(
        filters, 3, padding="same", use_bias=False, name=f"{name}_conv2", dtype=dtype,
        **layer_initializers(init),
    )(y)
    y = conditioned(instance_norm(f"{name}_norm2", dtype)(y), condition, f"{name}_norm2", dtype)
    return keras.layers.Add(name=f"{name}_add", dtype=dtype)([x, y])


def conditioned(x, condition, norm_name, dtype=None):
    """`x` (an instance norm's output) through `ConditionalAffine` named after the norm, or `x` itself when
    `condition` is None."""
    if condition is None:
        return x
    return ConditionalAffine(name=f"{norm_name}_condition", dtype=dtype)([x, condition])


@keras.saving.register_keras_serializable(package="expr3d")
class ConditionalAffine(keras.layers.Layer):
    """A condition vector's scale and offset per channel, after an instance norm: `x * (1 + gamma(c)) + beta(c)`.

    `gamma, beta = split(c @ W + b)`, W and b zero at start, so a new layer is the identity and the generator begins
    as StarGAN's. Why (`--condition_norms`, ours; AdaIN as StarGAN v2 conditions its decoder on a style): StarGAN
    tiles the condition over the image before a convolution and an instance norm, and a norm subtracts each
    channel's spatial mean, so a condition that is the same at every pixel reaches the features only through the
    zero-padded border and the norm's statistics; here it scales and shifts every feature map directly.

    Args:
        **kwargs: standard layer arguments (`name`, `dtype`, ...).

    Example:
    >>> layer = ConditionalAffine()
    >>> layer([keras.ops.ones((2, 8, 8, 4)), keras.ops.ones((2, 17))]).shape
    (2, 8, 8, 4)
    """

    def build(self, input_shape):
        features_shape, condition_shape = input_shape
        channels, cond_dim = features_shape[-1], condition_shape[-1]
        if channels is None or cond_dim is None:
            raise ValueError(f"{self.name}: channel and condition sizes must be known; got {input_shape}")
        self.kernel = self.add_weight(shape=(cond_dim, 2 * channels), initializer="zeros", name="kernel")
        self.bias = self.add_weight(shape=(2 * channels,), initializer="zeros", name="bias")

    def call(self, inputs):
        x, condition = inputs
        channels = self.kernel.shape[-1] // 2
        affine = ops.matmul(ops.cast(condition, self.compute_dtype), ops.cast(self.kernel, self.compute_dtype))
        affine = ops.reshape(affine + ops.cast(self.bias, self.compute_dtype), (-1, 1, 1, 2 * channels))
        gamma, beta = affine[..., :channels], affine[..., channels:]
        return ops.cast(x, self.compute_dtype) * (1.0 + gamma) + beta

    def compute_output_shape(self, input_shape):
        return input_shape[0]


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


@keras.saving.register_keras_serializable(package="expr3d")
class FlowWarp(keras.layers.Layer):
    """Moves an image's pixels along a flow field: bilinear sampling, clamped at the border.

    `[image, flow]` -> `out[b, i, j] = image[b, i + dy, j + dx]` (bilinear), with `(dy, dx) = flow[b, i, j] *
    max_shift * (H, W)`: `flow` is `[B, H, W, 2]` in [-1, 1] (a tanh's output), so no pixel moves further than
    `max_shift` of the image side. Zero flow returns the image exactly. Written with gathers on the flattened image
    (TF Serving and TFLite run them; TensorFlow's `dense_image_warp` was in tensorflow-addons). Computes in this
    layer's dtype (float32 by default).

    Args:
        max_shift: the largest displacement, as a fraction of the image's height / width.
        **kwargs: standard layer arguments (`name`, `dtype`, ...).

    Example:
    >>> image = keras.ops.reshape(keras.ops.arange(16, dtype="float32"), (1, 4, 4, 1))
    >>> right = keras.ops.stack([keras.ops.zeros((1, 4, 4)), keras.ops.full((1, 4, 4), 0.25)], axis=-1)
    >>> keras.ops.convert_to_numpy(FlowWarp(max_shift=1.0)([image, right]))[0, 0, :, 0].tolist()
    [1.0, 2.0, 3.0, 3.0]
    """

    def __init__(self, max_shift=0.1, **kwargs):
        super().__init__(**kwargs)
        if not 0 < float(max_shift) <= 1:
            raise ValueError(f"FlowWarp: max_shift must be in (0, 1]; got {max_shift}")
        self.max_shift = float(max_shift)

    def call(self, inputs):
        image, flow = (ops.cast(t, self.compute_dtype) for t in inputs)
        shape = ops.shape(image)
        batch, height, width, channels = shape[0], shape[1], shape[2], shape[3]
        h, w = ops.cast(height, self.compute_dtype), ops.cast(width, self.compute_dtype)
        rows = ops.arange(height, dtype=self.compute_dtype)[None, :, None]
        cols = ops.arange(width, dtype=self.compute_dtype)[None, None, :]
        y = ops.clip(rows + flow[..., 0] * (self.max_shift * h), 0.0, h - 1.0)
        x = ops.clip(cols + flow[..., 1] * (self.max_shift * w), 0.0, w - 1.0)
        y0, x0 = ops.floor(y), ops.floor(x)
        wy, wx = (y - y0)[..., None], (x - x0)[..., None]  # the fractions carry the gradient to the flow
        y0, x0 = ops.cast(y0, "int32"), ops.cast(x0, "int32")
        y1, x1 = ops.minimum(y0 + 1, height - 1), ops.minimum(x0 + 1, width - 1)
        flat = ops.reshape(image, (-1, channels))
        base = (ops.arange(batch, dtype="int32") * (height * width))[:, None, None]

        def at(yi, xi):
            return ops.reshape(ops.take(flat, ops.reshape(base + yi * width + xi, (-1,)), axis=0), shape)

        top = at(y0, x0) * (1.0 - wx) + at(y0, x1) * wx
        bottom = at(y1, x0) * (1.0 - wx) + at(y1, x1) * wx
        return top * (1.0 - wy) + bottom * wy

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[0])

    def get_config(self):
        return {**super().get_config(), "max_shift": self.max_shift}


@keras.saving.register_keras_serializable(package="expr3d")
class AttentionCombine(keras.layers.Layer):
    """Blends a generated colour image into the source through an edit mask.

    `[source, colour, mask]` -> `mask * colour + (1 - mask) * source`: where the
    mask is 0 the source pixel is copied exactly, where it is 1 the colour
    image replaces it. `mask` is `[B, H, W, 1]` (broadcast over channels) with
    values in [0, 1]. Computes in this layer's dtype (float32 by default).

    Args:
        **kwargs: standard layer arguments (`name`, `dtype`, ...).

    Example:
    >>> layer = AttentionCombine()
    >>> source, colour = keras.ops.zeros((1, 4, 4, 3)), keras.ops.ones((1, 4, 4, 3))
    >>> float(keras.ops.mean(layer([source, colour, keras.ops.full((1, 4, 4, 1), 0.25)])))
    0.25
    """

    def call(self, inputs):
        source, colour, mask = (ops.cast(t, self.compute_dtype) for t in inputs)
        return mask * colour + (1.0 - mask) * source

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[0])
