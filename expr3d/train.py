# Over 400 lines: the flags and the stage orchestration stay together until #16 step 2 (TrainConfig, build_stage).
r"""Train the depth-guided StarGAN: stage 1 (depth pre-training) and/or stage 2 (end-to-end), resumable.

    python -m expr3d.train --flagfile=experiments/synthetic.flags          # whole method on procedural faces, CPU
    python -m expr3d.train --flagfile=experiments/affectnet.flags          # the paper's best AffectNet row, GPU
    tensorboard --logdir=<model_dir>/logs

Stages: `--stage=depth` pre-trains G_depth/D_depth for `--num_steps_depth` iterations; `--stage=gan` trains
G_rgb/D_rgb/G_depth/D_depth end-to-end for `--num_steps_gan` iterations, starting from the stage-1 checkpoint
(required when `--depth_weight > 0`); `--stage=all` runs both (stage 1 is skipped when `--depth_weight=0`: the plain
StarGAN baseline). One iteration = one critic update on one global batch, plus a generator update every
`--n_critic`-th iteration (StarGAN's counting). The learning rates stay at their base value for the first half of a
stage and decay linearly to 0 over the second half, updated every `--lr_decay_every` iterations.

Run directory (`--model_dir`):
    config.json                      flags, model config, dataset card summary, versions, progress, stage/step
    depth/checkpoints/ckpt-<step>/   stage-1 checkpoints (networks, optimizers, step, data position = RNG state)
    gan/checkpoints/ckpt-<step>/     stage-2 checkpoints
    models/{g_rgb,d_rgb,g_depth,d_depth}.keras   the trained networks, re-exported at every checkpoint (a
                                     stage-1-only run has no g_rgb/d_rgb; plain StarGAN without stage 1 no g_depth/d_depth)
    logs/{depth,gan}/                TensorBoard: every loss term, learning rates, flags, sample grids
    samples/{depth,gan}-<step>.png   sample grids (see expr3d.training.summaries)
Pointing `--model_dir` at an existing run resumes it exactly; architecture flags that differ from its config.json
are refused with a diff. SIGTERM/SIGINT checkpoint and exit (status 143/130); a NaN/inf loss stops the run naming
the term and the iteration (status 3) without overwriting the last good checkpoint; bad input exits with status 2
before any training.

Bad data: a corrupt or truncated shard, a shard the dataset card lists but is missing, a record with a missing or
mistyped field, non-finite depth, an empty mask or a size other than the card's stops the run with one line naming
the shard and the record (status 2; a missing shard before training, a bad record when it is read); `--skip_corrupt`
skips them instead, after a scan that logs them and records their count in config.json (`skipped_records`).
Resuming with `--skip_corrupt` toggled restores networks, optimizers and step but not the data position (a warning
says so). A damaged latest checkpoint (truncated data, missing or corrupt index) is named in a warning, moved aside
to `ckpt-<step>.damaged` and the run resumes from the previous complete one; when none is readable the run stops
naming them (status 2). A checkpoint or model that does not fit on the disk stops the run with one line naming the
path and the bytes needed (status 1), leaving the previous checkpoint and models as they were.
"""

import json
import os
import sys

from absl import flags

from expr3d import cli, storage
from expr3d.labels import NUM_EXPRESSIONS
from expr3d.run_dir import RunDir

FLAGS = flags.FLAGS

# --- what to run --------------------------------------------------------------------------------------------------
flags.DEFINE_enum("stage", "all", ["depth", "gan", "all"], "Which stage(s) to run.")
flags.DEFINE_string("data_dir", None, "Dataset directory (dataset_card.json + TFRecord shards).")
flags.DEFINE_string("model_dir", None, "Run directory: checkpoints, models, logs, samples; resumed if it exists.")
flags.DEFINE_integer("num_steps_depth", 200000, "Stage-1 iterations (the paper's '200k epochs').")
flags.DEFINE_integer("num_steps_gan", 300000, "Stage-2 iterations (the paper's '300k epochs').")
flags.DEFINE_integer("batch_size", 16, "GLOBAL batch size of stage 2 (and of stage 1 unless --batch_size_depth).")
flags.DEFINE_integer("batch_size_depth", None, "GLOBAL batch size of stage 1 (default: --batch_size).")
flags.DEFINE_integer("image_size", None, "Training image size (default: the dataset card's).")
flags.DEFINE_bool("allow_resize", False, "Allow an --image_size different from the dataset card's (resized).")
flags.DEFINE_bool("balanced", False, "Class-balanced sampling of the training stream.")
flags.DEFINE_bool("skip_corrupt", False,
                  "Skip records that fail the reader's checks (corrupt or truncated shards, shards missing from the "
                  "dataset card's list, missing or mistyped fields, non-finite depth, empty masks, sizes other than "
                  "the card's) instead of stopping on the first; the data is scanned first (one decoding pass) and "
                  "the skipped records are counted and named in the log and in config.json (skipped_records).")
