import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from expr3d import losses


def _value(x):
    out = keras.ops.convert_to_numpy(x)
    assert out.shape == () and out.dtype == np.float32
    return float(out)


def test_adversarial_terms():
    real = np.array([[1.0, 3.0], [5.0, 7.0]], "float32").reshape(2, 1, 2, 1)  # mean 4
    fake = np.array([-2.0, 0.0, 1.0, 5.0], "float32").reshape(2, 2, 1, 1)  # mean 1
    assert _value(losses.critic_adversarial_loss(real, fake)) == pytest.approx(-4.0 + 1.0)
    assert _value(losses.generator_adversarial_loss(fake)) == pytest.approx(-1.0)


def test_interpolate():
    real = np.full((2, 2, 2, 3), 1.0, "float32")
    fake = np.full((2, 2, 2, 3), -1.0, "float32")
    alpha = np.array([0.25, 1.0], "float32").reshape(2, 1, 1, 1)
    out = keras.ops.convert_to_numpy(losses.interpolate(real, fake, alpha))
    assert out.dtype == np.float32
    np.testing.assert_allclose(out[0], -0.5)  # 0.25 * 1 + 0.75 * -1
    np.testing.assert_allclose(out[1], 1.0)


def _input_gradients(critic, x):
    x = tf.convert_to_tensor(x)
    with tf.GradientTape() as tape:
        tape.watch(x)
        total = tf.reduce_sum(critic(x))
    return tape.gradient(total, x)


def test_gradient_penalty_of_a_known_linear_critic():
    # A 1x1 linear conv critic: d sum(D(x)) / dx = kernel at every pixel, so
    # ||g|| = sqrt(H * W * |k|^2) for every sample.
    h = w = 4
    kernel = np.array([1.0, 2.0, 2.0], "float32")  # |k| = 3 -> ||g|| = 3 * 4 = 12
    critic = keras.layers.Conv2D(1, 1, use_bias=False)
    critic.build((None, h, w, 3))
    critic.kernel.assign(kernel.reshape(1, 1, 3, 1))
    x = np.random.default_rng(0).normal(size=(3, h, w, 3)).astype("float32")
    grads = _input_gradients(critic, x)
    assert _value(losses.gradient_penalty(grads)) == pytest.approx((12.0 - 1.0) ** 2, rel=1e-6)


def test_gradient_penalty_per_sample_norms():
    # D(x) = 0.5 * |x|^2 has gradient x: per-sample norms 1 (penalty 0), 2 and 0.5.
    x = np.zeros((3, 2, 2, 2), "float32")
    x[0, 0, 0, 0] = 1.0
    x[1, :, :, :] = 2.0 / math.sqrt(8)
    x[2, 1, 1, 1] = -0.5
    grads = _input_gradients(lambda t: 0.5 * tf.square(t), x)
    expected = ((1 - 1) ** 2 + (2 - 1) ** 2 + (0.5 - 1) ** 2) / 3
    assert _value(losses.gradient_penalty(grads)) == pytest.approx(expected, rel=1e-5)


def test_gradient_penalty_mixed_precision_input_and_zero_gradient():
    grads = tf.cast(tf.fill((2, 4, 4, 1), 0.25), tf.bfloat16)  # ||g|| = sqrt(16 / 16) = 1
    assert _value(losses.gradient_penalty(grads)) == pytest.approx(0.0, abs=1e-6)
    zero = tf.Variable(tf.zeros((2, 3, 3, 1)))
    with tf.GradientTape() as tape:
        penalty = losses.gradient_penalty(zero)
    assert _value(penalty) == pytest.approx(1.0, abs=1e-5)  # sqrt(0 + 1e-12) = 1e-6
    assert np.all(np.isfinite(tape.gradient(penalty, zero).numpy()))


