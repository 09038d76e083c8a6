"""GANimation-style attention generator (Pumarola et al. 2018), an alternative G_rgb (`--generator=attention`)."""

import keras

from expr3d.models.blocks import AttentionCombine, FlowWarp
from expr3d.models.generator import GeneratorArguments, check_generator_arguments, stargan_trunk
from expr3d.models.initializers import check_init, layer_initializers


@keras.saving.register_keras_serializable(package="expr3d")
class AttentionGenerator(GeneratorArguments, keras.Model):
    """StarGAN's trunk with a colour head and an attention (edit-mask) head.

    The encoder / residual / decoder trunk is `StarGANGenerator`'s (same
    layers, same names). Two 7x7 heads read its features: colour
    `C = tanh(conv(3))` and attention `M = sigmoid(conv(1) + bias)`, and the
    output is `M * C + (1 - M) * x`. Mask convention (used everywhere in
    expr3d): `M` is the *edited* fraction of each pixel: `M = 0` copies the
    source pixel exactly, `M = 1` takes the colour head's. GANimation writes
    the same model with its mask `A = 1 - M` (`A * x + (1 - A) * C`).

    `call([image, condition])` returns only the output image, so this model
    drops in wherever a `StarGANGenerator` is used (training, evaluation,
    export, TFLite). `with_attention([image, condition])` returns
    `(image, mask, colour)` from the same layers and weights, for the mask
    regularisers and for showing the masks. Under a mixed-precision policy all
    three outputs are still float32.

    Args:
        cond_dim: length of the condition vector (number of target domains).
        conv_dim: channels of the first convolution.
        num_res_blocks: residual blocks in the bottleneck.
        num_down: stride-2 down-sampling (and up-sampling) stages.
        dtype: dtype policy of the layers; `None` uses the global policy.
        init: weight initialisation, "keras" or "stargan" (`expr3d.models.initializers`; the attention head's bias
            then gets PyTorch's default U(+-1/sqrt(conv_dim * 7 * 7))).
        condition_norms: as `StarGANGenerator`'s.
        **kwargs: standard `keras.Model` arguments (`name`, ...).

    Example:
    >>> g = AttentionGenerator(cond_dim=8, conv_dim=8, num_res_blocks=1)
    >>> image = keras.ops.zeros((2, 32, 32, 3))
    >>> target = keras.ops.one_hot(keras.ops.array([1, 4]), 8)
    >>> g([image, target]).shape
    (2, 32, 32, 3)
    >>> output, mask, colour = g.with_attention([image, target])
    >>> mask.shape
    (2, 32, 32, 1)
    """

    SKIP_CONNECTIONS = False
    FLOW_MAX_SHIFT = None  # AttentionWarpGenerator: the source is first moved along a flow field

    def __init__(self, cond_dim, conv_dim=64, num_res_blocks=6, num_down=2, dtype=None, init="keras",
                 condition_norms=False, **kwargs):
        check_generator_arguments(type(self).__name__, cond_dim, conv_dim, num_res_blocks, num_down)
        check_init(init, type(self).__name__)
        image_input = keras.Input(shape=(None, None, 3), name="image")
        condition_input = keras.Input(shape=(cond_dim,), name="condition")
        features = stargan_trunk(image_input, condition_input, conv_dim, num_res_blocks, num_down, dtype=dtype,
                                 init=init, skip_connections=self.SKIP_CONNECTIONS, condition_norms=condition_norms)
        head_channels = conv_dim * (2 if self.SKIP_CONNECTIONS else 1)

        colour = keras.layers.Conv2D(3, 7, padding="same", use_bias=False, name="colour_conv", dtype=dtype,
                                     **layer_initializers(init))(features)
        # float32 heads and blend whatever the policy: losses, masks and images stay exact.
        colour = keras.layers.Activation("tanh", dtype="float32", name="colour_tanh")(colour)
        # A bias, unlike the other convolutions (no normalisation follows): it sets the mask's overall level.
        mask = keras.layers.Conv2D(1, 7, padding="same", name="attention_conv", dtype=dtype,
                                   **layer_initializers(init, fan_in=head_channels * 7 * 7, use_bias=True))(features)
        mask = keras.layers.Activation("sigmoid", dtype="float32", name="attention_sigmoid")(mask)
        source = image_input
        if self.FLOW_MAX_SHIFT:
            # Zero at start: a new generator copies its input, as the plain one does through its mask.
            flow = keras.layers.Conv2D(2, 7, padding="same", kernel_initializer="zeros", name="flow_conv",
                                       dtype=dtype)(features)
            flow = keras.layers.Activation("tanh", dtype="float32", name="flow_tanh")(flow)
            source = FlowWarp(self.FLOW_MAX_SHIFT, name="flow_warp", dtype="float32")([image_input, flow])
        output = AttentionCombine(name="attention_combine", dtype="float32")([source, colour, mask])

        # The same graph with the mask and colour as outputs too; it shares every layer (and weight) with this model.
        outputs_with_attention = keras.Model(
            inputs=[image_input, condition_input], outputs=[output, mask, colour, source], name="with_attention"
        )
        super().__init__(inputs=[image_input, condition_input], outputs=output, **kwargs)
        self._with_attention = outputs_with_attention

        self._keep_arguments(cond_dim, conv_dim, num_res_blocks, num_down, dtype, init, condition_norms)

    def with_attention(self, inputs, training=None):
        """`(image, mask, colour)` for `inputs = [image, condition]`.

        `image` is what `self(inputs)` returns, `mask` `[B, H, W, 1]` in [0, 1]
        the edited fraction of each pixel (0 = source copied), `colour`
        `[B, H, W, 3]` the colour head's image in [-1, 1]; all float32.
        """
        return tuple(self._with_attention(inputs, training=training))[:3]

    def with_attention_and_source(self, inputs, training=None):
        """`(image, mask, colour, source)`: `with_attention`'s and the image the mask blends into, the input itself
        or, for `AttentionWarpGenerator`, the input moved along the flow (what the paired term's edit region is
        measured against: where the target differs from what the warp already gives)."""
        return tuple(self._with_attention(inputs, training=training))