# --- synthetic data -----------------------------------------------------------------------------------------------
flags.DEFINE_bool("generate_synthetic", False,
                  "If --data_dir has no dataset card, generate the procedural dataset there first.")
flags.DEFINE_integer("synthetic_identities", 24, "Identities of the generated dataset (--generate_synthetic).")
flags.DEFINE_integer("synthetic_images_per_identity", 8, "Renders per identity (--generate_synthetic).")
flags.DEFINE_integer("synthetic_seed", 0, "Seed of the generated dataset (--generate_synthetic).")
# --- architecture -------------------------------------------------------------------------------------------------
flags.DEFINE_integer("g_conv_dim", 64, "G_rgb width.")
flags.DEFINE_integer("g_num_res_blocks", 6, "G_rgb residual blocks.")
flags.DEFINE_integer("d_conv_dim", 64, "D_rgb width.")
flags.DEFINE_integer("d_num_layers", 6, "D_rgb stride-2 layers.")
flags.DEFINE_integer("depth_g_conv_dim", 64, "G_depth width.")
flags.DEFINE_integer("depth_g_num_res_blocks", 6, "G_depth residual blocks.")
flags.DEFINE_integer("depth_d_conv_dim", 64, "D_depth width.")
flags.DEFINE_integer("depth_d_num_layers", 6, "D_depth stride-2 layers.")
flags.DEFINE_enum("generator", "stargan", ["stargan", "attention"],
                  "G_rgb: StarGAN's generator (the paper), or a GANimation-style attention generator (NOT in the "
                  "paper): output = M*C + (1-M)*x with a learnt edit mask M (0 = source pixel copied) and colour C.")
flags.DEFINE_enum("geometry", "depth", ["depth", "normals"], "Guidance map: depth (x3 channels) or normals.")
flags.DEFINE_enum("init", "keras", ["keras", "stargan"],
                  "Weight initialisation: Keras' defaults (glorot-uniform kernels, zero biases), or 'stargan': "
                  "PyTorch's defaults as the official StarGAN code gets them (kernels and the critics' biases "
                  "U(+-1/sqrt(fan_in)); expr3d/models/initializers.py). The paper flagfiles use 'stargan'.")
# --- losses -------------------------------------------------------------------------------------------------------
flags.DEFINE_float("depth_weight", 0.1, "lambda_depth of L_rgb + lambda_depth * L_depth (0 = plain StarGAN).")
flags.DEFINE_float("confidence_penalty", 0.1, "beta of the confidence penalty on D_depth's classification (0 = off).")
flags.DEFINE_enum("confidence_penalty_on", "critic", ["critic", "generator"],
                  "Where the confidence penalty -beta*H(softmax(D_depth_cls)) goes (both stages): 'critic' = D_depth's "
                  "loss, on its classification of the REAL geometry maps (the paper's 'regulariser on the "
                  "discriminator'); 'generator' = the generators' loss, on D_depth's classification of G_depth's "
                  "estimate (the earlier behaviour; docs/training.md).")
flags.DEFINE_float("lambda_cls", 1.0, "Classification weight.")
flags.DEFINE_float("lambda_rec", 10.0, "Cycle-reconstruction weight (RGB and depth cycles).")
flags.DEFINE_float("lambda_gp", 10.0, "Gradient-penalty weight.")
flags.DEFINE_float("lambda_id", 0.0,
                   "NOT in the paper (0 = off, the paper's flagfiles): weight of CycleGAN's identity-mapping term "
                   "|x - G_rgb(x, c_org)|_1 in stage 2, which rules out the colour-inverting solution of the cycle "
                   "loss in short runs.")
