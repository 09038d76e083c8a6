"""Stage 1: pre-training the depth translator G_depth and its critic D_depth on RGB-geometry pairs."""

import keras
import tensorflow as tf

from expr3d import losses
from expr3d.training import common, objectives

# Every loss term the pre-trainer logs, in a fixed order (TensorBoard tags "depth/<name>"). `d_entropy` / `g_entropy`
# are the mean entropy (nats) of D_depth's class distribution on the real geometry (critic step) and on G(x)
# (translator step), logged whatever the penalty's side and beta; the penalty term itself, -beta * entropy, is logged
# as `d_conf` or `g_conf` on the side it is added to (`confidence_penalty_on`).
CRITIC_TERMS = ("d_adv", "d_cls", "d_entropy", "d_gp", "d_total")
GENERATOR_TERMS = ("g_pix", "g_per", "g_adv", "g_cls", "g_entropy", "g_rec", "g_total")
CRITIC_PENALTY_TERMS = ("d_conf",)
GENERATOR_PENALTY_TERMS = ("g_conf",)
PENALTY_SIDES = ("critic", "generator")


class DepthPretrainer(common.NCriticSchedule, keras.Model):
    """Pre-trains G_depth (RGB <-> geometry translator) against D_depth (PAPER.md "Pre-training the depth network").

    One *iteration* is one critic update of D_depth on one batch, plus one translator update of
    G_depth on the same batch when the iteration number `i` (counted from 0) satisfies `(i + 1) % n_critic == 0`
    (StarGAN's schedule: `num_steps` iterations give `num_steps / n_critic` translator updates).

    Critic (D_depth), on real geometry `d`, its RGB face `x` and expression `c_org`:
        `-E[D_src(d)] + E[D_src(G(x))] + lambda_cls (CE(D_cls(d), c_org) [- beta H(D_cls(d))]) + lambda_gp GP(d, G(x))`.
    Translator (G_depth):
        `lambda_pix |d - G(x)|_1 + perceptual_weight |V(d) - V(G(x))|_1 - E[D_src(G(x))]`
        `+ lambda_cls (CE(D_cls(G(x)), c_org) [- beta H(D_cls(G(x)))]) + lambda_rec |x - G'(G(x))|_1`,
    with `G = g_depth.to_geometry` and `G' = g_depth.to_rgb`. The confidence penalty `-beta H` (Pereyra et al.
    2017; `H` the entropy of the softmax) is in exactly one of the two bracketed places: on the critic's
    classification of the real geometry maps `d` (`confidence_penalty_on="critic"`, the default: `d` is itself the
    output of a 3D face reconstruction, the paper's "noisy labels"), or on its classification of the translator's
    estimate `G(x)` in the translator's loss (`"generator"`, this code's earlier behaviour); docs/training.md.

    The to-RGB direction is trained only through the reconstruction term (a geometry map carries no colour, so an L1
    loss of G'(d) against x would ask it to invent texture); the perceptual term is skipped, and VGG19 never built,
    when `perceptual_weight` is 0.

    Batches are dicts with `image` [B,S,S,3], `geometry` [B,S,S,3] (depth x3 or normals, in [-1, 1]),
    `expression` int [B] and `alpha_depth` [B,1,1,1] (the gradient-penalty mixing weights, drawn U(0, 1) by the
    input pipeline so that a run is a pure function of its data stream).

    Args:
        g_depth: a `DepthTranslator`.
        d_depth: a `PatchCritic` on geometry maps.
        vgg: a `VGG19Features` model, required when `perceptual_weight > 0`.
        n_critic: critic updates per translator update.
        lambda_cls, lambda_gp, lambda_pix, lambda_rec, perceptual_weight: loss weights.
        confidence_penalty: beta of the confidence penalty (0 = off).
        confidence_penalty_on: "critic" (in D_depth's loss, on its classification of the real geometry `d`) or
            "generator" (in G_depth's loss, on D_depth's classification of `G(x)`).

    Example:
    ```python
    trainer = DepthPretrainer(models["g_depth"], models["d_depth"], perceptual_weight=0.0)
    trainer.compile(g_optimizer=keras.optimizers.Adam(1e-4, 0.5, 0.999),
                    d_optimizer=keras.optimizers.Adam(1e-4, 0.5, 0.999))
    logs = trainer.run_iteration(batch, update_generator=True)
    ```
    """

    stage = "depth"

    def __init__(
        self,
        g_depth,
        d_depth,
        vgg=None,
        n_critic=5,
        lambda_cls=1.0,
        lambda_gp=10.0,
        lambda_pix=10.0,
        lambda_rec=10.0,
        perceptual_weight=1.0,
        confidence_penalty=0.1,
        confidence_penalty_on="critic",
        **kwargs,
    ):
        super().__init__(**kwargs)
        if confidence_penalty_on not in PENALTY_SIDES:
            raise ValueError(f"DepthPretrainer: confidence_penalty_on must be one of {PENALTY_SIDES}; "
                             f"got {confidence_penalty_on!r}")
        if perceptual_weight > 0 and vgg is None:
            raise ValueError("DepthPretrainer: perceptual_weight > 0 needs a VGG19Features model (vgg=...)")
        self.g_depth = g_depth
        self.d_depth = d_depth
        self.vgg = vgg if perceptual_weight > 0 else None
        self.n_critic = int(n_critic)
        self.lambda_cls = float(lambda_cls)
        self.lambda_gp = float(lambda_gp)
        self.lambda_pix = float(lambda_pix)
        self.lambda_rec = float(lambda_rec)
        self.perceptual_weight = float(perceptual_weight)
        self.confidence_penalty = float(confidence_penalty)
        self.confidence_penalty_on = confidence_penalty_on
        self.iteration = tf.Variable(0, dtype=tf.int64, trainable=False, name="iteration")

    def compile(self, g_optimizer, d_optimizer, **kwargs):
        # No loss/optimizer for Keras itself: critic_step and generator_step (run by training/loop.py's StageLoop
        # through run_iteration) drive both optimizers.
        super().compile(**kwargs)
        self.g_optimizer = g_optimizer
        self.d_optimizer = d_optimizer

    @property
    def optimizers(self):
        return {"g_depth": self.g_optimizer, "d_depth": self.d_optimizer}

    @property
    def penalty_on_critic(self):
        return self.confidence_penalty_on == "critic"

    @property
    def log_names(self):
        return self._critic_terms() + self._generator_terms()

    def _critic_terms(self):
        return CRITIC_TERMS + (CRITIC_PENALTY_TERMS if self.penalty_on_critic else ())

    def build_optimizers(self):
        """Create the optimizer slots now (before a checkpoint restore, and outside any tf.function)."""
        self.g_optimizer.build(self.g_depth.trainable_variables)
        self.d_optimizer.build(self.d_depth.trainable_variables)

    def critic_step(self, batch):
        image, geometry, labels = batch["image"], batch["geometry"], batch["expression"]
        fake = tf.stop_gradient(self.g_depth.to_geometry(image, training=True))
        with tf.GradientTape(persistent=common.is_loss_scaled(self.d_optimizer)) as tape:
            logs = objectives.critic_loss(
                self.d_depth, geometry, fake, labels, batch["alpha_depth"], self.lambda_cls, self.lambda_gp,
                prefix="d", log_entropy=True,
                confidence_penalty=self.confidence_penalty if self.penalty_on_critic else None)
            scaled = common.scaled_for_update(logs["d_total"], [self.d_optimizer])
        common.apply_updates(tape, scaled, [self.d_optimizer], [self.d_depth.trainable_variables], computed_first=logs)
        return logs

    def generator_step(self, batch):
        image, geometry, labels = batch["image"], batch["geometry"], batch["expression"]
        with tf.GradientTape(persistent=common.is_loss_scaled(self.g_optimizer)) as tape:
            fake = self.g_depth.to_geometry(image, training=True)
            # The penalty, when on this side: on D_depth's classification of the ESTIMATE G(x), in G_depth's loss.
            terms, classification = objectives.generator_terms(
                self.d_depth, fake, labels, prefix="g", log_entropy=True,
                confidence_penalty=None if self.penalty_on_critic else self.confidence_penalty)
            g_pix = losses.l1_loss(geometry, fake)
            if self.vgg is not None:
                g_per = losses.perceptual_loss(self.vgg(geometry), self.vgg(fake))
            else:
                g_per = tf.constant(0.0)
            logs = {"g_pix": g_pix, "g_per": g_per, **terms}
            reconstruction = self.g_depth.to_rgb(fake, training=True)
            logs["g_rec"] = g_rec = losses.l1_loss(image, reconstruction)
            logs["g_total"] = (
                self.lambda_pix * g_pix
                + self.perceptual_weight * g_per
                + terms["g_adv"]
                + self.lambda_cls * classification
                + self.lambda_rec * g_rec
            )
            scaled = common.scaled_for_update(logs["g_total"], [self.g_optimizer])
        common.apply_updates(tape, scaled, [self.g_optimizer], [self.g_depth.trainable_variables], computed_first=logs)
        return logs

    def _generator_terms(self):
        return GENERATOR_TERMS + (() if self.penalty_on_critic else GENERATOR_PENALTY_TERMS)

    def sample_outputs(self, image):
        """Estimated geometry and its RGB reconstruction, for sample grids."""
        geometry = self.g_depth.to_geometry(image, training=False)
        return {"geometry": geometry, "reconstruction": self.g_depth.to_rgb(geometry, training=False)}

    def get_config(self):
        return {
            "n_critic": self.n_critic,
            "lambda_cls": self.lambda_cls,
            "lambda_gp": self.lambda_gp,
            "lambda_pix": self.lambda_pix,
            "lambda_rec": self.lambda_rec,
            "perceptual_weight": self.perceptual_weight,
            "confidence_penalty": self.confidence_penalty,
            "confidence_penalty_on": self.confidence_penalty_on,
        }
