"""The objective terms both trainers share, written once (stargan-v2's `compute_d_loss` / `compute_g_loss` habit):
a critic's StarGAN loss on real and generated inputs, and what a generator gets from a critic on its output, each
with the confidence penalty on its side.

    logs = critic_loss(d_depth, geometry, fake, labels, alpha, lambda_cls, lambda_gp, prefix="dd",
                       confidence_penalty=beta, log_entropy=True)
    terms, classification = generator_terms(d_depth, fake, target_labels, prefix="gd", log_entropy=True)
    total = terms["gd_adv"] + lambda_cls * classification + ...

`DepthPretrainer` (stage 1) and `DepthGuidedStarGAN` (stage 2) assemble their totals from these; the pure loss
functions are in `expr3d.losses`.

`labels` is an int class tensor `[B]` (the expression heads: softmax cross-entropy), or an `ActionUnitTarget`
(continuous AU control: the head's logits through a sigmoid are AU intensities, scored by the masked L1 of
`losses.action_unit_regression_loss`; the entropy and confidence penalty are defined on a class distribution, so
they are refused there).
"""
import collections

import tensorflow as tf

from expr3d import losses
from expr3d.training import common


ActionUnitTarget = collections.namedtuple("ActionUnitTarget", ["intensities", "mask", "squared", "weights"],
                                          defaults=(False, None))
ActionUnitTarget.__doc__ = ("What an AU head should read: intensities `[B, A]` in [0, 1] and their validity `[B, A]` "
                            "(1 = known; NaN intensities count as missing too); `weights` `[B, A]` or None: each "
                            "entry's weight in the mean.")


def head_loss(logits, labels):
    """A critic head's loss on `labels`: cross-entropy for classes, the masked AU L1 for an `ActionUnitTarget`."""
    if isinstance(labels, ActionUnitTarget):
        return losses.action_unit_regression_loss(tf.sigmoid(tf.cast(logits, tf.float32)), labels.intensities,
                                                  labels.mask, squared=labels.squared, weights=labels.weights)
    return losses.classification_loss(logits, labels)


def _class_only(labels, what):
    if isinstance(labels, ActionUnitTarget):
        raise ValueError(f"{what} is defined on a class distribution, not on action-unit intensities")


def critic_loss(critic, real, fake, labels, alpha, lambda_cls, lambda_gp, prefix="d", confidence_penalty=None,
                log_entropy=False, fake_class=None):
    """A critic's terms (inside the caller's tape), by name: `<prefix>_adv` (WGAN), `<prefix>_cls` (its
    classification of the real inputs as `labels`), `<prefix>_entropy` (with `log_entropy`: the mean entropy of that
    classification), `<prefix>_gp` (gradient penalty on `alpha`-mixtures of real and fake), `<prefix>_conf` (with a
    `confidence_penalty` beta: -beta * H of that classification), `<prefix>_cls_fake` (with a `fake_class` index:
    its classification of the fake inputs as that class, the K+1-class critic) and
    `<prefix>_total = adv + lambda_cls * (cls [+ conf] [+ cls_fake]) + lambda_gp * gp`.

    `fake` is the generators' output with its gradient stopped (the critic step updates the critic only).
    """
    if log_entropy or confidence_penalty is not None:
        _class_only(labels, "the entropy / confidence penalty")
    if fake_class is not None:
        _class_only(labels, "a class for generated inputs")
    real_src, real_cls = critic(real, training=True)
    fake_src, fake_cls = critic(fake, training=True)
    adv, cls = f"{prefix}_adv", f"{prefix}_cls"
    logs = {adv: losses.critic_adversarial_loss(real_src, fake_src), cls: head_loss(real_cls, labels)}
    if log_entropy:
        logs[f"{prefix}_entropy"] = tf.reduce_mean(losses.entropy(real_cls))
    logs[f"{prefix}_gp"] = common.gradient_penalty(critic, real, fake, alpha)
    classification = logs[cls]
    if confidence_penalty is not None:  # on the critic's classification of the REAL inputs
        logs[f"{prefix}_conf"] = losses.confidence_penalty(real_cls, confidence_penalty)
        classification = classification + logs[f"{prefix}_conf"]
    if fake_class is not None:
        generated = tf.fill(tf.shape(fake_cls)[:1], tf.constant(int(fake_class), labels.dtype))
        logs[f"{prefix}_cls_fake"] = head_loss(fake_cls, generated)
        classification = classification + logs[f"{prefix}_cls_fake"]
    logs[f"{prefix}_total"] = logs[adv] + lambda_cls * classification + lambda_gp * logs[f"{prefix}_gp"]
    return logs


def generator_terms(critic, fake, labels, prefix="g", confidence_penalty=None, log_entropy=False):
    """What the generators get from `critic` on their output `fake` (inside the caller's tape): `({<prefix>_adv,
    <prefix>_cls [, <prefix>_entropy] [, <prefix>_conf]}, classification)`, `classification` = cls [+ conf], the
    term the caller weights by lambda_cls. `labels`: the classes `fake` should be classified as; with a
    `confidence_penalty` beta, -beta * H of the critic's classification of `fake` is added (the penalty on the
    generators' side)."""
    if log_entropy or confidence_penalty is not None:
        _class_only(labels, "the entropy / confidence penalty")
    fake_src, fake_cls = critic(fake, training=True)
    cls = f"{prefix}_cls"
    logs = {f"{prefix}_adv": losses.generator_adversarial_loss(fake_src), cls: head_loss(fake_cls, labels)}
    if log_entropy:
        logs[f"{prefix}_entropy"] = tf.reduce_mean(losses.entropy(fake_cls))
    classification = logs[cls]
    if confidence_penalty is not None:
        logs[f"{prefix}_conf"] = losses.confidence_penalty(fake_cls, confidence_penalty)
        classification = classification + logs[f"{prefix}_conf"]
    return logs, classification


def guide_feature_loss(features, target_features, weights=None):
    """The paired guide-feature term (`--lambda_guide_features`, not in the paper): the mean over the guide's stage
    maps of the mean |f - f_target|, the target's maps held fixed (a perceptual loss whose network knows faces and
    expressions; `expr3d.training.guide`). Both trainers' term. `weights` `[B]`: each face's term times its
    weight, averaged over the batch (the rows without a true render weigh 0)."""
    def distance(f, t):
        difference = tf.abs(tf.cast(f, tf.float32) - tf.stop_gradient(tf.cast(t, tf.float32)))
        if weights is None:
            return tf.reduce_mean(difference)
        return tf.reduce_mean(tf.reduce_mean(difference, axis=[1, 2, 3]) * tf.cast(weights, tf.float32))

    return tf.add_n([distance(f, t) for f, t in zip(features, target_features)]) / len(features)


__all__ = ["ActionUnitTarget", "critic_loss", "generator_terms", "guide_feature_loss", "head_loss"]
