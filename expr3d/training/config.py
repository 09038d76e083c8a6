# Over 400 lines: every training flag is one field and one line here, with its bounds: one place to add a setting.
"""`TrainConfig`: everything one training run is told, as one frozen value (the `expr3d.train` flags, one field each).

    config = TrainConfig(data_dir="data/synthetic64", model_dir="runs/a", num_steps_gan=1000)
    config.validate(num_replicas=1)          # the cross-field rules; bounds are the flags' absl validators
    exit_status = train.run(config)

`expr3d.train` defines its flags here (`define_flags`: one per field, the field's default, absl bounds) and builds
the config from them once (`TrainConfig.from_flags`); `parse_config(argv)` does both for in-process callers.
`to_dict()` is what config.json records under "flags". TensorFlow-free: importing it (and the CLI) costs nothing.
"""

import dataclasses
import os

from absl import flags

from expr3d import cli
from expr3d.cli import UsageError
from expr3d.labels import NUM_EXPRESSIONS
from expr3d.training import critic_augment

# What a resumed run's data position depends on (a restored tf.data iterator replays the saved pipeline state).
DATA_STREAM_FIELDS = ("data_dir", "batch_size", "batch_size_depth", "image_size", "seed", "balanced", "target_mode",
                      "pair_exemplar", "contempt_side", "dial_pair_share")
# Fields that become ModelConfig's (the networks' shapes).
MODEL_FIELDS = ("image_size", "g_conv_dim", "g_num_res_blocks", "d_conv_dim", "d_num_layers", "depth_g_conv_dim",
                "depth_g_num_res_blocks", "depth_d_conv_dim", "depth_d_num_layers", "generator", "init", "code_dim",
                "au_bins", "transfer_code", "transfer_decoder", "transfer_encoder", "condition", "critic_fake_class",
                "condition_norms", "guide_width", "adversary_readout")
# Settings of the StarGAN family only: refused with --model=transfer unless at their defaults.
STARGAN_ONLY_FIELDS = ("generator", "lambda_id", "lambda_pair_gradient", "g_ema_decay", "critic_warmup_steps",
                       "contempt_side",
                       "condition", "critic_augment", "au_dial_targets", "au_change_weight", "critic_fake_class")


