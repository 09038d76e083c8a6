"""Loss terms of the depth-guided StarGAN (PAPER.md "Losses"), as pure functions.

Every function casts its inputs to float32 (so mixed-precision activations are
safe) and returns a float32 scalar: the mean over this batch. Under
`tf.distribute` the trainer scales these per-replica means by
`1 / num_replicas_in_sync`.
"""

from keras import ops

# Keeps the gradient of the penalty's square root finite at a zero gradient.
_NORM_EPSILON = 1e-12


def _f32(x):
    return ops.cast(ops.convert_to_tensor(x), "float32")


def critic_adversarial_loss(real_src, fake_src):
    """WGAN critic term: `-E[D_src(real)] + E[D_src(fake)]` (patch maps averaged)."""
    return -ops.mean(_f32(real_src)) + ops.mean(_f32(fake_src))


def generator_adversarial_loss(fake_src):
    """WGAN generator term: `-E[D_src(fake)]`."""
    return -ops.mean(_f32(fake_src))


def interpolate(real, fake, alpha):
    """Gradient-penalty sample points `alpha * real + (1 - alpha) * fake`, float32.

    `alpha` has shape `[B, 1, 1, 1]` and must be drawn by the caller from the
    UNIFORM distribution on [0, 1), one value per sample (never from a normal,
    a known bug of a popular Keras WGAN-GP example).
    """
    alpha = _f32(alpha)
    return alpha * _f32(real) + (1.0 - alpha) * _f32(fake)


def gradient_penalty(gradients):
    """WGAN-GP penalty `E[(||g||_2 - 1)^2]` in float32.

    Args:
        gradients: `d sum(D_src(x_hat)) / d x_hat`, shape `[B, H, W, C]`, where
            the sum runs over the whole patch map; the norm is taken per sample
            over all pixels and channels.
    """
    g = _f32(gradients)
    g = ops.reshape(g, (ops.shape(g)[0], -1))
    norms = ops.sqrt(ops.sum(ops.square(g), axis=1) + _NORM_EPSILON)
    return ops.mean(ops.square(norms - 1.0))


def classification_loss(logits, labels):
    """Softmax cross-entropy of `[B, C]` logits against integer labels `[B]`."""
    labels = ops.cast(ops.convert_to_tensor(labels), "int32")
    per_sample = ops.sparse_categorical_crossentropy(labels, _f32(logits), from_logits=True)
    return ops.mean(per_sample)


def entropy(logits):
    """Per-sample entropy `H(softmax(logits))` in nats, shape `[B]`."""
    log_p = ops.log_softmax(_f32(logits), axis=-1)
    return -ops.sum(ops.exp(log_p) * log_p, axis=-1)


def confidence_penalty(logits, beta):
    """Confidence penalty (Pereyra et al. 2017): `-beta * E[H(p)]`.

    ADD it to the classification loss: minimising it raises the entropy of
    over-confident predictions.
    """
    return -ops.cast(beta, "float32") * ops.mean(entropy(logits))


def l1_loss(a, b, mask=None):
    """Mean absolute difference; with `mask`, each sample's mean inside its mask.

    Args:
        a, b: tensors of the same shape `[B, ...]`.
        mask: optional `{0, 1}` weights broadcastable to `a` (e.g. `[B, H, W, 1]`
            against `[B, H, W, 3]`). Each sample's loss is the weighted mean of
            `|a - b|` over its masked entries (0 if its mask is empty), then
            averaged over the batch, so every face counts equally.
    """
    diff = ops.abs(_f32(a) - _f32(b))
    if mask is None:
        return ops.mean(diff)
    mask = ops.broadcast_to(_f32(mask), ops.shape(diff))
    batch = ops.shape(diff)[0]
    masked_sum = ops.sum(ops.reshape(diff * mask, (batch, -1)), axis=1)
    count = ops.sum(ops.reshape(mask, (batch, -1)), axis=1)
    return ops.mean(masked_sum / ops.maximum(count, 1.0))


def perceptual_loss(features_a, features_b):
    """Mean over layers of the mean absolute difference of their features."""
    features_a, features_b = list(features_a), list(features_b)
    if len(features_a) != len(features_b) or not features_a:
        raise ValueError(
            f"perceptual_loss: got {len(features_a)} and {len(features_b)} feature maps; need the same number (>0)"
        )
    terms = [ops.mean(ops.abs(_f32(fa) - _f32(fb))) for fa, fb in zip(features_a, features_b)]
    return ops.mean(ops.stack(terms))


