"""`TrainConfig`: everything one training run is told, as one frozen value (the `expr3d.train` flags, one field each).

    config = TrainConfig(data_dir="data/synthetic64", model_dir="runs/a", num_steps_gan=1000)
    config.validate(num_replicas=1)          # the cross-field rules; bounds are the flags' absl validators
    exit_status = train.run(config)

`expr3d.train` builds it from its flags once (`TrainConfig.from_flags`); `to_dict()` is what config.json records
under "flags". TensorFlow-free: importing it (and the CLI) costs nothing.
"""

import dataclasses
import os

from expr3d.cli import UsageError
from expr3d.labels import NUM_EXPRESSIONS

# What a resumed run's data position depends on (a restored tf.data iterator replays the saved pipeline state).
DATA_STREAM_FIELDS = ("data_dir", "batch_size", "batch_size_depth", "image_size", "seed", "balanced", "target_mode")
# Fields that become ModelConfig's (the networks' shapes).
MODEL_FIELDS = ("image_size", "g_conv_dim", "g_num_res_blocks", "d_conv_dim", "d_num_layers", "depth_g_conv_dim",
                "depth_g_num_res_blocks", "depth_d_conv_dim", "depth_d_num_layers", "generator", "init")


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
    # --- losses
    depth_weight: float = 0.1
    confidence_penalty: float = 0.1
    confidence_penalty_on: str = "critic"
    lambda_cls: float = 1.0
    lambda_rec: float = 10.0
    lambda_gp: float = 10.0
    lambda_id: float = 0.0
    lambda_mask: float = 0.1
    mask_penalty: str = "edits"
    lambda_mask_tv: float = 4.1
    lambda_pix: float = 10.0
    perceptual_weight: float = 1.0
    vgg19_weights: str = "auto"
    target_mode: str = "permute"
    # --- optimisation
    n_critic: int = 5
    critic_warmup_steps: int = 0
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
        """The stages this run trains, in order (stage 1 is skipped for plain StarGAN: --depth_weight=0)."""
        if self.stage in ("depth", "gan"):
            return [self.stage]
        return ["gan"] if self.depth_weight == 0 else ["depth", "gan"]

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
            return ModelConfig(num_classes=NUM_EXPRESSIONS, **{name: getattr(self, name) for name in MODEL_FIELDS})
        except ValueError as error:
            field = str(error).split(":", 1)[-1].strip()
            raise UsageError(f"architecture flags: {field}") from None

    # --- validation -----------------------------------------------------------------------------------------------

    def validate(self, num_replicas=1):
        """Raise UsageError (one line naming the flag) for what the flags' bounds cannot see: required values,
        the batch sizes against the replicas, and the strategy. Returns self."""
        for name in ("data_dir", "model_dir"):
            if getattr(self, name) is None or not str(getattr(self, name)).strip():
                raise UsageError(f"--{name} is required")
        stages = self.stages()
        batches = [("batch_size", self.batch_size)] if "gan" in stages else []
        if "depth" in stages:
            batches.append(("batch_size_depth" if self.batch_size_depth else "batch_size",
                            self.stage_batch_size("depth")))
        for name, value in batches:
            if value % num_replicas:
                raise UsageError(f"--{name}={value} is not divisible by the {num_replicas} replicas of "
                                 f"--strategy={self.strategy}")
        if self.jit_compile and self.strategy != "default":
            raise UsageError("--jit_compile is supported with --strategy=default only")
        return self


__all__ = ["DATA_STREAM_FIELDS", "MODEL_FIELDS", "TrainConfig", "UsageError"]