@dataclasses.dataclass(frozen=True, kw_only=True)
class TrainConfig:
    """One training run's settings: the fields, names and defaults of `expr3d.train`'s flags (its --help says what
    each means). Build it with keywords, from parsed flags (`from_flags`) or from another (`replace`).

    Example:
    >>> config = TrainConfig(data_dir="data", model_dir="runs/a", depth_weight=0)
    >>> config.stages()
    ['gan']
    >>> config.replace(stage="depth").stages()
    ['depth']
    """

    # --- what to run (field order = config.json's "flags" order, as written by every earlier version)
    stage: str = "all"
    data_dir: str = None
    model_dir: str = None
    num_steps_depth: int = 200000
    num_steps_gan: int = 300000
    batch_size: int = 16
    batch_size_depth: int = None
    image_size: int = None
    allow_resize: bool = False
    balanced: bool = False
    skip_corrupt: bool = False
    # --- synthetic data
    generate_synthetic: bool = False
    synthetic_identities: int = 24
    synthetic_images_per_identity: int = 8
    synthetic_seed: int = 0
    synthetic_train_pairs: bool = False
    synthetic_transfer_pairs: int = 0
    synthetic_train_swap_pairs: bool = False
    synthetic_train_dial_renders: int = 0
    synthetic_expression_strength: str = None
    # --- architecture
    g_conv_dim: int = 64
    g_num_res_blocks: int = 6
    d_conv_dim: int = 64
    d_num_layers: int = 6
    depth_g_conv_dim: int = 64
    depth_g_num_res_blocks: int = 6
    depth_d_conv_dim: int = 64
    depth_d_num_layers: int = 6
    generator: str = "stargan"
    geometry: str = "depth"
    init: str = "keras"
    model: str = "stargan"
    code_dim: int = 64
    au_bins: int = 5
    transfer_code: str = "learned"
    transfer_decoder: str = "bottleneck"
    transfer_encoder: str = "shared"
    adversary_readout: str = "global"
    condition: str = "expression"
    # --- losses
    depth_weight: float = 0.1
    confidence_penalty: float = 0.1
    confidence_penalty_on: str = "critic"
    lambda_cls: float = 1.0
    lambda_rec: float = 10.0
    lambda_gp: float = 10.0
    lambda_id: float = 0.0
    lambda_pair: float = 0.0
    lambda_pair_gradient: float = 0.0
    lambda_mask: float = 0.1
    mask_penalty: str = "edits"
    lambda_mask_tv: float = 4.1
    lambda_edit: float = 0.0
    lambda_au: float = 1.0
    au_loss: str = "l1"
    au_dial_targets: float = 0.0
    au_change_weight: float = 0.0
    lambda_confusion: float = 1.0
    lambda_swap: float = 1.0
    lambda_free_invariance: float = 0.0
    transfer_code_detached: bool = False
    transfer_code_teacher: bool = False
    lambda_pix: float = 10.0
    perceptual_weight: float = 1.0
    vgg19_weights: str = "auto"
    target_mode: str = "permute"
    pair_exemplar: str = "target"
    contempt_side: str = "as_rendered"
    dial_pair_share: float = 0.0
    # --- optimisation
    n_critic: int = 5
    critic_warmup_steps: int = 0
    generator_warmup_steps: int = 0
    generator_warmup_cycle: bool = True
    critic_augment: str = ""
    critic_fake_class: bool = False
    condition_norms: bool = False
    expression_guide: str = ""
    lambda_guide: float = 0.0
    lambda_guide_features: float = 0.0
    guide_epochs: int = 15
    guide_width: int = 16  # training.guide.GUIDE_WIDTH: the runs before session 27 trained this width
    g_ema_decay: float = 0.0
    g_lr: float = 1e-4
    d_lr: float = 1e-4
    beta1: float = 0.5
    beta2: float = 0.999
    adam_epsilon: float = 1e-7
    adam_epsilon_mode: str = "keras"
    lr_decay_every: int = 1000
    lr_decay_start: float = 0.5
    # --- runtime
    mixed_precision: str = "float32"
    strategy: str = "default"
    worker_startup_timeout: float = 300.0
    worker_sharding: str = "auto"
    cpu_devices: int = 0
    jit_compile: bool = False
    op_determinism: bool = False
    seed: int = 0
    checkpoint_every: int = 1000
    keep_checkpoints: int = 3
    summary_every: int = 100
    sample_every: int = 1000
    num_samples: int = 4
    progress: bool = True

    @classmethod
    def from_flags(cls, flag_values):
        """The config of parsed absl flags (`flag_values` defines every field as a flag, e.g. `expr3d.train`'s)."""
        return cls(**{field.name: flag_values[field.name].value for field in dataclasses.fields(cls)})

    @classmethod
    def from_dict(cls, values):
        """The config of a `to_dict()` (e.g. config.json's "flags"); keys that are no field (flags of older
        versions, e.g. the removed `debug_*`) are ignored, missing ones take the defaults."""
        names = {field.name for field in dataclasses.fields(cls)}
        return cls(**{key: value for key, value in values.items() if key in names})

    def replace(self, **changes):
        """A copy with `changes` (e.g. `image_size` resolved from the dataset card)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self):
        """{field: value} in field order: config.json's "flags" (same keys and values as the flags gave)."""
        return {field.name: getattr(self, field.name) for field in dataclasses.fields(self)}

    # --- derived values -------------------------------------------------------------------------------------------

    def stages(self):
        """The stages this run trains, in order (stage 1 is skipped for plain StarGAN: --depth_weight=0). With
        --model=transfer the second stage is "transfer" (--stage=gan names it)."""
        second = "transfer" if self.model == "transfer" else "gan"
        if self.stage == "depth":
            return ["depth"]
        if self.stage == "gan":
            return [second]
        return [second] if self.depth_weight == 0 else ["depth", second]

    def stage_batch_size(self, stage):
        """The GLOBAL batch size of `stage` ("depth" or "gan")."""
        return (self.batch_size_depth or self.batch_size) if stage == "depth" else self.batch_size

    def data_stream(self):
        """What the checkpointed data position depends on (compared when a run resumes)."""
        return {name: (os.path.abspath(self.data_dir) if name == "data_dir" else getattr(self, name))
                for name in DATA_STREAM_FIELDS}

    def model_config(self):
        """The networks' `ModelConfig`; UsageError naming the field when the architecture is impossible."""
        from expr3d.models import ModelConfig

        try:
            return ModelConfig(num_classes=NUM_EXPRESSIONS, family=self.model,
                               **{name: getattr(self, name) for name in MODEL_FIELDS})
        except ValueError as error:
            field = str(error).split(":", 1)[-1].strip()
            raise UsageError(f"architecture flags: {field}") from None

    # --- validation -----------------------------------------------------------------------------------------------

    def synthetic_strength(self):
        """`--synthetic_expression_strength` as (low, high) floats, None when not given; UsageError naming it."""
        text = self.synthetic_expression_strength
        if text is None:
            return None
        try:
            low, high = (float(value) for value in text.split(","))
        except ValueError:
            raise UsageError(f"--synthetic_expression_strength={text}: must be two numbers LOW,HIGH") from None
        if not 0.0 < low <= high <= 1.0:
            raise UsageError(f"--synthetic_expression_strength={text}: must satisfy 0 < LOW <= HIGH <= 1")
        return low, high

    def validate(self, num_replicas=1):
        """Raise UsageError (one line naming the flag) for what the flags' bounds cannot see: required values,
        the batch sizes against the replicas, and the strategy. Returns self."""
        for name in ("data_dir", "model_dir"):
            if getattr(self, name) is None or not str(getattr(self, name)).strip():
                raise UsageError(f"--{name} is required")
        stages = self.stages()
        batches = [("batch_size", self.batch_size)] if stages[-1] != "depth" else []
        if "depth" in stages:
            batches.append(("batch_size_depth" if self.batch_size_depth else "batch_size",
                            self.stage_batch_size("depth")))
        for name, value in batches:
            if value % num_replicas:
                raise UsageError(f"--{name}={value} is not divisible by the {num_replicas} replicas of "
                                 f"--strategy={self.strategy}")
        if self.target_mode == "paired" and (self.balanced or self.skip_corrupt):
            raise UsageError("--target_mode=paired does not combine with --balanced or --skip_corrupt")
        if self.lambda_pair > 0 and self.target_mode != "paired":
            raise UsageError(f"--lambda_pair={self.lambda_pair} needs --target_mode=paired (the true target renders)")
        if self.dial_pair_share > 0 and (self.target_mode != "paired" or (
                self.model == "stargan" and self.condition != "action_units")):
            raise UsageError(f"--dial_pair_share={self.dial_pair_share} pairs dial renders: it needs "
                             f"--target_mode=paired with --condition=action_units or --model=transfer")
        if self.contempt_side != "as_rendered" and self.target_mode != "paired":
            raise UsageError(f"--contempt_side={self.contempt_side} needs --target_mode=paired (it mirrors the pairs "
                             f"whose target is contempt)")
        if self.lambda_pair_gradient > 0 and self.target_mode != "paired":
            raise UsageError(f"--lambda_pair_gradient={self.lambda_pair_gradient} needs --target_mode=paired (the "
                             f"true target renders)")
        if self.synthetic_train_swap_pairs and not self.synthetic_train_pairs:
            raise UsageError("--synthetic_train_swap_pairs needs --synthetic_train_pairs (swap partners share the "
                             "AUs of their paired groups)")
        if self.synthetic_expression_strength is not None:
            self.synthetic_strength()  # refused here, before any data is rendered
        if self.synthetic_train_dial_renders and not self.synthetic_train_pairs:
            raise UsageError("--synthetic_train_dial_renders needs --synthetic_train_pairs (a dial render joins a "
                             "paired group: its pose and light)")
        if self.pair_exemplar == "partner" and (self.model != "transfer" or self.target_mode != "paired"):
            raise UsageError(f"--pair_exemplar=partner is a setting of --model=transfer with --target_mode=paired "
                             f"(the paired term's exemplar); got --model={self.model} --target_mode={self.target_mode}")
        if self.lambda_free_invariance > 0 and (self.model != "transfer" or self.target_mode != "paired"
                                                or self.pair_exemplar != "target"):
            raise UsageError(f"--lambda_free_invariance={self.lambda_free_invariance} is a setting of --model=transfer "
                             f"with --target_mode=paired --pair_exemplar=target (A's AU-free map against its own paired "
                             f"render's); got --model={self.model} --target_mode={self.target_mode} "
                             f"--pair_exemplar={self.pair_exemplar}")
        if self.transfer_code_detached and self.model != "transfer":
            raise UsageError(f"--transfer_code_detached is a setting of --model=transfer (the decoder's code); got "
                             f"--model={self.model}")
        if self.transfer_code_teacher and (self.model != "transfer" or self.transfer_code == "learned"):
            raise UsageError(f"--transfer_code_teacher is a setting of --model=transfer with "
                             f"--transfer_code=action_units or guide (the code the decoder gets is then AU "
                             f"intensities); got --model={self.model} --transfer_code={self.transfer_code}")
        if self.transfer_code == "guide" and not self.expression_guide:
            raise UsageError("--transfer_code=guide reads the code with a copy of the run's AU guide: it needs "
                             "--expression_guide (train, or an AU guide's folder)")
        if self.transfer_code == "guide" and self.transfer_encoder != "shared":
            raise UsageError(f"--transfer_code=guide reads the AUs with a network of its own, so the trunk serves the "
                             f"AU-free map alone: --transfer_encoder must be shared; got {self.transfer_encoder}")
        if self.synthetic_train_pairs and self.synthetic_images_per_identity % NUM_EXPRESSIONS:
            raise UsageError(f"--synthetic_train_pairs needs --synthetic_images_per_identity a multiple of "
                             f"{NUM_EXPRESSIONS}, got {self.synthetic_images_per_identity}")
        if self.generator == "action_unit_edit" and (self.model != "stargan" or self.condition != "action_units"):
            raise UsageError(f"--generator=action_unit_edit needs --model=stargan --condition=action_units (its edits "
                             f"are proportional to AU changes); got --model={self.model} --condition={self.condition}")
        if self.lambda_edit > 0 and self.generator != "action_unit_edit":
            raise UsageError(f"--lambda_edit={self.lambda_edit} weighs the edit images of "
                             f"--generator=action_unit_edit; got --generator={self.generator}")
        if self.condition == "action_units" and self.model == "stargan":
            for name, ok, what in (("depth_weight", self.depth_weight == 0, "0 (D_depth reads expression classes)"),
                                   ("target_mode", self.target_mode in ("permute", "paired"),
                                    "permute or paired (the targets are other faces' AUs, or the true render's)")):
                if not ok:
                    raise UsageError(f"--condition=action_units needs --{name}={what}; got "
                                     f"--{name}={getattr(self, name)}")
        if self.critic_fake_class and self.condition != "expression":
            raise UsageError(f"--critic_fake_class adds a class to D_rgb's expression head; --condition="
                             f"{self.condition} has no expression head (use --condition=expression)")
        for name in ("lambda_guide", "lambda_guide_features"):
            if getattr(self, name) > 0 and not self.expression_guide:
                raise UsageError(f"--{name}={getattr(self, name)} needs --expression_guide (a classifier directory "
                                 f"from `python -m expr3d.metrics.classifier`, or 'train')")
        copies_guide = self.generator == "action_unit_edit" or (self.model == "transfer"
                                                                 and self.transfer_code == "guide")
        if self.expression_guide and self.lambda_guide <= 0 and self.lambda_guide_features <= 0 and not copies_guide:
            raise UsageError(f"--expression_guide={self.expression_guide} has no effect with --lambda_guide=0 and "
                             f"--lambda_guide_features=0")
        if self.generator_warmup_steps > 0 and self.lambda_pair <= 0:
            raise UsageError(f"--generator_warmup_steps={self.generator_warmup_steps} trains G_rgb on the paired "
                             f"terms; it needs --lambda_pair > 0 (and --target_mode=paired)")
        if self.lambda_guide_features > 0 and self.target_mode != "paired":
            raise UsageError(f"--lambda_guide_features={self.lambda_guide_features} needs --target_mode=paired "
                             f"(the true target renders)")
        if self.au_change_weight > 0 and self.condition != "action_units":
            raise UsageError(f"--au_change_weight={self.au_change_weight} needs --condition=action_units (AU "
                             f"targets)")
        if self.au_dial_targets > 0 and self.condition != "action_units":
            raise UsageError(f"--au_dial_targets={self.au_dial_targets} needs --condition=action_units (AU "
                             f"targets)")
        if self.model == "transfer":
            if self.target_mode == "uniform":
                raise UsageError("--target_mode=uniform is a setting of --model=stargan; --model=transfer takes "
                                 "'permute' (each face's exemplar is another face of the batch) or 'paired'")
            for name in STARGAN_ONLY_FIELDS:
                if getattr(self, name) != getattr(TrainConfig, name):
                    raise UsageError(f"--{name}={getattr(self, name)} is a setting of --model=stargan; "
                                     f"--model=transfer does not use it (leave it at its default)")
        try:
            critic_augment.parse_policy(self.critic_augment)
        except ValueError as error:
            raise UsageError(str(error)) from None
        if self.jit_compile and self.strategy != "default":
            raise UsageError("--jit_compile is supported with --strategy=default only")
        if self.worker_sharding == "file" and self.strategy != "multi_worker":
            raise UsageError("--worker_sharding=file shares data between the workers of --strategy=multi_worker; "
                             f"--strategy={self.strategy} has one worker")
        if self.worker_sharding == "file" and self.target_mode == "paired":
            raise UsageError("--worker_sharding=file does not combine with --target_mode=paired (pairs are drawn "
                             "across shards); use --worker_sharding=data")
        if self.strategy == "multi_worker" and self.cpu_devices > 1:
            raise UsageError(f"--cpu_devices={self.cpu_devices} splits one machine's CPU for --strategy=mirrored; "
                             f"--strategy=multi_worker uses one CPU device (or every GPU) per worker")
        return self