flags.DEFINE_float("lambda_mask", 0.1,
                   "--generator=attention: weight of the masks' sparsity term (--mask_penalty says which way it "
                   "pushes), on the masks of G_rgb(x, c_trg) and of the cycle. GANimation's 0.1.")
flags.DEFINE_enum("mask_penalty", "edits", ["edits", "copies"],
                  "--generator=attention: what --lambda_mask penalises: the edited fraction of each mask ('edits', "
                  "toward copying the source) or the copied fraction ('copies', GANimation's direction, against masks "
                  "that collapse to 'no edit').")
flags.DEFINE_float("lambda_mask_tv", 4.1,
                   "--generator=attention: weight of the edit masks' mean total variation (smoothness), on the same "
                   "two masks. 4.1 ~ GANimation's 1e-5 on its sum over a batch of 25 masks of 128x128.")
flags.DEFINE_float("lambda_pix", 10.0, "Stage 1: L1 weight of the estimated geometry against the real one.")
flags.DEFINE_float("perceptual_weight", 1.0, "Stage 1: VGG19 perceptual weight (0 = skipped, no weights needed).")
flags.DEFINE_string("vgg19_weights", "auto", "VGG19 notop weights: 'auto' (Keras cache) or a .h5 path.")
flags.DEFINE_enum("target_mode", "permute", ["permute", "uniform"],
                  "Target expressions: a permutation of the batch's labels (StarGAN) or uniform.")
# --- optimisation -------------------------------------------------------------------------------------------------
flags.DEFINE_integer("n_critic", 5, "Critic updates per generator update.")
flags.DEFINE_integer("critic_warmup_steps", 0,
                     "NOT in the paper (0 = off, the paper's flagfiles): the first N iterations of stage 2 train only "
                     "D_rgb's expression classification of real faces, so its classification term guides G_rgb from "
                     "G_rgb's first update. They count in --num_steps_gan.")
flags.DEFINE_float("g_lr", 1e-4, "Adam learning rate of the generators.")
flags.DEFINE_float("d_lr", 1e-4, "Adam learning rate of the critics.")
flags.DEFINE_float("beta1", 0.5, "Adam beta_1.")
flags.DEFINE_float("beta2", 0.999, "Adam beta_2.")
flags.DEFINE_float("adam_epsilon", 1e-7, "Adam epsilon (Keras' default 1e-7; PyTorch's, and StarGAN's, 1e-8).")
flags.DEFINE_enum("adam_epsilon_mode", "keras", ["keras", "pytorch"],
                  "Where Adam's epsilon goes: 'keras' = keras.optimizers.Adam, added to the un-corrected sqrt(v); "
                  "'pytorch' = torch.optim.Adam's formula, added to the bias-corrected sqrt(v_hat) "
                  "(expr3d/training/adam.py). The paper flagfiles use --adam_epsilon=1e-8 --adam_epsilon_mode=pytorch.")
flags.DEFINE_integer("lr_decay_every", 1000, "The decaying learning rate changes every this many iterations.")
flags.DEFINE_float("lr_decay_start", 0.5, "Fraction of a stage after which the learning rates decay linearly to 0.")
# --- runtime ------------------------------------------------------------------------------------------------------
flags.DEFINE_enum("mixed_precision", "float32", ["float32", "mixed_float16", "mixed_bfloat16", "auto"],
                  "Dtype policy. auto = mixed_bfloat16 where the hardware computes bf16 natively (GPUs of compute "
                  "capability >= 8, CPUs with AVX-512 BF16 or AMX), mixed_float16 on older GPUs, float32 otherwise "
                  "(bf16 on an AVX2-only CPU is ~9x slower than float32).")
flags.DEFINE_enum("strategy", "default", ["default", "mirrored"], "Distribution strategy.")
flags.DEFINE_integer("cpu_devices", 0, "Split the CPU into this many logical devices (testing --strategy=mirrored).")
flags.DEFINE_bool("jit_compile", False, "XLA-compile the train steps (--strategy=default only).")
flags.DEFINE_bool("op_determinism", False,
                  "tf.config.experimental.enable_op_determinism(): bit-reproducible kernels (slower), so a resumed "
                  "run equals an uninterrupted one exactly; without it multi-threaded CPU reductions may differ in "
                  "the last bits, which the gradient penalty's double backward can amplify.")