def test_classification_loss_of_known_logits():
    logits = np.array([[0.0, math.log(3.0)], [0.0, math.log(3.0)]], "float32")  # p = [0.25, 0.75]
    labels = np.array([1, 0])
    expected = (-math.log(0.75) - math.log(0.25)) / 2
    assert _value(losses.classification_loss(logits, labels)) == pytest.approx(expected, rel=1e-6)
    # bfloat16 logits are safe.
    big = tf.cast(tf.constant([[50.0, -50.0, 0.0]]), tf.bfloat16)
    assert _value(losses.classification_loss(big, [1])) == pytest.approx(100.0, rel=1e-3)


def test_entropy_and_confidence_penalty():
    uniform = np.zeros((2, 8), "float32")
    np.testing.assert_allclose(keras.ops.convert_to_numpy(losses.entropy(uniform)), [math.log(8)] * 2, rtol=1e-6)
    two = np.array([[0.0, math.log(3.0)]], "float32")
    h_two = -(0.25 * math.log(0.25) + 0.75 * math.log(0.75))
    assert float(keras.ops.convert_to_numpy(losses.entropy(two))[0]) == pytest.approx(h_two, rel=1e-6)
    confident = np.array([[100.0, 0.0, 0.0]], "float32")
    assert float(keras.ops.convert_to_numpy(losses.entropy(confident))[0]) == pytest.approx(0.0, abs=1e-6)

    logits = np.concatenate([np.zeros((1, 2), "float32"), two])
    expected = -0.1 * (math.log(2) + h_two) / 2
    assert _value(losses.confidence_penalty(logits, 0.1)) == pytest.approx(expected, rel=1e-6)


def test_confidence_penalty_gradient_lowers_confidence():
    logits = tf.Variable([[3.0, 0.0, 0.0]])
    with tf.GradientTape() as tape:
        penalty = losses.confidence_penalty(logits, 1.0)
    step = -tape.gradient(penalty, logits)  # gradient descent direction
    assert step[0, 0] < 0 and step[0, 1] > 0  # moves towards the uniform distribution


def test_l1_loss():
    a = np.array([[1.0, 2.0], [3.0, 4.0]], "float32").reshape(2, 1, 2, 1)
    b = np.array([[0.0, 0.0], [3.0, 0.0]], "float32").reshape(2, 1, 2, 1)
    assert _value(losses.l1_loss(a, b)) == pytest.approx((1 + 2 + 0 + 4) / 4)


def test_masked_l1_is_a_per_sample_masked_mean():
    a = np.zeros((3, 2, 2, 3), "float32")
    b = np.zeros((3, 2, 2, 3), "float32")
    a[0, 0, 0, :] = 3.0  # inside the mask
    a[0, 1, 1, :] = 100.0  # outside: ignored
    a[1] = 2.0
    a[2] = 7.0  # empty mask: contributes 0
    mask = np.zeros((3, 2, 2, 1), "float32")
    mask[0, 0, :, 0] = 1.0  # 2 pixels x 3 channels, sum |d| = 9 -> 1.5
    mask[1] = 1.0  # all pixels -> 2
    expected = (1.5 + 2.0 + 0.0) / 3
    assert _value(losses.l1_loss(a, b, mask)) == pytest.approx(expected)


def test_perceptual_loss():
    fa = [np.ones((2, 4, 4, 2), "float32"), np.zeros((2, 2, 2, 5), "float32")]
    fb = [np.zeros((2, 4, 4, 2), "float32"), np.full((2, 2, 2, 5), 3.0, "float32")]
    assert _value(losses.perceptual_loss(fa, fb)) == pytest.approx((1.0 + 3.0) / 2)
    with pytest.raises(ValueError, match="same number"):
        losses.perceptual_loss(fa, fb[:1])


