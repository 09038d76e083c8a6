"""The exemplar expression-transfer trainer (Shao et al., TIP 2021, with our depth guidance; issue #13).

Each batch is its own exemplar set: face `A[i]` takes the expression of `B[i] = A[i - 1]` (the batch rolled by one, so
every face is once a source and once an exemplar). With `E` the encoder (code, AU-free map, AU intensities), `Dec` the
decoder, `Adv` the AU adversary:

    code, free, aus = E(A);  A_rec = Dec(free, code, A);  A_B = Dec(free, roll(code), A)     (A with B's expression)
    A_back = Dec(free(A_B), code, A_B)                                                        (swapped twice)

Critic step (the critics and the adversary; the generators' outputs with their gradient stopped):
- `d_rgb` (PatchCritic, `num_action_units` outputs read as AU logits): WGAN-GP, real A vs A_B, plus the masked AU
  regression of the real faces: `dr_total = adv + lambda_au * au + lambda_gp * gp`.
- `d_swap` (PatchCritic): swap consistency, WGAN-GP with the self-reconstruction A_rec as "real" and A_B as "fake":
  it learns what tells a swap from a reconstruction.
- `adversary`: cross-entropy of the true AU bins of A from its AU-free map (the multi-class adversary).
- `d_depth` (with `depth_weight > 0`): WGAN-GP, the real geometry vs G_depth(A_B), plus the AU regression of the real
  geometry.
Generator step (encoder, decoder and, with depth, G_depth):
- `t_rec = |A_rec - A| + |C_rec - A|` (the blended self-reconstruction and the decoder's colour head alone, which
  must rebuild A from the features), `t_cycle = |A_back - A|`, `t_au = |aus - AU(A)|` (the code predicts the AUs, masked),
  `t_confusion = au_confusion_loss(Adv(free))` (AU-free features tell the adversary nothing),
  `t_adv = -D_rgb(A_B)` and `t_au_fake` (D_rgb reads B's AUs in A_B), `t_swap = -D_swap(A_B)` (a swap looks like a
  reconstruction), `t_mask` (the decoder's edit masks' mean, GANimation's sparsity);
  `t_total = t_adv + lambda_au (t_au + t_au_fake) + lambda_confusion t_confusion + lambda_swap t_swap
  + lambda_rec (t_rec + t_cycle) + lambda_mask t_mask`, plus `depth_weight * gd_total` with the depth guidance
  (`gd_adv = -D_depth(G_depth(A_B))`, `gd_au` D_depth reads B's AUs there, `gd_rec = |G_depth^-1(G_depth(A_B)) - A_B|`).
With `lambda_pair > 0` (`--target_mode=paired`: the batch also holds `target_image` Y, the same identity, pose,
light and background under another expression, as the procedural `--train_pairs` data and RaFD have) the decoder
also learns a self-transfer with a known answer: `A_Y = Dec(free(A), code(Y), A)` must be Y,
`t_pair = |A_Y - Y| + CE(region, M_Y) + |C_Y - Y|_region`, where `region` is where A and Y differ
(`losses.paired_edit_region`): the edit mask learns where an expression changes and the colour head what it
becomes there, as the StarGAN's paired term (our choice, not Shao et al.'s, who train on unpaired faces; without it
the decoder's masks shut, docs/transfer.md).
With swap partners (`--pair_exemplar=partner`: the batch also holds `partner_image` X, ANOTHER identity under Y's exact
AUs, from data rendered with `--train_swap_pairs`) the paired term decodes with the partner's code instead,
`A_Y = Dec(free(A), code(X), A)`: a cross-identity swap with a known answer Y (ours; the swap the evaluation scores,
supervised where the rolled swaps have only the critics and the AU terms).
With an AU guide (`au_guide`, `--expression_guide`: a frozen AU regressor of the real training faces, ours, not
Shao et al.'s; `expr3d.training.guide`): `g_guide = |sigmoid(Guide(A_B)) - AU(B)|^2` (the swap must read as B's AUs
to a reader that already knows faces, weight `lambda_guide`) and, with paired batches,
`g_guide_features = mean_s |Guide_s(A_Y) - Guide_s(Y)|` over the guide's four stage maps (weight
`lambda_guide_features`): the expression-guide terms of the StarGAN (`objectives.guide_feature_loss`).
With `lambda_free_invariance > 0` (paired batches; ours, not Shao et al.'s): `t_free = free_invariance_loss(free(A),
free(Y))`, the share of the AU-free map's variation that differs between A and Y, the same face under two expressions:
the supervised form of the adversary's aim (the AU-free map tells nothing of the expression), with no extra pass (Y is
encoded for the paired term anyway).
With `code_detached` (ours, `--transfer_code_detached`) every decoder call gets the codes with their gradient stopped:
no decoder term reaches the encoder through a code (with `--transfer_encoder=split` the code's own trunk then
learns from `t_au` alone; a shared trunk still learns from the AU-free map's terms). Why: with
`--transfer_code=action_units` the code is also the AU estimate, and the decoder's terms pulled it off the AUs
(session 34: the code's squared AU error 0.067 late in training; an AU regressor of the same faces ends at 0.005).
With `code_teacher` (ours, `--transfer_code_teacher`; the code must be the AU estimate, `--transfer_code=action_units`
or `guide`) every training decode gets, in place of the encoder's estimate, the face's TRUE AU intensities wherever
they are known (`teacher_code`: own, exemplar's, the paired render's): the decoder learns to draw exact AU vectors, as
the AU-conditioned StarGAN does (another face's AUs on a face: 0.029 against the transfer's 0.077, session 33),
instead of the estimates it would otherwise learn to distrust early in training; at inference it gets the estimate.
With `generator_warmup_steps > 0` (ours, as the StarGAN's generator warm-up; needs the paired term) the first
iterations train the encoder and decoder alone: `t_rec`, `t_au`, `t_mask`, `t_pair`, `t_free`, the guide terms and,
with `generator_warmup_cycle`, `t_cycle` - no critic, no adversary, no depth network.
Missing AUs (the pipeline's `action_units_mask`, or NaN) are masked out of every AU term.
"""