flags.DEFINE_integer("seed", 0, "Seed of the weights, the data order, the augmentation and every random draw.")
flags.DEFINE_integer("checkpoint_every", 1000, "Checkpoint (and export models) every N iterations (0 = at the end).")
flags.DEFINE_integer("keep_checkpoints", 3, "Complete checkpoints kept per stage.")
flags.DEFINE_integer("summary_every", 100, "TensorBoard scalars every N iterations.")
flags.DEFINE_integer("sample_every", 1000, "Sample grid every N iterations (0 = at the end only).")
flags.DEFINE_integer("num_samples", 4, "Sample sources in the grids (test examples of different identities).")
flags.DEFINE_bool("progress", True, "Print a progress line with ETA to stderr.")
flags.DEFINE_integer("debug_nan_at_step", -1, "Testing: feed NaN images at this iteration of each stage.")
flags.DEFINE_float("debug_step_delay", 0.0, "Testing: sleep this many seconds after each iteration.")

# --- bounds, checked while the flags are parsed: one line and exit code 2, before any work (expr3d.cli) -----------
# (train's flags are defined at import, unlike the other CLIs' define_flags(): tests/training/mirrored_check.py
# parses train.FLAGS in-process. #16 step 2, a TrainConfig built from the flags once, is to replace this.)
cli.required("data_dir", "model_dir")
for _name in ("num_steps_depth", "num_steps_gan", "batch_size", "batch_size_depth", "n_critic", "lr_decay_every",
              "num_samples", "keep_checkpoints", "synthetic_images_per_identity", "g_conv_dim", "d_conv_dim",
              "d_num_layers", "depth_g_conv_dim", "depth_d_conv_dim", "depth_d_num_layers"):
    cli.at_least(_name, 1)
for _name in ("g_num_res_blocks", "depth_g_num_res_blocks"):
    cli.at_least(_name, 0)
cli.at_least("cpu_devices", 0, "0 = no split")
for _name in ("checkpoint_every", "summary_every", "sample_every"):
    cli.at_least(_name, 0, "0 = at the end only")
cli.multiple_of("image_size", 4, 8, "the generators down-sample twice with stride 2; default: the dataset "
                "card's")
cli.at_least("synthetic_identities", 2, "identities are split between train and test")
cli.seed("seed")
cli.seed("synthetic_seed")
for _name in ("g_lr", "d_lr", "adam_epsilon"):
    cli.positive(_name)
for _name in ("beta1", "beta2"):
    cli.in_range(_name, 0.0, 1.0, high_open=True)
cli.in_range("lr_decay_start", 0.0, 1.0)
for _name in ("depth_weight", "confidence_penalty", "perceptual_weight", "lambda_cls", "lambda_rec", "lambda_gp",
              "lambda_pix", "lambda_id", "lambda_mask", "lambda_mask_tv", "debug_step_delay"):
    cli.at_least(_name, 0.0)
cli.at_least("debug_nan_at_step", -1, "-1 = never")
cli.at_least("critic_warmup_steps", 0, "0 = off")

EXIT_BAD_INPUT = 2
EXIT_NON_FINITE = 3
EXIT_SIGNAL = {"SIGTERM": 143, "SIGINT": 130}

# A resumed run must agree on these: the networks' shapes, and everything the checkpointed data position depends
# on (a restored tf.data iterator replays the saved pipeline state, buffered batches included).
ARCHITECTURE_KEYS = ("model_config", "geometry", "data_stream")
DATA_STREAM_FLAGS = ("data_dir", "batch_size", "batch_size_depth", "image_size", "seed", "balanced", "target_mode")


class UsageError(ValueError):
    """Bad input detected before training: the message names the flag."""


def _flag_values():
    """Every flag this module defines, by name (the module is `__main__` under `python -m`)."""
    for flag_list in FLAGS.flags_by_module_dict().values():
        if any(flag.name == "num_steps_gan" for flag in flag_list):
            return {flag.name: flag.value for flag in flag_list}
    return {}