def test_losses_work_inside_tf_function():
    @tf.function
    def total(real, fake, logits, labels):
        return (
            losses.critic_adversarial_loss(real, fake)
            + losses.classification_loss(logits, labels)
            + losses.confidence_penalty(logits, 0.1)
            + losses.l1_loss(real, fake, tf.ones_like(real[..., :1]))
        )

    real = tf.random.normal((2, 4, 4, 3))
    fake = tf.random.normal((2, 4, 4, 3))
    logits = tf.random.normal((2, 8))
    labels = tf.constant([1, 7])
    assert np.isfinite(total(real, fake, logits, labels).numpy())


def test_attention_sparsity_is_the_mean_edited_fraction():
    mask = np.zeros((2, 4, 4, 1), "float32")
    mask[0, :2] = 1.0  # half of image 0 edited
    mask[1] = 0.25
    assert _value(losses.attention_sparsity_loss(mask)) == pytest.approx((0.5 + 0.25) / 2)
    assert _value(losses.attention_sparsity_loss(tf.zeros((1, 3, 3, 1), tf.bfloat16))) == 0.0
    # Its gradient lowers the mask everywhere: toward copying the source.
    m = tf.Variable(np.full((1, 2, 2, 1), 0.5, "float32"))
    with tf.GradientTape() as tape:
        loss = losses.attention_sparsity_loss(m)
    assert np.all(tape.gradient(loss, m).numpy() > 0)


def test_total_variation_of_known_maps():
    size = 5
    assert _value(losses.total_variation_loss(np.full((2, size, size, 1), 0.7, "float32"))) == 0.0
    edge = np.zeros((1, size, size, 1), "float32")
    edge[..., 3:, :] = 1.0  # a vertical edge: one jump of 1 per row among size - 1 horizontal neighbour pairs
    assert _value(losses.total_variation_loss(edge)) == pytest.approx(1 / (size - 1))
    # Transposed: the same value (anisotropic TV treats both directions alike).
    assert _value(losses.total_variation_loss(np.swapaxes(edge, 1, 2))) == pytest.approx(1 / (size - 1))
    checker = (np.indices((4, 4)).sum(axis=0) % 2).astype("float32")[None, ..., None]
    assert _value(losses.total_variation_loss(checker)) == pytest.approx(2.0)  # every pair differs, both directions
    # A mean over images and channels: batch and channel count do not change it.
    batch = np.concatenate([edge, np.swapaxes(edge, 1, 2)], axis=0)
    assert _value(losses.total_variation_loss(np.repeat(batch, 3, axis=-1))) == pytest.approx(1 / (size - 1))
    # The checkerboard up-sampled x2 (2x2 blocks): 3 jumps among the 7 pairs of each line, in both directions.
    blocks = np.repeat(np.repeat(checker, 2, axis=1), 2, axis=2)
    assert _value(losses.total_variation_loss(blocks)) == pytest.approx(2 * 3 / 7)


def test_gradient_l1_of_known_images_charges_a_blurred_edge_and_not_an_offset():
    size = 5
    step = np.zeros((1, size, size, 1), "float32")
    step[..., 3:, :] = 1.0  # a vertical edge: one jump of 1 per row among size - 1 horizontal pairs
    # A constant offset moves every pixel and no difference: no cost (a pixel L1 would charge it everywhere).
    assert _value(losses.gradient_l1_loss(step, step + 0.25)) == 0.0
    assert _value(losses.gradient_l1_loss(step, np.zeros_like(step))) == pytest.approx(1 / (size - 1))
    # The step blurred over two pixels (0, 0, 0.5, 1, 1): jumps of 0.5 and 0.5 where the truth has 0 and 1.
    blurred = np.zeros_like(step)
    blurred[..., 2, :], blurred[..., 3:, :] = 0.5, 1.0
    assert _value(losses.gradient_l1_loss(step, blurred)) == pytest.approx((0.5 + 0.5) / (size - 1))
    assert _value(losses.gradient_l1_loss(np.swapaxes(step, 1, 2), np.swapaxes(blurred, 1, 2))) == pytest.approx(
        1 / (size - 1))
    # Row weights: a face of weight 0 adds nothing, the mean is over the faces of weight 1.
    pair = np.concatenate([step, step], axis=0)
    other = np.concatenate([blurred, np.zeros_like(step)], axis=0)
    weights = np.array([1.0, 0.0], "float32").reshape(2, 1, 1, 1)
    assert _value(losses.gradient_l1_loss(pair, other, mask=weights)) == pytest.approx(1 / (size - 1))
    assert _value(losses.gradient_l1_loss(pair, other, mask=np.zeros_like(weights))) == 0.0
    # Its gradient moves a flat image toward the edge (the pixels left of it down, right of it up).
    flat = tf.Variable(np.zeros_like(step))
    with tf.GradientTape() as tape:
        loss = losses.gradient_l1_loss(step, flat)
    gradient = tape.gradient(loss, flat).numpy()[0, :, :, 0]
    assert np.all(gradient[:, 2] > 0) and np.all(gradient[:, 3] < 0)


