"""The exemplar expression-transfer networks (Shao et al., TIP 2021; issue #13): an encoder that splits a face into
an AU-related code and an AU-free map, a decoder that recombines them, and the AU adversary that disentangles them.

    code_A, free_A, aus_A = encoder(A)          code: [B, code_dim]; free: [B, H/2^d, W/2^d, C]; aus: [B, 17]
    A_with_B's_expression = decoder([free_A, code_B, A])

Shao et al. publish no code and give no layer table, so the shapes here are our choices (docs/transfer.md):
- The AU-related feature is a global vector (pooled), the AU-free one a spatial map. An expression is the same
  whatever the pose; a spatial AU-related map would carry the exemplar's face position into A's face. The decoder
  takes the code the way StarGAN's generator takes its target label: tiled over the map. With
  `code="action_units"` (`--transfer_code`, ours, session 26) the code IS the 17 predicted AU intensities: an
  explicit representation that carries nothing of the exemplar but its AUs. With `code="guide"` (ours, session 35)
  those intensities are read by a frozen copy of the run's AU guide inside the encoder (`load_reader`).
- The decoder ends in GANimation's attention blend with the source image (`M * C + (1 - M) * A`, `M` the edited
  fraction), as the project's attention generators: hair, background and the face's outline are copied, not redrawn.
- The adversary reads the AU-free map and classifies each AU's intensity into `num_bins` bins ("multi-class"
  adversarial training, after the first author's ADLD code): it learns the true bins, the encoder is trained to push
  its per-AU softmax to uniform (`losses.au_confusion_loss`).
"""

import keras

CODES = ("learned", "action_units", "guide")  # what the encoder's AU-related code is (`TransferEncoder(code=...)`)
TRUNKS = ("shared", "split")  # whether the code and the AU-free map share the encoder's trunk (`trunks=...`)

from expr3d.labels import NUM_ACTION_UNITS
from expr3d.models.attention_generator import AttentionWarpGenerator
from expr3d.models.blocks import (AttentionCombine, ConditionConcat, FlowWarp, conditioned, instance_norm,
                                  residual_block, serializable_dtype)


def _check_sizes(owner, **sizes):
    for field, value in sizes.items():
        minimum = 0 if field == "num_res_blocks" else 1
        if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
            raise ValueError(f"{owner}: {field} must be an integer >= {minimum}; got {value!r}")


def _conv_norm_relu(x, filters, kernel, strides, name, dtype, transpose=False, condition=None):
    """conv - IN - ReLU; with `condition` (a `[B, D]` tensor), the norm's scale and offset also follow it
    (`expr3d.models.blocks.ConditionalAffine`, `--condition_norms`)."""
    layer = keras.layers.Conv2DTranspose if transpose else keras.layers.Conv2D
    x = layer(filters, kernel, strides=strides, padding="same", use_bias=False, name=f"{name}_conv", dtype=dtype)(x)
    x = conditioned(instance_norm(f"{name}_norm", dtype)(x), condition, f"{name}_norm", dtype)
    return keras.layers.ReLU(name=f"{name}_relu", dtype=dtype)(x)


class _KeptArguments:
    """Keeps the constructor's arguments and serialises them (`get_config` / `from_config`); a mixin before
    `keras.Model`."""

    def _keep(self, **arguments):
        arguments["dtype"] = serializable_dtype(arguments.get("dtype"))
        self._arguments = arguments

    def get_config(self):
        return {"name": self.name, "trainable": self.trainable, **self._arguments}

    @classmethod
    def from_config(cls, config):
        return cls(**config)


