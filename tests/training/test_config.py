"""TrainConfig: built from train's flags once, recorded in config.json as the flags were, validated with the
messages the CLI has always printed."""
import dataclasses
import json

import pytest

from absl import flags

from expr3d.training.config import TrainConfig, UsageError, define_flags, parse_config

# config.json's "flags" keys, in the order every earlier version wrote them (old runs resume, config diffs work);
# a new flag adds its key where its field is.
RECORDED_KEYS = [
    "stage", "data_dir", "model_dir", "num_steps_depth", "num_steps_gan", "batch_size", "batch_size_depth",
    "image_size", "allow_resize", "balanced", "skip_corrupt", "generate_synthetic", "synthetic_identities",
    "synthetic_images_per_identity", "synthetic_seed",
    "synthetic_train_pairs",  # (session 9)
    "synthetic_transfer_pairs",  # (session 12)
    "synthetic_train_swap_pairs",  # (session 22)
    "synthetic_train_dial_renders",  # (session 26)
    "synthetic_expression_strength",  # (session 37)
    "g_conv_dim", "g_num_res_blocks", "d_conv_dim",
    "d_num_layers", "depth_g_conv_dim", "depth_g_num_res_blocks", "depth_d_conv_dim", "depth_d_num_layers",
    "generator", "geometry", "init",
    "model", "code_dim", "au_bins",  # (session 10)
    "transfer_code",  # (session 26)
    "transfer_decoder",  # (session 28)
    "transfer_encoder",  # (session 34)
    "adversary_readout",  # (session 32)
    "condition",  # (session 12)
    "depth_weight", "confidence_penalty", "confidence_penalty_on", "lambda_cls",
    "lambda_rec", "lambda_gp", "lambda_id",
    "lambda_pair",  # (session 9)
    "lambda_pair_gradient",  # (session 25)
    "lambda_mask", "mask_penalty", "lambda_mask_tv",
    "lambda_edit",  # (session 31)
    "lambda_au",  # (session 10)
    "au_loss",  # (session 16)
    "au_dial_targets",  # (session 17)
    "au_change_weight",  # (session 28)
    "lambda_confusion", "lambda_swap",  # (session 10)
    "lambda_free_invariance",  # (session 23)
    "transfer_code_detached",  # (session 34)
    "transfer_code_teacher",  # (session 35)
    "lambda_pix",
    "perceptual_weight", "vgg19_weights", "target_mode",
    "pair_exemplar",  # (session 22)
    "contempt_side",  # (session 25)
    "dial_pair_share",  # (session 26)
    "n_critic", "critic_warmup_steps",
    "generator_warmup_steps",  # (session 19)
    "generator_warmup_cycle",  # (session 22)
    "critic_augment",  # (session 17)
    "critic_fake_class",  # (session 18)
    "condition_norms",  # (session 30)
    "expression_guide", "lambda_guide", "lambda_guide_features", "guide_epochs",  # (session 19)
    "guide_width",  # (session 27)
    "g_ema_decay",  # (session 8)
    "g_lr", "d_lr", "beta1",
    "beta2", "adam_epsilon", "adam_epsilon_mode", "lr_decay_every", "lr_decay_start", "mixed_precision", "strategy",
    "worker_startup_timeout",  # (session 13)
    "worker_sharding",  # (session 14)
    "cpu_devices", "jit_compile", "op_determinism", "seed", "checkpoint_every", "keep_checkpoints", "summary_every",
    "sample_every", "num_samples", "progress",
]
ARGS = ["--data_dir=/data", "--model_dir=/runs/a", "--stage=gan", "--num_steps_gan=7", "--batch_size_depth=6",
        "--image_size=64", "--skip_corrupt", "--depth_weight=0", "--generator=attention", "--lambda_id=2",
        "--adam_epsilon=1e-8", "--adam_epsilon_mode=pytorch", "--progress=false", "--seed=11"]


def parsed(args):
    """(the config of train's command line `args`, every flag train defines by name: what config.json recorded)."""
    flag_values = flags.FlagValues()
    define_flags(flag_values)
    flag_values(["expr3d.train"] + list(args))
    return TrainConfig.from_flags(flag_values), {name: flag_values[name].value for name in flag_values}


def test_defaults_and_field_order_are_the_flags():
    config, flag_values = parsed(["--data_dir=/data", "--model_dir=/runs/a"])
    assert [field.name for field in dataclasses.fields(TrainConfig)] == RECORDED_KEYS
    assert config == TrainConfig(data_dir="/data", model_dir="/runs/a")
    assert config.to_dict() == flag_values
    assert list(config.to_dict()) == RECORDED_KEYS
    assert parse_config(["expr3d.train", "--data_dir=/data", "--model_dir=/runs/a"]) == config


def test_parse_config_refuses_what_the_cli_refuses():
    with pytest.raises(flags.IllegalFlagValueError, match="--model_dir"):
        parse_config(["expr3d.train", "--data_dir=/data"])
    with pytest.raises(flags.IllegalFlagValueError, match=r"flag --n_critic=0: must be >= 1"):
        parse_config(["expr3d.train", "--data_dir=/data", "--model_dir=/m", "--n_critic=0"])
    with pytest.raises(UsageError, match="unexpected argument"):
        parse_config(["expr3d.train", "--data_dir=/data", "--model_dir=/m", "extra"])