def test_paired_edit_region_is_where_the_pair_differs_dilated():
    source = np.zeros((1, 16, 16, 3), np.float32)
    target = source.copy()
    target[0, 6:8, 6:8] = 0.5          # a change of 0.5 on every channel
    target[0, 0, 15] = [0.2, 0.0, 0.0]  # channel mean 0.067: under the threshold
    region = np.asarray(losses.paired_edit_region(source, target, threshold=0.1, dilation=3))
    assert region.shape == (1, 16, 16, 1)
    expected = np.zeros((16, 16), np.float32)
    expected[5:9, 5:9] = 1.0
    np.testing.assert_array_equal(region[0, ..., 0], expected)
    assert float(np.max(losses.paired_edit_region(source, source))) == 0.0


def test_mask_cross_entropy_values_and_its_gradient_does_not_vanish_when_saturated():
    region = np.array([[[[1.0], [0.0]]]], np.float32)
    mask = np.array([[[[0.8], [0.3]]]], np.float32)
    expected = -(np.log(0.8) + np.log(0.7)) / 2
    np.testing.assert_allclose(float(losses.mask_cross_entropy(region, mask)), expected, rtol=1e-6)
    # Through a sigmoid, d/dlogit = mask - region: still ~1 for a shut mask in the region (an L1's is ~mask).
    logits = tf.Variable([[[[-8.0]]]])
    with tf.GradientTape(persistent=True) as tape:
        shut = tf.sigmoid(logits)
        cross_entropy = losses.mask_cross_entropy(np.ones((1, 1, 1, 1), np.float32), shut)
        l1 = losses.l1_loss(np.ones((1, 1, 1, 1), np.float32), shut)
    assert abs(float(tape.gradient(cross_entropy, logits)[0, 0, 0, 0])) > 0.99
    assert abs(float(tape.gradient(l1, logits)[0, 0, 0, 0])) < 1e-3
    # Weighted per face: face 1's term counts, face 2's (weight 0) does not, the mean is over both faces.
    two_region = np.concatenate([region, 1.0 - region])
    two_mask = np.concatenate([mask, mask])
    weighted = float(losses.mask_cross_entropy(two_region, two_mask, weights=np.array([1.0, 0.0], np.float32)))
    np.testing.assert_allclose(weighted, expected / 2, rtol=1e-6)


# --- exemplar transfer terms ---------------------------------------------------------------------------------------


def test_action_unit_bins_split_the_unit_interval_evenly():
    bins = losses.action_unit_bins(np.array([[0.0, 0.199, 0.2, 0.5, 0.999, 1.0, 1.7, -0.3, np.nan]]), 5)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(bins), [[0, 0, 1, 2, 4, 4, 4, 0, 0]])