def _model_config():
    from expr3d.models import ModelConfig

    try:
        return ModelConfig(
            image_size=FLAGS.image_size,
            num_classes=NUM_EXPRESSIONS,
            g_conv_dim=FLAGS.g_conv_dim,
            g_num_res_blocks=FLAGS.g_num_res_blocks,
            d_conv_dim=FLAGS.d_conv_dim,
            d_num_layers=FLAGS.d_num_layers,
            depth_g_conv_dim=FLAGS.depth_g_conv_dim,
            depth_g_num_res_blocks=FLAGS.depth_g_num_res_blocks,
            depth_d_conv_dim=FLAGS.depth_d_conv_dim,
            depth_d_num_layers=FLAGS.depth_d_num_layers,
            generator=FLAGS.generator,
            init=FLAGS.init,
        )
    except ValueError as error:
        field = str(error).split(":", 1)[-1].strip()
        raise UsageError(f"architecture flags: {field}") from None


def _prepare_data():
    """Check (or generate) the dataset and return its card; errors name --data_dir / --image_size."""
    from expr3d.data import dataset_card

    data_dir = FLAGS.data_dir  # required (checked while parsing)
    if FLAGS.generate_synthetic and not os.path.exists(os.path.join(data_dir, dataset_card.CARD_NAME)):
        if FLAGS.image_size is None:
            raise UsageError("--generate_synthetic needs --image_size")
        from expr3d.data import synthetic

        print(f"expr3d.train: generating the synthetic dataset in {data_dir} "
              f"({FLAGS.synthetic_identities} identities x {FLAGS.synthetic_images_per_identity} images, "
              f"{FLAGS.image_size} px)", file=sys.stderr, flush=True)
        synthetic.generate_dataset(
            data_dir,
            num_identities=FLAGS.synthetic_identities,
            image_size=FLAGS.image_size,
            seed=FLAGS.synthetic_seed,
            images_per_identity=FLAGS.synthetic_images_per_identity,
        )
    try:
        card = dataset_card.load_card(data_dir)
    except (FileNotFoundError, ValueError) as error:
        raise UsageError(f"--data_dir={data_dir}: {error}") from None
    train = card["splits"].get("train", {})
    if int(train.get("num_examples", 0)) == 0:
        raise UsageError(f"--data_dir={data_dir}: the dataset card lists no training examples")
    stored = int(card["image_size"])
    if FLAGS.image_size is None:
        FLAGS.image_size = stored
    elif FLAGS.image_size != stored and not FLAGS.allow_resize:
        raise UsageError(
            f"--image_size={FLAGS.image_size} does not match the dataset card of {data_dir} (image_size {stored}); "
            f"pass --image_size={stored}, or --allow_resize to resize on the fly"
        )
    if card.get("num_classes", NUM_EXPRESSIONS) != NUM_EXPRESSIONS or (
        "expressions" in card and len(card["expressions"]) != NUM_EXPRESSIONS
    ):
        raise UsageError(f"--data_dir={data_dir}: the dataset card's expressions {card.get('expressions')} do not "
                         f"match the {NUM_EXPRESSIONS} classes of expr3d.labels")
    return card


def _card_summary(card):
    return {
        "data_dir": os.path.abspath(FLAGS.data_dir),
        "name": card.get("name"),
        "schema_version": card.get("schema_version"),
        "image_size": card.get("image_size"),
        "splits": {split: {"num_examples": info.get("num_examples"), "counts": info.get("counts")}
                   for split, info in card.get("splits", {}).items()},
    }


def _stages_to_run():
    if FLAGS.stage == "depth":
        return ["depth"]
    if FLAGS.stage == "gan":
        return ["gan"]
    return ["gan"] if FLAGS.depth_weight == 0 else ["depth", "gan"]


def _validate_flags(num_replicas):
    """What the flags' validators (bounds, checked while parsing) cannot see: the replicas and the strategy."""
    stages = _stages_to_run()
    batches = [("batch_size", FLAGS.batch_size)] if "gan" in stages else []
    if "depth" in stages:
        batches.append(("batch_size_depth" if FLAGS.batch_size_depth else "batch_size",
                        FLAGS.batch_size_depth or FLAGS.batch_size))
    for name, value in batches:
        if value % num_replicas:
            raise UsageError(f"--{name}={value} is not divisible by the {num_replicas} replicas of "
                             f"--strategy={FLAGS.strategy}")
    if FLAGS.jit_compile and FLAGS.strategy != "default":
        raise UsageError("--jit_compile is supported with --strategy=default only")