@keras.saving.register_keras_serializable(package="expr3d")
class TransferEncoder(_KeptArguments, keras.Model):
    """Face -> `(code, free, action_units)`.

    conv7x7(conv_dim)-IN-ReLU, `num_down` x [conv4x4 stride 2, channels x2, IN, ReLU], `num_res_blocks` residual
    blocks: the shared trunk. AU-free map: one more residual block then conv1x1 to `free_channels`. AU-related code:
    conv3x3-IN-ReLU, global mean, dense to `code_dim`. AU intensities in [0, 1]: sigmoid(dense(code)) - the code
    must predict them (the encoder's AU regression term).

    With `code="guide"` (`--transfer_code=guide`, ours, session 35) the code is the 17 AU intensities read by the AU
    judge's network (`build_classifier`, width `reader_width`, no dropout) and a sigmoid, a copy of the run's AU guide
    frozen by `load_reader`: the trunk serves the AU-free map alone. Why: the encoder's own AU head, trained within
    a run, read the exemplar's AUs at MAE 0.188 (session 35, split trunks); the guide, a regressor of the same faces
    trained alone for 40 epochs, at 0.031.

    With `trunks="split"` (`--transfer_encoder=split`, ours, session 34) the AU-free map has a trunk of its own (the
    same layers, named `free_trunk_*`) and the code keeps the one above: a term on the map alone (the adversary's
    confusion, `--lambda_free_invariance`) then reaches none of the code's weights. Session 33: with the shared trunk
    the invariance term took the code's AU information too (code R^2 0.916 -> 0.067).

    Args:
        conv_dim, num_down, num_res_blocks: trunk sizes (as `StarGANGenerator`'s encoder).
        code_dim: length of the AU-related code ("learned"; with "action_units" it is `num_action_units`).
        free_channels: channels of the AU-free map.
        num_action_units: AU intensities predicted from the code (17, `expr3d.labels.ACTION_UNITS`).
        code: "learned" (a `code_dim` vector from which a dense layer predicts the AUs), "action_units" (the
            code is the predicted AU intensities themselves: dense to `num_action_units`, sigmoid) or "guide" (those
            intensities read by a frozen AU guide's network, `load_reader`; `trunks` must be "shared").
        dtype: dtype policy of the layers; `None` uses the global policy. The three outputs are float32.
        trunks: "shared" (one trunk, above) or "split" (the AU-free map's own trunk). Encoders saved before it
            existed load as "shared".

    Example:
    >>> code, free, aus = TransferEncoder(conv_dim=8, num_down=2, num_res_blocks=1, code_dim=16)(
    ...     keras.ops.zeros((2, 32, 32, 3)))
    >>> code.shape, free.shape, aus.shape
    ((2, 16), (2, 8, 8, 32), (2, 17))
    """

    def __init__(self, conv_dim=64, num_down=2, num_res_blocks=3, code_dim=64, free_channels=None,
                 num_action_units=NUM_ACTION_UNITS, code="learned", dtype=None, trunks="shared", reader_width=16,
                 **kwargs):
        free_channels = conv_dim * 2**num_down if free_channels is None else free_channels
        code_kind = code
        if code_kind not in CODES:
            raise ValueError(f"{type(self).__name__}: code must be one of {CODES}; got {code_kind!r}")
        if trunks not in TRUNKS:
            raise ValueError(f"{type(self).__name__}: trunks must be one of {TRUNKS}; got {trunks!r}")
        if code_kind == "guide" and trunks != "shared":
            raise ValueError(f"{type(self).__name__}: code='guide' reads the AUs with a network of its own; the trunk "
                             f"serves the AU-free map alone, so trunks must be 'shared'; got {trunks!r}")
        if code_kind != "learned":
            code_dim = num_action_units
        _check_sizes(type(self).__name__, conv_dim=conv_dim, num_down=num_down, num_res_blocks=num_res_blocks,
                     code_dim=code_dim, free_channels=free_channels, num_action_units=num_action_units)
        image = keras.Input(shape=(None, None, 3), name="image")
        x, filters = _encoder_trunk(image, conv_dim, num_down, num_res_blocks, "", dtype)
        free = x if trunks == "shared" else _encoder_trunk(image, conv_dim, num_down, num_res_blocks, "free_trunk_",
                                                           dtype)[0]
        free = residual_block(free, filters, name="free_res", dtype=dtype)
        free = keras.layers.Conv2D(free_channels, 1, name="free_conv", dtype=dtype)(free)
        free = keras.layers.Activation("linear", dtype="float32", name="free")(free)

        self._reader_network = None
        if code_kind == "guide":
            from expr3d.metrics.expression_classifier import build_classifier

            _check_sizes(type(self).__name__, reader_width=reader_width)
            self._reader_network = build_classifier(None, num_classes=num_action_units, width=reader_width,
                                                    dropout=0.0)
            self._reader_network.name = "code_reader"
            action_units = keras.layers.Activation("sigmoid", dtype="float32", name="action_units")(
                self._reader_network(image))
            code = keras.layers.Activation("linear", dtype="float32", name="code")(action_units)
        else:
            code = _conv_norm_relu(x, filters, 3, 1, "code", dtype)
            code = keras.layers.GlobalAveragePooling2D(name="code_pool", dtype=dtype)(code)
            if code_kind == "action_units":
                action_units = keras.layers.Dense(num_action_units, name="au_dense", dtype=dtype)(code)
                action_units = keras.layers.Activation("sigmoid", dtype="float32", name="action_units")(action_units)
                code = keras.layers.Activation("linear", dtype="float32", name="code")(action_units)
            else:
                code = keras.layers.Dense(code_dim, name="code_dense", dtype=dtype)(code)
                code = keras.layers.Activation("linear", dtype="float32", name="code")(code)
                action_units = keras.layers.Dense(num_action_units, name="au_dense", dtype=dtype)(code)
                action_units = keras.layers.Activation("sigmoid", dtype="float32", name="action_units")(action_units)
        super().__init__(inputs=image, outputs=[code, free, action_units], **kwargs)
        self._keep(conv_dim=conv_dim, num_down=num_down, num_res_blocks=num_res_blocks, code_dim=code_dim,
                   free_channels=free_channels, num_action_units=num_action_units, code=code_kind, dtype=dtype,
                   trunks=trunks, reader_width=reader_width)

    def load_reader(self, regressor):
        """`code="guide"`: copies an AU regressor's weights (an AU guide's or judge's keras model of logits, compact
        network of width `reader_width`) into the code's reader and freezes it; ValueError naming the width when it is
        another network."""
        if self._reader_network is None:
            raise ValueError(f"{self.name}: only an encoder with code='guide' has a reader to load")
        from expr3d.models.action_unit_edit_generator import copy_frozen_reader

        copy_frozen_reader(self._reader_network, regressor, self.name, self._arguments["reader_width"],
                           self._arguments["num_action_units"])