def test_au_adversary_loss_is_the_masked_cross_entropy_of_the_true_bins():
    logits = np.log(np.array([[[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]]], "float32"))  # [1, 2 AUs, 3 bins]
    intensities = np.array([[0.1, 0.9]], "float32")  # bins 0 and 2
    expected = -(np.log(0.7) + np.log(0.8)) / 2
    np.testing.assert_allclose(float(losses.au_adversary_loss(logits, intensities)), expected, rtol=1e-5)
    # A masked (or NaN) AU is left out of the mean, whatever its logits.
    np.testing.assert_allclose(float(losses.au_adversary_loss(logits, intensities, mask=[[1.0, 0.0]])), -np.log(0.7),
                               rtol=1e-5)
    np.testing.assert_allclose(float(losses.au_adversary_loss(logits, [[0.1, np.nan]])), -np.log(0.7), rtol=1e-5)
    assert float(losses.au_adversary_loss(logits, intensities, mask=[[0.0, 0.0]])) == 0.0


def test_au_confusion_loss_is_zero_only_at_the_uniform_distribution():
    uniform = np.zeros((2, 17, 5), "float32")
    assert float(losses.au_confusion_loss(uniform)) < 1e-12
    confident = np.zeros((1, 1, 4), "float32")
    confident[0, 0, 2] = 50.0  # softmax ~ one-hot: (1 - 1/4)^2 + 3 (1/4)^2, averaged over 4 bins
    np.testing.assert_allclose(float(losses.au_confusion_loss(confident)), (0.75**2 + 3 * 0.25**2) / 4, rtol=1e-5)
    # Masked AUs do not count.
    both = np.concatenate([confident, np.zeros((1, 1, 4), "float32")], axis=1)
    assert float(losses.au_confusion_loss(both, mask=[[0.0, 1.0]])) < 1e-12


def test_free_invariance_loss_is_the_share_of_variation_that_follows_the_expression():
    rng = np.random.default_rng(0)
    identity = rng.normal(size=(64, 4, 4, 8)).astype("float32")
    expression = rng.normal(size=(64, 4, 4, 8)).astype("float32")
    assert _value(losses.free_invariance_loss(identity, identity)) == 0.0  # the map ignores the expression
    # Known case: a = [0, 2], b = [2, 0] (one value each): |a - b| = 2, all four about their mean 1 deviate by 1.
    pair = np.array([0.0, 2.0], "float32").reshape(2, 1), np.array([2.0, 0.0], "float32").reshape(2, 1)
    assert _value(losses.free_invariance_loss(*pair)) == pytest.approx(2.0, rel=1e-5)
    half = _value(losses.free_invariance_loss(identity + 0.5 * expression, identity - 0.5 * expression))
    full = _value(losses.free_invariance_loss(identity + expression, identity - expression))
    assert 0 < half < full  # more of the map follows the expression
    # Independent maps: E|a - b| / E|x - mean| = (2/sqrt(pi)) / sqrt(2/pi) = sqrt(2) for Gaussians.
    assert _value(losses.free_invariance_loss(identity, expression)) == pytest.approx(math.sqrt(2), rel=0.05)
    # Shrinking the maps (which the decoder's instance norm undoes) does not lower it.
    assert _value(losses.free_invariance_loss(0.01 * identity, 0.01 * (identity + expression))) == pytest.approx(
        _value(losses.free_invariance_loss(identity, identity + expression)), rel=1e-3)


def test_au_losses_keep_nan_out_of_the_value_and_the_gradient():
    intensities = tf.constant([[0.3, np.nan, 0.8]])
    predicted = tf.Variable([[0.5, 0.5, 0.5]])
    logits = tf.Variable(tf.zeros((1, 3, 4)))
    with tf.GradientTape(persistent=True) as tape:
        regression = losses.action_unit_regression_loss(predicted, intensities)
        adversary = losses.au_adversary_loss(logits, intensities)
    np.testing.assert_allclose(float(regression), (0.2 + 0.3) / 2, rtol=1e-6)
    assert np.isfinite(float(adversary))
    for gradient in (tape.gradient(regression, predicted), tape.gradient(adversary, logits)):
        gradient = gradient.numpy()
        assert np.all(np.isfinite(gradient))
        assert np.all(gradient[0, 1] == 0)  # the missing AU gets no gradient


