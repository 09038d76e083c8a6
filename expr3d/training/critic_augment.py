"""Differentiable augmentation of D_rgb's inputs (`--critic_augment`; DiffAugment, Zhao et al. 2020; NOT in the paper).

Why (issue #12): in short runs G_rgb satisfies D_rgb's expression classifier with a pixel texture (dotted or striped
bands over mouth and eyes) instead of moving the mouth. When every image D_rgb sees - real faces in the critic step,
translations in both steps - is shifted, partly cut out and recoloured at random, a texture at a fixed place and
colour is no reliable class cue, and the classifier has to read shapes. The same transform family is applied to real
and generated images (the point of DiffAugment: augmenting only the real ones would teach D that augmented = real),
and it is differentiable, so G_rgb's gradient goes through it.

The random numbers come with the batch (`expr3d.training.inputs`, key `critic_augment`: `[B, DRAWS, NUM_UNIFORMS]`
uniforms in [0, 1), drawn statelessly on the global batch), so a run stays a pure function of its data stream and 1
or N replicas augment alike. Draw 0 is for the real faces of the critic step, 1 for its translations, 2 for the
translations of the generator step.

    images = augment(images, batch["critic_augment"][:, 0], ("translation", "cutout"))

TensorFlow is imported where it is used: the config (TensorFlow-free) checks the flag with `parse_policy`.
"""

POLICIES = ("translation", "cutout", "colour")
DRAWS = 3  # real faces (critic step), translations (critic step), translations (generator step)
NUM_UNIFORMS = 7  # translation x, y; cutout centre x, y; brightness, saturation, contrast
TRANSLATION = 0.125  # shifts up to 1/8 of the side, zeros filled in (DiffAugment's)
CUTOUT = 0.5  # a square of half the side, zeroed (DiffAugment's)


def parse_policy(text):
    """`--critic_augment`'s value (a comma string, or already a tuple/list of names) -> a tuple of policies ("" =
    none). ValueError naming the flag for an unknown one."""
    if isinstance(text, (tuple, list)):
        text = ",".join(text)
    names = tuple(name.strip() for name in str(text or "").split(",") if name.strip())
    unknown = [name for name in names if name not in POLICIES]
    if unknown:
        raise ValueError(f"--critic_augment: unknown {', '.join(unknown)}; expected a comma list of "
                         f"{', '.join(POLICIES)} (empty = off)")
    if len(set(names)) != len(names):
        raise ValueError(f"--critic_augment: {text!r} names a policy twice")
    return names


def _shift_matrices(shift, size):
    """`[B, size, size]` matrices M with (M @ v)[i] = v[i - shift] (0 outside): a shift by an integer per row."""
    import tensorflow as tf

    rows = tf.range(size, dtype=tf.int32)[None, :, None]
    cols = tf.range(size, dtype=tf.int32)[None, None, :]
    return tf.cast(tf.equal(rows - shift[:, None, None], cols), tf.float32)


def augment(images, uniforms, policy):
    """`images` `[B, S, S, C]` in [-1, 1] (float32 result), transformed per example by `uniforms` `[B, NUM_UNIFORMS]`.

    - translation: shift by round((2u - 1) * S / 8) pixels along each axis, zeros (mid-grey) filled in;
    - cutout: zero a square of side S / 2 centred at (u * S) (clipped at the border);
    - colour: brightness + (u - 0.5), saturation x 2u, contrast x (u + 0.5) (DiffAugment's ranges, on [-1, 1]).
    Every operation is a product or a sum with the input, so gradients reach `images`.
    """
    import tensorflow as tf

    images = tf.cast(images, tf.float32)
    uniforms = tf.cast(uniforms, tf.float32)
    if not policy:
        return images
    size = images.shape[1]
    if "colour" in policy:
        images = images + (uniforms[:, 4, None, None, None] - 0.5)
        grey = tf.reduce_mean(images, axis=-1, keepdims=True)
        images = grey + (images - grey) * (2.0 * uniforms[:, 5, None, None, None])
        mean = tf.reduce_mean(images, axis=[1, 2, 3], keepdims=True)
        images = mean + (images - mean) * (uniforms[:, 6, None, None, None] + 0.5)
    if "translation" in policy:
        limit = int(size * TRANSLATION + 0.5)
        shift = tf.cast(tf.round((2.0 * uniforms[:, :2] - 1.0) * limit), tf.int32)
        rows, cols = _shift_matrices(shift[:, 1], size), _shift_matrices(shift[:, 0], size)
        images = tf.einsum("bij,bjkc,blk->bilc", rows, images, cols)
    if "cutout" in policy:
        half = int(size * CUTOUT) // 2
        centre = tf.cast(tf.round(uniforms[:, 2:4] * size), tf.int32)
        index = tf.range(size, dtype=tf.int32)[None, :]
        inside_x = tf.abs(index - centre[:, 0:1]) < half  # [B, S]
        inside_y = tf.abs(index - centre[:, 1:2]) < half
        hole = tf.logical_and(inside_y[:, :, None], inside_x[:, None, :])
        images = images * (1.0 - tf.cast(hole, tf.float32))[..., None]
    return images


__all__ = ["DRAWS", "NUM_UNIFORMS", "POLICIES", "augment", "parse_policy"]