def test_from_flags_round_trips_through_to_dict_and_json():
    config, flag_values = parsed(ARGS)
    recorded = config.to_dict()
    assert recorded == flag_values and config.num_steps_gan == 7 and config.generator == "attention"
    assert json.loads(json.dumps(recorded)) == recorded  # what config.json holds, values and types
    assert TrainConfig.from_dict(json.loads(json.dumps(recorded))) == config
    # A config.json of an older version: unknown keys (e.g. the removed debug flags) are ignored.
    assert TrainConfig.from_dict(dict(recorded, debug_nan_at_step=-1, debug_step_delay=0.0)) == config


def test_replace_is_a_new_frozen_config():
    config = TrainConfig(data_dir="/data", model_dir="/runs/a")
    resolved = config.replace(image_size=32)
    assert (config.image_size, resolved.image_size) == (None, 32)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.seed = 3


def test_stages_and_batch_sizes():
    config = TrainConfig(data_dir="/d", model_dir="/m", batch_size=8, batch_size_depth=6)
    assert config.stages() == ["depth", "gan"] and config.replace(depth_weight=0.0).stages() == ["gan"]
    assert (config.stage_batch_size("depth"), config.stage_batch_size("gan")) == (6, 8)
    assert config.replace(batch_size_depth=None).stage_batch_size("depth") == 8
    transfer = config.replace(model="transfer")
    assert transfer.stages() == ["depth", "transfer"] and transfer.replace(stage="gan").stages() == ["transfer"]
    assert transfer.replace(depth_weight=0.0).stages() == ["transfer"]
    assert transfer.replace(stage="depth").stages() == ["depth"]
    sized = dict(image_size=64, d_num_layers=3, depth_d_num_layers=3)
    assert transfer.replace(**sized).model_config().family == "transfer"
    assert config.replace(**sized).model_config().family == "stargan"