def _with_model_config_defaults(run_config):
    """`run_config` with its model_config completed by ModelConfig's defaults, so a run written before a field
    existed is compared as what it was built as (`generator` "stargan", `init` "keras")."""
    from expr3d.models import ModelConfig

    try:
        completed = ModelConfig.from_dict(run_config["model_config"]).to_dict()
    except (KeyError, TypeError, ValueError):
        return run_config  # compared as saved: the diff shows what is wrong
    return dict(run_config, model_config=completed)


def _check_resume(run_config):
    from expr3d.training import checkpoints

    saved = RunDir(FLAGS.model_dir).read_config()
    if saved is None:
        return
    diff = checkpoints.config_diff(_with_model_config_defaults(saved), run_config, ARCHITECTURE_KEYS)
    if diff:
        raise UsageError(
            f"--model_dir={FLAGS.model_dir} holds a run with a different architecture or data stream; resume it with "
            f"its own flags (config.json) or use a new --model_dir. Differences:\n{diff}"
        )


def _check_stage_one(stages):
    from expr3d.training import checkpoints

    depth_dir = RunDir(FLAGS.model_dir).checkpoint_dir("depth")
    gan_dir = RunDir(FLAGS.model_dir).checkpoint_dir("gan")
    if "gan" in stages and "depth" not in stages and FLAGS.depth_weight > 0:
        if not checkpoints.checkpoint_exists(depth_dir) and not checkpoints.checkpoint_exists(gan_dir):
            raise UsageError(
                f"--stage=gan with --depth_weight={FLAGS.depth_weight} needs the stage-1 checkpoint in {depth_dir} "
                f"(run --stage=depth first, use --stage=all, or --depth_weight=0 for plain StarGAN)"
            )


def _check_model_dir():
    model_dir = FLAGS.model_dir  # required (checked while parsing)
    if os.path.lexists(model_dir) and not os.path.isdir(model_dir):
        raise UsageError(f"--model_dir={model_dir} is a file, not a run directory; choose a new or empty folder")
    if os.path.isdir(model_dir):
        foreign = RunDir(model_dir).foreign_entries()
        if foreign:
            shown = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
            raise UsageError(f"--model_dir={model_dir} is not an expr3d run (it holds {shown}); train writes only "
                             f"into a new or empty folder or resumes a run, so choose another --model_dir")


def run():
    """Everything after flag parsing; raises UsageError / NonFiniteLossError; returns the exit status."""
    _check_model_dir()
    from expr3d.training import runtime

    runtime.configure_cpu_devices(FLAGS.cpu_devices)
    if FLAGS.op_determinism:
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()
    loss_scaled = runtime.set_precision(FLAGS.mixed_precision)
    strategy = runtime.make_strategy(FLAGS.strategy)
    _validate_flags(strategy.num_replicas_in_sync)
    card = _prepare_data()
    model_config = _model_config()
    stages = _stages_to_run()

    flag_values = _flag_values()
    run_config = {
        "flags": flag_values,
        "model_config": model_config.to_dict(),
        "geometry": FLAGS.geometry,
        "data_stream": {name: (os.path.abspath(FLAGS[name].value) if name == "data_dir" else FLAGS[name].value)
                        for name in DATA_STREAM_FLAGS},
        "dataset": _card_summary(card),
        "versions": storage.library_versions("tensorflow", "keras", "numpy", "expr3d"),
        "num_replicas": strategy.num_replicas_in_sync,
        "precision": runtime.resolve_precision(FLAGS.mixed_precision),
    }
    _check_resume(run_config)
    _check_stage_one(stages)

    run_config.update(_check_data(card))
    vgg_needed = "depth" in stages and FLAGS.perceptual_weight > 0
    if vgg_needed:
        from expr3d.models.perceptual import resolve_vgg19_weights

        try:
            resolve_vgg19_weights(FLAGS.vgg19_weights)
        except (FileNotFoundError, ValueError) as error:
            raise UsageError(str(error).splitlines()[0] + " (or train with --perceptual_weight=0)") from None

    return _train(strategy, loss_scaled, model_config, card, run_config, stages, vgg_needed)