def _encoder_trunk(image, conv_dim, num_down, num_res_blocks, prefix, dtype):
    """conv7x7-IN-ReLU, `num_down` x [conv4x4 stride 2, channels x2, IN, ReLU], residual blocks: (features,
    channels). The shared trunk's layer names have no prefix (the saved encoders'; do not rename)."""
    x = _conv_norm_relu(image, conv_dim, 7, 1, f"{prefix}stem", dtype)
    filters = conv_dim
    for i in range(num_down):
        filters *= 2
        x = _conv_norm_relu(x, filters, 4, 2, f"{prefix}down{i}", dtype)
    for i in range(num_res_blocks):
        x = residual_block(x, filters, name=f"{prefix}res{i}", dtype=dtype)
    return x, filters


def _decode_to_attention(x, source, filters, num_res_blocks, num_down, dtype, condition=None, warp=False):
    """Both decoders' common end, from the joined bottleneck `x` (`filters` channels): `num_res_blocks` residual
    blocks, `num_down` x [transposed conv4x4 stride 2, channels /2, IN, ReLU], the 7x7 colour (tanh) and edit-mask
    (sigmoid) heads and `M * C + (1 - M) * source`. Returns (output, mask, colour, the image blended into); the layer
    names are the saved models' (do not rename). `condition`: the code, when it also sets every norm's scale and
    offset. `warp`: a 7x7 flow head (zero at start) moves the source first (`FlowWarp`, as
    `AttentionWarpGenerator`'s), and the mask blends into the moved source."""
    for i in range(num_res_blocks):
        x = residual_block(x, filters, name=f"res{i}", dtype=dtype, condition=condition)
    for i in range(num_down):
        filters //= 2
        x = _conv_norm_relu(x, filters, 4, 2, f"up{i}", dtype, transpose=True, condition=condition)
    colour = keras.layers.Conv2D(3, 7, padding="same", use_bias=False, name="colour_conv", dtype=dtype)(x)
    colour = keras.layers.Activation("tanh", dtype="float32", name="colour_tanh")(colour)
    mask = keras.layers.Conv2D(1, 7, padding="same", name="attention_conv", dtype=dtype)(x)
    mask = keras.layers.Activation("sigmoid", dtype="float32", name="attention_sigmoid")(mask)
    if warp:
        flow = keras.layers.Conv2D(2, 7, padding="same", kernel_initializer="zeros", name="flow_conv",
                                   dtype=dtype)(x)
        flow = keras.layers.Activation("tanh", dtype="float32", name="flow_tanh")(flow)
        source = FlowWarp(AttentionWarpGenerator.FLOW_MAX_SHIFT, name="flow_warp", dtype="float32")([source, flow])
    output = AttentionCombine(name="attention_combine", dtype="float32")([source, colour, mask])
    return output, mask, colour, source


