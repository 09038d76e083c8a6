"""Inference clones of the generators for export: instance norm as a plain 4-D op that TFLite/XNNPACK runs fast.

Training keeps Keras' `GroupNormalization(groups=-1)` (expr3d.models.blocks). That layer reshapes [B,H,W,C] to
[B,H,W,C,1] and reduces over a 5-D tensor; TFLite lowers it to RESHAPE + 5-D MEAN + arithmetic that XNNPACK does not
delegate, so a converted generator runs those ops on TFLite's reference kernels, between delegated convolutions (and,
fully quantised, requantises around each). The clone computes the same function with 4-D ops over axes (1, 2) only,
which XNNPACK delegates.

The decoder's `Conv2DTranspose(kernel 4, stride 2, "same")` is the other break: with a dynamic batch its output shape
is computed at run time (SHAPE -> PACK -> TRANSPOSE_CONV), which XNNPACK does not delegate either, so the two largest
layers ran on TFLite's own kernels (and, int8 dynamic-range, on its slow hybrid kernel). The clone computes each as a
3x3 convolution to 4x the channels followed by a depth-to-space shuffle (SubPixelUpsampling): the same sums of the
same products, rearranged, all delegated.
"""
import keras
from keras import ops

# Worst absolute output difference accepted between the original generator and its clone (tanh outputs in [-1, 1]);
# both run float32, so only the summation order of the statistics differs.
CLONE_TOLERANCE = 1e-4


