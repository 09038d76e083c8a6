"""PatchGAN critic with source and class heads (StarGAN's discriminator)."""

import keras
from keras import ops

from expr3d.models.blocks import serializable_dtype
from expr3d.models.initializers import check_init, layer_initializers

# Convolutions with at most this many output positions run as one matmul over explicit patches (below).
MATMUL_MAX_POSITIONS = 4


def matmul_small_outputs(conv):
    """`conv` (a `keras.layers.Conv2D`, channels_last, no dilation), changed to compute outputs of at most
    `MATMUL_MAX_POSITIONS` positions as a matmul of im2col patches by the reshaped kernel; larger outputs keep the
    ordinary convolution. Returns the same layer.

    Same weights, same arithmetic (the zero padding is materialised, so every multiply-accumulate the convolution
    does is done), another kernel: the critic's last layers have a 2x2 or 1x1 output and 8-33 M weights, and
    TensorFlow's CPU convolution ran them at 2-11 % of the matmul peak, the gradient-penalty double backward at
    less (conv 2x2 -> 1x1, 1024 -> 2048 channels, batch 8: 304 ms vs 63 ms for a forward + double backward here).
    Built from pad, slices, stack, reshape and matmul, so it is differentiable to any order on every backend. The
    layer stays a `Conv2D` (only its `convolution_op` is replaced), so `.keras` files keep their weight paths.
    """
    convolution = type(conv).convolution_op

    def convolution_op(inputs, kernel):
        height, width = inputs.shape[1], inputs.shape[2]
        if (conv.data_format != "channels_last" or height is None or width is None
                or any(rate != 1 for rate in conv.dilation_rate)):
            return convolution(conv, inputs, kernel)
        (kh, kw), (sh, sw) = conv.kernel_size, conv.strides
        if conv.padding == "same":
            out_h, out_w = -(-height // sh), -(-width // sw)
            pad_h = max((out_h - 1) * sh + kh - height, 0)
            pad_w = max((out_w - 1) * sw + kw - width, 0)
        else:
            out_h, out_w = (height - kh) // sh + 1, (width - kw) // sw + 1
            pad_h = pad_w = 0
        if out_h * out_w > MATMUL_MAX_POSITIONS:
            return convolution(conv, inputs, kernel)
        if pad_h or pad_w:  # TensorFlow's "same": the odd pixel of padding goes at the bottom/right
            inputs = ops.pad(inputs, [[0, 0], [pad_h // 2, pad_h - pad_h // 2], [pad_w // 2, pad_w - pad_w // 2], [0, 0]])
        windows = [inputs[:, i * sh:i * sh + kh, j * sw:j * sw + kw, :] for i in range(out_h) for j in range(out_w)]
        patches = ops.stack(windows, axis=1)  # [B, positions, kh, kw, C]: the kernel's own [kh, kw, C] order
        channels = inputs.shape[-1]
        patches = ops.reshape(patches, (-1, kh * kw * channels))
        outputs = ops.matmul(patches, ops.reshape(kernel, (kh * kw * channels, conv.filters)))
        return ops.reshape(outputs, (-1, out_h, out_w, conv.filters))

    conv.convolution_op = convolution_op
    return conv


@keras.saving.register_keras_serializable(package="expr3d")
class PatchCritic(keras.Model):
    """StarGAN's PatchGAN critic: a patch realism map and class logits.

    conv4x4 stride 2 (conv_dim) + LeakyReLU(0.01), then `num_layers - 1` more
    stride-2 conv4x4 layers doubling the channels, each + LeakyReLU(0.01); no
    normalisation (WGAN-GP). Two bias-free heads on the last features:
    `src`, a conv3x3 stride 1 giving a 1-channel patch map, and `cls`, a conv
    whose kernel covers the remaining `image_size / 2**num_layers` pixels,
    giving `num_classes` logits. Used on RGB faces (D_rgb) and on 3-channel
    geometry maps (D_depth). Both outputs are float32 under any policy.

    Args:
        image_size: input height and width; must be divisible by `2**num_layers`.
        num_classes: number of class logits of the `cls` head.
        conv_dim: channels of the first convolution.
        num_layers: stride-2 convolutions.
        input_channels: channels of the input maps.
        dtype: dtype policy of the layers; `None` uses the global policy.
        init: weight initialisation: "keras" (Keras' defaults: glorot-uniform kernels, zero biases) or "stargan"
            (PyTorch's defaults, as the official StarGAN code: kernels and the stride-2 convolutions' biases
            U(+-1/sqrt(fan_in)), `fan_in = in_channels * 4 * 4`; `expr3d.models.initializers`).
        **kwargs: standard `keras.Model` arguments (`name`, ...).

    Returns (when called): `(src, cls)`, `src` `[B, image_size / 2**num_layers,
    image_size / 2**num_layers, 1]` and `cls` `[B, num_classes]`.

    Example:
    >>> d = PatchCritic(image_size=32, num_classes=8, conv_dim=8, num_layers=3)
    >>> src, cls = d(keras.ops.zeros((2, 32, 32, 3)))
    >>> src.shape, cls.shape
    ((2, 4, 4, 1), (2, 8))
    """

    def __init__(
        self, image_size, num_classes, conv_dim=64, num_layers=6, input_channels=3, dtype=None, init="keras",
        **kwargs
    ):
        for field, value in (
            ("image_size", image_size),
            ("num_classes", num_classes),
            ("conv_dim", conv_dim),
            ("num_layers", num_layers),
            ("input_channels", input_channels),
        ):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"PatchCritic: {field} must be a positive integer; got {value!r}")
        if image_size % (2**num_layers):
            raise ValueError(
                f"PatchCritic: num_layers={num_layers} needs image_size divisible by {2**num_layers}; "
                f"got image_size={image_size}"
            )
        check_init(init, "PatchCritic")
        patch_size = image_size // (2**num_layers)

        image_input = keras.Input(shape=(image_size, image_size, input_channels), name="image")
        x = image_input
        filters, channels = conv_dim, input_channels
        for i in range(num_layers):
            x = matmul_small_outputs(keras.layers.Conv2D(
                filters, 4, strides=2, padding="same", name=f"conv{i}", dtype=dtype,
                **layer_initializers(init, fan_in=channels * 4 * 4, use_bias=True)))(x)
            x = keras.layers.LeakyReLU(negative_slope=0.01, name=f"lrelu{i}", dtype=dtype)(x)
            channels, filters = filters, filters * 2

        src = matmul_small_outputs(keras.layers.Conv2D(
            1, 3, padding="same", use_bias=False, name="src_conv", dtype=dtype, **layer_initializers(init)))(x)
        src = keras.layers.Activation("linear", dtype="float32", name="src")(src)
        cls = matmul_small_outputs(keras.layers.Conv2D(
            num_classes, patch_size, padding="valid", use_bias=False, name="cls_conv", dtype=dtype,
            **layer_initializers(init)))(x)
        cls = keras.layers.Reshape((num_classes,), name="cls_flatten", dtype=dtype)(cls)
        cls = keras.layers.Activation("linear", dtype="float32", name="cls")(cls)

        super().__init__(inputs=image_input, outputs=[src, cls], **kwargs)

        self.image_size = image_size
        self.num_classes = num_classes
        self.conv_dim = conv_dim
        self.num_layers = num_layers
        self.input_channels = input_channels
        self.layer_dtype = serializable_dtype(dtype)
        self.init = init

    def get_config(self):
        return {
            "name": self.name,
            "trainable": self.trainable,
            "image_size": self.image_size,
            "num_classes": self.num_classes,
            "conv_dim": self.conv_dim,
            "num_layers": self.num_layers,
            "input_channels": self.input_channels,
            "dtype": self.layer_dtype,
            "init": self.init,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)