def _attention_decoder_graph(name, bottleneck, conv_dim, num_down, num_res_blocks, code_dim, free_channels, dtype,
                             condition_norms=False, warp=False):
    """Both decoders' graph: inputs `[free, code, source]`, `bottleneck(free, code, source, conv_dim, num_down,
    dtype, condition)` joins them, `_decode_to_attention` draws and blends; with `condition_norms` the code also
    sets the scale and offset of every norm from the join on (`condition`). Returns (inputs, (output, mask, colour),
    the arguments to keep); the caller builds itself with them (its own `super().__init__`: Keras swaps a functional
    subclass's base classes on its first construction)."""
    free_channels = conv_dim * 2**num_down if free_channels is None else free_channels
    _check_sizes(name, conv_dim=conv_dim, num_down=num_down, num_res_blocks=num_res_blocks, code_dim=code_dim,
                 free_channels=free_channels)
    free = keras.Input(shape=(None, None, free_channels), name="free")
    code = keras.Input(shape=(code_dim,), name="code")
    source = keras.Input(shape=(None, None, 3), name="source")
    condition = code if condition_norms else None
    x, filters = bottleneck(free, code, source, conv_dim, num_down, dtype, condition)
    outputs = _decode_to_attention(x, source, filters, num_res_blocks, num_down, dtype, condition, warp)
    kept = dict(conv_dim=conv_dim, num_down=num_down, num_res_blocks=num_res_blocks, code_dim=code_dim,
                free_channels=free_channels, dtype=dtype, condition_norms=bool(condition_norms))
    return [free, code, source], outputs, kept


@keras.saving.register_keras_serializable(package="expr3d")
class TransferDecoder(_KeptArguments, keras.Model):
    """`[free, code, source]` -> the face with `free`'s identity, pose and look and `code`'s expression.

    The code tiled over the AU-free map (StarGAN's condition concatenation), conv3x3 to the trunk's channels,
    `num_res_blocks` residual blocks, `num_down` x [transposed conv4x4 stride 2, channels /2, IN, ReLU], then two
    7x7 heads: colour `C = tanh(.)` and edit mask `M = sigmoid(.)`; output `M * C + (1 - M) * source`. `source` is
    the face `free` was encoded from (for a swap, A when decoding A with B's code).

    Args:
        conv_dim: channels after the last up-sampling (the encoder's `conv_dim`).
        num_down: up-sampling stages (the encoder's `num_down`).
        num_res_blocks: residual blocks after the code is joined.
        code_dim, free_channels: the encoder's output sizes.
        dtype: dtype policy of the layers; `None` uses the global policy.
        condition_norms: the code also sets the scale and offset of every instance norm from the join on
            (`expr3d.models.blocks.ConditionalAffine`, `--condition_norms`, ours): a code tiled over a map reaches
            the features through a norm only at the map's border and through the norm's statistics. False in
            decoders saved before it existed.

    `call` returns the image; `with_attention` returns `(image, mask, colour)` from the same layers.
    """

    def __init__(self, conv_dim=64, num_down=2, num_res_blocks=3, code_dim=64, free_channels=None, dtype=None,
                 condition_norms=False, **kwargs):
        inputs, outputs, kept = _attention_decoder_graph(type(self).__name__, self._bottleneck, conv_dim, num_down,
                                                         num_res_blocks, code_dim, free_channels, dtype,
                                                         condition_norms, self.WARP)
        super().__init__(inputs=inputs, outputs=outputs[0], **kwargs)
        self._with_attention = keras.Model(inputs=inputs, outputs=list(outputs), name="with_attention")
        self._keep(**kept)

    WARP = False  # TransferGeneratorWarpDecoder: the source moved along a flow field before the blend

    @staticmethod
    def _bottleneck(free, code, source, conv_dim, num_down, dtype, condition=None):
        """The code tiled over the AU-free map, conv3x3: (bottleneck, its channels)."""
        filters = conv_dim * 2**num_down
        x = ConditionConcat(name="code_concat", dtype=dtype)([free, code])
        return _conv_norm_relu(x, filters, 3, 1, "join", dtype, condition=condition), filters

    def with_attention(self, inputs, training=None):
        """`(image, mask, colour)` for `inputs = [free, code, source]`; all float32."""
        return tuple(self._with_attention(inputs, training=training))[:3]

    def with_attention_and_source(self, inputs, training=None):
        """`(image, mask, colour, blended_into)`: the source, or the warp decoder's moved source."""
        return tuple(self._with_attention(inputs, training=training))


