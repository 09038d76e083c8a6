"""Stage 2: the depth-guided StarGAN, training G_rgb, D_rgb, G_depth and D_depth end-to-end."""

import keras
import tensorflow as tf

from expr3d import losses
from expr3d.training import common

RGB_CRITIC_TERMS = ("d_adv", "d_cls", "d_gp", "d_total")
DEPTH_CRITIC_TERMS = ("dd_adv", "dd_cls", "dd_gp", "dd_total")
RGB_GENERATOR_TERMS = ("g_adv", "g_cls", "g_rec", "g_rgb_total")
DEPTH_GENERATOR_TERMS = ("gd_adv", "gd_cls", "gd_conf", "gd_rec", "gd_total")
TOTAL_TERMS = ("g_total",)
IDENTITY_TERMS = ("g_id",)  # only with lambda_id > 0 (not in the paper)


class DepthGuidedStarGAN(common.NCriticSchedule, keras.Model):
    """StarGAN guided by a pre-trained depth network: `min_G max_D  L_rgb + depth_weight * L_depth` (PAPER.md).

    One *iteration* (`train_step`) is one update of each critic (D_rgb, and D_depth when `depth_weight > 0`) on one
    batch, plus one update of the generators (G_rgb, and G_depth when `depth_weight > 0`) on the same batch and the
    same targets when the iteration number `i` (from 0) satisfies `(i + 1) % n_critic == 0` (StarGAN's schedule).

    With `x` a real face, `c_org` its expression, `c_trg` the target, `d` the real geometry map of `x`,
    `x_t = G_rgb(x, c_trg)`, `G = g_depth.to_geometry`, `G' = g_depth.to_rgb`:
      - D_rgb:   `-E[D(x)] + E[D(x_t)] + lambda_cls CE(D_cls(x), c_org) + lambda_gp GP(x, x_t)`.
      - D_depth: `-E[Dd(d)] + E[Dd(G(x_t))] + lambda_cls CE(Dd_cls(d), c_org) + lambda_gp GP(d, G(x_t))`.
      - L_rgb   = `-E[D(x_t)] + lambda_cls CE(D_cls(x_t), c_trg) + lambda_rec |x - G_rgb(x_t, c_org)|_1`.
      - L_depth = `-E[Dd(G(x_t))] + lambda_cls (CE(Dd_cls(G(x_t)), c_trg) - beta H(Dd_cls(G(x_t))))`
                  `+ lambda_rec |x_t - G'(G(x_t))|_1`.
      - G_rgb and G_depth minimise `L_rgb + depth_weight * L_depth` (one backward pass), so the depth terms'
        gradient reaches G_rgb through `x_t`.
    D_depth's loss is not multiplied by `depth_weight`: it only enters D_depth's own update, where Adam makes a
    constant factor irrelevant. With `depth_weight == 0` the depth networks are never called (plain StarGAN, same
    compute as the baseline).

    Batches are dicts with `image` [B,S,S,3], `geometry` [B,S,S,3], `expression` int [B], `target` int [B] (c_trg,
    drawn by the input pipeline), `alpha` and `alpha_depth` [B,1,1,1] (gradient-penalty mixing weights, U(0, 1)).

    Args:
        g_rgb: a `StarGANGenerator` conditioned on `num_classes` expressions.
        d_rgb: a `PatchCritic` on RGB faces.
        g_depth: a `DepthTranslator` (pre-trained by `DepthPretrainer`).
        d_depth: a `PatchCritic` on geometry maps.
        num_classes: expressions.
        depth_weight: lambda_depth (0 = plain StarGAN).
        n_critic: critic updates per generator update.
        lambda_cls, lambda_rec, lambda_gp: StarGAN's weights (1, 10, 10).
        confidence_penalty: beta on D_depth's classification of G(x_t) (0 = off).
        lambda_id: weight of the identity-mapping term `|x - G_rgb(x, c_org)|_1` (0 = off, the paper; logged as
            `g_id` only when on).

    Example:
    ```python
    gan = DepthGuidedStarGAN(**models, num_classes=8, depth_weight=0.1)
    gan.compile(optimizers={k: keras.optimizers.Adam(1e-4, 0.5, 0.999) for k in models})
    logs = gan.run_iteration(batch, update_generator=True)
    ```
    """

    stage = "gan"

    def __init__(
        self,
        g_rgb,
        d_rgb,
        g_depth,
        d_depth,
        num_classes=8,
        depth_weight=0.1,
        n_critic=5,
        lambda_cls=1.0,
        lambda_rec=10.0,
        lambda_gp=10.0,
        confidence_penalty=0.1,
        lambda_id=0.0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if depth_weight < 0:
            raise ValueError(f"DepthGuidedStarGAN: depth_weight must be >= 0; got {depth_weight}")
        if lambda_id < 0:
            raise ValueError(f"DepthGuidedStarGAN: lambda_id must be >= 0; got {lambda_id}")
        self.g_rgb = g_rgb
        self.d_rgb = d_rgb
        self.g_depth = g_depth
        self.d_depth = d_depth
        self.num_classes = int(num_classes)
        self.depth_weight = float(depth_weight)
        self.n_critic = int(n_critic)
        self.lambda_cls = float(lambda_cls)
        self.lambda_rec = float(lambda_rec)
        self.lambda_gp = float(lambda_gp)
        self.confidence_penalty = float(confidence_penalty)
        self.lambda_id = float(lambda_id)
        self.iteration = tf.Variable(0, dtype=tf.int64, trainable=False, name="iteration")

    @property
    def uses_depth(self):
        return self.depth_weight > 0

    def compile(self, optimizers, **kwargs):
        """`optimizers`: dict with keys g_rgb, d_rgb, g_depth, d_depth (the depth ones unused when depth_weight=0)."""
        super().compile(**kwargs)
        self._optimizers = dict(optimizers)

    @property
    def optimizers(self):
        keys = ("g_rgb", "d_rgb", "g_depth", "d_depth") if self.uses_depth else ("g_rgb", "d_rgb")
        return {key: self._optimizers[key] for key in keys}

    @property
    def _rgb_generator_terms(self):
        return RGB_GENERATOR_TERMS + (IDENTITY_TERMS if self.lambda_id > 0 else ())

    @property
    def log_names(self):
        names = RGB_CRITIC_TERMS + self._rgb_generator_terms + TOTAL_TERMS
        if self.uses_depth:
            names += DEPTH_CRITIC_TERMS + DEPTH_GENERATOR_TERMS
        return names

    def build_optimizers(self):
        for key, optimizer in self.optimizers.items():
            optimizer.build(getattr(self, key).trainable_variables)

    def _generator_terms(self):
        return self._rgb_generator_terms + TOTAL_TERMS + (DEPTH_GENERATOR_TERMS if self.uses_depth else ())

    def critic_step(self, batch):
        image, labels = batch["image"], batch["expression"]
        target = common.class_one_hot(batch["target"], self.num_classes)
        fake = tf.stop_gradient(self.g_rgb([image, target], training=True))
        optimizers = [self._optimizers["d_rgb"]]
        variables = [self.d_rgb.trainable_variables]
        if self.uses_depth:
            fake_geometry = tf.stop_gradient(self.g_depth.to_geometry(fake, training=True))
            optimizers.append(self._optimizers["d_depth"])
            variables.append(self.d_depth.trainable_variables)
        persistent = any(common.is_loss_scaled(o) for o in optimizers) and len(optimizers) > 1
        with tf.GradientTape(persistent=persistent) as tape:
            real_src, real_cls = self.d_rgb(image, training=True)
            fake_src, _ = self.d_rgb(fake, training=True)
            logs = {
                "d_adv": losses.critic_adversarial_loss(real_src, fake_src),
                "d_cls": losses.classification_loss(real_cls, labels),
                "d_gp": common.gradient_penalty(self.d_rgb, image, fake, batch["alpha"]),
            }
            logs["d_total"] = logs["d_adv"] + self.lambda_cls * logs["d_cls"] + self.lambda_gp * logs["d_gp"]
            total = logs["d_total"]
            if self.uses_depth:
                geometry = batch["geometry"]
                real_src, real_cls = self.d_depth(geometry, training=True)
                fake_src, _ = self.d_depth(fake_geometry, training=True)
                logs["dd_adv"] = losses.critic_adversarial_loss(real_src, fake_src)
                logs["dd_cls"] = losses.classification_loss(real_cls, labels)
                logs["dd_gp"] = common.gradient_penalty(self.d_depth, geometry, fake_geometry, batch["alpha_depth"])
                logs["dd_total"] = logs["dd_adv"] + self.lambda_cls * logs["dd_cls"] + self.lambda_gp * logs["dd_gp"]
                # The two critics share no variables: one backward pass of the sum updates both.
                total = total + logs["dd_total"]
            if persistent:
                scaled = [
                    common.scaled_for_update(logs[key], [opt])[0]
                    for key, opt in zip(("d_total", "dd_total"), optimizers)
                ]
            else:
                scaled = common.scaled_for_update(total, optimizers)
        common.apply_updates(tape, scaled, optimizers, variables, computed_first=logs)
        return logs

    def generator_step(self, batch):
        image, labels = batch["image"], batch["expression"]
        original = common.class_one_hot(labels, self.num_classes)
        target_labels = batch["target"]
        target = common.class_one_hot(target_labels, self.num_classes)
        optimizers = [self._optimizers["g_rgb"]]
        variables = [self.g_rgb.trainable_variables]
        if self.uses_depth:
            optimizers.append(self._optimizers["g_depth"])
            variables.append(self.g_depth.trainable_variables)
        persistent = any(common.is_loss_scaled(o) for o in optimizers)
        with tf.GradientTape(persistent=persistent) as tape:
            fake = self.g_rgb([image, target], training=True)
            fake_src, fake_cls = self.d_rgb(fake, training=True)
            reconstruction = self.g_rgb([fake, original], training=True)
            logs = {
                "g_adv": losses.generator_adversarial_loss(fake_src),
                "g_cls": losses.classification_loss(fake_cls, target_labels),
                "g_rec": losses.l1_loss(image, reconstruction),
            }
            logs["g_rgb_total"] = logs["g_adv"] + self.lambda_cls * logs["g_cls"] + self.lambda_rec * logs["g_rec"]
            if self.lambda_id > 0:
                logs["g_id"] = losses.l1_loss(image, self.g_rgb([image, original], training=True))
                logs["g_rgb_total"] = logs["g_rgb_total"] + self.lambda_id * logs["g_id"]
            total = logs["g_rgb_total"]
            if self.uses_depth:
                fake_geometry = self.g_depth.to_geometry(fake, training=True)
                depth_src, depth_cls = self.d_depth(fake_geometry, training=True)
                cycle = self.g_depth.to_rgb(fake_geometry, training=True)
                logs["gd_adv"] = losses.generator_adversarial_loss(depth_src)
                logs["gd_cls"] = losses.classification_loss(depth_cls, target_labels)
                logs["gd_conf"] = losses.confidence_penalty(depth_cls, self.confidence_penalty)
                logs["gd_rec"] = losses.l1_loss(fake, cycle)
                logs["gd_total"] = (
                    logs["gd_adv"] + self.lambda_cls * (logs["gd_cls"] + logs["gd_conf"]) + self.lambda_rec * logs["gd_rec"]
                )
                total = total + self.depth_weight * logs["gd_total"]
            logs["g_total"] = total
            scaled = common.scaled_for_update(total, optimizers)
        common.apply_updates(tape, scaled, optimizers, variables, computed_first=logs)
        return logs

    def sample_outputs(self, image, target_labels):
        """`G_rgb(image, target)` and the estimated geometry of the result, for sample grids."""
        fake = self.g_rgb([image, common.class_one_hot(target_labels, self.num_classes)], training=False)
        return {"image": fake, "geometry": self.g_depth.to_geometry(fake, training=False)}

    def get_config(self):
        return {
            "num_classes": self.num_classes,
            "depth_weight": self.depth_weight,
            "n_critic": self.n_critic,
            "lambda_cls": self.lambda_cls,
            "lambda_rec": self.lambda_rec,
            "lambda_gp": self.lambda_gp,
            "confidence_penalty": self.confidence_penalty,
            "lambda_id": self.lambda_id,
        }
