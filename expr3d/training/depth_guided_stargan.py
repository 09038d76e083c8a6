"""Stage 2: the depth-guided StarGAN, training G_rgb, D_rgb, G_depth and D_depth end-to-end."""

import keras
import tensorflow as tf

from expr3d import losses
from expr3d.models.action_unit_edit_generator import ActionUnitEditGenerator
from expr3d.models.attention_generator import AttentionGenerator
from expr3d.training import common, objectives
from expr3d.training import critic_augment as critic_augment_module

RGB_CRITIC_TERMS = ("d_adv", "d_cls", "d_gp", "d_total")
DEPTH_CRITIC_TERMS = ("dd_adv", "dd_cls", "dd_entropy", "dd_gp", "dd_total")
RGB_GENERATOR_TERMS = ("g_adv", "g_cls", "g_rec", "g_rgb_total")
DEPTH_GENERATOR_TERMS = ("gd_adv", "gd_cls", "gd_entropy", "gd_rec", "gd_total")
# The confidence penalty -beta * H is logged on the side it is added to (`confidence_penalty_on`); the entropies
# `dd_entropy` (D_depth's class distribution on the real geometry d) and `gd_entropy` (on G(x_t)) always are.
DEPTH_CRITIC_PENALTY_TERMS = ("dd_conf",)
DEPTH_GENERATOR_PENALTY_TERMS = ("gd_conf",)
PENALTY_SIDES = ("critic", "generator")
# What G_rgb is conditioned on (`condition`): one-hot expression classes, or AU intensities (continuous control).
CONDITIONS = ("expression", "action_units")
AU_LOSSES = ("l1", "squared")  # the error of the AU regression terms (--au_loss)


def action_unit_condition(intensities, mask):
    """G_rgb's AU condition `[B, A]` float32: the intensities clipped to [0, 1], with missing ones (mask 0 or NaN)
    as 0 (an AU the data does not measure is asked to be absent)."""
    intensities = tf.cast(intensities, tf.float32)
    known = tf.logical_and(tf.cast(mask, tf.float32) > 0.5, tf.logical_not(tf.math.is_nan(intensities)))
    return tf.where(known, tf.clip_by_value(intensities, 0.0, 1.0), 0.0)
TOTAL_TERMS = ("g_total",)
IDENTITY_TERMS = ("g_id",)  # only with lambda_id > 0 (not in the paper)
GUIDE_TERMS = ("g_guide",)  # only with lambda_guide > 0 (not in the paper): the frozen guide's cross-entropy
GUIDE_FEATURE_TERMS = ("g_guide_features",)  # only with lambda_guide_features > 0 (paired data, not in the paper)
PAIRED_TERMS = ("g_pair",)  # only with lambda_pair > 0 (not in the paper; paired data)
PAIRED_GRADIENT_TERMS = ("g_pair_gradient",)  # only with lambda_pair_gradient > 0 (not in the paper; paired data)
ATTENTION_TERMS = ("g_mask", "g_mask_tv")  # only with an AttentionGenerator G_rgb (GANimation's mask regularisers)
READER_TERMS = ("g_reader",)  # only with an ActionUnitEditGenerator G_rgb: its reader's AU error on the real faces
EDIT_TERMS = ("g_edit",)  # only with an ActionUnitEditGenerator G_rgb and lambda_edit > 0: its edit images' mean |E|