def test_action_unit_regression_loss_with_the_schema_mask():
    """The pipeline's `action_units_mask` (schema v1 `label/action_units_valid`): missing AUs are stored as 0 (or
    arrive as NaN from elsewhere) and only measured ones count, pooled over the batch."""
    true = np.array([[0.2, 0.5, 0.0], [1.0, 0.0, 0.4]], "float32")  # 0.0 at [0, 2]: stored for a missing AU
    predicted = np.array([[0.4, 0.5, 9.0], [0.0, 0.3, 0.4]], "float32")
    mask = np.array([[1, 1, 0], [1, 0, 1]], "float32")
    # Measured errors 0.2, 0, 1.0, 0 -> (1.2) / 4; the unmeasured 9.0 and 0.3 count nowhere.
    assert _value(losses.action_unit_regression_loss(predicted, true, mask)) == pytest.approx(1.2 / 4)
    assert _value(losses.action_unit_regression_loss(predicted, true, mask > 0)) == pytest.approx(1.2 / 4)
    per_face = np.array([[0.0], [1.0]], "float32")  # has_action_units[:, None], broadcast over the AUs
    assert _value(losses.action_unit_regression_loss(predicted, true, per_face)) == pytest.approx((1.0 + 0.3) / 3)
    # squared: the same selection, squared errors 0.04, 0, 1.0, 0 (the AU judge's loss: a conditional mean).
    assert _value(losses.action_unit_regression_loss(predicted, true, mask, squared=True)) == pytest.approx(1.04 / 4)
    # weights (--au_change_weight): a weighted mean over the measured entries; weights on missing ones count nowhere.
    weights = np.array([[3.0, 1.0, 100.0], [1.0, 100.0, 1.0]], "float32")
    assert _value(losses.action_unit_regression_loss(predicted, true, mask, weights=weights)) == pytest.approx(
        (3 * 0.2 + 0.0 + 1.0 + 0.0) / (3 + 1 + 1 + 1))
    assert _value(losses.action_unit_regression_loss(predicted, true, mask, weights=np.ones_like(weights))) == \
        pytest.approx(1.2 / 4)


def test_action_unit_regression_loss_gradient_is_zero_where_missing_even_for_garbage_predictions():
    true = tf.constant([[0.2, np.nan, 0.5], [np.nan, np.nan, np.nan]], tf.float32)
    predicted = tf.Variable([[0.4, np.nan, 0.5], [0.7, 0.1, np.inf]], dtype=tf.float32)  # garbage where unmeasured
    mask = tf.constant([[1, 0, 1], [0, 0, 0]], tf.float32)
    with tf.GradientTape() as tape:
        loss = losses.action_unit_regression_loss(predicted, true, mask)
    gradient = tape.gradient(loss, predicted).numpy()
    assert float(loss) == pytest.approx(0.2 / 2)
    # d/dp of (|p - t|) / 2 over the 2 measured entries: +0.5 where p > t, 0 at p == t's kink, exactly 0 elsewhere.
    np.testing.assert_allclose(gradient, [[0.5, 0.0, 0.0], [0.0, 0.0, 0.0]], atol=1e-6)
    # No measured AU in the batch (all rows missing, or a dataset without AUs): 0 and a zero gradient, not NaN.
    with tf.GradientTape() as tape:
        empty = losses.action_unit_regression_loss(predicted, true, tf.zeros_like(mask))
    assert float(empty) == 0.0 and np.all(tape.gradient(empty, predicted).numpy() == 0.0)
    half = losses.action_unit_regression_loss(tf.cast(tf.ones([2, 3]), tf.float16), tf.zeros([2, 3]), tf.ones([2, 3]))
    assert _value(half) == pytest.approx(1.0)  # mixed-precision predictions give a float32 scalar
