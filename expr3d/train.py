# Over 400 lines: the checks made before any training (data, resume, stage 1, model dir) beside the run they guard.
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

In-process (the ablation study, tests): `run(TrainConfig(...))` or `run(parse_config(argv))` returns the exit status
(and raises the errors listed in `errors()`); `expr3d.training.config` holds the config, `expr3d.training.stages` the
stage builders, `expr3d.training.loop` the loop.
"""

import json
import os
import sys

from absl import flags

from expr3d import cli, storage
from expr3d.labels import NUM_EXPRESSIONS
from expr3d.run_dir import RunDir
from expr3d.training.config import TrainConfig, UsageError, define_flags, parse_config  # noqa: F401 (the CLI's API)

EXIT_BAD_INPUT = 2
EXIT_NON_FINITE = 3
EXIT_SIGNAL = {"SIGTERM": 143, "SIGINT": 130}

# A resumed run must agree on these: the networks' shapes, and everything the checkpointed data position depends
# on (a restored tf.data iterator replays the saved pipeline state, buffered batches included).
ARCHITECTURE_KEYS = ("model_config", "geometry", "data_stream")


def _synthetic_options(config):
    """(flag, value asked, the card's provenance key, its value when the card omits the key) of each
    `--synthetic_*` option that the procedural dataset's card records."""
    from expr3d.data.synthetic.action_units import DEFAULT_STRENGTH

    strength = config.synthetic_strength() or DEFAULT_STRENGTH
    return (("synthetic_identities", config.synthetic_identities, "num_identities", None),
            ("synthetic_images_per_identity", config.synthetic_images_per_identity, "images_per_identity", None),
            ("synthetic_seed", config.synthetic_seed, "seed", None),
            ("synthetic_train_pairs", config.synthetic_train_pairs, "train_pairs", False),
            ("synthetic_transfer_pairs", config.synthetic_transfer_pairs, "transfer_pairs", 0),
            ("synthetic_train_swap_pairs", config.synthetic_train_swap_pairs, "train_swap_pairs", False),
            ("synthetic_train_dial_renders", config.synthetic_train_dial_renders, "train_dial_renders", 0),
            ("synthetic_expression_strength", [float(v) for v in strength], "expression_strength",
             [float(v) for v in DEFAULT_STRENGTH]))


def _check_rendered_as_asked(config, card):
    """--generate_synthetic on a --data_dir that already holds a procedural dataset uses it only if it was rendered
    with the `--synthetic_*` options asked now: otherwise the run would silently train on other data (e.g. a flag
    added to a flagfile whose data was rendered before)."""
    provenance = card.get("provenance") or {}
    if provenance.get("generator") != "expr3d.data.synthetic":
        return
    for flag, asked, key, absent in _synthetic_options(config):
        recorded = provenance.get(key, absent)
        if recorded is None:
            continue
        if isinstance(asked, list):
            recorded = [float(v) for v in recorded]
        if recorded != asked:
            shown = (lambda v: ",".join(f"{x:g}" for x in v) if isinstance(v, list) else
                     str(v).lower() if isinstance(v, bool) else v)
            raise UsageError(f"--generate_synthetic: --data_dir={config.data_dir} already holds a procedural dataset "
                             f"rendered with {key}={shown(recorded)} (its dataset card), not the asked --{flag}="
                             f"{shown(asked)}: pass a new --data_dir to render one, or --nogenerate_synthetic to "
                             f"train on it as it is")


def _prepare_data(config):
    """Check (or generate) the dataset; returns (config with --image_size resolved from the card, card). Errors
    name --data_dir / --image_size."""
    from expr3d.data import dataset_card, pairs

    data_dir = config.data_dir
    if config.generate_synthetic and not os.path.exists(os.path.join(data_dir, dataset_card.CARD_NAME)):
        if config.image_size is None:
            raise UsageError("--generate_synthetic needs --image_size")
        from expr3d.data import synthetic

        print(f"expr3d.train: generating the synthetic dataset in {data_dir} "
              f"({config.synthetic_identities} identities x {config.synthetic_images_per_identity} images, "
              f"{config.image_size} px)", file=sys.stderr, flush=True)
        synthetic.generate_dataset(
            data_dir,
            num_identities=config.synthetic_identities,
            image_size=config.image_size,
            seed=config.synthetic_seed,
            images_per_identity=config.synthetic_images_per_identity,
            train_pairs=config.synthetic_train_pairs,
            transfer_pairs=config.synthetic_transfer_pairs,
            train_swap_pairs=config.synthetic_train_swap_pairs,
            train_dial_renders=config.synthetic_train_dial_renders,
            expression_strength=config.synthetic_strength(),
        )
    try:
        card = dataset_card.load_card(data_dir)
    except (FileNotFoundError, ValueError) as error:
        raise UsageError(f"--data_dir={data_dir}: {error}") from None
    if config.generate_synthetic:
        _check_rendered_as_asked(config, card)
    train = card["splits"].get("train", {})
    if int(train.get("num_examples", 0)) == 0:
        raise UsageError(f"--data_dir={data_dir}: the dataset card lists no training examples")
    if config.target_mode == "paired" and pairs.paired_count(card, "train") == 0:
        raise UsageError(f"--target_mode=paired: the train split of --data_dir={data_dir} holds no paired records "
                         f"(pair_id); render one with --generate_synthetic --synthetic_train_pairs into a new "
                         f"--data_dir, or `python -m expr3d.data.synthetic --train_pairs`")
    if config.pair_exemplar == "partner" and not isinstance(card.get(dataset_card.SWAP_PARTNERS), dict):
        raise UsageError(f"--pair_exemplar=partner: the train split of --data_dir={data_dir} has no swap partners; "
                         f"render one with --generate_synthetic --synthetic_train_pairs --synthetic_train_swap_pairs "
                         f"into a new --data_dir, or `python -m expr3d.data.synthetic --train_pairs "
                         f"--train_swap_pairs`")
    if isinstance(card.get(dataset_card.DIAL_RENDERS), dict):
        if config.model == "stargan" and config.condition == "expression":
            raise UsageError(f"--data_dir={data_dir}: its train split holds dial renders (faces with one action unit "
                             f"dialled, labelled with their base class), made for --condition=action_units; render "
                             f"the data without --train_dial_renders for --condition=expression")
        if config.pair_exemplar == "partner":
            raise UsageError(f"--pair_exemplar=partner: --data_dir={data_dir} holds dial renders, which have no "
                             f"swap partner; render the data without --train_dial_renders")
    elif config.dial_pair_share > 0:
        raise UsageError(f"--dial_pair_share={config.dial_pair_share}: --data_dir={data_dir} holds no dial renders; "
                         f"render them with --generate_synthetic --synthetic_train_pairs --synthetic_train_dial_renders"
                         f"=8 into a new --data_dir, or `python -m expr3d.data.synthetic --train_pairs "
                         f"--train_dial_renders=8`")
    stored = int(card["image_size"])
    if config.image_size is None:
        config = config.replace(image_size=stored)
    elif config.image_size != stored and not config.allow_resize:
        raise UsageError(
            f"--image_size={config.image_size} does not match the dataset card of {data_dir} (image_size {stored}); "
            f"pass --image_size={stored}, or --allow_resize to resize on the fly"
        )
    if card.get("num_classes", NUM_EXPRESSIONS) != NUM_EXPRESSIONS or (
        "expressions" in card and len(card["expressions"]) != NUM_EXPRESSIONS
    ):
        raise UsageError(f"--data_dir={data_dir}: the dataset card's expressions {card.get('expressions')} do not "
                         f"match the {NUM_EXPRESSIONS} classes of expr3d.labels")
    return config, card


def _prepare_guide(config):
    """`--expression_guide=train`: the guide (a classifier, or an AU regressor for AU targets), trained before any
    stage (a resume reuses it); a given guide directory is checked here, so a wrong one stops the run before stage 1."""
    from expr3d.training.guide import prepare_guide

    try:
        prepare_guide(config, say=lambda line: print(line, file=sys.stderr, flush=True))
    except (FileNotFoundError, ValueError) as error:
        raise UsageError(f"--expression_guide={config.expression_guide}: {str(error).splitlines()[0]}") from None


def _check_action_units(config, card):
    """--model=transfer and --condition=action_units learn from AU intensities: procedural data has them all,
    prepared data those of `prepare --action_units_csv` (OpenFace 2.0); any other dataset is refused naming the flag
    that adds them."""
    if config.model != "transfer" and config.condition != "action_units":
        return
    provenance = card.get("provenance") or {}
    if provenance.get("generator") == "expr3d.data.synthetic" or provenance.get("action_units"):
        return
    what = "--model=transfer" if config.model == "transfer" else "--condition=action_units"
    raise UsageError(f"{what} needs action-unit intensities, and the dataset {config.data_dir} has none; "
                     f"prepare it with `python -m expr3d.data.prepare ... --action_units_csv=OPENFACE_CSVS` "
                     f"(docs/prepare.md) or train on the procedural faces (--generate_synthetic)")


def _card_summary(config, card):
    return {
        "data_dir": os.path.abspath(config.data_dir),
        "name": card.get("name"),
        "schema_version": card.get("schema_version"),
        "image_size": card.get("image_size"),
        "splits": {split: {"num_examples": info.get("num_examples"), "counts": info.get("counts")}
                   for split, info in card.get("splits", {}).items()},
    }


def _with_model_config_defaults(run_config):
    """`run_config` with its model_config completed by ModelConfig's defaults, so a run written before a field
    existed is compared as what it was built as (`generator` "stargan", `init` "keras")."""
    from expr3d.models import ModelConfig

    if isinstance(run_config.get("data_stream"), dict):  # before multi-worker runs: one process's stream
        # and before --pair_exemplar: the true render's own code
        # and before --contempt_side: contempt as rendered; before --dial_pair_share: none
        run_config = dict(run_config, data_stream={"worker_sharding": "data", "pair_exemplar": "target",
                                                   "contempt_side": "as_rendered", "dial_pair_share": 0.0,
                                                   **run_config["data_stream"]})
    try:
        completed = ModelConfig.from_dict(run_config["model_config"]).to_dict()
    except (KeyError, TypeError, ValueError):
        return run_config  # compared as saved: the diff shows what is wrong
    return dict(run_config, model_config=completed)


def _worker_sharding(config, role, card):
    """How the workers share the training data: "data" (every worker reads every record, keeps its rows) or
    "file" (worker k reads train shards k, k + N, ...); one process reads "data". See --worker_sharding."""
    if role is None or role.num_workers == 1 or config.worker_sharding == "data":
        return "data"
    shards, workers = len(card["splits"]["train"]["shards"]), role.num_workers
    if config.worker_sharding == "file":
        if shards < workers:
            raise UsageError(f"--worker_sharding=file needs a train shard per worker: {config.data_dir} has {shards} "
                             f"train shard(s) for {workers} workers (use --worker_sharding=data)")
        return "file"
    saved = RunDir(config.model_dir).read_config()
    if saved is not None:  # a resumed run keeps how it started (its data positions depend on it)
        started = (saved.get("data_stream") or {}).get("worker_sharding", "data")
        return "file" if started.startswith("file") else "data"
    return "file" if shards >= workers and config.target_mode != "paired" else "data"


def _sharding_stream(sharding, role):
    """The data stream's `worker_sharding` entry: the file-sharded stream depends on the number of workers."""
    return f"file over {role.num_workers} workers" if sharding == "file" else "data"


def _check_resume(config, run_config):
    from expr3d.training import checkpoints

    saved = RunDir(config.model_dir).read_config()
    if saved is None:
        return
    diff = checkpoints.config_diff(_with_model_config_defaults(saved), run_config, ARCHITECTURE_KEYS)
    if diff:
        raise UsageError(
            f"--model_dir={config.model_dir} holds a run with a different architecture or data stream; resume it "
            f"with its own flags (config.json) or use a new --model_dir. Differences:\n{diff}"
        )


def _check_stage_one(config, stages):
    from expr3d.training import checkpoints

    depth_dir = RunDir(config.model_dir).checkpoint_dir("depth")
    second = stages[-1]
    gan_dir = RunDir(config.model_dir).checkpoint_dir(second)
    if second != "depth" and "depth" not in stages and config.depth_weight > 0:
        if not checkpoints.checkpoint_exists(depth_dir) and not checkpoints.checkpoint_exists(gan_dir):
            raise UsageError(
                f"--stage=gan with --depth_weight={config.depth_weight} needs the stage-1 checkpoint in {depth_dir} "
                f"(run --stage=depth first, use --stage=all, or --depth_weight=0 for plain StarGAN)"
            )


def _check_model_dir(model_dir):
    if os.path.lexists(model_dir) and not os.path.isdir(model_dir):
        raise UsageError(f"--model_dir={model_dir} is a file, not a run directory; choose a new or empty folder")
    if os.path.isdir(model_dir):
        foreign = RunDir(model_dir).foreign_entries()
        if foreign:
            shown = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
            raise UsageError(f"--model_dir={model_dir} is not an expr3d run (it holds {shown}); train writes only "
                             f"into a new or empty folder or resumes a run, so choose another --model_dir")


def run(config, hooks=None):
    """Train as `config` says; returns the exit status (0, or 143/130 after a signal: checkpointed). Raises
    UsageError / RecordError / CheckpointError / DiskFullError / NonFiniteLossError (`errors()`).

    `hooks`: a `loop.StepHooks` (tests: NaN batches, a pause after each iteration); default none.
    """
    config.validate()  # the required fields; the replicas are checked once the strategy exists
    _check_model_dir(config.model_dir)
    from expr3d.training import cluster, runtime

    role = cluster.read_tf_config() if config.strategy == "multi_worker" else None
    runtime.configure_cpu_devices(config.cpu_devices)
    runtime.set_op_determinism(config.op_determinism)
    loss_scaled = runtime.set_precision(config.mixed_precision)
    strategy = runtime.make_strategy(config.strategy, role=role, startup_timeout=config.worker_startup_timeout)
    config.validate(strategy.num_replicas_in_sync)
    if role is None or role.is_chief:
        config, card = _prepare_data(config)
        _prepare_guide(config)
    if role is not None:
        from expr3d.training.workers import WorkerSync

        WorkerSync(strategy).barrier()  # the chief has rendered --generate_synthetic's data into the shared data_dir
    if role is not None and not role.is_chief:
        config, card = _prepare_data(config.replace(generate_synthetic=False))
    _check_action_units(config, card)
    sharding = _worker_sharding(config, role, card)
    model_config = config.model_config()
    stages = config.stages()

    run_config = {
        "flags": config.to_dict(),
        "model_config": model_config.to_dict(),
        "geometry": config.geometry,
        "data_stream": dict(config.data_stream(), worker_sharding=_sharding_stream(sharding, role)),
        "dataset": _card_summary(config, card),
        "versions": storage.library_versions("tensorflow", "keras", "numpy", "expr3d"),
        "num_replicas": strategy.num_replicas_in_sync,
        "num_workers": role.num_workers if role else 1,
        "precision": runtime.resolve_precision(config.mixed_precision),
    }
    _check_resume(config, run_config)
    _check_stage_one(config, stages)

    run_config.update(_check_data(config, card))
    if "depth" in stages and config.perceptual_weight > 0:
        from expr3d.models.perceptual import resolve_vgg19_weights

        try:
            resolve_vgg19_weights(config.vgg19_weights)
        except (FileNotFoundError, ValueError) as error:
            raise UsageError(str(error).splitlines()[0] + " (or train with --perceptual_weight=0)") from None

    if role is not None and role.is_chief:
        _say_sharding(config, role, card, sharding)
    shard = (role.rank, role.num_workers) if sharding == "file" else None
    if role is None or role.is_chief:
        return _train(config, strategy, loss_scaled, model_config, run_config, stages, hooks, config.model_dir,
                      shard)
    # A non-chief worker of a multi-worker run: it writes what the chief writes (TensorFlow's pattern: every worker
    # takes part in saving) into a scratch directory that is removed, and reads the chief's checkpoints.
    import shutil
    import tempfile

    scratch = tempfile.mkdtemp(prefix=f"expr3d-worker{role.rank}-")
    try:
        return _train(config, strategy, loss_scaled, model_config, run_config, stages, hooks, scratch, shard)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _say_sharding(config, role, card, sharding):
    shards, workers = len(card["splits"]["train"]["shards"]), role.num_workers
    if sharding == "file":
        print(f"expr3d.train: {workers} workers, data sharded by file: worker k reads train shards k, k + {workers}, "
              f"... of {shards}, and makes its own 1/{workers} of each batch (docs/multi_worker.md)",
              file=sys.stderr, flush=True)
        return
    if config.worker_sharding == "data":
        why = "--worker_sharding=data"
    elif shards < workers:
        why = f"the train split has {shards} shard(s) for {workers} workers"
    elif config.target_mode == "paired":
        why = "--target_mode=paired draws pairs across shards"
    else:
        why = "the run started so"
    print(f"expr3d.train: warning: {workers} workers, data sharded by data ({why}): each worker reads every "
          f"record and keeps its replicas' rows of each global batch (exact, and resumable from the chief's "
          f"checkpoint on any number of workers; docs/multi_worker.md)", file=sys.stderr, flush=True)


def _train(config, strategy, loss_scaled, model_config, run_config, stages, hooks, write_dir, shard=None):
    """Train into `write_dir` (the run directory, or a non-chief worker's scratch copy), resuming from
    `config.model_dir`. `shard`: (this worker, workers) when the data is sharded by file."""
    import tensorflow as tf

    from expr3d.models import build_models
    from expr3d.training import checkpoints, inputs, runtime, summaries
    from expr3d.training.loop import StageLoop, StopRequest
    from expr3d.training.stages import build_stage
    from expr3d.training.workers import WorkerSync

    runtime.seed_everything(config.seed)
    model_dir = config.model_dir
    chief = write_dir == model_dir
    os.makedirs(write_dir, exist_ok=True)
    run_dir, out_dir = RunDir(model_dir), RunDir(write_dir)
    saved = run_dir.read_config() or {}
    run_config["progress"] = saved.get("progress", {})
    out_dir.write_config(run_config)
    sync = WorkerSync(strategy)

    with strategy.scope():
        networks = build_models(model_config)

    # Only networks that have been trained are exported: a stage-1-only run has no G_rgb, a plain StarGAN run
    # without a stage-1 checkpoint no G_depth (export/evaluation tools read "which files exist" as "what was trained").
    trained = set()
    exported = dict(networks)  # models/g_rgb.keras: G_rgb, or the moving average of its weights (--g_ema_decay)

    def export(stage, step):
        out_dir.save_networks({k: exported[k] for k in sorted(trained)})
        run_config["progress"][stage] = step
        run_config["stage"], run_config["step"] = stage, step
        out_dir.write_config(run_config)

    def data_error(error, splits):
        return _data_error(config, error, splits)

    try:
        samples = inputs.sample_batch(config.data_dir, config.num_samples, config.image_size, config.geometry,
                                      skip_corrupt=config.skip_corrupt)
    except tf.errors.OpError as error:
        described = data_error(error, ("test", "train"))
        if described is None:
            raise
        raise described from None
    depth_dir = run_dir.checkpoint_dir("depth")

    status = "complete"
    with StopRequest() as stop:
        for stage in stages:
            with strategy.scope():
                built = build_stage(stage, config, networks, loss_scaled)
            trainer = built.trainer
            if getattr(trainer, "generator_average", None) is not None:
                exported["g_rgb"] = trainer.generator_average.average
            # Sharded by file, each worker makes its own share of each batch, from its own files and seed.
            dataset = inputs.training_dataset(
                config.data_dir, built.batch_size // (shard[1] if shard else 1), config.image_size, config.geometry,
                NUM_EXPRESSIONS, seed=inputs.worker_seed(built.data_seed, shard[0] if shard else 0),
                target_mode=config.target_mode, balanced=config.balanced, skip_corrupt=config.skip_corrupt,
                with_action_units=stage == "transfer" or (stage == "gan" and config.condition == "action_units"),
                shard=shard, critic_augment=stage == "gan" and bool(config.critic_augment),
                au_dial_targets=config.au_dial_targets if stage == "gan" else 0.0,
                pair_exemplar=config.pair_exemplar if stage == "transfer" else "target",
                contempt_side=config.contempt_side if stage == "gan" else "as_rendered",
                dial_pair_share=config.dial_pair_share if stage in ("gan", "transfer") else 0.0,
            )
            run_summaries = summaries.RunSummaries(write_dir, stage)
            show_geometry = stage == "depth" or config.depth_weight > 0 or checkpoints.checkpoint_exists(depth_dir)

            def sample_fn(step, trainer=trainer, run_summaries=run_summaries, show_geometry=show_geometry):
                grid = summaries.render_samples(trainer, samples, config.geometry, show_geometry=show_geometry)
                run_summaries.grid(grid, step)

            loop = StageLoop(
                trainer, strategy, dataset, out_dir.stage_dir(stage), built.num_steps, built.schedules, networks,
                keep_checkpoints=config.keep_checkpoints, checkpoint_every=config.checkpoint_every,
                summary_every=config.summary_every, sample_every=config.sample_every, summaries=run_summaries,
                sample_fn=sample_fn if chief else None, on_checkpoint=lambda step, stage=stage: export(stage, step),
                jit_compile=config.jit_compile, stop=stop, show_progress=config.progress and chief, hooks=hooks,
                describe_input_error=lambda error: data_error(error, ("train",)),
                restore_dir=run_dir.checkpoint_dir(stage), sync=sync, local_batches=shard is not None,
                data_position_dir=run_dir.worker_data_dir(stage, shard[0]) if shard and not chief else None,
            )
            if show_geometry:
                trained.update(("g_depth", "d_depth"))
            if stage == "gan":
                trained.update(("g_rgb", "d_rgb"))
            if stage == "transfer":
                trained.update(("encoder", "decoder", "adversary", "d_rgb", "d_swap")
                               + (("d_depth_au",) if config.depth_weight > 0 else ()))
            restored = loop.restore()
            if restored is None:
                if stage in ("gan", "transfer") and checkpoints.checkpoint_exists(depth_dir):
                    _, prefix, damaged = checkpoints.read_latest(
                        depth_dir, tf.train.Checkpoint(g_depth=networks["g_depth"], d_depth=networks["d_depth"]))
                    checkpoints.report_damaged(damaged, prefix, move=chief)
                    print(f"expr3d.train: stage {stage} starts from the stage-1 networks of {prefix}", file=sys.stderr)
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


def _check_data(config, card):
    """Before training: the shards the dataset card lists exist (RecordError naming a missing one); with
    --skip_corrupt, the splits this run reads are scanned and what will be skipped is logged and returned for
    config.json: {"skipped_records": {split: count}, "skipped_problems": [first lines]}."""
    from expr3d.data import pipeline, records, schema

    has_test = int(card["splits"].get("test", {}).get("num_examples", 0)) > 0
    splits = ["train"] + (["test"] if has_test else [])  # the test split gives the sample grid
    if not config.skip_corrupt:
        for split in splits:
            try:
                records.split_files(config.data_dir, split, card)
            except schema.MissingShardError as error:
                raise schema.RecordError(f"{error}; pass --skip_corrupt to train without its records") from None
        return {}
    skipped, problems = {}, []
    for split in splits:
        report = pipeline.scan_split(config.data_dir, split, card=card)
        skipped[split] = report["skipped"]
        problems.extend(report["problems"])
        if report["skipped"]:
            print(f"expr3d.train: --skip_corrupt: skipping {report['skipped']} of {report['records']} '{split}' "
                  f"records of {config.data_dir}:", file=sys.stderr)
            for line in report["problems"][:10]:
                print(f"  {line}", file=sys.stderr)
            if len(report["problems"]) > 10:
                print(f"  ... and {len(report['problems']) - 10} more", file=sys.stderr)
        if report["problems"] and report["skipped"] >= report["records"]:
            raise schema.RecordError(f"--skip_corrupt: none of the {report['records']} '{split}' records of "
                                     f"{config.data_dir} is usable (first: {report['problems'][0]})")
    return {"skipped_records": skipped, "skipped_problems": problems[:20]}


def _data_error(config, error, splits):
    """A one-line RecordError for a TensorFlow error raised while reading `splits` (None: not about the data)."""
    from expr3d.data import pipeline, schema

    described = pipeline.describe_read_error(error, config.data_dir, splits)
    if described is None or config.skip_corrupt:
        return described
    return schema.RecordError(f"{described}; pass --skip_corrupt to skip bad records")


def flag_values_for_text(run_config):
    values = dict(run_config["flags"])
    values["(model_config)"] = json.dumps(run_config["model_config"])
    return values


def main(argv):
    """The CLI: the config built from the parsed flags, once."""
    cli.no_arguments(argv)
    return run(TrainConfig.from_flags(flags.FLAGS))


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
    from expr3d.training import config

    define_flags()
    flags.adopt_module_key_flags(config)  # --help lists them as this command's own (they are defined there)
    cli.run(main, "expr3d.train", errors=errors)


if __name__ == "__main__":
    run_cli()