def attention_sparsity_loss(mask, penalise="edits"):
    """Mean edited fraction `E[M]` of attention masks `[B, H, W, 1]` in [0, 1], or with `penalise="copies"` the
    mean copied fraction `E[1 - M]`.

    expr3d's masks are edit masks (`AttentionGenerator`: 0 copies the source
    pixel), so minimising `E[M]` pushes the generator toward copying the source
    and editing only where the other losses need it. GANimation writes the
    copy mask `A = 1 - M` and penalises `E[A]` ("copies"): it pushes the other
    way, against a mask that saturates to "no edit", which is what a short run
    with the cycle and identity terms (both satisfied by copying) falls into.
    """
    if penalise not in MASK_PENALTIES:
        raise ValueError(f"attention_sparsity_loss: penalise must be one of {MASK_PENALTIES}; got {penalise!r}")
    mask = _f32(mask)
    return ops.mean(mask if penalise == "edits" else 1.0 - mask)


MASK_PENALTIES = ("edits", "copies")


def total_variation_loss(images):
    """Mean anisotropic total variation of `[B, H, W, C]` maps.

    `E|x[i+1, j] - x[i, j]| + E|x[i, j+1] - x[i, j]|`, each mean over every
    neighbouring pair, channel and image, so the value does not grow with the
    image size or batch (a 0/1 map with a vertical edge down the middle of
    an `S`-wide image scores `1 / (S - 1)`). GANimation's `sum`-TV weight
    `w` over a batch of `B` masks of `H x W` corresponds to about
    `w * B * H * W` on this mean-TV (1e-5 at 25 x 128 x 128 -> 4.1).
    """
    x = _f32(images)
    vertical = ops.mean(ops.abs(x[:, 1:, :, :] - x[:, :-1, :, :]))
    horizontal = ops.mean(ops.abs(x[:, :, 1:, :] - x[:, :, :-1, :]))
    return vertical + horizontal


def gradient_l1_loss(a, b, mask=None):
    """Mean absolute difference of the images' finite differences: `E|dx(a) - dx(b)| + E|dy(a) - dy(b)|` over
    `[B, H, W, C]` images (each mean over every neighbouring pair and channel); with `mask` `[B]`-broadcastable row
    weights `{0, 1}` (`[B, 1, 1, 1]`), each face's mean times its weight, averaged over the faces whose weight is 1.

    A pixel L1 lets a blurred edge cost little (the blur's error is small everywhere); this term charges it at the
    edge itself, where the blur flattens the step (`|dx|` of a step of height h blurred over n pixels is h / n).
    """
    a, b = _f32(a), _f32(b)
    vertical = ops.abs((a[:, 1:] - a[:, :-1]) - (b[:, 1:] - b[:, :-1]))
    horizontal = ops.abs((a[:, :, 1:] - a[:, :, :-1]) - (b[:, :, 1:] - b[:, :, :-1]))
    per_face = ops.mean(vertical, axis=(1, 2, 3)) + ops.mean(horizontal, axis=(1, 2, 3))
    if mask is None:
        return ops.mean(per_face)
    rows = ops.reshape(_f32(mask), (-1,))
    return ops.sum(per_face * rows) / ops.maximum(ops.sum(rows), 1.0)


def paired_edit_region(source, target, threshold=0.1, dilation=5):
    """Where a paired target differs from its source: `{0, 1}` float32 `[B, H, W, 1]`.

    A pixel is in the region when the channel mean of `|target - source|` (images in [-1, 1]) exceeds `threshold`
    (0.1 ~ 13 of 255 levels), then the region is dilated by a `dilation` x `dilation` max-pool, so the edges of a
    moving mouth or brow are inside it. Pairs share pose, light and background (schema v1's `pair_id`), so
    outside the face this is empty: it is what an edit mask should select.
    """
    difference = ops.mean(ops.abs(_f32(target) - _f32(source)), axis=-1, keepdims=True)
    region = ops.cast(difference > threshold, "float32")
    return ops.max_pool(region, dilation, strides=1, padding="same")


def mask_cross_entropy(region, mask, epsilon=1e-4, weights=None):
    """Mean binary cross-entropy of an edit mask in [0, 1] against a `{0, 1}` region (both `[B, H, W, 1]`); with
    `weights` `[B]`, each face's mean times its weight, averaged over the batch (a row of weight 0 adds nothing).

    Not an L1: through the sigmoid an L1's gradient vanishes once the mask saturates, and a mask that shut early
    (measured: within ~50 iterations) never reopened; the cross-entropy's gradient on the logit is `mask - region`.
    """
    mask = ops.clip(_f32(mask), epsilon, 1.0 - epsilon)
    region = _f32(region)
    entropy = region * ops.log(mask) + (1.0 - region) * ops.log(1.0 - mask)
    if weights is None:
        return -ops.mean(entropy)
    return -ops.mean(ops.mean(entropy, axis=(1, 2, 3)) * _f32(weights))


# --- exemplar expression transfer (Shao et al.; expr3d.models.transfer) ----------------------------------------------


def _valid_action_units(intensities, mask):
    """`(intensities with missing entries zeroed, {0, 1} float32 validity)`: an entry is missing where `mask` is 0 or
    the intensity is NaN (how a source without that AU records it), so NaN never reaches a loss or its gradient."""
    intensities = _f32(intensities)
    valid = ops.logical_not(ops.isnan(intensities))
    if mask is not None:
        valid = ops.logical_and(valid, ops.broadcast_to(_f32(mask), ops.shape(intensities)) > 0.5)
    return ops.where(valid, intensities, 0.0), ops.cast(valid, "float32")