def define_flags(flag_values=None):
    """Define train's flags (one per `TrainConfig` field, its default) and their bounds on `flag_values` (default:
    absl's global FLAGS); called by `expr3d.train`'s CLI, not at import, so other CLIs (the ablation study) can
    import it. The fields and the flags live in this one file: a new setting is one field and one line here."""
    flag_values = flags.FLAGS if flag_values is None else flag_values

    def define(kind, name, *args):  # absl's DEFINE_<kind>(name, default, [enum values,] help)
        getattr(flags, f"DEFINE_{kind}")(name, getattr(TrainConfig, name), *args, flag_values=flag_values)

    # --- what to run --------------------------------------------------------------------------------------------------
    define("enum", "stage", ["depth", "gan", "all"], "Which stage(s) to run.")
    define("string", "data_dir", "Dataset directory (dataset_card.json + TFRecord shards).")
    define("string", "model_dir", "Run directory: checkpoints, models, logs, samples; resumed if it exists.")
    define("integer", "num_steps_depth", "Stage-1 iterations (the paper's '200k epochs').")
    define("integer", "num_steps_gan", "Stage-2 iterations (the paper's '300k epochs').")
    define("integer", "batch_size", "GLOBAL batch size of stage 2 (and of stage 1 unless --batch_size_depth).")
    define("integer", "batch_size_depth", "GLOBAL batch size of stage 1 (default: --batch_size).")
    define("integer", "image_size", "Training image size (default: the dataset card's).")
    define("bool", "allow_resize", "Allow an --image_size different from the dataset card's (resized).")
    define("bool", "balanced", "Class-balanced sampling of the training stream.")
    define("bool", "skip_corrupt",
           "Skip records that fail the reader's checks (corrupt or truncated shards, shards missing from the "
           "dataset card's list, missing or mistyped fields, non-finite depth, empty masks, sizes other than "
           "the card's) instead of stopping on the first; the data is scanned first (one decoding pass) and "
           "the skipped records are counted and named in the log and in config.json (skipped_records).")
    # --- synthetic data -----------------------------------------------------------------------------------------------
    define("bool", "generate_synthetic",
           "If --data_dir has no dataset card, generate the procedural dataset there first.")
    define("integer", "synthetic_identities", "Identities of the generated dataset (--generate_synthetic).")
    define("integer", "synthetic_images_per_identity", "Renders per identity (--generate_synthetic).")
    define("integer", "synthetic_seed", "Seed of the generated dataset (--generate_synthetic).")
    define("bool", "synthetic_train_pairs",
           "Render the generated train split in groups of eight (one pose and light under every expression; "
           "--synthetic_images_per_identity a multiple of 8), for --target_mode=paired (--generate_synthetic).")
    define("bool", "synthetic_train_swap_pairs",
           "With --synthetic_train_pairs: train identities 2k and 2k+1 are swap partners whose paired groups share "
           "their exact action units class by class (for --pair_exemplar=partner; --generate_synthetic).")
    define("integer", "synthetic_train_dial_renders",
           "With --synthetic_train_pairs: K dial renders per paired group, each one of the group's renders with ONE "
           "action unit set to a random level, with its true render: paired targets for --condition=action_units's "
           "dial (--generate_synthetic; 0 = none).")
    define("string", "synthetic_expression_strength",
           "LOW,HIGH: the range of each generated expression's overall strength, 0 < LOW <= HIGH <= 1 (default "
           "0.7,1.0; e.g. 0.1,1.0 for slight to full expressions, where an expression's class no longer fixes its "
           "action units; --generate_synthetic).")
    define("integer", "synthetic_transfer_pairs",
           "Also render the transfer ground truth of N pairs of test identities (a 'transfer' split that "
           "`expr3d.evaluate` reads for --model=transfer runs; --generate_synthetic).")
    # --- architecture -------------------------------------------------------------------------------------------------
    define("integer", "g_conv_dim", "G_rgb width.")
    define("integer", "g_num_res_blocks", "G_rgb residual blocks.")
    define("integer", "d_conv_dim", "D_rgb width.")
    define("integer", "d_num_layers", "D_rgb stride-2 layers.")
    define("integer", "depth_g_conv_dim", "G_depth width.")
    define("integer", "depth_g_num_res_blocks", "G_depth residual blocks.")
    define("integer", "depth_d_conv_dim", "D_depth width.")
    define("integer", "depth_d_num_layers", "D_depth stride-2 layers.")
    define("enum", "generator", ["stargan", "attention", "attention_unet", "action_unit_edit", "attention_warp"],
           "G_rgb: StarGAN's generator (the paper), or a GANimation-style attention generator (NOT in the "
           "paper): output = M*C + (1-M)*x with a learnt edit mask M (0 = source pixel copied) and colour C; "
           "attention_unet: the same with U-Net skips from encoder to decoder (ours); action_unit_edit (ours, "
           "--condition=action_units only): output = x + sum_k (c_k - r_k(x)) E_k, a reader r of the face's own AUs "
           "and one edit image per AU, so asking for the face's own AUs returns it and a dial edits by its AU alone; "
           "attention_warp (ours): the attention generator blending into the source moved along a learnt flow "
           "field, so a movement is drawn as one.")
    define("enum", "geometry", ["depth", "normals"], "Guidance map: depth (x3 channels) or normals.")
    define("enum", "model", ["stargan", "transfer"],
           "Model family: 'stargan' = the depth-guided StarGAN (Bodur et al.): a face and a target expression "
           "in; 'transfer' = exemplar expression transfer (Shao et al., with our depth guidance; "
           "docs/transfer.md): two faces in, expressions swapped out. For 'transfer' the G_rgb sizes are the "
           "encoder's and decoder's, the D_rgb sizes the face critics' and the AU adversary's width, and the "
           "second stage is 'transfer' (--num_steps_gan iterations).")
    define("integer", "code_dim", "--model=transfer: length of the AU-related code.")
    define("integer", "au_bins", "--model=transfer: intensity bins per AU of the multi-class AU adversary.")
    define("enum", "transfer_code", ["learned", "action_units", "guide"],
           "--model=transfer: the encoder's AU-related code: 'learned' (a --code_dim vector; Shao et al. give no "
           "size), 'action_units' (ours: the code IS the 17 predicted AU intensities, so an exemplar gives the "
           "decoder its AUs and nothing of its face; --code_dim unused) or 'guide' (ours: those intensities read "
           "by a frozen copy of the run's AU guide, --expression_guide, of width --guide_width).")
    define("enum", "transfer_decoder", ["bottleneck", "generator", "generator_warp"],
           "--model=transfer: the decoder: 'bottleneck' (the code tiled over the AU-free map) or 'generator' "
           "(ours: the code tiled over the source image at the decoder's input, as the AU-conditioned StarGAN, the "
           "AU-free map joined after its down-sampling; docs/transfer.md); 'generator_warp' (ours): the same, "
           "blending into the source moved along a learnt flow field (as --generator=attention_warp).")
    define("enum", "transfer_encoder", ["shared", "split"],
           "--model=transfer: the encoder's trunks: 'shared' (the code and the AU-free map branch off one trunk) or "
           "'split' (ours: the AU-free map has a trunk of its own, so --lambda_free_invariance and the adversary's "
           "confusion reach none of the code's weights; docs/transfer.md).")
    define("enum", "adversary_readout", ["global", "grid"],
           "--model=transfer, NOT in the paper: how the AU adversary reads the AU-free map: 'global' (the mean of its "
           "features) or 'grid' (ours: pooled to a 4 x 4 grid and read by a hidden layer, the layout the "
           "disentanglement probe reads; docs/transfer.md).")
    define("enum", "condition", ["expression", "action_units"],
           "What G_rgb is asked for: 'expression' (the paper: one of 8 classes) or 'action_units' (continuous AU "
           "control, GANimation's idea: a vector of the 17 AU intensities in [0, 1]; D_rgb regresses them; needs "
           "data with AUs and --depth_weight=0; docs/transfer.md).")
    define("enum", "init", ["keras", "stargan"],
           "Weight initialisation: Keras' defaults (glorot-uniform kernels, zero biases), or 'stargan': "
           "PyTorch's defaults as the official StarGAN code gets them (kernels and the critics' biases "
           "U(+-1/sqrt(fan_in)); expr3d/models/initializers.py). The paper flagfiles use 'stargan'.")
    # --- losses -------------------------------------------------------------------------------------------------------
    define("float", "depth_weight", "lambda_depth of L_rgb + lambda_depth * L_depth (0 = plain StarGAN).")
    define("float", "confidence_penalty", "beta of the confidence penalty on D_depth's classification (0 = off).")
    define("enum", "confidence_penalty_on", ["critic", "generator"],
           "Where the confidence penalty -beta*H(softmax(D_depth_cls)) goes (both stages): 'critic' = D_depth's "
           "loss, on its classification of the REAL geometry maps (the paper's 'regulariser on the "
           "discriminator'); 'generator' = the generators' loss, on D_depth's classification of G_depth's "
           "estimate (the earlier behaviour; docs/training.md).")
    define("float", "lambda_cls", "Classification weight.")
    define("float", "lambda_rec", "Cycle-reconstruction weight (RGB and depth cycles).")
    define("float", "lambda_gp", "Gradient-penalty weight.")
    define("float", "lambda_id",
           "NOT in the paper (0 = off, the paper's flagfiles): weight of CycleGAN's identity-mapping term "
           "|x - G_rgb(x, c_org)|_1 in stage 2, which rules out the colour-inverting solution of the cycle "
           "loss in short runs.")
    define("float", "lambda_pair",
           "NOT in the paper (0 = off, the paper's flagfiles): weight of the paired target term |y - G_rgb(x, c_trg)|_1 "
           "in stage 2, y the true render of x's identity, pose and light under c_trg (--target_mode=paired: "
           "paired training data, e.g. the procedural faces with --synthetic_train_pairs; RaFD-like data). With "
           "--model=transfer: the paired self-transfer term (the decoder given the code of x's own render under "
           "another expression must return that render; docs/transfer.md).")
    define("float", "lambda_pair_gradient",
           "NOT in the paper (0 = off): weight of the paired target's edge term, the L1 between the finite "
           "differences of G_rgb(x, c_trg) and of the true render y (--target_mode=paired), so a blurred edge costs "
           "what its flattened step is worth (docs/training.md, 'Paired training').")
    define("float", "lambda_mask",
           "--generator=attention: weight of the masks' sparsity term (--mask_penalty says which way it "
           "pushes), on the masks of G_rgb(x, c_trg) and of the cycle. GANimation's 0.1.")
    define("enum", "mask_penalty", ["edits", "copies"],
           "--generator=attention: what --lambda_mask penalises: the edited fraction of each mask ('edits', "
           "toward copying the source) or the copied fraction ('copies', GANimation's direction, against masks "
           "that collapse to 'no edit').")
    define("float", "lambda_mask_tv",
           "--generator=attention: weight of the edit masks' mean total variation (smoothness), on the same "
           "two masks. 4.1 ~ GANimation's 1e-5 on its sum over a batch of 25 masks of 128x128.")
    define("float", "lambda_edit",
           "--generator=action_unit_edit (ours; 0 = off): weight of the mean |E_k| of its per-AU edit images, on "
           "G_rgb(x, c_trg) and the cycle: the paired terms only see their sum on the data's AU changes, which edits "
           "that cancel satisfy too; a single dial then shows that noise.")
    define("float", "lambda_au", "--model=transfer: weight of the AU regression terms (the code, D_rgb's and "
           "D_depth_au's AU heads).")
    define("enum", "au_loss", ["l1", "squared"],
           "--model=transfer and --condition=action_units: the error of every AU regression term (the code's, the "
           "critics' AU heads', the generators' show-these-AUs terms). l1 learns each AU's conditional median, 0 "
           "for an AU that is off in most faces (the AU judge's recipe 1 read 11 of 17 AUs not at all that way); "
           "squared learns the conditional mean.")
    define("float", "au_dial_targets",
           "NOT in either paper (0 = off): --condition=action_units: this fraction of G_rgb's AU targets are the "
           "face's own AUs with ONE AU set to a random intensity (what a user's dial asks), the rest other faces' "
           "whole AU vectors (--target_mode=permute) or the true render's (paired; a dialled row has no true "
           "render, so only the critic's AU head and --expression_guide read it).")
    define("float", "au_change_weight",
           "NOT in either paper (0 = off): --condition=action_units: in G_rgb's show-these-AUs terms (D_rgb's AU "
           "head on the translations, the AU guide) each AU's error weighs 1 + W |target - source|, so the AUs a "
           "target changes count more than those copying the source already gets right (a dial changes 1 of 17).")
    define("float", "lambda_confusion", "--model=transfer: weight of the encoder's confusion term (the AU "
           "adversary's per-AU softmax pushed to uniform).")
    define("float", "lambda_swap", "--model=transfer: weight of the swap-consistency adversarial term (a swap "
           "judged against the self-reconstruction).")
    define("float", "lambda_free_invariance",
           "NOT in Shao et al. (0 = off): --model=transfer with --target_mode=paired: weight of the AU-free map's "
           "invariance between a face and its own render under another expression (the share of the map's variation "
           "that follows the expression; docs/transfer.md), the supervised form of the adversary's aim.")
    define("boolean", "transfer_code_detached",
           "NOT in Shao et al.: --model=transfer: the decoder gets each code with its gradient stopped, so the code "
           "learns from the encoder's AU term alone (with --transfer_code=action_units: an AU regressor whose "
           "reading the decoder renders; docs/transfer.md).")
    define("boolean", "transfer_code_teacher",
           "NOT in Shao et al.: --model=transfer --transfer_code=action_units or guide: in training the decoder "
           "gets each face's TRUE AU intensities as its code wherever they are known (the encoder's estimate "
           "elsewhere, and always at inference), as the AU-conditioned StarGAN learns from true AU vectors "
           "(docs/transfer.md).")
    define("float", "lambda_pix", "Stage 1: L1 weight of the estimated geometry against the real one.")
    define("float", "perceptual_weight", "Stage 1: VGG19 perceptual weight (0 = skipped, no weights needed).")
    define("string", "vgg19_weights", "VGG19 notop weights: 'auto' (Keras cache) or a .h5 path.")
    define("enum", "target_mode", ["permute", "uniform", "paired"],
           "Target expressions: a permutation of the batch's labels (StarGAN), uniform, or 'paired': each "
           "source comes with a render of its identity, pose and light under another expression, whose label is "
           "the target (the train split must be paired; expr3d/data/pairs.py).")
    define("enum", "pair_exemplar", ["target", "partner"],
           "--model=transfer with --target_mode=paired: whose expression code the paired term decodes the source "
           "with: 'target' (the true render's own: a self-transfer) or 'partner' (NOT Shao et al.'s, ours: "
           "another identity's render under the true render's exact AUs, a cross-identity swap with a known "
           "answer; needs data rendered with --train_swap_pairs / --synthetic_train_swap_pairs; docs/transfer.md).")
    define("enum", "contempt_side", ["as_rendered", "image_left", "image_right"],
           "NOT in the paper (--target_mode=paired): where a contempt target's one-sided change goes. The renders "
           "draw the side at random, and a one-hot 'contempt' cannot say which, so the paired terms learn the "
           "average of both sides, a faint two-sided smile; 'image_left' / 'image_right' mirror each pair whose "
           "target is contempt so that its change lies on that side of the picture (docs/training.md).")
    define("float", "dial_pair_share",
           "NOT in either paper (0 = off): on data with dial renders (--train_dial_renders), this fraction of the "
           "pairs is a render and its own class's other render - a single dialled AU with its true render - instead "
           "of any other render of the group (--condition=action_units or --model=transfer; data/README.md).")
    # --- optimisation -------------------------------------------------------------------------------------------------
    define("integer", "n_critic", "Critic updates per generator update.")
    define("integer", "critic_warmup_steps",
           "NOT in the paper (0 = off, the paper's flagfiles): the first N iterations of stage 2 train only "
           "D_rgb's expression classification of real faces, so its classification term guides G_rgb from "
           "G_rgb's first update. They count in --num_steps_gan.")
    define("integer", "generator_warmup_steps",
           "NOT in the paper (0 = off, the paper's flagfiles; needs --lambda_pair > 0): the first N iterations of "
           "stage 2 train G_rgb alone on the paired terms, the cycle, the expression guide and the mask regularisers "
           "- no critic, no depth network: ~2 it/s here against ~1.6 for a GAN iteration - before any "
           "--critic_warmup_steps. They count in --num_steps_gan. --model=transfer: the encoder and decoder alone "
           "on the reconstruction, the code's AU term, the paired terms, the AU guide and the mask sparsity.")
    define("bool", "generator_warmup_cycle",
           "Whether the --generator_warmup_steps iterations include the cycle term |x - G(G(x, c_trg), c_org)| "
           "(and its mask's regularisers); --nogenerator_warmup_cycle saves G_rgb's second pass: a warm-up "
           "iteration then costs about half (0.53x measured; the paired term keeps identity there). The GAN "
           "iterations always have it. --model=transfer: the swap-twice cycle.")
    define("string", "critic_augment",
           "NOT in the paper (empty = off, the paper's flagfiles): augment every image D_rgb sees in stage 2, real "
           "and generated, in both steps (DiffAugment): a comma list of translation (up to 1/8 of the side), "
           "cutout (a square of half the side) and colour (brightness, saturation, contrast). Against G_rgb "
           "fooling D_rgb's classifier with a pixel texture (expr3d/training/critic_augment.py).")
    define("bool", "critic_fake_class",
           "NOT in the paper (off = the paper's flagfiles): D_rgb's expression head gets a ninth class, "
           "'generated', which its critic step trains on the translations (a K+1-class critic), so a texture that "
           "fools its classifier is learnt as a mark of generated faces. --condition=expression only.")
    define("bool", "condition_norms",
           "NOT in the papers (off = the paper's flagfiles): G_rgb's condition (expression or AUs; with "
           "--model=transfer the decoder's code) also sets every instance norm's scale and offset (AdaIN, as "
           "StarGAN v2 conditions its decoder), besides being tiled over the input: a tiled condition is the same "
           "at every pixel, and the norm after the next convolution removes each channel's mean, so it reaches the "
           "features only through the border and the norm's statistics. Zero-initialised: training starts from the "
           "unconditioned norms.")
    define("string", "expression_guide",
           "NOT in the paper (empty = off, the paper's flagfiles): a frozen expression classifier of real faces whose "
           "cross-entropy on the translations (--lambda_guide) and whose features against the true render "
           "(--lambda_guide_features) G_rgb also minimises: a classifier directory saved by `python -m "
           "expr3d.metrics.classifier`, or 'train' = train one on this run's own training split into "
           "MODEL_DIR/guide before the first stage (expr3d/training/guide.py). With --model=transfer it is an AU "
           "regressor of real faces (a directory of `python -m expr3d.metrics.au_judge`'s format, or 'train'), "
           "whose squared AU error on each swap against the exemplar's AUs the encoder and decoder minimise; likewise "
           "with --condition=action_units, on each translation against the asked AUs.")
    define("float", "lambda_guide", "Weight of the --expression_guide term in G_rgb's (or, --model=transfer, the "
           "encoder and decoder's) loss (0 = off).")
    define("float", "lambda_guide_features",
           "Weight of the paired guide-feature term (0 = off; needs --expression_guide and --target_mode=paired): "
           "mean L1 between the guide's four stage output maps of G_rgb's translation (--model=transfer: the face "
           "decoded with its paired render's code) and of the true target render.")
    define("integer", "guide_epochs", "Epochs of the guide --expression_guide=train trains (batch 64).")
    define("integer", "guide_width",
           "Channels of the first stage of the compact ResNet --expression_guide=train trains (doubled at each of "
           "its 4 stages; the judges' network). A resumed run keeps the guide it trained and refuses another width.")
    define("float", "g_ema_decay",
           "NOT in the paper (0 = off, the paper's flagfiles): keep an exponential moving average of G_rgb's "
           "weights with this decay (stargan-v2: 0.999; warm-up decay min(decay, (1+t)/(10+t)) over the first "
           "generator updates t), used for the sample grids and exported as models/g_rgb.keras (the raw G_rgb "
           "stays in the checkpoints).")
    define("float", "g_lr", "Adam learning rate of the generators.")
    define("float", "d_lr", "Adam learning rate of the critics.")
    define("float", "beta1", "Adam beta_1.")
    define("float", "beta2", "Adam beta_2.")
    define("float", "adam_epsilon", "Adam epsilon (Keras' default 1e-7; PyTorch's, and StarGAN's, 1e-8).")
    define("enum", "adam_epsilon_mode", ["keras", "pytorch"],
           "Where Adam's epsilon goes: 'keras' = keras.optimizers.Adam, added to the un-corrected sqrt(v); "
           "'pytorch' = torch.optim.Adam's formula, added to the bias-corrected sqrt(v_hat) "
           "(expr3d/training/adam.py). The paper flagfiles use --adam_epsilon=1e-8 --adam_epsilon_mode=pytorch.")
    define("integer", "lr_decay_every", "The decaying learning rate changes every this many iterations.")
    define("float", "lr_decay_start", "Fraction of a stage after which the learning rates decay linearly to 0.")
    # --- runtime ------------------------------------------------------------------------------------------------------
    define("enum", "mixed_precision", ["float32", "mixed_float16", "mixed_bfloat16", "auto"],
           "Dtype policy. auto = mixed_bfloat16 where the hardware computes bf16 natively (GPUs of compute "
           "capability >= 8, CPUs with AVX-512 BF16 or AMX), mixed_float16 on older GPUs, float32 otherwise "
           "(bf16 on an AVX2-only CPU is ~9x slower than float32).")
    define("enum", "strategy", ["default", "mirrored", "multi_worker"],
           "Distribution strategy: default (one device), mirrored (every GPU of this machine, or --cpu_devices), "
           "multi_worker (MultiWorkerMirroredStrategy over the workers of TF_CONFIG; start them with "
           "python -m expr3d.launch on one machine).")
    define("float", "worker_startup_timeout",
           "--strategy=multi_worker: seconds to wait for every worker of TF_CONFIG to come up before stopping "
           "with a message naming the missing ones.")
    define("enum", "worker_sharding", ["auto", "file", "data"],
           "--strategy=multi_worker: how the workers share the training data. file: worker k reads shards k, "
           "k + N, ... and makes its own share of each batch (needs at least one train shard per worker; a resume "
           "needs the same number of workers); data: every worker reads every record and keeps its replicas' rows "
           "of the global batch (exactly a one-process run's batches; resumes on any number of workers). auto: "
           "file when the train split has a shard per worker (and --target_mode is not paired), else data; a "
           "resumed run keeps how it started.")
    define("integer", "cpu_devices", "Split the CPU into this many logical devices (testing --strategy=mirrored).")
    define("bool", "jit_compile", "XLA-compile the train steps (--strategy=default only).")
    define("bool", "op_determinism",
           "tf.config.experimental.enable_op_determinism(): bit-reproducible kernels (slower), so a resumed "
           "run equals an uninterrupted one exactly; without it multi-threaded CPU reductions may differ in "
           "the last bits, which the gradient penalty's double backward can amplify.")
    define("integer", "seed", "Seed of the weights, the data order, the augmentation and every random draw.")
    define("integer", "checkpoint_every", "Checkpoint (and export models) every N iterations (0 = at the end).")
    define("integer", "keep_checkpoints", "Complete checkpoints kept per stage.")
    define("integer", "summary_every", "TensorBoard scalars every N iterations.")
    define("integer", "sample_every", "Sample grid every N iterations (0 = at the end only).")
    define("integer", "num_samples", "Sample sources in the grids (test examples of different identities).")
    define("bool", "progress", "Print a progress line with ETA to stderr.")


    # Bounds, checked while the flags are parsed: one line and exit code 2, before any work (expr3d.cli).
    bound = dict(flag_values=flag_values)
    cli.required("data_dir", "model_dir", **bound)
    for name in ("num_steps_depth", "num_steps_gan", "batch_size", "batch_size_depth", "n_critic", "lr_decay_every",
                 "num_samples", "keep_checkpoints", "synthetic_images_per_identity", "g_conv_dim", "d_conv_dim",
                 "d_num_layers", "depth_g_conv_dim", "depth_d_conv_dim", "depth_d_num_layers", "code_dim",
                 "guide_epochs", "guide_width"):
        cli.at_least(name, 1, **bound)
    cli.at_least("au_bins", 2, **bound)
    for name in ("g_num_res_blocks", "depth_g_num_res_blocks"):
        cli.at_least(name, 0, **bound)
    cli.at_least("cpu_devices", 0, "0 = no split", **bound)
    cli.positive("worker_startup_timeout", **bound)
    for name in ("checkpoint_every", "summary_every", "sample_every"):
        cli.at_least(name, 0, "0 = at the end only", **bound)
    cli.multiple_of("image_size", 4, 8, "the generators down-sample twice with stride 2; default: the dataset "
                    "card's", **bound)
    cli.at_least("synthetic_identities", 2, "identities are split between train and test", **bound)
    cli.at_least("synthetic_transfer_pairs", 0, "0 = no transfer ground truth", **bound)
    cli.at_least("synthetic_train_dial_renders", 0, "0 = no dial renders", **bound)
    cli.seed("seed", **bound)
    cli.seed("synthetic_seed", **bound)
    for name in ("g_lr", "d_lr", "adam_epsilon"):
        cli.positive(name, **bound)
    for name in ("beta1", "beta2"):
        cli.in_range(name, 0.0, 1.0, high_open=True, **bound)
    cli.in_range("lr_decay_start", 0.0, 1.0, **bound)
    for name in ("depth_weight", "confidence_penalty", "perceptual_weight", "lambda_cls", "lambda_rec", "lambda_gp",
                 "lambda_pix", "lambda_id", "lambda_pair", "lambda_pair_gradient", "lambda_mask", "lambda_mask_tv",
                 "lambda_edit", "lambda_au", "lambda_confusion", "lambda_swap", "lambda_guide", "lambda_guide_features",
                 "lambda_free_invariance", "au_change_weight"):
        cli.at_least(name, 0.0, **bound)
    cli.at_least("critic_warmup_steps", 0, "0 = off", **bound)
    cli.at_least("generator_warmup_steps", 0, "0 = off", **bound)
    cli.in_range("au_dial_targets", 0.0, 1.0, **bound)
    cli.in_range("dial_pair_share", 0.0, 1.0, **bound)
    cli.in_range("g_ema_decay", 0.0, 1.0, high_open=True, **bound)


def parse_config(argv):
    """`argv` (program name first) parsed as train's command line (its own FlagValues: absl's global FLAGS are not
    touched) -> the `TrainConfig`. Raises absl's `flags.Error` (a bound, a missing required flag) or UsageError."""
    flag_values = flags.FlagValues()
    define_flags(flag_values)
    cli.no_arguments(flag_values(list(argv)))
    return TrainConfig.from_flags(flag_values)


__all__ = ["DATA_STREAM_FIELDS", "MODEL_FIELDS", "TrainConfig", "UsageError", "define_flags", "parse_config"]
