"""An AU-conditioned G_rgb whose edit is proportional to the AU change asked (`--generator=action_unit_edit`; ours).

Why: the StarGAN and attention generators redraw a face from (face, target AUs). Asked for one AU changed (a dial),
they draw an expression-sized change or none: a single AU's edit (about 0.01 per pixel of a 64 px face) is smaller
than their own error in reproducing the face, and the 17-vector reads to them as a whole expression
(docs/transfer_history.md, the dial, sessions 27-30). Here the output is
`x + sum_k (c_k - r_k(x)) * E_k(x, c, c - r(x))`: `r` a reader of the face's own AUs inside the model, `E_k` one
edit image per AU. Asking for the AUs the face already has
returns the face exactly, a dial of AU k by d changes it by `d * E_k` alone, and the paired term on a dial render
teaches `E_k` at the scale of a whole AU (the dial's small edit divided by its small d), not as noise on a redraw.
"""

import keras
from keras import ops

from expr3d.models.generator import GeneratorArguments, check_generator_arguments, stargan_trunk
from expr3d.models.initializers import check_init

# The reader's first logits: sigmoid(-2.2) ~ 0.1, most AUs being off in most faces (as the AU judge starts).
READER_BIAS = -2.2


@keras.saving.register_keras_serializable(package="expr3d")
class ActionUnitEditCombine(keras.layers.Layer):
    """`[image, fields, target, read]` -> `clip(image + sum_k (target_k - read_k) * fields_k, -1, 1)`.

    `fields` is `[B, H, W, 3 * A]` (AU k's edit image in channels 3k..3k+2), `target` and `read` `[B, A]`. No
    gradient reaches `read` from here: the reader learns only to read (its own loss), not to make edits easy.
    Computes in float32 whatever the policy (images and losses stay exact).
    """

    def call(self, inputs):
        image, fields, target, read = (ops.cast(t, "float32") for t in inputs)
        change = target - ops.stop_gradient(read)
        units = ops.shape(change)[-1]
        shape = ops.shape(fields)
        fields = ops.reshape(fields, (shape[0], shape[1], shape[2], units, 3))
        edit = ops.sum(fields * change[:, None, None, :, None], axis=3)
        return ops.clip(image + edit, -1.0, 1.0)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[0])


@keras.saving.register_keras_serializable(package="expr3d")
class ActionUnitChange(keras.layers.Layer):
    """`[target, read]` -> `[target, target - stop_gradient(read)]` concatenated (`[B, 2A]`): the trunk's condition,
    the AUs asked and the change asked of this face (RelGAN's relative attributes beside the absolute ones)."""

    def call(self, inputs):
        target, read = inputs
        read = ops.cast(ops.stop_gradient(read), target.dtype)
        return ops.concatenate([target, target - read], axis=-1)

    def compute_output_shape(self, input_shape):
        return (input_shape[0][0], 2 * input_shape[0][-1])


def copy_frozen_reader(network, regressor, owner, width, units):
    """Copies AU regressor `regressor`'s weights into the reader `network` of model `owner` (a compact
    `build_classifier` network of `width`, `units` AUs) and freezes it; ValueError naming both when it is another
    network."""
    mine, theirs = network.get_weights(), regressor.get_weights()
    if [w.shape for w in mine] != [tuple(w.shape) for w in theirs]:
        raise ValueError(f"{owner}: the AU regressor {regressor.name} is not the reader's network (width {width}, "
                         f"{units} AUs): give an AU guide of that width (--guide_width={width})")
    network.set_weights(theirs)
    network.trainable = False