@keras.saving.register_keras_serializable(package="expr3d")
class InstanceNormalization(keras.layers.Layer):
    """Affine instance normalisation of `[B, H, W, C]` with 4-D ops: statistics over axes (1, 2) per image and channel.

    Numerically the same function as `keras.layers.GroupNormalization(groups=-1)` on channels-last images (same
    gamma/beta shapes, same epsilon), written without the 5-D reshape so TFLite's XNNPACK delegate runs it.

    Args:
        epsilon: added to the variance.
        **kwargs: standard layer arguments (`name`, `dtype`, ...).

    Example:
    >>> layer = InstanceNormalization(epsilon=1e-5)
    >>> layer(keras.ops.ones((2, 8, 8, 4))).shape
    (2, 8, 8, 4)
    """

    def __init__(self, epsilon=1e-3, **kwargs):
        super().__init__(**kwargs)
        self.epsilon = epsilon

    def build(self, input_shape):
        channels = input_shape[-1]
        if channels is None:
            raise ValueError(f"{self.name}: the channel axis of the input must be known; got shape {input_shape}")
        self.gamma = self.add_weight(shape=(channels,), initializer="ones", name="gamma")
        self.beta = self.add_weight(shape=(channels,), initializer="zeros", name="beta")

    def call(self, inputs):
        x = ops.cast(inputs, "float32")  # like GroupNormalization: statistics in float32 whatever the policy
        mean = ops.mean(x, axis=(1, 2), keepdims=True)
        variance = ops.mean(ops.square(x - mean), axis=(1, 2), keepdims=True)
        scale = ops.rsqrt(variance + self.epsilon) * ops.cast(self.gamma, "float32")
        # x * scale + (beta - mean * scale): one multiply-add per pixel, as GroupNormalization folds it.
        out = x * scale + (ops.cast(self.beta, "float32") - mean * scale)
        return ops.cast(out, self.compute_dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return dict(super().get_config(), epsilon=self.epsilon)


@keras.saving.register_keras_serializable(package="expr3d")
class SubPixelUpsampling(keras.layers.Layer):
    """x2 up-sampling as a 3x3 convolution to `4 * filters` channels + depth-to-space, computing exactly what
    `Conv2DTranspose(filters, 4, strides=2, padding="same")` computes.

    With TensorFlow's "same" padding the transposed convolution's even output rows read input rows (m-1, m) with
    kernel rows (3, 1) and its odd rows read (m, m+1) with kernel rows (2, 0) (columns alike), so each of the four
    output phases is a 3x3 convolution with some taps zero; `from_transposed_kernel` builds that kernel.

    Args:
        filters: output channels.
        use_bias: add a bias per output channel.
        **kwargs: standard layer arguments (`name`, `dtype`, ...).

    Example:
    >>> layer = SubPixelUpsampling(4)
    >>> layer(keras.ops.ones((1, 8, 8, 2))).shape
    (1, 16, 16, 4)
    """

    # (output phase, input offset - 1 .. + 1) -> kernel index of the transposed 4x4 kernel, or None (zero tap).
    _TAPS = {0: (3, 1, None), 1: (None, 2, 0)}

    def __init__(self, filters, use_bias=False, **kwargs):
        super().__init__(**kwargs)
        self.filters = filters
        self.use_bias = use_bias

    def build(self, input_shape):
        channels = input_shape[-1]
        self.kernel = self.add_weight(shape=(3, 3, channels, 4 * self.filters), initializer="glorot_uniform",
                                      name="kernel")
        self.bias = self.add_weight(shape=(self.filters,), initializer="zeros", name="bias") if self.use_bias else None

    def call(self, inputs):
        y = ops.conv(inputs, ops.cast(self.kernel, inputs.dtype), strides=1, padding="same")
        y = ops.depth_to_space(y, 2)
        if self.bias is not None:
            y = y + ops.cast(self.bias, y.dtype)
        return y

    def compute_output_shape(self, input_shape):
        double = lambda n: None if n is None else 2 * n  # noqa: E731
        return (input_shape[0], double(input_shape[1]), double(input_shape[2]), self.filters)

    @classmethod
    def from_transposed_kernel(cls, kernel):
        """The [3, 3, in, 4 * out] kernel equivalent to a Conv2DTranspose kernel [4, 4, out, in] (stride 2, same)."""
        import numpy as np

        kernel = np.asarray(kernel)
        _, _, filters, channels = kernel.shape
        out = np.zeros((3, 3, channels, 4 * filters), kernel.dtype)
        for dy in (0, 1):
            for dx in (0, 1):
                phase = slice((2 * dy + dx) * filters, (2 * dy + dx + 1) * filters)  # depth_to_space's order
                for a, kr in enumerate(cls._TAPS[dy]):
                    for b, kc in enumerate(cls._TAPS[dx]):
                        if kr is not None and kc is not None:
                            out[a, b, :, phase] = kernel[kr, kc].T
        return out

    def get_config(self):
        return dict(super().get_config(), filters=self.filters, use_bias=self.use_bias)


def is_instance_norm(layer):
    """Whether `layer` is a channels-last affine GroupNormalization with one group per channel."""
    return (isinstance(layer, keras.layers.GroupNormalization) and layer.axis in (-1, 3) and layer.scale
            and layer.center and (layer.groups == -1 or layer.groups == layer.gamma.shape[0]))


def is_subpixel_transpose(layer):
    """Whether `layer` is a channels-last Conv2DTranspose(kernel 4, stride 2, "same") without activation."""
    return (isinstance(layer, keras.layers.Conv2DTranspose) and tuple(layer.kernel_size) == (4, 4)
            and tuple(layer.strides) == (2, 2) and layer.padding == "same" and tuple(layer.dilation_rate) == (1, 1)
            and layer.data_format == "channels_last" and layer.activation is keras.activations.linear
            and layer.output_padding is None)


def _swap(layer):
    if is_instance_norm(layer):
        return InstanceNormalization(epsilon=layer.epsilon, name=layer.name, dtype=layer.dtype_policy)
    if is_subpixel_transpose(layer):
        return SubPixelUpsampling(layer.filters, use_bias=layer.use_bias, name=layer.name, dtype=layer.dtype_policy)
    return layer.__class__.from_config(layer.get_config())


def inference_clone(model, check_inputs=None, tolerance=CLONE_TOLERANCE):
    """A functional copy of `model` (same weights) with every instance-norm GroupNormalization replaced by
    InstanceNormalization and every 4x4 stride-2 Conv2DTranspose by SubPixelUpsampling; verified against `model` on
    `check_inputs` when given.

    Args:
        model: a functional Keras model (StarGANGenerator, AttentionGenerator, DepthTranslator, TransferEncoder,
            TransferDecoder).
        check_inputs: inputs to compare the two on (a list, as for `model(...)`), or None.
        tolerance: largest absolute output difference accepted (RuntimeError beyond it).

    Returns:
        (clone, max_abs_difference or None).
    """
    import numpy as np

    clone = keras.models.clone_model(model, clone_function=_swap)
    clone.name = model.name
    originals = {layer.name: layer for layer in model.layers}
    for layer in clone.layers:
        source = originals[layer.name]
        if isinstance(layer, InstanceNormalization):
            layer.gamma.assign(source.gamma)
            layer.beta.assign(source.beta)
        elif isinstance(layer, SubPixelUpsampling):
            layer.kernel.assign(SubPixelUpsampling.from_transposed_kernel(source.kernel.numpy()))
            if layer.use_bias:
                layer.bias.assign(source.bias)
        else:
            layer.set_weights(source.get_weights())
    difference = None
    if check_inputs is not None:
        # Every output (the transfer encoder has three).
        expected = keras.tree.flatten(model(check_inputs, training=False))
        got = keras.tree.flatten(clone(check_inputs, training=False))
        difference = max(float(np.abs(np.asarray(e) - np.asarray(g)).max()) for e, g in zip(expected, got))
        if not difference <= tolerance:
            raise RuntimeError(f"inference clone of {model.name} differs from the model by {difference:.3g} "
                               f"(> {tolerance:g})")
    return clone, difference


def count_replaceable(model):
    """{"group_norm", "instance_norm", "conv_transpose", "subpixel"}: counts of the swapped layer kinds in `model`."""
    layers = model.layers
    return {"group_norm": sum(is_instance_norm(layer) for layer in layers),
            "instance_norm": sum(isinstance(layer, InstanceNormalization) for layer in layers),
            "conv_transpose": sum(is_subpixel_transpose(layer) for layer in layers),
            "subpixel": sum(isinstance(layer, SubPixelUpsampling) for layer in layers)}


def inference_generators(g_rgb, g_depth, image_size, seed=0):
    """Inference clones of a run's generators, each verified on seeded random inputs at `image_size`.

    Returns (g_rgb clone or None, g_depth clone or None, {name: max abs difference}).
    """
    import numpy as np

    from expr3d.labels import NUM_EXPRESSIONS

    rng = np.random.default_rng(seed)
    images = rng.uniform(-1.0, 1.0, (2, image_size, image_size, 3)).astype(np.float32)
    differences = {}
    clones = []
    # G_rgb's condition: one-hot expressions, or (an AU-conditioned run) intensities of its condition's length.
    width = int(g_rgb.inputs[1].shape[-1]) if g_rgb is not None else NUM_EXPRESSIONS
    condition = (np.eye(NUM_EXPRESSIONS, dtype=np.float32)[[1, 6]] if width == NUM_EXPRESSIONS
                 else rng.uniform(0.0, 1.0, (2, width)).astype(np.float32))
    for model, conditions in ((g_rgb, condition),
                              (g_depth, np.array([[1.0, 0.0], [0.0, 1.0]], np.float32))):
        if model is None:
            clones.append(None)
            continue
        clone, differences[model.name] = inference_clone(model, [images, conditions])
        clones.append(clone)
    return clones[0], clones[1], differences


def inference_transfer(encoder, decoder, g_depth, image_size, seed=0):
    """Inference clones of a transfer run's networks, each verified on seeded random inputs at `image_size` (the
    decoder on the encoder's own outputs, swapped).

    Returns (encoder clone, decoder clone, g_depth clone or None, {name: max abs difference}).
    """
    import numpy as np

    rng = np.random.default_rng(seed)
    images = rng.uniform(-1.0, 1.0, (2, image_size, image_size, 3)).astype(np.float32)
    differences = {}
    encoder_clone, differences[encoder.name] = inference_clone(encoder, images)
    code, free, _ = encoder(images, training=False)
    # All numpy: Keras refuses a nested call argument that mixes tensors and arrays.
    decoder_inputs = [np.asarray(free), np.asarray(code)[::-1].copy(), images]
    decoder_clone, differences[decoder.name] = inference_clone(decoder, decoder_inputs)
    depth_clone = None
    if g_depth is not None:
        depth_clone, differences[g_depth.name] = inference_clone(
            g_depth, [images, np.array([[1.0, 0.0], [0.0, 1.0]], np.float32)])
    return encoder_clone, decoder_clone, depth_clone, differences