import tensorflow as tf

from expr3d import losses
from expr3d.training import common, objectives

CRITIC_TERMS = ("dr_adv", "dr_au", "dr_gp", "dr_total", "ds_adv", "ds_gp", "ds_total", "adv_au")
DEPTH_CRITIC_TERMS = ("dd_adv", "dd_au", "dd_gp", "dd_total")
GENERATOR_TERMS = ("t_rec", "t_cycle", "t_au", "t_confusion", "t_adv", "t_au_fake", "t_swap", "t_mask", "t_total",
                   "g_total")
DEPTH_GENERATOR_TERMS = ("gd_adv", "gd_au", "gd_rec", "gd_total")
GUIDE_TERMS, GUIDE_FEATURE_TERMS = ("g_guide",), ("g_guide_features",)  # with the AU guide's weights > 0


def exemplars(tensor):
    """The batch rolled by one: row i holds row i - 1 (B[i] = A[i - 1]), so each face is once an exemplar."""
    return tf.roll(tensor, shift=1, axis=0)


def action_unit_mask(batch):
    """`[B, A]` float32: 1 where an AU intensity is known: the pipeline's `action_units_mask` (schema v1's
    `label/action_units_valid`, all 0 for a record without AUs) where the batch has it, else `has_action_units`;
    a NaN intensity counts as missing either way."""
    aus = tf.cast(batch["action_units"], tf.float32)
    known = tf.logical_not(tf.math.is_nan(aus))
    if "action_units_mask" in batch:
        known = tf.logical_and(known, tf.cast(batch["action_units_mask"], tf.float32) > 0.5)
    elif "has_action_units" in batch:
        known = tf.logical_and(known, tf.cast(batch["has_action_units"], tf.bool)[:, None])
    return tf.cast(known, tf.float32)