@keras.saving.register_keras_serializable(package="expr3d")
class ActionUnitEditGenerator(GeneratorArguments, keras.Model):
    """StarGAN's trunk with per-AU edit images and a reader of the source's AUs.

    The reader is the AU judge's network (`expr3d.metrics.expression_classifier.build_classifier`, compact ResNet of
    width `reader_width`, no dropout) and a sigmoid: the source's AU intensities `r(x)` in [0, 1]. A run starts it
    as a copy of its AU guide and freezes it (`load_reader`; the guide reads real faces at MAE ~0.03: every AU's
    misreading becomes an edit); without one it is trained on the data's AUs (`read_action_units`). The trunk
    (`stargan_trunk`, the attention generator's) sees the image and `[c, c - r(x)]`; a 7x7 convolution (zero at
    start, so a new generator returns its input) gives `3 * cond_dim` channels, AU k's edit image `E_k`; the output
    is `ActionUnitEditCombine`'s. A drop-in G_rgb for the AU condition: `call([image, AUs])` returns the image only
    (training, evaluation, export, TFLite take it as any G_rgb).

    Args:
        cond_dim: number of AUs (the condition is AU intensities in [0, 1], not a one-hot class).
        conv_dim, num_res_blocks, num_down, dtype, init, condition_norms: as `StarGANGenerator`'s.
        reader_width: the reader's first-stage width (an AU guide's `width`, `--guide_width`, to copy it).
        **kwargs: standard `keras.Model` arguments (`name`, ...).

    Example:
    >>> g = ActionUnitEditGenerator(cond_dim=4, conv_dim=8, num_res_blocks=1, reader_width=4)
    >>> image = keras.ops.zeros((2, 32, 32, 3))
    >>> g([image, keras.ops.full((2, 4), 0.5)]).shape
    (2, 32, 32, 3)
    >>> g.read_action_units(image).shape
    (2, 4)
    """

    def __init__(self, cond_dim, conv_dim=64, num_res_blocks=6, num_down=2, dtype=None, init="keras",
                 condition_norms=False, reader_width=16, **kwargs):
        from expr3d.metrics.expression_classifier import build_classifier

        check_generator_arguments(type(self).__name__, cond_dim, conv_dim, num_res_blocks, num_down)
        check_generator_arguments(type(self).__name__, cond_dim, reader_width, 0, 0)
        check_init(init, type(self).__name__)
        image_input = keras.Input(shape=(None, None, 3), name="image")
        condition_input = keras.Input(shape=(cond_dim,), name="condition")

        reader = build_classifier(None, num_classes=cond_dim, width=reader_width, dropout=0.0)
        reader.name = "reader_network"
        reader.get_layer("logits").bias.assign(ops.full((cond_dim,), READER_BIAS))
        read = keras.layers.Activation("sigmoid", dtype="float32", name="reader_sigmoid")(reader(image_input))

        trunk_condition = ActionUnitChange(name="action_unit_change", dtype="float32")([condition_input, read])
        features = stargan_trunk(image_input, trunk_condition, conv_dim, num_res_blocks, num_down, dtype=dtype,
                                 init=init, condition_norms=condition_norms)
        fields = keras.layers.Conv2D(3 * cond_dim, 7, padding="same", use_bias=False, name="edit_conv", dtype=dtype,
                                     kernel_initializer="zeros")(features)
        output = ActionUnitEditCombine(name="edit_combine", dtype="float32")(
            [image_input, fields, condition_input, read])

        # The same graph with the edit images as an output too (shared layers and weights), for their penalty.
        outputs_with_edits = keras.Model(inputs=[image_input, condition_input], outputs=[output, fields],
                                         name="with_edits")
        super().__init__(inputs=[image_input, condition_input], outputs=output, **kwargs)
        self._reader = keras.Model(inputs=image_input, outputs=read, name="reader")
        self._reader_network = reader
        self._with_edits = outputs_with_edits
        self.reader_width = int(reader_width)
        self._keep_arguments(cond_dim, conv_dim, num_res_blocks, num_down, dtype, init, condition_norms)

    def get_config(self):
        return {**super().get_config(), "reader_width": self.reader_width}

    def load_reader(self, regressor):
        """Copies an AU regressor's weights into the reader and freezes it. `regressor`: the keras model of an AU
        guide or judge (`expr3d.metrics.au_judge`: logits of `cond_dim` AUs, compact network of `reader_width`).
        ValueError naming both shapes when it is another network."""
        copy_frozen_reader(self._reader_network, regressor, self.name, self.reader_width, self.cond_dim)

    @property
    def reader_trainable(self):
        """False once `load_reader` froze the reader (then no loss should train it)."""
        return self._reader_network.trainable

    def with_edits(self, inputs, training=None):
        """`(image, edits)` for `inputs = [image, condition]`: what `self(inputs)` returns and the per-AU edit images
        `[B, H, W, 3 * cond_dim]` float32 (AU k's in channels 3k..3k+2), before they are scaled by the change."""
        output, fields = self._with_edits(inputs, training=training)
        return output, keras.ops.cast(fields, "float32")

    def read_action_units(self, image, training=None):
        """The reader's AU intensities `[B, cond_dim]` float32 of `image` (its layers and weights are this model's)."""
        return self._reader(image, training=training)

    @property
    def reader_variables(self):
        """The reader's trainable variables (none once frozen; only its own loss should move them)."""
        return self._reader_network.trainable_variables