@pytest.mark.parametrize("changes, message", [
    ({"batch_size": 3, "strategy": "mirrored"},
     "--batch_size=3 is not divisible by the 2 replicas of --strategy=mirrored"),
    ({"batch_size_depth": 5, "strategy": "mirrored"},
     "--batch_size_depth=5 is not divisible by the 2 replicas of --strategy=mirrored"),
    ({"jit_compile": True, "strategy": "mirrored"}, "--jit_compile is supported with --strategy=default only"),
    ({"batch_size": 3, "strategy": "multi_worker"},
     "--batch_size=3 is not divisible by the 2 replicas of --strategy=multi_worker"),
    ({"strategy": "multi_worker", "cpu_devices": 2},
     "--cpu_devices=2 splits one machine's CPU for --strategy=mirrored; --strategy=multi_worker uses one CPU device "
     "(or every GPU) per worker"),
    ({"worker_sharding": "file"},
     "--worker_sharding=file shares data between the workers of --strategy=multi_worker; --strategy=default has one "
     "worker"),
    ({"worker_sharding": "file", "strategy": "multi_worker", "target_mode": "paired"},
     "--worker_sharding=file does not combine with --target_mode=paired (pairs are drawn across shards); use "
     "--worker_sharding=data"),
    ({"model_dir": None}, "--model_dir is required"),
    ({"target_mode": "paired", "balanced": True},
     "--target_mode=paired does not combine with --balanced or --skip_corrupt"),
    ({"lambda_pair": 10.0}, "--lambda_pair=10.0 needs --target_mode=paired (the true target renders)"),
    ({"contempt_side": "image_left"},
     "--contempt_side=image_left needs --target_mode=paired (it mirrors the pairs whose target is contempt)"),
    ({"lambda_pair_gradient": 2.0},
     "--lambda_pair_gradient=2.0 needs --target_mode=paired (the true target renders)"),
    ({"synthetic_train_pairs": True, "synthetic_images_per_identity": 4},
     "--synthetic_train_pairs needs --synthetic_images_per_identity a multiple of 8, got 4"),
    ({"model": "transfer", "generator": "attention"},
     "--generator=attention is a setting of --model=stargan; --model=transfer does not use it (leave it at its "
     "default)"),
    ({"model": "transfer", "g_ema_decay": 0.999},
     "--g_ema_decay=0.999 is a setting of --model=stargan; --model=transfer does not use it (leave it at its "
     "default)"),
    ({"condition": "action_units"},
     "--condition=action_units needs --depth_weight=0 (D_depth reads expression classes); got --depth_weight=0.1"),
    ({"condition": "action_units", "depth_weight": 0.0, "target_mode": "uniform"},
     "--condition=action_units needs --target_mode=permute or paired (the targets are other faces' AUs, or the true "
     "render's); got --target_mode=uniform"),
    ({"model": "transfer", "condition": "action_units"},
     "--condition=action_units is a setting of --model=stargan; --model=transfer does not use it (leave it at its "
     "default)"),
    ({"model": "transfer", "target_mode": "uniform"},
     "--target_mode=uniform is a setting of --model=stargan; --model=transfer takes 'permute' (each face's exemplar "
     "is another face of the batch) or 'paired'"),
    ({"synthetic_train_swap_pairs": True},
     "--synthetic_train_swap_pairs needs --synthetic_train_pairs (swap partners share the AUs of their paired "
     "groups)"),
    ({"dial_pair_share": 0.5, "target_mode": "paired"},
     "--dial_pair_share=0.5 pairs dial renders: it needs --target_mode=paired with --condition=action_units or "
     "--model=transfer"),
    ({"synthetic_expression_strength": "0.1"}, "--synthetic_expression_strength=0.1: must be two numbers LOW,HIGH"),
    ({"synthetic_expression_strength": "0.8,0.2"},
     "--synthetic_expression_strength=0.8,0.2: must satisfy 0 < LOW <= HIGH <= 1"),
    ({"synthetic_expression_strength": "0,1"}, "--synthetic_expression_strength=0,1: must satisfy 0 < LOW <= HIGH <= 1"),
    ({"synthetic_train_dial_renders": 8},
     "--synthetic_train_dial_renders needs --synthetic_train_pairs (a dial render joins a paired group: its pose and "
     "light)"),
    ({"pair_exemplar": "partner", "target_mode": "paired"},
     "--pair_exemplar=partner is a setting of --model=transfer with --target_mode=paired (the paired term's "
     "exemplar); got --model=stargan --target_mode=paired"),
    ({"pair_exemplar": "partner", "model": "transfer"},
     "--pair_exemplar=partner is a setting of --model=transfer with --target_mode=paired (the paired term's "
     "exemplar); got --model=transfer --target_mode=permute"),
    ({"model": "transfer", "lambda_pair": 1.0},
     "--lambda_pair=1.0 needs --target_mode=paired (the true target renders)"),
    ({"lambda_free_invariance": 1.0, "target_mode": "paired"},
     "--lambda_free_invariance=1.0 is a setting of --model=transfer with --target_mode=paired --pair_exemplar=target "
     "(A's AU-free map against its own paired render's); got --model=stargan --target_mode=paired "
     "--pair_exemplar=target"),
    ({"lambda_free_invariance": 1.0, "model": "transfer", "target_mode": "paired", "pair_exemplar": "partner"},
     "--lambda_free_invariance=1.0 is a setting of --model=transfer with --target_mode=paired --pair_exemplar=target "
     "(A's AU-free map against its own paired render's); got --model=transfer --target_mode=paired "
     "--pair_exemplar=partner"),
    ({"transfer_code_detached": True},
     "--transfer_code_detached is a setting of --model=transfer (the decoder's code); got --model=stargan"),
    ({"model": "transfer", "transfer_code_teacher": True},
     "--transfer_code_teacher is a setting of --model=transfer with --transfer_code=action_units or guide (the code "
     "the decoder gets is then AU intensities); got --model=transfer --transfer_code=learned"),
    ({"model": "transfer", "transfer_code": "guide"},
     "--transfer_code=guide reads the code with a copy of the run's AU guide: it needs --expression_guide (train, or "
     "an AU guide's folder)"),
    ({"model": "transfer", "transfer_code": "guide", "expression_guide": "train", "transfer_encoder": "split"},
     "--transfer_code=guide reads the AUs with a network of its own, so the trunk serves the AU-free map alone: "
     "--transfer_encoder must be shared; got split"),
    ({"model": "transfer", "batch_size": 3, "strategy": "mirrored"},
     "--batch_size=3 is not divisible by the 2 replicas of --strategy=mirrored"),
])
def test_validate_messages(changes, message):
    config = TrainConfig(data_dir="/d", model_dir="/m", batch_size=4).replace(**changes)
    with pytest.raises(UsageError) as info:
        config.validate(num_replicas=2)
    assert str(info.value) == message


def test_validate_passes_and_model_config_names_the_field():
    config = TrainConfig(data_dir="/d", model_dir="/m", image_size=32, d_num_layers=3, depth_d_num_layers=3)
    assert config.validate(num_replicas=2) is config
    paired_transfer = config.replace(model="transfer", target_mode="paired", lambda_pair=1.0)
    assert paired_transfer.validate(num_replicas=2) is paired_transfer
    assert config.model_config().image_size == 32
    with pytest.raises(UsageError, match="^architecture flags: .*d_num_layers=6 needs image_size divisible by 64"):
        config.replace(d_num_layers=6).model_config()


@pytest.mark.slow
def test_help_lists_every_flag_as_the_commands_own():
    import os
    from tests import forked_cli

    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    done = forked_cli.run(["-m", "expr3d.train", "--help"], capture_output=True, text=True, cwd=repo, timeout=120)
    assert "Try --helpfull" in done.stdout, done.stderr  # absl's --help (its exit code is 1)
    listed = {line.split(":")[0].strip()[2:] for line in done.stdout.splitlines() if line.startswith("  --")}
    assert set(RECORDED_KEYS) <= {name.removeprefix("[no]") for name in listed}
    assert not any(name.startswith("debug_") for name in listed)  # test hooks are not flags (StepHooks)