@keras.saving.register_keras_serializable(package="expr3d")
class AttentionUNetGenerator(AttentionGenerator):
    """`AttentionGenerator` on a U-Net trunk (`--generator=attention_unet`; ours, in neither paper).

    Each decoder stage's output is concatenated with the encoder's features at its resolution
    (`stargan_trunk(skip_connections=True)`), so the colour head sees the source's detail at full resolution:
    without the skips it repaints the edited region from the 4x-down-sampled bottleneck, and eyes and mouth come out
    blurred (issue #12). Same arguments, outputs and `with_attention` as `AttentionGenerator`.

    Example:
    >>> g = AttentionUNetGenerator(cond_dim=8, conv_dim=8, num_res_blocks=1)
    >>> g([keras.ops.zeros((2, 32, 32, 3)), keras.ops.one_hot(keras.ops.array([1, 4]), 8)]).shape
    (2, 32, 32, 3)
    """

    SKIP_CONNECTIONS = True


@keras.saving.register_keras_serializable(package="expr3d")
class AttentionWarpGenerator(AttentionGenerator):
    """`AttentionGenerator` that also MOVES the source's pixels (`--generator=attention_warp`; ours, in neither paper).

    A third 7x7 head gives a flow field (tanh, zero at start; `FlowWarp`: at most `FLOW_MAX_SHIFT` = 10 % of the
    image side), the source is resampled along it, and the mask blends the colour head into that moved source:
    `M * C + (1 - M) * warp(x, F)`. Why: one AU moves an edge by a pixel or two at 64 px (a brow rises, a lip corner
    pulls); drawn by the colour head, a movement it cannot place exactly has its L1 optimum near no change, and the
    dial read back stays near "ignored" (session 32's sweeps show tints where the renders move). A warp draws a
    movement as a movement, and keeps the face's detail where the colour head would blur it. Same arguments and
    outputs as `AttentionGenerator`; `with_attention_and_source` also returns the moved source.

    Example:
    >>> g = AttentionWarpGenerator(cond_dim=8, conv_dim=8, num_res_blocks=1)
    >>> g([keras.ops.zeros((2, 32, 32, 3)), keras.ops.one_hot(keras.ops.array([1, 4]), 8)]).shape
    (2, 32, 32, 3)
    """

    FLOW_MAX_SHIFT = 0.1