@keras.saving.register_keras_serializable(package="expr3d")
class TransferGeneratorDecoder(TransferDecoder):
    """`[free, code, source]` -> the face, as the AU-conditioned StarGAN draws it (`--transfer_decoder=generator`,
    ours, session 28): the code tiled over the SOURCE image at full resolution (StarGAN's input concatenation),
    conv7x7(conv_dim)-IN-ReLU, `num_down` x [conv4x4 stride 2, channels x2, IN, ReLU], the AU-free map joined there
    (concatenated, conv3x3), then `TransferDecoder`'s residual blocks, up-sampling and attention heads.

    Why: `TransferDecoder` meets the code only at the bottleneck, where the AU-free map already carries the
    source's expression (session 26: given the true render's own code it still missed B's AUs by 0.127, while the
    AU-conditioned StarGAN, conditioned at its input, puts another face's AUs on a face at 0.057). Here the code
    steers the down-sampling path too. `TransferDecoder` with another bottleneck: the same inputs, outputs and
    `with_attention`.
    """

    @staticmethod
    def _bottleneck(free, code, source, conv_dim, num_down, dtype, condition=None):
        """The code tiled over the source, stem and down-sampling, the AU-free map joined: (bottleneck, channels)."""
        x = ConditionConcat(name="code_concat", dtype=dtype)([source, code])
        x = _conv_norm_relu(x, conv_dim, 7, 1, "stem", dtype, condition=condition)
        filters = conv_dim
        for i in range(num_down):
            filters *= 2
            x = _conv_norm_relu(x, filters, 4, 2, f"down{i}", dtype, condition=condition)
        x = keras.layers.Concatenate(name="free_concat", dtype=dtype)([x, free])
        return _conv_norm_relu(x, filters, 3, 1, "join", dtype, condition=condition), filters


@keras.saving.register_keras_serializable(package="expr3d")
class TransferGeneratorWarpDecoder(TransferGeneratorDecoder):
    """`TransferGeneratorDecoder` that also moves the source's pixels along a learnt flow field before the blend
    (`--transfer_decoder=generator_warp`, ours, session 33), as `AttentionWarpGenerator` does for G_rgb: an
    expression's movements (brows, lip corners) drawn as movements rather than repainted. Same inputs and outputs;
    `with_attention_and_source` also returns the moved source (the paired term's edit region is measured against
    it)."""

    WARP = True


DECODERS = {"bottleneck": TransferDecoder, "generator": TransferGeneratorDecoder,
            "generator_warp": TransferGeneratorWarpDecoder}  # --transfer_decoder


@keras.saving.register_keras_serializable(package="expr3d")
class GridMeanPool(keras.layers.Layer):
    """`[B, H, W, C]` -> `[B, grid, grid, C]`: the mean over each cell of a `grid` x `grid` partition, a pixel split
    between the cells it straddles where H or W is not a multiple of `grid` (what an area resize computes). Written
    as two overlap matrices because TensorFlow's ResizeArea has no gradient, and the encoder trains through this."""

    def __init__(self, grid, **kwargs):
        super().__init__(**kwargs)
        self.grid = int(grid)

    def _overlaps(self, size, dtype):
        """`[grid, size]`: the share of pixel j in cell i, each row summing to 1."""
        ops = keras.ops
        size = ops.cast(size, "float32")
        cell = size / self.grid
        starts = ops.arange(self.grid, dtype="float32")[:, None] * cell
        pixels = ops.arange(ops.cast(size, "int32"), dtype="float32")[None, :]
        overlap = ops.minimum(starts + cell, pixels + 1.0) - ops.maximum(starts, pixels)
        return ops.cast(ops.maximum(overlap, 0.0) / cell, dtype)

    def call(self, x):
        shape = keras.ops.shape(x)
        rows, columns = self._overlaps(shape[1], x.dtype), self._overlaps(shape[2], x.dtype)
        return keras.ops.einsum("ih,bhwc,jw->bijc", rows, x, columns)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.grid, self.grid, input_shape[-1])

    def get_config(self):
        return {**super().get_config(), "grid": self.grid}


