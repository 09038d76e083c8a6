"""The objective terms both trainers share, written once (stargan-v2's `compute_d_loss` / `compute_g_loss` habit):
a critic's StarGAN loss on real and generated inputs, and what a generator gets from a critic on its output, each
with the confidence penalty on its side.

    logs = critic_loss(d_depth, geometry, fake, labels, alpha, lambda_cls, lambda_gp, prefix="dd",
                       confidence_penalty=beta, log_entropy=True)
    terms, classification = generator_terms(d_depth, fake, target_labels, prefix="gd", log_entropy=True)
    total = terms["gd_adv"] + lambda_cls * classification + ...

`DepthPretrainer` (stage 1) and `DepthGuidedStarGAN` (stage 2) assemble their totals from these; the pure loss
functions are in `expr3d.losses`.
"""

import tensorflow as tf

from expr3d import losses
from expr3d.training import common


def critic_loss(critic, real, fake, labels, alpha, lambda_cls, lambda_gp, prefix="d", confidence_penalty=None,
                log_entropy=False):
    """A critic's terms (inside the caller's tape), by name: `<prefix>_adv` (WGAN), `<prefix>_cls` (its
    classification of the real inputs as `labels`), `<prefix>_entropy` (with `log_entropy`: the mean entropy of that
    classification), `<prefix>_gp` (gradient penalty on `alpha`-mixtures of real and fake), `<prefix>_conf` (with a
    `confidence_penalty` beta: -beta * H of that classification) and
    `<prefix>_total = adv + lambda_cls * (cls [+ conf]) + lambda_gp * gp`.

    `fake` is the generators' output with its gradient stopped (the critic step updates the critic only).
    """
    real_src, real_cls = critic(real, training=True)
    fake_src, _ = critic(fake, training=True)
    adv, cls = f"{prefix}_adv", f"{prefix}_cls"
    logs = {adv: losses.critic_adversarial_loss(real_src, fake_src), cls: losses.classification_loss(real_cls, labels)}
    if log_entropy:
        logs[f"{prefix}_entropy"] = tf.reduce_mean(losses.entropy(real_cls))
    logs[f"{prefix}_gp"] = common.gradient_penalty(critic, real, fake, alpha)
    classification = logs[cls]
    if confidence_penalty is not None:  # on the critic's classification of the REAL inputs
        logs[f"{prefix}_conf"] = losses.confidence_penalty(real_cls, confidence_penalty)
        classification = classification + logs[f"{prefix}_conf"]
    logs[f"{prefix}_total"] = logs[adv] + lambda_cls * classification + lambda_gp * logs[f"{prefix}_gp"]
    return logs


def generator_terms(critic, fake, labels, prefix="g", confidence_penalty=None, log_entropy=False):
    """What the generators get from `critic` on their output `fake` (inside the caller's tape): `({<prefix>_adv,
    <prefix>_cls [, <prefix>_entropy] [, <prefix>_conf]}, classification)`, `classification` = cls [+ conf], the
    term the caller weights by lambda_cls. `labels`: the classes `fake` should be classified as; with a
    `confidence_penalty` beta, -beta * H of the critic's classification of `fake` is added (the penalty on the
    generators' side)."""
    fake_src, fake_cls = critic(fake, training=True)
    cls = f"{prefix}_cls"
    logs = {f"{prefix}_adv": losses.generator_adversarial_loss(fake_src),
            cls: losses.classification_loss(fake_cls, labels)}
    if log_entropy:
        logs[f"{prefix}_entropy"] = tf.reduce_mean(losses.entropy(fake_cls))
    classification = logs[cls]
    if confidence_penalty is not None:
        logs[f"{prefix}_conf"] = losses.confidence_penalty(fake_cls, confidence_penalty)
        classification = classification + logs[f"{prefix}_conf"]
    return logs, classification


__all__ = ["critic_loss", "generator_terms"]