class DepthGuidedStarGAN(common.NCriticSchedule, keras.Model):
    """StarGAN guided by a pre-trained depth network: `min_G max_D  L_rgb + depth_weight * L_depth` (PAPER.md).

    One *iteration* is one update of each critic (D_rgb, and D_depth when `depth_weight > 0`) on one
    batch, plus one update of the generators (G_rgb, and G_depth when `depth_weight > 0`) on the same batch and the
    same targets when the iteration number `i` (from 0) satisfies `(i + 1) % n_critic == 0` (StarGAN's schedule).

    With `x` a real face, `c_org` its expression, `c_trg` the target, `d` the real geometry map of `x`,
    `x_t = G_rgb(x, c_trg)`, `G = g_depth.to_geometry`, `G' = g_depth.to_rgb`:
      - D_rgb:   `-E[D(x)] + E[D(x_t)] + lambda_cls CE(D_cls(x), c_org) + lambda_gp GP(x, x_t)`.
      - D_depth: `-E[Dd(d)] + E[Dd(G(x_t))] + lambda_cls (CE(Dd_cls(d), c_org) [- beta H(Dd_cls(d))])`
                 `+ lambda_gp GP(d, G(x_t))`.
      - L_rgb   = `-E[D(x_t)] + lambda_cls CE(D_cls(x_t), c_trg) + lambda_rec |x - G_rgb(x_t, c_org)|_1`.
      - L_depth = `-E[Dd(G(x_t))] + lambda_cls (CE(Dd_cls(G(x_t)), c_trg) [- beta H(Dd_cls(G(x_t)))])`
                  `+ lambda_rec |x_t - G'(G(x_t))|_1`.
      - G_rgb and G_depth minimise `L_rgb + depth_weight * L_depth` (one backward pass), so the depth terms'
        gradient reaches G_rgb through `x_t`.
      - With an `AttentionGenerator` G_rgb, whose edit masks are `M_t` (of `x_t`) and `M_r` (of the cycle
        `G_rgb(x_t, c_org)`), 0 = source pixel copied: L_rgb also gets GANimation's regularisers on both masks,
        `lambda_mask (E[M_t] + E[M_r]) + lambda_mask_tv (TV(M_t) + TV(M_r))` (logged `g_mask`, `g_mask_tv`; TV is
        `losses.total_variation_loss`, a mean). The sparsity term pushes toward copying the source
        (`mask_penalty="copies"`: `E[1 - M_t] + E[1 - M_r]`, toward editing, GANimation's own direction).
      - With `lambda_pair > 0` (paired data, NOT in the paper), L_rgb also gets `lambda_pair |y - x_t|_1`, `y` the
        true render of `x`'s identity, pose and light under `c_trg` (the batch's `target_image`; logged `g_pair`);
        with an AttentionGenerator, plus `lambda_pair (BCE(M_t, R) + |y - C_t|_1 inside R)`, `R` the region where
        `y` differs from `x` (`losses.paired_edit_region`), `C_t` the colour image.
      - With `lambda_pair_gradient > 0` (paired data, NOT in the paper), plus `lambda_pair_gradient
        |grad y - grad x_t|_1` (`losses.gradient_l1_loss`, logged `g_pair_gradient`): the edges of the true edit.
      - With an `ActionUnitEditGenerator` G_rgb (AU condition), its reader starts as a copy of the AU guide, frozen;
        without a guide L_rgb gets the reader's squared AU error on the real faces `x` (logged `g_reader`, weight 1;
        the reader's weights get no other gradient). With
        `lambda_edit > 0`, `lambda_edit (E|E_t| + E|E_r|)` on the per-AU edit images of `x_t` and of the cycle
        (logged `g_edit`).
      - The confidence penalty `-beta H` (Pereyra et al. 2017, `H` the entropy of the softmax) is in exactly one of
        the bracketed places: D_depth's loss, on its classification of the real geometry `d`
        (`confidence_penalty_on="critic"`, the default: the paper's "regulariser on the discriminator" against the
        noisy reconstructed depth), or L_depth, on D_depth's classification of `G(x_t)` (`"generator"`, this
        code's earlier behaviour: it rewards G_rgb/G_depth for making D_depth unsure); docs/training.md.
    D_depth's loss is not multiplied by `depth_weight`: it only enters D_depth's own update, where Adam makes a
    constant factor irrelevant. With `depth_weight == 0` the depth networks are never called (plain StarGAN, same
    compute as the baseline).

    Batches are dicts with `image` [B,S,S,3], `geometry` [B,S,S,3], `expression` int [B], `target` int [B] (c_trg,
    drawn by the input pipeline), `alpha` and `alpha_depth` [B,1,1,1] (gradient-penalty mixing weights, U(0, 1)).

    Args:
        g_rgb: a `StarGANGenerator` or `AttentionGenerator` conditioned on `num_classes` expressions.
        d_rgb: a `PatchCritic` on RGB faces.
        g_depth: a `DepthTranslator` (pre-trained by `DepthPretrainer`).
        d_depth: a `PatchCritic` on geometry maps.
        num_classes: expressions.
        depth_weight: lambda_depth (0 = plain StarGAN).
        n_critic: critic updates per generator update.
        lambda_cls, lambda_rec, lambda_gp: StarGAN's weights (1, 10, 10).
        confidence_penalty: beta of the confidence penalty (0 = off).
        confidence_penalty_on: "critic" (in D_depth's loss, on its classification of the real geometry `d`) or
            "generator" (in L_depth, on D_depth's classification of `G(x_t)`).
        lambda_id: weight of the identity-mapping term `|x - G_rgb(x, c_org)|_1` (0 = off, the paper; logged as
            `g_id` only when on).
        lambda_mask: weight of the masks' mean (sparsity; GANimation's 0.1). Used only with an AttentionGenerator.
        lambda_mask_tv: weight of the masks' mean total variation (4.1 ~ GANimation's 1e-5 on a sum over 25
            masks of 128 x 128). Used only with an AttentionGenerator.
        lambda_edit: weight of the mean |E| of an ActionUnitEditGenerator's per-AU edit images (0 = off; ours).
        lambda_pair: weight of the paired target term `|y - x_t|_1` (0 = off, the paper; needs batches with
            `target_image`, i.e. `--target_mode=paired`).
        lambda_pair_gradient: weight of the paired edge term `|grad y - grad x_t|_1` (0 = off; paired batches).
        mask_penalty: what the sparsity term penalises: "edits" (`E[M]`, toward copying the source) or "copies"
            (`E[1 - M]`, GANimation's own direction, against a mask that collapses to "no edit").
        condition: "expression" (the paper: one-hot classes, D_rgb's head classifies) or "action_units"
            (continuous AU control, GANimation's idea: G_rgb takes an AU-intensity vector `[B, A]`, D_rgb's head
            regresses AUs through a sigmoid, scored by the masked L1; batches carry `action_units`,
            `action_units_mask` and the target face's `target_action_units`, `target_action_units_mask` (with
            lambda_pair, the true render's), and missing AUs enter G_rgb as 0). Depth guidance reads expression
            classes, so it needs depth_weight 0.
        critic_warmup_steps: NOT in the paper: the first iterations train only D_rgb's expression head (and the
            trunk under it) on real faces, `lambda_cls CE(D_cls(x), c_org)` (logged `d_cls`;
            `critic_warmup_step`), so that from G_rgb's first update its classification term points somewhere.
            In a short run D_rgb otherwise stays near chance for hundreds of iterations while the cycle, identity
            and mask terms already pull G_rgb toward copying its input.
        critic_augment: NOT in the paper: policies of `expr3d.training.critic_augment` ("translation", "cutout",
            "colour"; a tuple or comma string, empty = off) applied to every image D_rgb sees, real and generated,
            in both steps (DiffAugment), with the batch's `critic_augment` uniforms.
        critic_fake_class: NOT in the paper (a K+1-class critic, as in semi-supervised GANs and AM-GAN): D_rgb's
            head has `num_classes + 1` logits and its critic step also trains it to read the translations as the
            last one, "generated" (`d_cls_fake`, weighted by lambda_cls like `d_cls`); G_rgb's classification term
            is unchanged (the target among all K+1). Why: G_rgb otherwise satisfies a K-class head with a texture
            that head has never seen on a generated face; here that texture is what "generated" looks like.
        generator_warmup_steps: NOT in the paper: the first iterations train G_rgb alone (`generator_warmup_step`).
        generator_warmup_cycle: whether those iterations include the cycle term (and its mask's regularisers);
            False saves G_rgb's second pass, about half a warm-up iteration (the paired term keeps identity).

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
        confidence_penalty_on="critic",
        lambda_mask=0.1,
        lambda_mask_tv=4.1,
        lambda_edit=0.0,
        critic_warmup_steps=0,
        mask_penalty="edits",
        lambda_pair=0.0,
        lambda_pair_gradient=0.0,
        condition="expression",
        au_loss="l1",
        au_change_weight=0.0,
        critic_augment=(),
        critic_fake_class=False,
        expression_guide=None,
        lambda_guide=0.0,
        lambda_guide_features=0.0,
        generator_warmup_steps=0,
        generator_warmup_cycle=True,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if condition not in CONDITIONS:
            raise ValueError(f"DepthGuidedStarGAN: condition must be one of {CONDITIONS}; got {condition!r}")
        if condition == "action_units" and depth_weight > 0:
            raise ValueError("DepthGuidedStarGAN: condition='action_units' needs depth_weight 0 (D_depth reads "
                             "expression classes, not AUs)")
        if critic_fake_class:
            if condition != "expression":
                raise ValueError("DepthGuidedStarGAN: critic_fake_class needs condition='expression' (a class of "
                                 "its own for generated faces in D_rgb's expression head)")
            head = getattr(d_rgb, "num_classes", int(num_classes) + 1)
            if head != int(num_classes) + 1:
                raise ValueError(f"DepthGuidedStarGAN: critic_fake_class needs D_rgb with num_classes + 1 = "
                                 f"{int(num_classes) + 1} logits; got {head}")
        if confidence_penalty_on not in PENALTY_SIDES:
            raise ValueError(f"DepthGuidedStarGAN: confidence_penalty_on must be one of {PENALTY_SIDES}; "
                             f"got {confidence_penalty_on!r}")
        if au_loss not in AU_LOSSES:
            raise ValueError(f"DepthGuidedStarGAN: au_loss must be one of {AU_LOSSES}; got {au_loss!r}")
        if au_change_weight < 0 or (au_change_weight > 0 and condition != "action_units"):
            raise ValueError(f"DepthGuidedStarGAN: au_change_weight must be >= 0 and needs "
                             f"condition='action_units'; got {au_change_weight} with {condition!r}")
        if mask_penalty not in losses.MASK_PENALTIES:
            raise ValueError(f"DepthGuidedStarGAN: mask_penalty must be one of {losses.MASK_PENALTIES}; "
                             f"got {mask_penalty!r}")
        if depth_weight < 0:
            raise ValueError(f"DepthGuidedStarGAN: depth_weight must be >= 0; got {depth_weight}")
        if lambda_id < 0:
            raise ValueError(f"DepthGuidedStarGAN: lambda_id must be >= 0; got {lambda_id}")
        if (lambda_guide > 0 or lambda_guide_features > 0) and expression_guide is None:
            raise ValueError("DepthGuidedStarGAN: lambda_guide / lambda_guide_features > 0 need an "
                             "expression_guide (a classifier; with condition='action_units' an AU regressor)")
        for name, value in (("lambda_pair", lambda_pair), ("lambda_pair_gradient", lambda_pair_gradient),
                            ("lambda_mask", lambda_mask), ("lambda_mask_tv", lambda_mask_tv),
                            ("lambda_edit", lambda_edit),
                            ("critic_warmup_steps", critic_warmup_steps), ("lambda_guide", lambda_guide),
                            ("lambda_guide_features", lambda_guide_features),
                            ("generator_warmup_steps", generator_warmup_steps)):
            if value < 0:
                raise ValueError(f"DepthGuidedStarGAN: {name} must be >= 0; got {value}")
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
        self.confidence_penalty_on = confidence_penalty_on
        self.lambda_id = float(lambda_id)
        self.lambda_mask = float(lambda_mask)
        self.lambda_mask_tv = float(lambda_mask_tv)
        self.lambda_edit = float(lambda_edit)
        self.critic_warmup_steps = int(critic_warmup_steps)
        self.generator_warmup_steps = int(generator_warmup_steps)
        self.generator_warmup_cycle = bool(generator_warmup_cycle)
        self.mask_penalty = mask_penalty
        self.lambda_pair = float(lambda_pair)
        self.lambda_pair_gradient = float(lambda_pair_gradient)
        self.condition = condition
        self.au_loss = au_loss
        self.au_change_weight = float(au_change_weight)
        self.critic_augment = critic_augment_module.parse_policy(critic_augment)
        self.critic_fake_class = bool(critic_fake_class)
        self.lambda_guide = float(lambda_guide)
        self.lambda_guide_features = float(lambda_guide_features)
        # A frozen expression classifier of real faces (`expr3d.training.guide`): its cross-entropy on the
        # translations is one more classification term for G_rgb, from a classifier that is accurate from the start;
        # its stage maps of a translation are pulled to those of the true target render.
        self.expression_guide = None
        if self.lambda_guide > 0 or self.lambda_guide_features > 0:
            from expr3d.training.guide import with_features

            expression_guide.trainable = False
            self.expression_guide = with_features(expression_guide) if self.lambda_guide_features > 0 \
                else expression_guide
            if isinstance(g_rgb, ActionUnitEditGenerator):
                # Its reader starts as the guide, frozen: a reader trained within the run's 3,000 iterations read
                # the test faces at MAE 0.155 (the guide: 0.029), and each misread AU became an edit (session 31).
                g_rgb.load_reader(expression_guide)
        self.iteration = tf.Variable(0, dtype=tf.int64, trainable=False, name="iteration")
        # A `training.ema.WeightAverage` of G_rgb (None: not kept), updated by the loop after each generator
        # update; the sample grids show `sample_generator`: G_rgb, or that average.
        self.generator_average = None
        self.sample_generator = g_rgb

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
    def uses_attention(self):
        return isinstance(self.g_rgb, AttentionGenerator)

    @property
    def uses_reader(self):
        return isinstance(self.g_rgb, ActionUnitEditGenerator)

    @property
    def trains_reader(self):
        return self.uses_reader and self.g_rgb.reader_trainable

    @property
    def _rgb_generator_terms(self):
        return (RGB_GENERATOR_TERMS + (IDENTITY_TERMS if self.lambda_id > 0 else ())
                + (PAIRED_TERMS if self.lambda_pair > 0 else ())
                + (PAIRED_GRADIENT_TERMS if self.lambda_pair_gradient > 0 else ())
                + (GUIDE_TERMS if self.lambda_guide > 0 else ())
                + (GUIDE_FEATURE_TERMS if self.lambda_guide_features > 0 else ())
                + (ATTENTION_TERMS if self.uses_attention else ())
                + (READER_TERMS if self.trains_reader else ())
                + (EDIT_TERMS if self.uses_reader and self.lambda_edit > 0 else ()))

    @property
    def penalty_on_critic(self):
        return self.confidence_penalty_on == "critic"

    @property
    def _depth_critic_terms(self):
        return DEPTH_CRITIC_TERMS + (DEPTH_CRITIC_PENALTY_TERMS if self.penalty_on_critic else ())

    @property
    def _depth_generator_terms(self):
        return DEPTH_GENERATOR_TERMS + (() if self.penalty_on_critic else DEPTH_GENERATOR_PENALTY_TERMS)

    @property
    def log_names(self):
        names = RGB_CRITIC_TERMS + (("d_cls_fake",) if self.critic_fake_class else ()) + self._rgb_generator_terms \
            + TOTAL_TERMS
        if self.uses_depth:
            names += self._depth_critic_terms + self._depth_generator_terms
        return names

    def build_optimizers(self):
        for key, optimizer in self.optimizers.items():
            optimizer.build(getattr(self, key).trainable_variables)

    def _generator_terms(self):
        return self._rgb_generator_terms + TOTAL_TERMS + (self._depth_generator_terms if self.uses_depth else ())

    def _conditions(self, batch):
        """(G_rgb's original condition, its target condition, what the critics' heads should read on real faces,
        what D_rgb should read on the translations)."""
        if self.condition == "action_units":
            original = batch["action_units"], batch["action_units_mask"]
            target = batch["target_action_units"], batch["target_action_units_mask"]
            squared = self.au_loss == "squared"
            return (action_unit_condition(*original), action_unit_condition(*target),
                    objectives.ActionUnitTarget(*original, squared),
                    objectives.ActionUnitTarget(*target, squared, self._change_weights(original, target)))
        return (common.class_one_hot(batch["expression"], self.num_classes),
                common.class_one_hot(batch["target"], self.num_classes), batch["expression"], batch["target"])

    def _change_weights(self, original, target):
        """With `au_change_weight` W > 0, the weight of each AU in the generator's show-these-AUs terms:
        1 + W |target - source| where both are known, else 1 (None when W is 0). A dial changes one AU of 17: in
        the plain mean its error is 1/17 of the row's and copying the source nearly satisfies the rest."""
        if self.au_change_weight <= 0:
            return None
        (units, mask), (target_units, target_mask) = original, target
        known = tf.logical_and(tf.cast(mask, tf.float32) > 0.5, tf.cast(target_mask, tf.float32) > 0.5)
        change = tf.abs(tf.cast(target_units, tf.float32) - tf.cast(units, tf.float32))
        # A NaN of a missing AU is selected away, not multiplied (0 * NaN is NaN).
        change = tf.where(tf.logical_and(known, tf.math.is_finite(change)), change, 0.0)
        return 1.0 + self.au_change_weight * change

    def _critic_view(self, batch, images, draw):
        """What D_rgb sees of `images`: themselves, or with `critic_augment` their augmentation by the batch's
        draw `draw` (`expr3d.training.critic_augment`: 0 real faces, 1 and 2 the critic's and the generator's
        translations)."""
        if not self.critic_augment:
            return images
        if "critic_augment" not in batch:
            raise ValueError("DepthGuidedStarGAN: critic_augment needs batches with `critic_augment` uniforms "
                             "(inputs.training_dataset(critic_augment=True))")
        return critic_augment_module.augment(images, batch["critic_augment"][:, draw], self.critic_augment)

    def critic_warmup_step(self, batch):
        """D_rgb's classification of the real faces alone (`critic_warmup_steps`): no generator, no penalty."""
        optimizer = self._optimizers["d_rgb"]
        with tf.GradientTape() as tape:
            _, real_cls = self.d_rgb(self._critic_view(batch, batch["image"], 0), training=True)
            logs = {"d_cls": objectives.head_loss(real_cls, self._conditions(batch)[2])}
            scaled = common.scaled_for_update(self.lambda_cls * logs["d_cls"], [optimizer])[0]
        variables = self.d_rgb.trainable_variables
        with tf.control_dependencies(tf.nest.flatten(logs)):  # as common.apply_updates, for the same reason
            gradients = tape.gradient(scaled, variables)
            # The adversarial head takes no part: update only what the classification reached.
            reached = [(g, v) for g, v in zip(gradients, variables) if g is not None]
            optimizer.apply([g for g, _ in reached], [v for _, v in reached])
        return logs

    def critic_step(self, batch):
        image = batch["image"]
        _, target, labels, _ = self._conditions(batch)
        fake = tf.stop_gradient(self.g_rgb([image, target], training=True))
        optimizers = [self._optimizers["d_rgb"]]
        variables = [self.d_rgb.trainable_variables]
        if self.uses_depth:
            fake_geometry = tf.stop_gradient(self.g_depth.to_geometry(fake, training=True))
            optimizers.append(self._optimizers["d_depth"])
            variables.append(self.d_depth.trainable_variables)
        persistent = any(common.is_loss_scaled(o) for o in optimizers) and len(optimizers) > 1
        with tf.GradientTape(persistent=persistent) as tape:
            logs = objectives.critic_loss(self.d_rgb, self._critic_view(batch, image, 0),
                                          self._critic_view(batch, fake, 1), labels, batch["alpha"], self.lambda_cls,
                                          self.lambda_gp, prefix="d",
                                          fake_class=self.num_classes if self.critic_fake_class else None)
            total = logs["d_total"]
            if self.uses_depth:
                logs.update(objectives.critic_loss(
                    self.d_depth, batch["geometry"], fake_geometry, labels, batch["alpha_depth"], self.lambda_cls,
                    self.lambda_gp, prefix="dd", log_entropy=True,
                    confidence_penalty=self.confidence_penalty if self.penalty_on_critic else None))
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
        original, target, _, target_labels = self._conditions(batch)
        optimizers = [self._optimizers["g_rgb"]]
        variables = [self.g_rgb.trainable_variables]
        if self.uses_depth:
            optimizers.append(self._optimizers["g_depth"])
            variables.append(self.g_depth.trainable_variables)
        persistent = any(common.is_loss_scaled(o) for o in optimizers)
        with tf.GradientTape(persistent=persistent) as tape:
            logs, fake = self._rgb_generator_loss(batch, original, target, target_labels, with_critic=True)
            total = logs["g_rgb_total"]
            if self.uses_depth:
                fake_geometry = self.g_depth.to_geometry(fake, training=True)
                # The penalty, when on this side: on D_depth's classification of G(x_t), in the generators' loss.
                depth_terms, classification = objectives.generator_terms(
                    self.d_depth, fake_geometry, target_labels, prefix="gd", log_entropy=True,
                    confidence_penalty=None if self.penalty_on_critic else self.confidence_penalty)
                cycle = self.g_depth.to_rgb(fake_geometry, training=True)
                logs.update(depth_terms)
                logs["gd_rec"] = losses.l1_loss(fake, cycle)
                logs["gd_total"] = logs["gd_adv"] + self.lambda_cls * classification + self.lambda_rec * logs["gd_rec"]
                total = total + self.depth_weight * logs["gd_total"]
            logs["g_total"] = total
            scaled = common.scaled_for_update(total, optimizers)
        common.apply_updates(tape, scaled, optimizers, variables, computed_first=logs)
        return logs

    def _rgb_generator_loss(self, batch, original, target, target_labels, with_critic):
        """G_rgb's terms (logged by name) and the translations: with `with_critic`, L_rgb; without, the generator
        warm-up's loss, L_rgb without D_rgb's adversarial and classification terms."""
        image = batch["image"]
        fake, fake_mask, fake_colour, fake_source = self._translate_with_mask(image, target, with_colour=True)
        if with_critic:
            logs, classification = objectives.generator_terms(self.d_rgb, self._critic_view(batch, fake, 2),
                                                              target_labels, prefix="g")
        else:
            logs = {}
        cycle = with_critic or self.generator_warmup_cycle
        reconstruction_mask = None
        if cycle:
            reconstruction, reconstruction_mask = self._translate_with_mask(fake, original)
            logs["g_rec"] = losses.l1_loss(image, reconstruction)
        if with_critic:
            logs["g_rgb_total"] = logs["g_adv"] + self.lambda_cls * classification + self.lambda_rec * logs["g_rec"]
        elif cycle:
            logs["g_rgb_total"] = self.lambda_rec * logs["g_rec"]
        else:
            # The paired term holds identity here; G_rgb's second pass is about half the iteration's cost.
            logs["g_rgb_total"] = tf.constant(0.0)
        if self.expression_guide is not None:
            logs["g_rgb_total"] = logs["g_rgb_total"] + self._guide_terms(batch, fake, target_labels, logs)
        if self.lambda_id > 0:
            logs["g_id"] = losses.l1_loss(image, self.g_rgb([image, original], training=True))
            logs["g_rgb_total"] = logs["g_rgb_total"] + self.lambda_id * logs["g_id"]
        if self.lambda_pair > 0 or self.lambda_pair_gradient > 0:
            if "target_image" not in batch:
                name = "lambda_pair" if self.lambda_pair > 0 else "lambda_pair_gradient"
                raise ValueError(f"DepthGuidedStarGAN: {name} > 0 needs paired batches (a `target_image`: "
                                 "--target_mode=paired)")
            # Rows asked for a dialled AU vector (--au_dial_targets with paired data) have no true render.
            weights = batch.get("pair_weight")
            rows = None if weights is None else tf.reshape(weights, [-1, 1, 1, 1])
        if self.lambda_pair > 0:
            logs["g_pair"] = losses.l1_loss(batch["target_image"], fake, mask=rows)
            if fake_colour is not None:
                # Through the output alone the colour head is reached only where the mask is open, and the mask
                # shuts within ~50 iterations (copying the source beats a random colour) and never reopens.
                # The pair says where the edit is: the mask learns that region, the colour head the target in it.
                # With a warp, the region is where the target differs from the moved source (what the warp
                # leaves to the colour head); for the other attention generators the source is the input.
                region = losses.paired_edit_region(tf.stop_gradient(fake_source), batch["target_image"])
                logs["g_pair"] = (logs["g_pair"] + losses.mask_cross_entropy(region, fake_mask, weights=weights)
                                  + losses.l1_loss(batch["target_image"], fake_colour,
                                                   mask=region if rows is None else region * rows))
            logs["g_rgb_total"] = logs["g_rgb_total"] + self.lambda_pair * logs["g_pair"]
        if self.lambda_pair_gradient > 0:
            logs["g_pair_gradient"] = losses.gradient_l1_loss(batch["target_image"], fake, mask=rows)
            logs["g_rgb_total"] = logs["g_rgb_total"] + self.lambda_pair_gradient * logs["g_pair_gradient"]
        if self.trains_reader:
            # The edit is scaled by (target - what the reader reads): without a guide to copy, the reader learns
            # the data's AUs, squared error (the mean, not the median that reads rare AUs as 0); no other term
            # reaches its weights.
            read = self.g_rgb.read_action_units(image, training=True)
            logs["g_reader"] = losses.action_unit_regression_loss(read, batch["action_units"],
                                                                  batch["action_units_mask"], squared=True)
            logs["g_rgb_total"] = logs["g_rgb_total"] + logs["g_reader"]
        if self.uses_reader:
            if self.lambda_edit > 0:
                # Each AU's edit image, not only their sum: the paired terms see sum_k change_k E_k on the data's
                # changes, which AU edits that cancel satisfy as well as clean ones; a dial then shows the noise.
                edits = (fake_mask,) + ((reconstruction_mask,) if cycle else ())
                logs["g_edit"] = sum(tf.reduce_mean(tf.abs(e)) for e in edits)
                logs["g_rgb_total"] = logs["g_rgb_total"] + self.lambda_edit * logs["g_edit"]
        if self.uses_attention:
            masks = (fake_mask,) + ((reconstruction_mask,) if cycle else ())
            logs["g_mask"] = sum(losses.attention_sparsity_loss(mask, self.mask_penalty) for mask in masks)
            logs["g_mask_tv"] = sum(losses.total_variation_loss(mask) for mask in masks)
            logs["g_rgb_total"] = (logs["g_rgb_total"] + self.lambda_mask * logs["g_mask"]
                                   + self.lambda_mask_tv * logs["g_mask_tv"])
        return logs, fake

    def generator_warmup_step(self, batch):
        """G_rgb alone on the paired terms, the cycle (unless `generator_warmup_cycle` is False), the guide and the
        mask regularisers (`generator_warmup_steps`): no critic, no depth network."""
        original, target, _, target_labels = self._conditions(batch)
        optimizer = self._optimizers["g_rgb"]
        with tf.GradientTape() as tape:
            logs, _ = self._rgb_generator_loss(batch, original, target, target_labels, with_critic=False)
            scaled = common.scaled_for_update(logs["g_rgb_total"], [optimizer])
        common.apply_updates(tape, scaled, [optimizer], [self.g_rgb.trainable_variables], computed_first=logs)
        return logs

    def _guide_terms(self, batch, fake, target_labels, logs):
        """The expression guide's weighted terms on the translations `fake` (logged into `logs`)."""
        def guide(images):
            # float32 whatever the guide computes in (a guide built under a mixed policy returns bf16/fp16).
            outputs = self.expression_guide(tf.cast(images, tf.float32), training=False)
            return tf.nest.map_structure(lambda t: tf.cast(t, tf.float32), outputs)

        outputs = guide(fake)
        if self.lambda_guide_features <= 0:
            outputs = [outputs]
        total = 0.0
        if isinstance(target_labels, objectives.ActionUnitTarget):
            # An AU guide is read with the squared error whatever --au_loss says: the L1's optimum, the median,
            # asks nothing of AUs that are off in most faces (the AU judge's lesson, docs/transfer.md).
            target_labels = target_labels._replace(squared=True)
        if self.lambda_guide > 0:
            logits = outputs[0]
            if self.critic_augment:
                # The class term reads what D_rgb reads (the same draw): a texture at a fixed place and colour is
                # then no reliable cue for the guide either.
                logits = guide(self._critic_view(batch, fake, 2))
                logits = logits[0] if self.lambda_guide_features > 0 else logits
            logs["g_guide"] = objectives.head_loss(logits, target_labels)
            total = total + self.lambda_guide * logs["g_guide"]
        if self.lambda_guide_features > 0:
            if "target_image" not in batch:
                raise ValueError("DepthGuidedStarGAN: lambda_guide_features > 0 needs paired batches (a "
                                 "`target_image`: --target_mode=paired)")
            targets = guide(batch["target_image"])
            logs["g_guide_features"] = objectives.guide_feature_loss(outputs[1:], targets[1:],
                                                                     weights=batch.get("pair_weight"))
            total = total + self.lambda_guide_features * logs["g_guide_features"]
        return total

    def _translate_with_mask(self, image, condition, with_colour=False):
        """`G_rgb(image, condition)` in training mode and its edit mask (an AttentionGenerator's; an
        ActionUnitEditGenerator's per-AU edit images; else None); with `with_colour`, also the colour head's image
        (None without one) and the image the mask blends into (`image`, or an AttentionWarpGenerator's warp of it)."""
        source = image  # what the mask blends into: the input, or an AttentionWarpGenerator's moved input
        if self.uses_attention:
            output, mask, colour, source = self.g_rgb.with_attention_and_source([image, condition], training=True)
        elif self.uses_reader:
            (output, mask), colour = self.g_rgb.with_edits([image, condition], training=True), None
        else:
            output, mask, colour = self.g_rgb([image, condition], training=True), None, None
        return (output, mask, colour, source) if with_colour else (output, mask)

    def sample_outputs(self, image, target_labels):
        """`G_rgb(image, target)`, the estimated geometry of the result and, with an AttentionGenerator, its edit
        mask (`attention`), for sample grids. `target_labels`: class ids, or with condition "action_units" the AU
        condition `[B, A]` itself."""
        if self.condition == "action_units":
            condition = tf.cast(target_labels, tf.float32)
        else:
            condition = common.class_one_hot(target_labels, self.num_classes)
        outputs = {}
        if self.uses_attention:
            fake, outputs["attention"], _ = self.sample_generator.with_attention([image, condition], training=False)
        else:
            fake = self.sample_generator([image, condition], training=False)
        outputs.update(image=fake, geometry=self.g_depth.to_geometry(fake, training=False))
        return outputs

    def get_config(self):
        return {
            "num_classes": self.num_classes,
            "condition": self.condition,
            "depth_weight": self.depth_weight,
            "n_critic": self.n_critic,
            "lambda_cls": self.lambda_cls,
            "lambda_rec": self.lambda_rec,
            "lambda_gp": self.lambda_gp,
            "confidence_penalty": self.confidence_penalty,
            "lambda_id": self.lambda_id,
            "confidence_penalty_on": self.confidence_penalty_on,
            "lambda_mask": self.lambda_mask,
            "lambda_mask_tv": self.lambda_mask_tv,
            "lambda_edit": self.lambda_edit,
            "critic_warmup_steps": self.critic_warmup_steps,
            "generator_warmup_steps": self.generator_warmup_steps,
            "generator_warmup_cycle": self.generator_warmup_cycle,
            "mask_penalty": self.mask_penalty,
            "lambda_pair": self.lambda_pair,
            "lambda_pair_gradient": self.lambda_pair_gradient,
            "au_loss": self.au_loss,
            "au_change_weight": self.au_change_weight,
            "critic_augment": ",".join(self.critic_augment),
            "critic_fake_class": self.critic_fake_class,
            "lambda_guide": self.lambda_guide,
            "lambda_guide_features": self.lambda_guide_features,
        }
