"""Analytic FLOP counts of a model's forward pass, from its layer shapes.

Counts multiply-accumulates of `Conv2D`, `Conv2DTranspose` and `Dense` layers
(2 FLOPs per MAC), which are all but a fraction of a percent of the arithmetic
of the StarGAN networks; normalisation, activations, bias adds and the
condition tiling are not counted. Use the figures for achieved-FLOP/s ratios (bench_train, bench_evaluate; no
production code counts FLOPs, so this lives with the benchmarks).
"""

import keras
import numpy as np

_COUNTED = (keras.layers.Conv2D, keras.layers.Conv2DTranspose, keras.layers.Dense)


def layer_macs(layer, input_shape, output_shape):
    """Multiply-accumulates of one counted layer for the given (batched) shapes."""
    if isinstance(layer, keras.layers.Conv2DTranspose):
        # Every input pixel scatters a kh x kw x out_channels patch.
        kh, kw, out_channels, in_channels = layer.kernel.shape
        batch, h, w = input_shape[0], input_shape[1], input_shape[2]
        return batch * h * w * in_channels * kh * kw * out_channels
    if isinstance(layer, keras.layers.Conv2D):
        kh, kw, in_per_group, out_channels = layer.kernel.shape
        batch, h, w = output_shape[0], output_shape[1], output_shape[2]
        return batch * h * w * out_channels * kh * kw * in_per_group
    if isinstance(layer, keras.layers.Dense):
        in_features, out_features = layer.kernel.shape
        return int(np.prod(input_shape[:-1])) * in_features * out_features
    raise TypeError(f"layer_macs: {type(layer).__name__} is not counted")


def _all_layers(model):
    """Every layer under `model`, nested models and layers included."""
    seen, stack, found = set(), [model], []
    while stack:
        layer = stack.pop()
        if id(layer) in seen:
            continue
        seen.add(id(layer))
        found.append(layer)
        stack.extend(getattr(layer, "_layers", []))
    return found


def forward_flops(model, input_shapes, per_layer=False):
    """FLOPs (2 per MAC) of one forward pass of `model` at the given input shapes.

    The shapes of each convolution's input and output are measured by running
    the model once eagerly on zeros with batch size 1 (the count is linear in
    the batch size, which is then multiplied in).

    Args:
        model: a built Keras model (any nesting of layers).
        input_shapes: the model's input shape(s) including the batch dimension,
            e.g. `[(8, 128, 128, 3), (8, 8)]` for a generator and
            `(8, 128, 128, 3)` for a critic.
        per_layer: also return `{layer path: flops}`.

    Returns:
        Total FLOPs as an int, or `(total, per_layer_dict)`.

    Example:
    >>> critic = PatchCritic(image_size=32, num_classes=8, conv_dim=8, num_layers=3)
    >>> forward_flops(critic, (4, 32, 32, 3)) > 0
    True
    """
    single = isinstance(input_shapes[0], int)
    shapes = [tuple(input_shapes)] if single else [tuple(s) for s in input_shapes]
    batch = shapes[0][0]
    if any(s[0] != batch for s in shapes):
        raise ValueError(f"forward_flops: inputs disagree on the batch size: {shapes}")
    inputs = [np.zeros((1,) + s[1:], dtype="float32") for s in shapes]

    counted = [layer for layer in _all_layers(model) if isinstance(layer, _COUNTED)]
    records = []
    originals = {}

    def recording(layer, call):
        def wrapped(x, *args, **kwargs):
            y = call(x, *args, **kwargs)
            records.append((layer, tuple(x.shape), tuple(y.shape)))
            return y

        return wrapped

    try:
        for layer in counted:
            originals[id(layer)] = layer.__dict__.get("call")
            # An instance attribute shadows the class's `call` for this run only.
            object.__setattr__(layer, "call", recording(layer, layer.call))
        model(inputs[0] if single else inputs, training=False)
    finally:
        for layer in counted:
            original = originals[id(layer)]
            if original is None:
                object.__delattr__(layer, "call")
            else:
                object.__setattr__(layer, "call", original)

    total, breakdown = 0, {}
    for layer, in_shape, out_shape in records:
        flops = 2 * batch * layer_macs(layer, in_shape, out_shape)
        total += flops
        breakdown[layer.path] = breakdown.get(layer.path, 0) + flops
    return (total, breakdown) if per_layer else total
