"""StarGAN generator (Choi et al. 2018), as used for G_rgb in PAPER.md."""

import keras

from expr3d.models.blocks import ConditionConcat, conditioned, instance_norm, residual_block, serializable_dtype
from expr3d.models.initializers import check_init, layer_initializers


def check_generator_arguments(owner, cond_dim, conv_dim, num_res_blocks, num_down):
    """Raises `ValueError` naming the first bad size argument of a StarGAN-style generator."""
    for field, value, minimum in (
        ("cond_dim", cond_dim, 1),
        ("conv_dim", conv_dim, 1),
        ("num_res_blocks", num_res_blocks, 0),
        ("num_down", num_down, 0),
    ):
        if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
            raise ValueError(f"{owner}: {field} must be an integer >= {minimum}; got {value!r}")


def stargan_trunk(image, condition, conv_dim, num_res_blocks, num_down, dtype=None, init="keras",
                  skip_connections=False, condition_norms=False):
    """StarGAN's generator up to (not including) its output convolution, on functional tensors.

    The condition tiled and concatenated to the image's channels; conv7x7(conv_dim)-IN-ReLU; `num_down` x
    [conv4x4 stride 2, channels x2, IN, ReLU]; `num_res_blocks` residual blocks; `num_down` x [transposed conv4x4
    stride 2, channels /2, IN, ReLU]. Shared by `StarGANGenerator` and `AttentionGenerator`, so both have the same
    trunk layers under the same names.

    Args:
        image: `[B, H, W, 3]` functional input.
        condition: `[B, cond_dim]` functional input.
        conv_dim, num_res_blocks, num_down: as in `StarGANGenerator`.
        dtype: dtype policy of the layers; `None` uses the global policy.
        init: weight initialisation, "keras" or "stargan" (`expr3d.models.initializers`).
        skip_connections: U-Net skips (`AttentionUNetGenerator`; not StarGAN's): each up-sampling stage's output is
            concatenated with the encoder's features at its resolution, so the heads see the source's detail that
            the 4x-down-sampled bottleneck blurs.
        condition_norms: the condition also sets every instance norm's scale and offset (`ConditionalAffine`,
            `--condition_norms`; not StarGAN's), besides being tiled over the input.

    Returns:
        The `[B, H, W, conv_dim]` features (`[B, H, W, 2 * conv_dim]` with skip connections) (post-ReLU) the output heads read.
    """
    x = ConditionConcat(name="condition_concat", dtype=dtype)([image, condition])
    x = keras.layers.Conv2D(conv_dim, 7, padding="same", use_bias=False, name="stem_conv", dtype=dtype,
                            **layer_initializers(init))(x)
    norm_condition = condition if condition_norms else None
    x = conditioned(instance_norm("stem_norm", dtype)(x), norm_condition, "stem_norm", dtype)
    x = keras.layers.ReLU(name="stem_relu", dtype=dtype)(x)

    encoder_features = [x]
    filters = conv_dim
    for i in range(num_down):
        filters *= 2
        x = keras.layers.Conv2D(
            filters, 4, strides=2, padding="same", use_bias=False, name=f"down{i}_conv", dtype=dtype,
            **layer_initializers(init),
        )(x)
        x = conditioned(instance_norm(f"down{i}_norm", dtype)(x), norm_condition, f"down{i}_norm", dtype)
        x = keras.layers.ReLU(name=f"down{i}_relu", dtype=dtype)(x)
        encoder_features.append(x)
    encoder_features.pop()  # the bottleneck's input is not a skip

    for i in range(num_res_blocks):
        x = residual_block(x, filters, name=f"res{i}", dtype=dtype, init=init, condition=norm_condition)

    for i in range(num_down):
        filters //= 2
        x = keras.layers.Conv2DTranspose(
            filters, 4, strides=2, padding="same", use_bias=False, name=f"up{i}_conv", dtype=dtype,
            **layer_initializers(init),  # PyTorch's fan_in of a transposed conv: OUT channels x 4 x 4 (initializers.py)
        )(x)
        x = conditioned(instance_norm(f"up{i}_norm", dtype)(x), norm_condition, f"up{i}_norm", dtype)
        x = keras.layers.ReLU(name=f"up{i}_relu", dtype=dtype)(x)
        if skip_connections:
            x = keras.layers.Concatenate(name=f"skip{i}_concat", dtype=dtype)([x, encoder_features.pop()])
    return x