def _train(strategy, loss_scaled, model_config, card, run_config, stages, vgg_needed):
    import tensorflow as tf

    from expr3d.models import build_models
    from expr3d.training import checkpoints, inputs, runtime, summaries
    from expr3d.training.loop import StageLoop, StopRequest
    from expr3d.training.stages import build_stage

    from expr3d.training.config import TrainConfig

    config = TrainConfig.from_flags(FLAGS)
    runtime.seed_everything(FLAGS.seed)
    model_dir = FLAGS.model_dir
    os.makedirs(model_dir, exist_ok=True)
    run_dir = RunDir(model_dir)
    saved = run_dir.read_config() or {}
    run_config["progress"] = saved.get("progress", {})
    run_dir.write_config(run_config)

    with strategy.scope():
        networks = build_models(model_config)

    # Only networks that have been trained are exported: a stage-1-only run has no G_rgb, a plain StarGAN run
    # without a stage-1 checkpoint no G_depth (export/evaluation tools read "which files exist" as "what was trained").
    trained = set()

    def export(stage, step):
        run_dir.save_networks({k: networks[k] for k in sorted(trained)})
        run_config["progress"][stage] = step
        run_config["stage"], run_config["step"] = stage, step
        run_dir.write_config(run_config)

    try:
        samples = inputs.sample_batch(FLAGS.data_dir, FLAGS.num_samples, FLAGS.image_size, FLAGS.geometry,
                                      skip_corrupt=FLAGS.skip_corrupt)
    except tf.errors.OpError as error:
        described = _data_error(error, ("test", "train"))
        if described is None:
            raise
        raise described from None
    depth_dir = run_dir.checkpoint_dir("depth")

    status = "complete"
    with StopRequest() as stop:
        for stage in stages:
            with strategy.scope():
                built = build_stage(stage, config, networks, loss_scaled)
            trainer, num_steps = built.trainer, built.num_steps

            dataset = inputs.training_dataset(
                FLAGS.data_dir, built.batch_size, FLAGS.image_size, FLAGS.geometry, NUM_EXPRESSIONS,
                seed=built.data_seed, target_mode=FLAGS.target_mode,
                balanced=FLAGS.balanced, skip_corrupt=FLAGS.skip_corrupt,
            )
            run_summaries = summaries.RunSummaries(model_dir, stage)
            show_geometry = stage == "depth" or FLAGS.depth_weight > 0 or checkpoints.checkpoint_exists(depth_dir)

            def sample_fn(step, trainer=trainer, run_summaries=run_summaries, show_geometry=show_geometry):
                grid = summaries.render_samples(trainer, samples, FLAGS.geometry, show_geometry=show_geometry)
                run_summaries.grid(grid, step)

            loop = StageLoop(
                trainer, strategy, dataset, run_dir.stage_dir(stage), num_steps, built.schedules, networks,
                keep_checkpoints=FLAGS.keep_checkpoints, checkpoint_every=FLAGS.checkpoint_every,
                summary_every=FLAGS.summary_every, sample_every=FLAGS.sample_every, summaries=run_summaries,
                sample_fn=sample_fn, on_checkpoint=lambda step, stage=stage: export(stage, step),
                jit_compile=FLAGS.jit_compile, stop=stop, show_progress=FLAGS.progress,
                step_delay=FLAGS.debug_step_delay, nan_at_step=FLAGS.debug_nan_at_step,
                describe_input_error=lambda error: _data_error(error, ("train",)),
            )
            if stage == "depth" or FLAGS.depth_weight > 0 or checkpoints.checkpoint_exists(depth_dir):
                trained.update(("g_depth", "d_depth"))
            if stage == "gan":
                trained.update(("g_rgb", "d_rgb"))
            restored = loop.restore()
            if restored is None:
                if stage == "gan" and checkpoints.checkpoint_exists(depth_dir):
                    _, prefix, damaged = checkpoints.read_latest(
                        depth_dir, tf.train.Checkpoint(g_depth=networks["g_depth"], d_depth=networks["d_depth"]))
                    checkpoints.report_damaged(damaged, prefix)
                    print(f"expr3d.train: stage gan starts from the stage-1 networks of {prefix}", file=sys.stderr)
                run_summaries.flags_text(flag_values_for_text(run_config))
            else:
                print(f"expr3d.train: stage {stage} resumes at iteration {restored} from {loop.restored_prefix}",
                      file=sys.stderr)
            status = loop.run()
            run_summaries.close()
            if status != "complete":
                print(f"expr3d.train: {status} received; checkpointed stage {stage} at iteration "
                      f"{int(trainer.iteration.numpy())}; rerun the same command to resume", file=sys.stderr)
                break
    if status == "complete":
        print(f"expr3d.train: done; models in {run_dir.models_dir}, samples in "
              f"{os.path.join(model_dir, 'samples')}", file=sys.stderr)
        return 0
    return EXIT_SIGNAL.get(status, 1)