@keras.saving.register_keras_serializable(package="expr3d")
class AUAdversary(_KeptArguments, keras.Model):
    """AU-free map -> per-AU intensity-bin logits `[B, num_action_units, num_bins]`.

    `num_layers` x [conv3x3 (stride 2 from the second on), LeakyReLU(0.2)], then the readout, then dense. No
    normalisation: its inputs are the encoder's, whose statistics it must be able to read. Readouts (`readout`,
    `--adversary_readout`):
      "global": the global mean of the features (where a feature sits is lost);
      "grid": the features area-pooled to a `GRID` x `GRID` grid, flattened, dense(256)-LeakyReLU(0.2) (ours): it
        sees the map's layout as the disentanglement probe does (`expr3d.metrics.transfer_evaluation` reads AUs
        from the map pooled to 4 x 4). Why: a mouth feature at the mouth's place tells the AUs; a global mean of
        it need not, so a map can fool the "global" adversary and still leak its AUs to a probe
        (docs/transfer_history.md).

    Args:
        free_channels: channels of the AU-free map.
        conv_dim: channels of its convolutions.
        num_layers: convolutions.
        num_action_units, num_bins: output shape.
        dtype: dtype policy; `None` uses the global policy. The logits are float32.
        readout: "global" or "grid" (`READOUTS`), above.
    """

    READOUTS = ("global", "grid")
    GRID = 4
    GRID_HIDDEN = 256

    def __init__(self, free_channels, conv_dim=64, num_layers=2, num_action_units=NUM_ACTION_UNITS, num_bins=5,
                 dtype=None, readout="global", **kwargs):
        _check_sizes(type(self).__name__, free_channels=free_channels, conv_dim=conv_dim, num_layers=num_layers,
                     num_action_units=num_action_units, num_bins=num_bins)
        if num_bins < 2:
            raise ValueError(f"{type(self).__name__}: num_bins must be >= 2; got {num_bins}")
        if readout not in self.READOUTS:
            raise ValueError(f"{type(self).__name__}: readout must be one of {self.READOUTS}; got {readout!r}")
        free = keras.Input(shape=(None, None, free_channels), name="free")
        x = free
        for i in range(num_layers):
            x = keras.layers.Conv2D(conv_dim, 3, strides=1 if i == 0 else 2, padding="same", name=f"conv{i}",
                                    dtype=dtype)(x)
            x = keras.layers.LeakyReLU(0.2, name=f"lrelu{i}", dtype=dtype)(x)
        if readout == "grid":
            x = GridMeanPool(self.GRID, name="grid_pool", dtype=dtype)(x)
            x = keras.layers.Flatten(name="flatten", dtype=dtype)(x)
            x = keras.layers.Dense(self.GRID_HIDDEN, name="hidden_dense", dtype=dtype)(x)
            x = keras.layers.LeakyReLU(0.2, name="hidden_lrelu", dtype=dtype)(x)
        else:
            x = keras.layers.GlobalAveragePooling2D(name="pool", dtype=dtype)(x)
        x = keras.layers.Dense(num_action_units * num_bins, name="bins_dense", dtype=dtype)(x)
        x = keras.layers.Reshape((num_action_units, num_bins), name="bins", dtype=dtype)(x)
        logits = keras.layers.Activation("linear", dtype="float32", name="logits")(x)
        super().__init__(inputs=free, outputs=logits, **kwargs)
        self._keep(free_channels=free_channels, conv_dim=conv_dim, num_layers=num_layers,
                   num_action_units=num_action_units, num_bins=num_bins, dtype=dtype, readout=readout)