def teacher_code(code, units, known):
    """The code a teacher-forced decode gets (`code_teacher`): the true intensities `units` where `known` (1/0) says
    they are known, the encoder's estimate `code` elsewhere; all `[B, A]`."""
    return tf.where(known > 0.5, tf.cast(units, code.dtype), code)


def _critic_au_loss(logits, intensities, mask, squared=False):
    """A critic's AU head: its logits through a sigmoid, the masked absolute (`squared`: squared) error."""
    return losses.action_unit_regression_loss(tf.sigmoid(tf.cast(logits, tf.float32)), intensities, mask,
                                              squared=squared)


def _paired_term(image, target, outputs):
    """`t_pair` (module docstring): A decoded with the code of Y, its own render under another expression. The edit
    region is where Y differs from what the mask blends into (A, or the warp decoder's moved A)."""
    region = losses.paired_edit_region(tf.stop_gradient(outputs.get("paired_source", image)), target)
    return (losses.l1_loss(target, outputs["paired"]) + losses.mask_cross_entropy(region, outputs["paired_mask"])
            + losses.l1_loss(target, outputs["paired_colour"], mask=region))


class ExpressionTransferTrainer(common.NCriticSchedule):
    """Trains `encoder`, `decoder`, `adversary`, `d_rgb`, `d_swap` (and `g_depth`, `d_depth` with depth guidance).

    Args:
        encoder, decoder, adversary: `expr3d.models.TransferEncoder`, `TransferDecoder`, `AUAdversary`.
        d_rgb: a `PatchCritic` on faces with `num_action_units` outputs (its AU head).
        d_swap: a `PatchCritic` on faces (its class head unused).
        g_depth, d_depth: the depth network (a `DepthTranslator`) and a `PatchCritic` on geometry with an AU head;
            unused with `depth_weight = 0` (Shao et al.'s method alone).
        depth_weight, n_critic, lambda_gp: as the depth-guided StarGAN's.
        lambda_rec: self-reconstruction and swap-twice L1 (10, StarGAN's cycle weight).
        lambda_au: the AU regression terms (1).
        lambda_confusion: the encoder's confusion term (1).
        lambda_swap: the swap-consistency adversarial term (1).
        lambda_mask: the decoder's edit-mask sparsity (0.1, GANimation's).
        lambda_pair: the paired self-transfer term (0 = off; needs batches with `target_image`).
        au_guide: a frozen AU regressor of real faces (a Keras model of logits), needed by the two guide terms.
        lambda_guide: its squared AU error on each swap against the exemplar's AUs (0 = off).
        lambda_guide_features: its stage maps of the paired self-transfer against the true render's (0 = off;
            needs batches with `target_image`).
        au_loss: "l1" or "squared": the error of every AU regression term (--au_loss).
        lambda_free_invariance: the AU-free map's invariance between the paired renders (0 = off; needs batches with
            `target_image` and no swap partner: Y must be the same face).
        generator_warmup_steps: NOT in Shao et al.: the first iterations train the encoder and decoder alone
            (`generator_warmup_step`), as the StarGAN's generator warm-up (needs lambda_pair > 0).
        generator_warmup_cycle: whether those iterations include the swap-twice cycle (a second encoder and decoder
            pass; False saves about a third of the warm-up's cost).
        code_detached: NOT in Shao et al.: the decoder gets the codes with their gradient stopped, so no decoder
            term reaches the encoder through a code: the code learns from the AU term `t_au` alone (with
            `--transfer_code=action_units`, a plain AU regressor whose output the decoder renders).
        code_teacher: NOT in Shao et al.: in training the decoder gets the true AU intensities as code where they
            are known (`teacher_code`); needs an encoder whose code is its AU estimate (`code="action_units"` or
            "guide"). An encoder with `code="guide"` gets a frozen copy of `au_guide` as its reader (`load_reader`).
    """

    stage = "transfer"

    def __init__(self, encoder, decoder, adversary, d_rgb, d_swap, g_depth=None, d_depth=None, depth_weight=0.1,
                 n_critic=5, lambda_gp=10.0, lambda_rec=10.0, lambda_au=1.0, lambda_confusion=1.0, lambda_swap=1.0,
                 lambda_mask=0.1, lambda_pair=0.0, au_loss="l1", au_guide=None, lambda_guide=0.0,
                 lambda_guide_features=0.0, lambda_free_invariance=0.0, generator_warmup_steps=0,
                 generator_warmup_cycle=True, code_detached=False, code_teacher=False):
        for name, value in (("depth_weight", depth_weight), ("lambda_gp", lambda_gp), ("lambda_rec", lambda_rec),
                            ("lambda_au", lambda_au), ("lambda_confusion", lambda_confusion),
                            ("lambda_swap", lambda_swap), ("lambda_mask", lambda_mask), ("lambda_pair", lambda_pair),
                            ("lambda_guide", lambda_guide), ("lambda_guide_features", lambda_guide_features),
                            ("lambda_free_invariance", lambda_free_invariance),
                            ("generator_warmup_steps", generator_warmup_steps)):
            if value < 0:
                raise ValueError(f"ExpressionTransferTrainer: {name} must be >= 0; got {value}")
        from expr3d.training.depth_guided_stargan import AU_LOSSES

        if au_loss not in AU_LOSSES:
            raise ValueError(f"ExpressionTransferTrainer: au_loss must be one of {AU_LOSSES}; got {au_loss!r}")
        if int(n_critic) < 1:
            raise ValueError(f"ExpressionTransferTrainer: n_critic must be >= 1; got {n_critic}")
        if depth_weight > 0 and (g_depth is None or d_depth is None):
            raise ValueError("ExpressionTransferTrainer: depth_weight > 0 needs g_depth and d_depth")
        self.encoder, self.decoder, self.adversary = encoder, decoder, adversary
        self.d_rgb, self.d_swap, self.g_depth, self.d_depth = d_rgb, d_swap, g_depth, d_depth
        self.depth_weight = float(depth_weight)
        self.n_critic = int(n_critic)
        self.lambda_gp, self.lambda_rec, self.lambda_au = float(lambda_gp), float(lambda_rec), float(lambda_au)
        self.lambda_confusion, self.lambda_swap = float(lambda_confusion), float(lambda_swap)
        self.lambda_mask = float(lambda_mask)
        self.lambda_pair = float(lambda_pair)
        self.lambda_free_invariance = float(lambda_free_invariance)
        self.lambda_guide, self.lambda_guide_features = float(lambda_guide), float(lambda_guide_features)
        self.au_guide = None
        if self.lambda_guide > 0 or self.lambda_guide_features > 0:
            if au_guide is None:
                raise ValueError("ExpressionTransferTrainer: lambda_guide / lambda_guide_features > 0 need an "
                                 "au_guide (a frozen AU regressor)")
            from expr3d.training.guide import with_features

            au_guide.trainable = False
            self.au_guide = with_features(au_guide)
        self.au_squared = au_loss == "squared"
        self.generator_warmup_steps = int(generator_warmup_steps)
        self.generator_warmup_cycle = bool(generator_warmup_cycle)
        self.code_detached = bool(code_detached)
        self.code_teacher = bool(code_teacher)
        code_kind = encoder.get_config().get("code")
        if self.code_teacher and code_kind not in ("action_units", "guide"):
            raise ValueError("ExpressionTransferTrainer: code_teacher puts true AU intensities in place of the code; "
                             f"it needs an encoder whose code is its AU estimate (code='action_units' or 'guide'); "
                             f"got code={code_kind!r}")
        if code_kind == "guide":
            if au_guide is None:
                raise ValueError("ExpressionTransferTrainer: an encoder with code='guide' reads its code with a copy "
                                 "of the AU guide: give au_guide")
            encoder.load_reader(au_guide)  # frozen: before the optimizers collect the encoder's trainable weights
        if self.generator_warmup_steps > 0 and self.lambda_pair <= 0:
            raise ValueError("ExpressionTransferTrainer: generator_warmup_steps > 0 trains on the paired term; it "
                             "needs lambda_pair > 0")
        self.iteration = tf.Variable(0, dtype=tf.int64, trainable=False, name="iteration")
        self.generator_average = None
        self._optimizers = {}

    @property
    def uses_depth(self):
        return self.depth_weight > 0

    def compile(self, optimizers):
        """`optimizers`: a dict with a key per trained network (`optimizer_keys`)."""
        missing = [key for key in self.optimizer_keys if key not in optimizers]
        if missing:
            raise ValueError(f"ExpressionTransferTrainer.compile: no optimizer for {missing}")
        self._optimizers = dict(optimizers)

    @property
    def optimizer_keys(self):
        keys = ("encoder", "decoder", "adversary", "d_rgb", "d_swap")
        return keys + (("g_depth", "d_depth") if self.uses_depth else ())

    @property
    def optimizers(self):
        return {key: self._optimizers[key] for key in self.optimizer_keys}

    def trained_variables(self, key):
        """The variables network `key`'s optimizer updates: all its trainable ones, except D_swap's class head,
        which no term uses (it would only draw "no gradient" warnings)."""
        variables = getattr(self, key).trainable_variables
        if key == "d_swap":
            unused = {id(v) for v in self.d_swap.get_layer("cls_conv").trainable_variables}
            variables = [v for v in variables if id(v) not in unused]
        return variables

    def build_optimizers(self):
        for key, optimizer in self.optimizers.items():
            optimizer.build(self.trained_variables(key))

    @property
    def log_names(self):
        names = (CRITIC_TERMS + GENERATOR_TERMS + (("t_pair",) if self.lambda_pair > 0 else ())
                 + (("t_free",) if self.lambda_free_invariance > 0 else ())
                 + (GUIDE_TERMS if self.lambda_guide > 0 else ())
                 + (GUIDE_FEATURE_TERMS if self.lambda_guide_features > 0 else ()))
        return names + (DEPTH_CRITIC_TERMS + DEPTH_GENERATOR_TERMS if self.uses_depth else ())

    def _swap(self, image, training, target=None, truths=None):
        """Encodes the batch and decodes every face with its own and with its exemplar's code (and, given `target`,
        with the code of that image, its paired render or a swap partner's: `paired`, `paired_mask`,
        `paired_colour`, and that image's AU-free map `paired_free`).

        One encoder call and one decoder call on the faces stacked along the batch (the networks normalise each face
        on its own, so this equals separate calls to rounding): half the traced graph of separate calls, and larger
        convolutions. `truths` (`code_teacher`): `(units, known)` of the face, its exemplar and (with `target`) the
        target, each decoded with `teacher_code`; `decoded_code` is the face's own code as decoded."""
        count = image.shape[0] if image.shape[0] is not None else tf.shape(image)[0]
        encoded = self.encoder(image if target is None else tf.concat([image, target], 0), training=training)
        code, free, aus = (tensor[:count] for tensor in encoded)
        codes = [code, exemplars(code)] + ([encoded[0][count:]] if target is not None else [])
        codes = [self._decoded_code(c) for c in codes]
        if truths is not None:
            codes = [teacher_code(c, units, known) for c, (units, known) in zip(codes, truths, strict=True)]
        decoded = self.decoder.with_attention_and_source(
            [tf.concat([free] * len(codes), 0), tf.concat(codes, 0), tf.concat([image] * len(codes), 0)],
            training=training)
        images, masks, colours, sources = (tf.split(tensor, len(codes), axis=0) for tensor in decoded)
        outputs = {"code": code, "decoded_code": codes[0], "free": free, "aus": aus, "reconstruction": images[0],
                   "swapped": images[1], "reconstruction_colour": colours[0], "masks": (masks[0], masks[1])}
        if target is not None:
            outputs.update(paired=images[2], paired_mask=masks[2], paired_colour=colours[2],
                           paired_free=encoded[1][count:], paired_source=sources[2])
        return outputs

    def _decoded_code(self, code):
        """The code as the decoder gets it: with `code_detached`, no decoder term reaches the encoder through it."""
        return tf.stop_gradient(code) if self.code_detached else code

    def _teacher_truths(self, batch, with_target):
        """`_swap`'s `truths` with `code_teacher` (else None): the batch's AUs, its exemplars' and (`with_target`)
        the paired render's."""
        if not self.code_teacher:
            return None
        aus, mask = tf.cast(batch["action_units"], tf.float32), action_unit_mask(batch)
        truths = [(aus, mask), (exemplars(aus), exemplars(mask))]
        if with_target:
            if "target_action_units" not in batch:
                raise ValueError("ExpressionTransferTrainer: code_teacher with paired batches needs the paired "
                                 "render's AUs (`target_action_units`)")
            target = {"action_units": batch["target_action_units"]}
            if "target_action_units_mask" in batch:
                target["action_units_mask"] = batch["target_action_units_mask"]
            truths.append((tf.cast(batch["target_action_units"], tf.float32), action_unit_mask(target)))
        return truths

    def _critic_terms(self, critic, real, fake, alpha, prefix, au_logits_target=None, au_mask=None):
        real_src, real_logits = critic(real, training=True)
        fake_src, _ = critic(fake, training=True)
        logs = {f"{prefix}_adv": losses.critic_adversarial_loss(real_src, fake_src),
                f"{prefix}_gp": common.gradient_penalty(critic, real, fake, alpha)}
        total = logs[f"{prefix}_adv"] + self.lambda_gp * logs[f"{prefix}_gp"]
        if au_logits_target is not None:
            logs[f"{prefix}_au"] = _critic_au_loss(real_logits, au_logits_target, au_mask, self.au_squared)
            total = total + self.lambda_au * logs[f"{prefix}_au"]
        logs[f"{prefix}_total"] = total
        return logs

    def critic_step(self, batch):
        image = batch["image"]
        aus, mask = tf.cast(batch["action_units"], tf.float32), action_unit_mask(batch)
        outputs = self._swap(image, training=True, truths=self._teacher_truths(batch, with_target=False))
        swapped = tf.stop_gradient(outputs["swapped"])
        reconstruction = tf.stop_gradient(outputs["reconstruction"])
        free = tf.stop_gradient(outputs["free"])
        keys = ["d_rgb", "d_swap", "adversary"] + (["d_depth"] if self.uses_depth else [])
        optimizers = [self._optimizers[key] for key in keys]
        variables = [self.trained_variables(key) for key in keys]
        if self.uses_depth:
            fake_geometry = tf.stop_gradient(self.g_depth.to_geometry(swapped, training=True))
        persistent = any(common.is_loss_scaled(o) for o in optimizers)
        with tf.GradientTape(persistent=persistent) as tape:
            logs = self._critic_terms(self.d_rgb, image, swapped, batch["alpha"], "dr", aus, mask)
            logs.update(self._critic_terms(self.d_swap, reconstruction, swapped, batch["alpha"], "ds"))
            logs["adv_au"] = losses.au_adversary_loss(self.adversary(free, training=True), aus, mask)
            totals = [logs["dr_total"], logs["ds_total"], logs["adv_au"]]
            if self.uses_depth:
                logs.update(self._critic_terms(self.d_depth, batch["geometry"], fake_geometry, batch["alpha_depth"],
                                               "dd", aus, mask))
                totals.append(logs["dd_total"])
            if persistent:
                scaled = [common.scaled_for_update(total, [opt])[0] for total, opt in zip(totals, optimizers)]
            else:
                # The networks share no variables: one backward pass of the sum updates each with its own term.
                scaled = common.scaled_for_update(tf.add_n(totals), optimizers)
        common.apply_updates(tape, scaled, optimizers, variables, computed_first=logs)
        return logs

    def generator_step(self, batch):
        return self._generator_update(batch, with_critic=True)

    def generator_warmup_step(self, batch):
        """The encoder and decoder alone (`generator_warmup_steps`): the self-reconstruction, the code's AU term, the
        paired terms, the AU guide, the mask sparsity and (with `generator_warmup_cycle`) the swap-twice cycle; no
        critic, no adversary (untrained, its confusion term would mean nothing), no depth network."""
        return self._generator_update(batch, with_critic=False)

    def _generator_update(self, batch, with_critic):
        image = batch["image"]
        aus, mask = tf.cast(batch["action_units"], tf.float32), action_unit_mask(batch)
        exemplar_aus, exemplar_mask = exemplars(aus), exemplars(mask)
        keys = ["encoder", "decoder"] + (["g_depth"] if self.uses_depth and with_critic else [])
        optimizers = [self._optimizers[key] for key in keys]
        variables = [self.trained_variables(key) for key in keys]
        persistent = any(common.is_loss_scaled(o) for o in optimizers)
        cycle = with_critic or self.generator_warmup_cycle
        paired = self.lambda_pair > 0 or self.lambda_guide_features > 0 or self.lambda_free_invariance > 0
        if paired and "target_image" not in batch:
            raise ValueError("ExpressionTransferTrainer: lambda_pair / lambda_guide_features / lambda_free_invariance "
                             "> 0 need paired batches (a `target_image`: --target_mode=paired)")
        if self.lambda_free_invariance > 0 and "partner_image" in batch:
            raise ValueError("ExpressionTransferTrainer: lambda_free_invariance > 0 compares A with its own paired "
                             "render; it does not combine with swap partners (--pair_exemplar=target)")
        target = batch["target_image"] if paired else None
        # The code the paired term decodes with: the true render's own, or a swap partner's (the same AUs).
        code_image = batch["partner_image"] if paired and "partner_image" in batch else target
        with tf.GradientTape(persistent=persistent) as tape:
            outputs = self._swap(image, training=True, target=code_image,
                                 truths=self._teacher_truths(batch, with_target=code_image is not None))
            swapped = outputs["swapped"]
            logs = {
                # The colour head too: through the blend alone, copying the source (mask 0) reconstructs perfectly, and
                # the masks shut within 150 iterations (measured), leaving the code unused. Reconstructing A from
                # (free, code) alone makes both features carry the face.
                "t_rec": (losses.l1_loss(image, outputs["reconstruction"])
                          + losses.l1_loss(image, outputs["reconstruction_colour"])),
                "t_au": losses.action_unit_regression_loss(outputs["aus"], aus, mask, squared=self.au_squared),
                "t_mask": sum(losses.attention_sparsity_loss(m) for m in outputs["masks"]),
            }
            logs["t_total"] = (self.lambda_au * logs["t_au"] + self.lambda_rec * logs["t_rec"]
                               + self.lambda_mask * logs["t_mask"])
            if cycle:
                back_code, back_free, back_aus = self.encoder(swapped, training=True)
                logs["t_cycle"] = losses.l1_loss(
                    image, self.decoder([back_free, outputs["decoded_code"], swapped], training=True))
                logs["t_total"] = logs["t_total"] + self.lambda_rec * logs["t_cycle"]
            if with_critic:
                logs["t_confusion"] = losses.au_confusion_loss(self.adversary(outputs["free"], training=True), mask)
                fake_src, fake_logits = self.d_rgb(swapped, training=True)
                logs["t_adv"] = losses.generator_adversarial_loss(fake_src)
                logs["t_au_fake"] = _critic_au_loss(fake_logits, exemplar_aus, exemplar_mask, self.au_squared)
                swap_src, _ = self.d_swap(swapped, training=True)
                logs["t_swap"] = losses.generator_adversarial_loss(swap_src)
                logs["t_total"] = (logs["t_total"] + logs["t_adv"] + self.lambda_au * logs["t_au_fake"]
                                   + self.lambda_confusion * logs["t_confusion"] + self.lambda_swap * logs["t_swap"])
            if self.lambda_pair > 0:
                logs["t_pair"] = _paired_term(image, target, outputs)
                logs["t_total"] = logs["t_total"] + self.lambda_pair * logs["t_pair"]
            if self.lambda_free_invariance > 0:
                logs["t_free"] = losses.free_invariance_loss(outputs["free"], outputs["paired_free"])
                logs["t_total"] = logs["t_total"] + self.lambda_free_invariance * logs["t_free"]
            if self.au_guide is not None:
                logs["t_total"] = logs["t_total"] + self._guide_terms(outputs, target, exemplar_aus, exemplar_mask,
                                                                      logs)
            total = logs["t_total"]
            if self.uses_depth and with_critic:
                geometry = self.g_depth.to_geometry(swapped, training=True)
                depth_src, depth_logits = self.d_depth(geometry, training=True)
                logs["gd_adv"] = losses.generator_adversarial_loss(depth_src)
                logs["gd_au"] = _critic_au_loss(depth_logits, exemplar_aus, exemplar_mask, self.au_squared)
                logs["gd_rec"] = losses.l1_loss(swapped, self.g_depth.to_rgb(geometry, training=True))
                logs["gd_total"] = logs["gd_adv"] + self.lambda_au * logs["gd_au"] + self.lambda_rec * logs["gd_rec"]
                total = total + self.depth_weight * logs["gd_total"]
            logs["g_total"] = total
            scaled = common.scaled_for_update(total, optimizers)
        common.apply_updates(tape, scaled, optimizers, variables, computed_first=logs)
        return logs

    def _guide_terms(self, outputs, target, exemplar_aus, exemplar_mask, logs):
        """The AU guide's weighted terms (module docstring), logged into `logs`; one guide call on the swaps and,
        with the feature term, the paired self-transfers and their true renders."""
        images = [outputs["swapped"]] + ([outputs["paired"], target] if self.lambda_guide_features > 0 else [])
        # float32 whatever the guide computes in (a guide built under a mixed policy returns bf16/fp16).
        read = self.au_guide(tf.cast(tf.concat(images, 0), tf.float32), training=False)
        read = [tf.split(tf.cast(tensor, tf.float32), len(images), axis=0) for tensor in read]
        total = 0.0
        if self.lambda_guide > 0:
            logs["g_guide"] = losses.action_unit_regression_loss(tf.sigmoid(read[0][0]), exemplar_aus, exemplar_mask,
                                                                 squared=True)
            total = total + self.lambda_guide * logs["g_guide"]
        if self.lambda_guide_features > 0:
            logs["g_guide_features"] = objectives.guide_feature_loss([maps[1] for maps in read[1:]],
                                                                     [maps[2] for maps in read[1:]])
            total = total + self.lambda_guide_features * logs["g_guide_features"]
        return total

    def sample_outputs(self, image):
        """For sample grids (inference mode): each face's exemplar, the face with the exemplar's expression, its
        self-reconstruction and the swap's edit mask."""
        outputs = self._swap(image, training=False)
        return {"exemplar": exemplars(image), "swapped": outputs["swapped"],
                "reconstruction": outputs["reconstruction"], "attention": outputs["masks"][1]}

    def get_config(self):
        return {"depth_weight": self.depth_weight, "n_critic": self.n_critic, "lambda_gp": self.lambda_gp,
                "lambda_rec": self.lambda_rec, "lambda_au": self.lambda_au, "lambda_confusion": self.lambda_confusion,
                "lambda_swap": self.lambda_swap, "lambda_mask": self.lambda_mask, "lambda_pair": self.lambda_pair,
                "au_loss": "squared" if self.au_squared else "l1", "lambda_guide": self.lambda_guide,
                "lambda_guide_features": self.lambda_guide_features,
                "lambda_free_invariance": self.lambda_free_invariance,
                "generator_warmup_steps": self.generator_warmup_steps,
                "generator_warmup_cycle": self.generator_warmup_cycle, "code_detached": self.code_detached,
                "code_teacher": self.code_teacher}