def _check_data(card):
    """Before training: the shards the dataset card lists exist (RecordError naming a missing one); with
    --skip_corrupt, the splits this run reads are scanned and what will be skipped is logged and returned for
    config.json: {"skipped_records": {split: count}, "skipped_problems": [first lines]}."""
    from expr3d.data import pipeline, records, schema

    has_test = int(card["splits"].get("test", {}).get("num_examples", 0)) > 0
    splits = ["train"] + (["test"] if has_test else [])  # the test split gives the sample grid
    if not FLAGS.skip_corrupt:
        for split in splits:
            try:
                records.split_files(FLAGS.data_dir, split, card)
            except schema.MissingShardError as error:
                raise schema.RecordError(f"{error}; pass --skip_corrupt to train without its records") from None
        return {}
    skipped, problems = {}, []
    for split in splits:
        report = pipeline.scan_split(FLAGS.data_dir, split, card=card)
        skipped[split] = report["skipped"]
        problems.extend(report["problems"])
        if report["skipped"]:
            print(f"expr3d.train: --skip_corrupt: skipping {report['skipped']} of {report['records']} '{split}' "
                  f"records of {FLAGS.data_dir}:", file=sys.stderr)
            for line in report["problems"][:10]:
                print(f"  {line}", file=sys.stderr)
            if len(report["problems"]) > 10:
                print(f"  ... and {len(report['problems']) - 10} more", file=sys.stderr)
        if report["problems"] and report["skipped"] >= report["records"]:
            raise schema.RecordError(f"--skip_corrupt: none of the {report['records']} '{split}' records of "
                                     f"{FLAGS.data_dir} is usable (first: {report['problems'][0]})")
    return {"skipped_records": skipped, "skipped_problems": problems[:20]}


def _data_error(error, splits):
    """A one-line RecordError for a TensorFlow error raised while reading `splits` (None: not about the data)."""
    from expr3d.data import pipeline, schema

    described = pipeline.describe_read_error(error, FLAGS.data_dir, splits)
    if described is None or FLAGS.skip_corrupt:
        return described
    return schema.RecordError(f"{described}; pass --skip_corrupt to skip bad records")


def flag_values_for_text(run_config):
    values = dict(run_config["flags"])
    values["(model_config)"] = json.dumps(run_config["model_config"])
    return values


def main(argv):
    cli.no_arguments(argv)
    return run()


def errors():
    """train's own errors and exit codes (module docstring), checked before expr3d.cli's table (which maps a file
    or data error to 1, a bad flag to 2 while parsing, an unexpected error to 70 with its traceback)."""
    from expr3d.data.schema import RecordError
    from expr3d.storage import DiskFullError
    from expr3d.training.checkpoints import CheckpointError
    from expr3d.training.loop import NonFiniteLossError

    return [(UsageError, EXIT_BAD_INPUT), (RecordError, EXIT_BAD_INPUT), (CheckpointError, EXIT_BAD_INPUT),
            (DiskFullError, cli.EXIT_ERROR, "the run resumes from its last checkpoint"),
            (NonFiniteLossError, EXIT_NON_FINITE)]


def run_cli():
    """`python -m expr3d.train` and the `expr3d-train` console script."""
    cli.run(main, "expr3d.train", errors=errors)


if __name__ == "__main__":
    run_cli()
