"""Config and `.keras` round trips and the mixed_float16 output dtype: tests/models/test_harness.py."""
import keras
import numpy as np
import pytest

from expr3d.models import PatchCritic


def _image(batch=2, size=32, channels=3, seed=0):
    return np.random.default_rng(seed).uniform(-1, 1, (batch, size, size, channels)).astype("float32")


@pytest.mark.parametrize(
    "size,num_classes,conv_dim,num_layers",
    [(32, 8, 8, 3), (32, 2, 4, 5), (16, 8, 8, 4), (64, 3, 4, 4)],
)
def test_output_shapes_and_dtypes(size, num_classes, conv_dim, num_layers):
    d = PatchCritic(size, num_classes, conv_dim=conv_dim, num_layers=num_layers)
    src, cls = d(_image(batch=3, size=size))
    patch = size // 2**num_layers
    assert tuple(src.shape) == (3, patch, patch, 1)
    assert tuple(cls.shape) == (3, num_classes)
    assert keras.backend.standardize_dtype(src.dtype) == "float32"
    assert keras.backend.standardize_dtype(cls.dtype) == "float32"


def test_architecture_matches_stargan():
    d = PatchCritic(32, 8, conv_dim=8, num_layers=3)
    main = [d.get_layer(f"conv{i}") for i in range(3)]
    assert [l.kernel.shape for l in main] == [(4, 4, 3, 8), (4, 4, 8, 16), (4, 4, 16, 32)]
    assert all(l.use_bias and l.strides == (2, 2) for l in main)
    assert all(d.get_layer(f"lrelu{i}").negative_slope == pytest.approx(0.01) for i in range(3))
    src, cls = d.get_layer("src_conv"), d.get_layer("cls_conv")
    assert src.kernel.shape == (3, 3, 32, 1) and not src.use_bias
    assert cls.kernel.shape == (4, 4, 32, 8) and not cls.use_bias and cls.padding == "valid"
    assert not any(isinstance(l, keras.layers.GroupNormalization) for l in d.layers)


def test_full_size_parameter_count():
    # StarGAN's D at 128 px, c_dim 5: six biased convs (44,702,656) + src (18,432) + cls (40,960).
    assert PatchCritic(128, 5).count_params() == 44_762_048


def test_geometry_input_channels():
    d = PatchCritic(32, 8, conv_dim=4, num_layers=3, input_channels=1)
    src, cls = d(_image(size=32, channels=1))
    assert tuple(cls.shape) == (2, 8)


def test_image_size_must_fit_num_layers():
    with pytest.raises(ValueError, match="num_layers=6 needs image_size divisible by 64; got image_size=32"):
        PatchCritic(32, 8, num_layers=6)
    with pytest.raises(ValueError, match="num_classes"):
        PatchCritic(32, 0, num_layers=3)


def test_mixed_bfloat16_outputs_float32():
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        d = PatchCritic(32, 8, conv_dim=8, num_layers=3)
        assert d.get_layer("conv0").compute_dtype == "bfloat16"
        src, cls = d(_image())
        assert keras.backend.standardize_dtype(src.dtype) == "float32"
        assert keras.backend.standardize_dtype(cls.dtype) == "float32"
    finally:
        keras.mixed_precision.set_global_policy("float32")


SMALL_OUTPUT_CASES = [
    # (input size, channels in, filters, kernel, stride, padding): outputs of 1, 2 or 4 positions
    (2, 16, 8, 4, 2, "same"),    # the critic's last stride-2 layer: 2x2 -> 1x1, padding 1 on each side
    (4, 8, 8, 4, 2, "same"),     # 4x4 -> 2x2
    (3, 4, 5, 4, 2, "same"),     # odd input: asymmetric padding (TensorFlow puts the extra pixel last)
    (1, 8, 1, 3, 1, "same"),     # the src head on a 1x1 map
    (2, 8, 8, 2, 1, "valid"),    # the cls head: kernel = the whole remaining map
    (3, 4, 6, 2, 1, "valid"),    # 3x3 valid 2x2 -> 2x2 outputs
]


@pytest.mark.parametrize("size,channels,filters,kernel,stride,padding", SMALL_OUTPUT_CASES)
def test_small_output_conv_equals_conv2d_to_second_order(size, channels, filters, kernel, stride, padding):
    """Outputs, input/weight gradients, and the gradient-penalty double backward match keras' Conv2D."""
    import numpy as np
    import tensorflow as tf

    from expr3d.models.discriminator import matmul_small_outputs

    kwargs = dict(filters=filters, kernel_size=kernel, strides=stride, padding=padding)
    reference, matmul = keras.layers.Conv2D(**kwargs), matmul_small_outputs(keras.layers.Conv2D(**kwargs))
    x = tf.constant(np.random.default_rng(size).normal(size=(3, size, size, channels)), tf.float32)
    reference.build(x.shape)
    matmul.build(x.shape)
    matmul.set_weights([w + 0.1 * np.random.default_rng(1).normal(size=w.shape) for w in reference.get_weights()])
    reference.set_weights(matmul.get_weights())

    def penalty_and_gradients(layer):
        with tf.GradientTape() as outer:
            with tf.GradientTape() as inner:
                inner.watch(x)
                y = layer(x)
                total = tf.reduce_sum(tf.nn.leaky_relu(y, 0.01) * tf.range(1.0, filters + 1.0))
            gx = inner.gradient(total, x)
            penalty = tf.reduce_mean((tf.norm(tf.reshape(gx, [3, -1]), axis=1) - 1.0) ** 2)
        return [y, gx, penalty] + outer.gradient(penalty, layer.trainable_variables)

    assert matmul.compute_output_shape(x.shape) == reference(x).shape
    for a, b in zip(penalty_and_gradients(matmul), penalty_and_gradients(reference)):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-4, atol=1e-5)


def test_small_output_conv_keeps_the_convolution_for_large_outputs():
    """Above MATMUL_MAX_POSITIONS outputs the layer is an ordinary Conv2D (no patch stacking in the graph)."""
    import tensorflow as tf

    from expr3d.models.discriminator import matmul_small_outputs

    layer = matmul_small_outputs(keras.layers.Conv2D(4, 4, strides=2, padding="same"))
    graph = tf.function(layer).get_concrete_function(tf.TensorSpec([2, 8, 8, 3])).graph
    ops_used = {op.type for op in graph.get_operations()}
    assert "Conv2D" in ops_used and "Pack" not in ops_used and "MatMul" not in ops_used
    graph = tf.function(layer).get_concrete_function(tf.TensorSpec([2, 4, 4, 3])).graph  # 2x2 outputs
    ops_used = {op.type for op in graph.get_operations()}
    assert "Conv2D" not in ops_used and "MatMul" in ops_used