class GeneratorArguments:
    """The constructor arguments both G_rgb classes take, kept and serialised in one place (a mixin before
    `keras.Model`)."""

    def _keep_arguments(self, cond_dim, conv_dim, num_res_blocks, num_down, dtype, init, condition_norms=False):
        self.cond_dim = cond_dim
        self.condition_norms = bool(condition_norms)
        self.conv_dim = conv_dim
        self.num_res_blocks = num_res_blocks
        self.num_down = num_down
        self.layer_dtype = serializable_dtype(dtype)
        self.init = init

    def get_config(self):
        return {
            "name": self.name,
            "trainable": self.trainable,
            "cond_dim": self.cond_dim,
            "conv_dim": self.conv_dim,
            "num_res_blocks": self.num_res_blocks,
            "num_down": self.num_down,
            "dtype": self.layer_dtype,
            "init": self.init,
            "condition_norms": self.condition_norms,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)


@keras.saving.register_keras_serializable(package="expr3d")
class StarGANGenerator(GeneratorArguments, keras.Model):
    """StarGAN's encoder / residual / decoder generator.

    The condition vector is tiled over the image and concatenated to its
    channels; then conv7x7(conv_dim)-IN-ReLU, `num_down` x [conv4x4 stride 2,
    channels x2, IN, ReLU], `num_res_blocks` residual blocks,
    `num_down` x [transposed conv4x4 stride 2, channels /2, IN, ReLU],
    conv7x7(3) and tanh. Convolutions have no bias; IN is affine instance
    normalisation (epsilon 1e-5). The spatial size is free (any multiple of
    `2**num_down`). Under a mixed-precision policy the output is still float32.

    Args:
        cond_dim: length of the condition vector (number of target domains).
        conv_dim: channels of the first convolution.
        num_res_blocks: residual blocks in the bottleneck.
        num_down: stride-2 down-sampling (and up-sampling) stages.
        dtype: dtype policy of the layers; `None` uses the global policy.
        init: weight initialisation: "keras" (Keras' defaults) or "stargan" (PyTorch's defaults, as the official
            StarGAN code; `expr3d.models.initializers`).
        condition_norms: the condition also sets every instance norm's scale and offset (`stargan_trunk`; not
            StarGAN's; False in models saved before it existed).
        **kwargs: standard `keras.Model` arguments (`name`, ...).

    Example:
    >>> g = StarGANGenerator(cond_dim=8, conv_dim=8, num_res_blocks=1)
    >>> image = keras.ops.zeros((2, 32, 32, 3))
    >>> target = keras.ops.one_hot(keras.ops.array([1, 4]), 8)
    >>> g([image, target]).shape
    (2, 32, 32, 3)
    """

    def __init__(self, cond_dim, conv_dim=64, num_res_blocks=6, num_down=2, dtype=None, init="keras",
                 condition_norms=False, **kwargs):
        check_generator_arguments(type(self).__name__, cond_dim, conv_dim, num_res_blocks, num_down)
        check_init(init, type(self).__name__)
        image_input = keras.Input(shape=(None, None, 3), name="image")
        condition_input = keras.Input(shape=(cond_dim,), name="condition")
        x = stargan_trunk(image_input, condition_input, conv_dim, num_res_blocks, num_down, dtype=dtype, init=init,
                          condition_norms=condition_norms)
        x = keras.layers.Conv2D(3, 7, padding="same", use_bias=False, name="out_conv", dtype=dtype,
                                **layer_initializers(init))(x)
        # float32 output whatever the policy: losses and images stay exact.
        output = keras.layers.Activation("tanh", dtype="float32", name="out_tanh")(x)

        super().__init__(inputs=[image_input, condition_input], outputs=output, **kwargs)

        self._keep_arguments(cond_dim, conv_dim, num_res_blocks, num_down, dtype, init, condition_norms)