def _masked_mean(values, valid):
    """Mean of `values` over the valid entries (0 when none is valid). A selection, not a product: 0 * NaN is NaN."""
    return ops.sum(ops.where(valid > 0.5, values, 0.0)) / ops.maximum(ops.sum(valid), 1.0)


def action_unit_bins(intensities, num_bins):
    """AU intensities in [0, 1] `[B, A]` -> int32 bin indices in [0, num_bins): `floor(i * num_bins)`, 1.0 in the
    top bin. The classes of the multi-class adversary (`au_adversary_loss`); NaN (missing) gives bin 0, which the
    losses mask out."""
    intensities = ops.where(ops.isnan(_f32(intensities)), 0.0, _f32(intensities))
    bins = ops.floor(ops.clip(intensities, 0.0, 1.0) * num_bins)
    return ops.cast(ops.minimum(bins, num_bins - 1), "int32")


def au_adversary_loss(logits, intensities, mask=None):
    """The AU adversary's term: mean cross-entropy of its per-AU bin logits `[B, A, K]` against the true bins of
    `intensities` `[B, A]`, over the valid AUs only (`mask` `[B, A]` 1 = known; NaN intensities count as missing)."""
    logits = _f32(logits)
    intensities, valid = _valid_action_units(intensities, mask)
    bins = action_unit_bins(intensities, logits.shape[-1])
    log_probabilities = ops.log_softmax(logits, axis=-1)
    picked = ops.sum(log_probabilities * ops.one_hot(bins, logits.shape[-1]), axis=-1)
    return _masked_mean(-picked, valid)


def au_confusion_loss(logits, mask=None):
    """The encoder's side of the multi-class adversarial term: mean squared distance of the adversary's per-AU
    softmax `[B, A, K]` from the uniform 1/K (the first author's ADLD code pushes its domain classifier the same way),
    over the valid AUs (`mask` `[B, A]`; None = all). Zero exactly when the adversary can tell nothing: pushing to the
    uniform distribution rather than reversing the adversary's gradient keeps the encoder from encoding the AUs
    "inverted", which still carries them."""
    logits = _f32(logits)
    num_bins = logits.shape[-1]
    distance = ops.mean(ops.square(ops.softmax(logits, axis=-1) - 1.0 / num_bins), axis=-1)
    valid = ops.ones_like(distance) if mask is None else ops.broadcast_to(_f32(mask), ops.shape(distance))
    return _masked_mean(distance, valid)


def action_unit_regression_loss(predicted, intensities, mask=None, squared=False, weights=None):
    """Mean absolute error (`squared`: mean squared error) of predicted AU intensities `[B, A]` over the valid AUs
    (`mask` 1 = known; NaN intensities count as missing; 0 when none is known). With `weights` `[B, A]` (>= 0), the
    weighted mean over the valid entries (`--au_change_weight`: the AUs a target changes count more).

    `mask` is what the data gives: the pipeline's `action_units_mask` `[B, A]` (schema v1's
    `label/action_units_valid`: 0 for an AU the source lacks, e.g. AU16 from OpenFace, and for faces without AU
    labels), or `has_action_units[:, None]`. The mean is pooled over the batch's valid entries, so each measured AU
    counts once. Missing entries are selected away before the absolute value, so nothing there (not even a NaN
    prediction) reaches the value or the gradient."""
    intensities, valid = _valid_action_units(intensities, mask)
    difference = ops.where(valid > 0.5, _f32(predicted) - intensities, 0.0)
    error = ops.square(difference) if squared else ops.abs(difference)
    if weights is None:
        return _masked_mean(error, valid)
    weights = ops.where(valid > 0.5, ops.broadcast_to(_f32(weights), ops.shape(error)), 0.0)
    return ops.sum(weights * error) / ops.maximum(ops.sum(weights), 1e-6)


def free_invariance_loss(free, free_paired, epsilon=1e-6):
    """The AU-free map's invariance to expression (`--lambda_free_invariance`, ours, not Shao et al.'s): `free` and
    `free_paired` `[B, ...]` are the maps of the same identity, pose and light under two expressions (paired data).

    The mean absolute difference between the pairs over the mean absolute deviation of all 2B maps from their batch
    mean: the share of the maps' variation that follows the expression (0 = the map ignores it, about 1 = the pair
    differs as much as two faces do). A ratio, so shrinking the maps, which the decoder's instance norm would undo,
    does not lower it."""
    free, free_paired = _f32(free), _f32(free_paired)
    both = ops.concatenate([free, free_paired], axis=0)
    spread = ops.mean(ops.abs(both - ops.mean(both, axis=0, keepdims=True)))
    return ops.mean(ops.abs(free - free_paired)) / (spread + epsilon)
