"""Architecture hyper-parameters of the networks of a model family, validated."""

import dataclasses


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Widths, depths and image size of G_rgb, D_rgb, G_depth and D_depth.

    Defaults are StarGAN's (128x128, conv_dim 64, 6 residual blocks, 6 critic
    layers). The generators down-sample twice, so `image_size` must be a
    multiple of 4; each critic needs `image_size` divisible by
    `2**num_layers`. Invalid values raise `ValueError` naming the field.

    Args:
        image_size: input height and width of every network.
        num_classes: expression classes (critic `cls` heads, G_rgb condition).
        g_conv_dim, g_num_res_blocks: G_rgb width and residual blocks.
        d_conv_dim, d_num_layers: D_rgb width and stride-2 layers.
        depth_g_conv_dim, depth_g_num_res_blocks: G_depth width and blocks.
        depth_d_conv_dim, depth_d_num_layers: D_depth width and layers.
        generator: G_rgb's architecture, one of `GENERATORS`: "stargan"
            (`StarGANGenerator`), "attention" (`AttentionGenerator`),
            "attention_unet" (`AttentionUNetGenerator`), "action_unit_edit"
            (`ActionUnitEditGenerator`, condition "action_units" only) or
            "attention_warp" (`AttentionWarpGenerator`). Run
            configs written before this field existed load as "stargan".
        init: weight initialisation, one of `INITS`: "keras" (Keras' layer
            defaults: glorot-uniform kernels, zero biases) or "stargan"
            (PyTorch's defaults, as the official StarGAN code gets them:
            U(+-1/sqrt(fan_in)) kernels and critic biases; see
            `expr3d.models.initializers`). Run configs written before this
            field existed load as "keras".
        family: the model family, one of `FAMILIES`: "stargan" (the
            depth-guided StarGAN's four networks) or "transfer" (Shao et al.'s
            exemplar transfer: `build_models` gives the `TRANSFER_KEYS`
            networks; the G_rgb fields are then the encoder's and decoder's
            sizes, the D_rgb fields the face critics'). Older run configs
            load as "stargan".
        code_dim: length of the transfer encoder's AU-related code.
        au_bins: intensity bins of each AU in the transfer's AU adversary.
        transfer_code: the transfer encoder's AU-related code, one of `TRANSFER_CODES`: "learned" (a `code_dim`
            vector), "action_units" (the 17 predicted AU intensities; `code_dim` unused) or "guide" (those read by a
            frozen copy of the run's AU guide of width `guide_width`). Older run configs load as "learned".
        transfer_decoder: the transfer decoder, one of `TRANSFER_DECODERS`: "bottleneck" (`TransferDecoder`: the
            code joins the AU-free map at the bottleneck), "generator" (`TransferGeneratorDecoder`: the code tiled
            over the source image at its input, as the AU-conditioned StarGAN) or "generator_warp"
            (`TransferGeneratorWarpDecoder`: the same, blending into the source moved along a learnt flow). Older run
            configs load as "bottleneck".
        transfer_encoder: the transfer encoder's trunks, one of `TRANSFER_ENCODERS`: "shared" (the code and the
            AU-free map branch off one trunk) or "split" (the map has a trunk of its own; `TransferEncoder`). Older
            run configs load as "shared".
        adversary_readout: how the transfer's AU adversary reads the AU-free map, one of `ADVERSARY_READOUTS`:
            "global" (its features' global mean) or "grid" (pooled to a 4 x 4 grid, as the disentanglement probe
            reads it; `AUAdversary`). Older run configs load as "global".
        condition: what the StarGAN family's G_rgb is conditioned on, one of `CONDITIONS`: "expression" (one-hot
            classes; D_rgb classifies them) or "action_units" (the 17 AU intensities of
            `expr3d.labels.ACTION_UNITS`; D_rgb's head regresses them). D_depth keeps the expression classes.
            Older run configs load as "expression".
        critic_fake_class: D_rgb's head gets one more logit, "generated" (index `num_classes`), which its critic step
            trains on the translations (K+1-class critic, NOT in the paper; `--critic_fake_class`). Expression
            condition only. Older run configs load as False.
        condition_norms: G_rgb's condition (the transfer decoder's code) also sets every instance norm's scale and
            offset (`expr3d.models.blocks.ConditionalAffine`, NOT in the papers; `--condition_norms`). Older run
            configs load as False.
        guide_width: the width of the AU guide an "action_unit_edit" G_rgb's reader, or a "guide" transfer
            encoder's code reader, copies (`--guide_width`); unused otherwise. Older run configs load as 16.

    Example:
    >>> config = ModelConfig(image_size=32, d_num_layers=3, depth_d_num_layers=3)
    >>> ModelConfig.from_dict(config.to_dict()) == config
    True
    """

    image_size: int = 128
    num_classes: int = 8
    g_conv_dim: int = 64
    g_num_res_blocks: int = 6
    d_conv_dim: int = 64
    d_num_layers: int = 6
    depth_g_conv_dim: int = 64
    depth_g_num_res_blocks: int = 6
    depth_d_conv_dim: int = 64
    depth_d_num_layers: int = 6
    generator: str = "stargan"
    init: str = "keras"
    family: str = "stargan"
    code_dim: int = 64
    au_bins: int = 5
    transfer_code: str = "learned"
    transfer_decoder: str = "bottleneck"
    transfer_encoder: str = "shared"
    adversary_readout: str = "global"
    condition: str = "expression"
    critic_fake_class: bool = False
    condition_norms: bool = False
    guide_width: int = 16

    # G_rgb architectures (`generator`).
    GENERATORS = ("stargan", "attention", "attention_unet", "action_unit_edit", "attention_warp")
    # Model families (`family`).
    FAMILIES = ("stargan", "transfer")
    # The transfer encoder's AU-related code (`transfer_code`; expr3d.models.transfer.CODES).
    TRANSFER_CODES = ("learned", "action_units", "guide")
    # The transfer decoder (`transfer_decoder`; expr3d.models.transfer.DECODERS).
    TRANSFER_DECODERS = ("bottleneck", "generator", "generator_warp")
    # The transfer encoder's trunks (`transfer_encoder`; expr3d.models.transfer.TRUNKS).
    TRANSFER_ENCODERS = ("shared", "split")
    # The transfer's AU adversary's readout (`adversary_readout`; expr3d.models.transfer.AUAdversary.READOUTS).
    ADVERSARY_READOUTS = ("global", "grid")
    # G_rgb's conditions (`condition`).
    CONDITIONS = ("expression", "action_units")
    # Weight initialisation schemes (`init`; expr3d.models.initializers.INITS).
    INITS = ("keras", "stargan")
    # The generators' two stride-2 stages.
    GENERATOR_DOWNSAMPLING = 2

    def __post_init__(self):
        if self.generator not in self.GENERATORS:
            raise ValueError(f"ModelConfig: generator must be one of {self.GENERATORS}; got {self.generator!r}")
        if self.init not in self.INITS:
            raise ValueError(f"ModelConfig: init must be one of {self.INITS}; got {self.init!r}")
        if self.family not in self.FAMILIES:
            raise ValueError(f"ModelConfig: family must be one of {self.FAMILIES}; got {self.family!r}")
        if self.condition not in self.CONDITIONS:
            raise ValueError(f"ModelConfig: condition must be one of {self.CONDITIONS}; got {self.condition!r}")
        if self.transfer_code not in self.TRANSFER_CODES:
            raise ValueError(f"ModelConfig: transfer_code must be one of {self.TRANSFER_CODES}; got "
                             f"{self.transfer_code!r}")
        if self.transfer_code != "learned" and self.family != "transfer":
            raise ValueError("ModelConfig: transfer_code applies to the transfer family")
        if self.transfer_decoder not in self.TRANSFER_DECODERS:
            raise ValueError(f"ModelConfig: transfer_decoder must be one of {self.TRANSFER_DECODERS}; got "
                             f"{self.transfer_decoder!r}")
        if self.transfer_decoder != "bottleneck" and self.family != "transfer":
            raise ValueError("ModelConfig: transfer_decoder applies to the transfer family")
        if self.transfer_encoder not in self.TRANSFER_ENCODERS:
            raise ValueError(f"ModelConfig: transfer_encoder must be one of {self.TRANSFER_ENCODERS}; got "
                             f"{self.transfer_encoder!r}")
        if self.transfer_encoder != "shared" and self.family != "transfer":
            raise ValueError("ModelConfig: transfer_encoder applies to the transfer family")
        if self.transfer_code == "guide" and self.transfer_encoder != "shared":
            raise ValueError("ModelConfig: transfer_code 'guide' reads the AUs with a network of its own; "
                             "transfer_encoder must be 'shared'")
        if self.adversary_readout not in self.ADVERSARY_READOUTS:
            raise ValueError(f"ModelConfig: adversary_readout must be one of {self.ADVERSARY_READOUTS}; got "
                             f"{self.adversary_readout!r}")
        if self.adversary_readout != "global" and self.family != "transfer":
            raise ValueError("ModelConfig: adversary_readout applies to the transfer family")
        if self.family == "transfer" and self.condition != "expression":
            raise ValueError("ModelConfig: condition applies to the stargan family; the transfer family's decoder "
                             "is conditioned on an exemplar's code")
        if self.generator == "action_unit_edit" and (self.family != "stargan" or self.condition != "action_units"):
            raise ValueError("ModelConfig: generator 'action_unit_edit' needs the stargan family with condition "
                             "'action_units' (its edits are proportional to AU changes)")
        if not isinstance(self.critic_fake_class, bool):
            raise ValueError(f"ModelConfig: critic_fake_class must be a bool; got {self.critic_fake_class!r}")
        if self.critic_fake_class and (self.family != "stargan" or self.condition != "expression"):
            raise ValueError("ModelConfig: critic_fake_class needs the stargan family with condition 'expression' "
                             "(a class of its own for generated faces in D_rgb's expression head)")
        if not isinstance(self.condition_norms, bool):
            raise ValueError(f"ModelConfig: condition_norms must be a bool; got {self.condition_norms!r}")
        if self.au_bins < 2:
            raise ValueError(f"ModelConfig: au_bins must be an integer >= 2; got {self.au_bins!r}")
        for field in dataclasses.fields(self):
            if field.name in ("generator", "init", "family", "condition", "critic_fake_class", "transfer_code",
                              "transfer_decoder", "transfer_encoder", "condition_norms", "adversary_readout"):
                continue
            value = getattr(self, field.name)
            minimum = 0 if field.name.endswith("num_res_blocks") else 1
            if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
                raise ValueError(f"ModelConfig: {field.name} must be an integer >= {minimum}; got {value!r}")
        factor = 2**self.GENERATOR_DOWNSAMPLING
        if self.image_size % factor:
            raise ValueError(
                f"ModelConfig: the generators down-sample {self.GENERATOR_DOWNSAMPLING} times, so image_size "
                f"must be divisible by {factor}; got image_size={self.image_size}"
            )
        for field in ("d_num_layers", "depth_d_num_layers"):
            layers = getattr(self, field)
            if self.image_size % (2**layers):
                raise ValueError(
                    f"ModelConfig: {field}={layers} needs image_size divisible by {2**layers}; "
                    f"got image_size={self.image_size}"
                )

    @property
    def condition_dim(self):
        """Length of G_rgb's condition and of D_rgb's head: `num_classes`, or the 17 AUs."""
        from expr3d.labels import NUM_ACTION_UNITS

        return NUM_ACTION_UNITS if self.condition == "action_units" else self.num_classes

    @property
    def critic_dim(self):
        """Length of D_rgb's head: `condition_dim`, plus the "generated" class with `critic_fake_class`."""
        return self.condition_dim + int(self.critic_fake_class)

    def to_dict(self):
        """Plain dict of the fields (JSON-serialisable)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values):
        """Inverse of `to_dict` (missing keys take their defaults); unknown keys raise `ValueError` naming them."""
        known = {field.name for field in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"ModelConfig: unknown field(s) {unknown}; known fields: {sorted(known)}")
        return cls(**values)
