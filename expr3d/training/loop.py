"""The training loop of one stage: distributed steps, schedules, checkpoints, summaries, SIGTERM and NaN handling."""

import math
import os
import signal
import sys

import numpy as np
import tensorflow as tf

from expr3d.data import pipeline
from expr3d.progress import Progress
from expr3d.training import checkpoints, runtime, workers


class NonFiniteLossError(RuntimeError):
    """A loss term became NaN or infinite; the message names it, the stage and the iteration."""


class StopRequest:
    """Turns SIGTERM (and SIGINT) into a flag the loop polls between iterations, so it can checkpoint and exit.

    Example:
    ```python
    with StopRequest() as stop:
        while not stop.requested:
            ...
    ```
    """

    def __init__(self, signals=(signal.SIGTERM, signal.SIGINT)):
        self.signals = signals
        self.requested = None
        self._previous = {}

    def _handle(self, signum, frame):
        self.requested = signal.Signals(signum).name

    def __enter__(self):
        for sig in self.signals:
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc):
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)
        return False


def _distributed(strategy, method, jit_compile, poison):
    """`method` (a trainer's step on one replica's batch) on every replica, its terms averaged: a tf.function."""
    from expr3d.training.common import as_float_logs

    def replica(batch):
        if poison:  # StepHooks.poison_batch: NaN images through the real networks and losses
            batch = dict(batch, image=batch["image"] * float("nan"))
        return as_float_logs(method(batch))

    def step(batch):
        per_replica = strategy.run(replica, args=(batch,))
        return {name: strategy.reduce(tf.distribute.ReduceOp.MEAN, value, axis=None)
                for name, value in per_replica.items()}

    # autograph=False: the steps are written with tf ops (no Python control flow on tensors), and converting them
    # and every function they call cost ~16 s of the ~35 s of tracing a tiny run (measured with cProfile).
    return tf.function(step, jit_compile=bool(jit_compile), reduce_retracing=True, autograph=False)


def make_distributed_step(strategy, trainer, update_generator, jit_compile=False, poison=False, critic=None):
    """One iteration on every replica: a callable returning the replica-averaged loss terms.

    Its argument is a distributed batch (from `strategy.experimental_distribute_dataset`). The critic update and the
    generator update are two `tf.function`s run one after the other, so the generator sees the updated critic
    whatever the graph's scheduling (with both in one graph, graph != eager was seen in ~1 process in 6, before the
    Grappler read/write-order bug fixed in `common.apply_updates` was found; two calls cost nothing). `update_generator`
    is a Python bool, so no `tf.cond` surrounds optimizer updates (which `merge_call` under MirroredStrategy does not
    allow); "warmup" gives the trainer's `critic_warmup_step` alone, "generator_warmup" its `generator_warmup_step`. `critic`: the critic update of another step
    of this trainer (`update_generator=False`'s), so that under n_critic > 1 the critic is traced once, not twice
    (a trace of the transfer critic costs seconds).
    """
    if update_generator == "warmup":
        return _distributed(strategy, trainer.critic_warmup_step, jit_compile, poison)
    average = getattr(trainer, "generator_average", None)
    # In cross-replica context, after the replicas' update: one assignment updates every replica's copy.
    follow = tf.function(average.update, autograph=False) if average is not None else None
    if update_generator == "generator_warmup":
        warmup = _distributed(strategy, trainer.generator_warmup_step, jit_compile, poison)

        def generator_warmup(batch):
            logs = dict(warmup(batch))
            if follow is not None:
                follow()
            return logs

        return generator_warmup
    critic = critic or _distributed(strategy, trainer.critic_step, jit_compile, poison)
    if not update_generator:
        return critic
    generator = _distributed(strategy, trainer.generator_step, jit_compile, poison)

    def iteration(batch):
        logs = dict(critic(batch))
        logs.update(generator(batch))
        if follow is not None:
            follow()
        return logs

    return iteration


# The checkpoint key of the moving average of G_rgb's weights (`training.ema`), when the trainer keeps one.
AVERAGE_KEY = "g_rgb_average"


class StepHooks:
    """What a test may do to a `StageLoop` between its iterations; these defaults do nothing (production).

    Example (tests/training/train_with_hooks.py):
    ```python
    class NanAt(StepHooks):
        def poison_batch(self, step):
            return step == 3
    ```
    """

    def poison_batch(self, step):
        """True: iteration `step` (0-based, within the stage) runs on NaN images, through the real networks and
        losses (here, not in tf.data, because a restored iterator replays its buffered batches)."""
        return False

    def after_step(self, step):
        """Called after each iteration; `step` iterations of the stage are done (e.g. a pause, so that a tiny run
        lives long enough to be signalled)."""


def format_logs(logs, keys=("d_total", "g_total", "g_rec", "g_pix", "gd_total")):
    return " ".join(f"{k}={logs[k]:.3f}" for k in keys if k in logs)


class StageLoop:
    """Runs one stage's trainer from its latest checkpoint (or from scratch) to `num_steps` iterations.

    Args:
        trainer: a `DepthPretrainer` or `DepthGuidedStarGAN`, built and compiled inside `strategy.scope()`.
        strategy: the `tf.distribute.Strategy`.
        dataset: the global-batch `tf.data.Dataset` of trainer batches (`inputs.training_dataset`).
        stage_dir: `<model_dir>/<stage>`; checkpoints go to `<stage_dir>/checkpoints`.
        num_steps: iterations of the stage.
        schedules: `{optimizer key: LinearDecaySchedule}`.
        networks: `{name: keras.Model}` saved in every checkpoint.
        keep_checkpoints, checkpoint_every, summary_every, sample_every: cadences (0 = only at the end).
        summaries: a `RunSummaries` (or None).
        sample_fn: `step -> None`, renders and logs the sample grid.
        on_checkpoint: `step -> None`, called after each checkpoint (exports the `.keras` models).
        jit_compile: XLA-compile the step functions.
        stop: a `StopRequest`.
        show_progress: print the progress line with ETA.
        hooks: a `StepHooks` (tests: NaN batches, a pause after each iteration); default: none.
        describe_input_error: `tf error -> exception or None`, called when fetching a batch fails (a corrupt
            record): the exception it returns (e.g. a one-line `RecordError` naming the shard) is raised instead.
        warn: `message -> None` for warnings (a damaged checkpoint skipped, a data position that could not be
            restored); default: stderr.
        restore_dir: the checkpoint directory to resume from (default `<stage_dir>/checkpoints`; a multi-worker
            run's non-chief workers read the chief's and write to a scratch `stage_dir`).
        sync: a `workers.WorkerSync` (multi-worker runs: stop requests, restored iterations and checkpoints agreed
            between the workers); default: this process alone.
        local_batches: `dataset` yields this worker's share of each global batch (data sharded by file), split over
            its own replicas; default: the global batch, of which each worker keeps its replicas' rows.
        data_position_dir: where this worker saves and restores its own data position, beside the chief's
            checkpoints and with the same steps (a non-chief worker of a run sharded by file, whose stream the
            chief's checkpoint does not hold); default: the data position is in the checkpoint.
    """

    def __init__(self, trainer, strategy, dataset, stage_dir, num_steps, schedules, networks, keep_checkpoints=3,
                 checkpoint_every=1000, summary_every=100, sample_every=1000, summaries=None, sample_fn=None,
                 on_checkpoint=None, jit_compile=False, stop=None, show_progress=True, hooks=None,
                 describe_input_error=None, warn=None, restore_dir=None, sync=None, local_batches=False,
                 data_position_dir=None):
        self.trainer = trainer
        self.strategy = strategy
        self.num_steps = int(num_steps)
        self.schedules = schedules
        self.checkpoint_every = checkpoint_every
        self.summary_every = summary_every
        self.sample_every = sample_every
        self.summaries = summaries
        self.sample_fn = sample_fn
        self.on_checkpoint = on_checkpoint
        self.stop = stop or StopRequest(signals=())
        self.show_progress = show_progress
        self.hooks = hooks or StepHooks()
        self.checkpoint_dir = os.path.join(stage_dir, "checkpoints")
        self.restore_dir = restore_dir or self.checkpoint_dir
        self.sync = sync or workers.WorkerSync(strategy)

        self._dataset = dataset
        self.iterator = iter(dataset)  # a plain iterator: checkpointable (distributed ones are not)
        objects = dict(networks)
        objects.update({f"optimizer_{key}": opt for key, opt in trainer.optimizers.items()})
        self._average = getattr(trainer, "generator_average", None)
        if self._average is not None:
            objects.update({AVERAGE_KEY: self._average.average, f"{AVERAGE_KEY}_updates": self._average.updates})
        self._local_batches = local_batches
        self._position = None
        if data_position_dir is not None:
            self._position = checkpoints.AtomicCheckpointer(
                data_position_dir, tf.train.Checkpoint(iterator=self.iterator), keep_checkpoints)
        self.checkpoint = self._main_checkpoint(objects)
        self.checkpointer = checkpoints.AtomicCheckpointer(self.checkpoint_dir, self.checkpoint, keep_checkpoints,
                                                           restore_from=self.restore_dir)
        self._iterator_restored = False  # set by restore(): a late structure mismatch is then recoverable
        # Traced on first use ("critic" and "both" share the critic's trace); a run without warm-up iterations never
        # builds that step.
        critic = make_distributed_step(strategy, trainer, False, jit_compile)
        self._steps = {"critic": critic, "both": make_distributed_step(strategy, trainer, True, jit_compile,
                                                                        critic=critic)}
        if trainer.critic_warmup_steps:
            self._steps["warmup"] = make_distributed_step(strategy, trainer, "warmup", jit_compile)
        if getattr(trainer, "generator_warmup_steps", 0):
            self._steps["generator_warmup"] = make_distributed_step(strategy, trainer, "generator_warmup",
                                                                    jit_compile)
        self._jit_compile = jit_compile
        self._current_lr = {}
        self._objects = objects
        self.describe_input_error = describe_input_error
        self.warn = warn or (lambda message: print(f"warning: {message}", file=sys.stderr, flush=True))
        self.restored_prefix = None

    def _main_checkpoint(self, objects):
        """The stage's checkpoint: the iteration, `objects` and the data position (unless this worker keeps its own,
        `data_position_dir`)."""
        position = {} if self._position is not None else {"iterator": self.iterator}
        return tf.train.Checkpoint(step=self.trainer.iteration, **position, **objects)

    def restore(self):
        """Restore the latest readable checkpoint of this stage; return its step (None on a fresh stage).

        A damaged newest checkpoint falls back to the previous complete one (`AtomicCheckpointer.restore_latest`).
        A saved data position that does not fit this input pipeline (its stages differ, e.g. --skip_corrupt was
        toggled to get past a corrupt record) restores everything else and continues with a fresh data stream from
        the restored iteration, with a warning.
        """
        step = self._restore()
        if step is not None and self._position is not None:
            self._restore_position(step)
        low, high = self.sync.same_everywhere(-1 if step is None else step)
        if low != high:
            raise checkpoints.CheckpointError(
                f"the workers resumed stage {self.trainer.stage} from different iterations ({int(low)} and "
                f"{int(high)}; -1 = none) of {self.restore_dir}: every worker must read the chief's --model_dir "
                f"(a filesystem all machines share)")
        return step

    def _restore(self):
        if self._average is not None and self._latest_lacks_average():
            return self._restore_without_average()
        try:
            step = self.checkpointer.restore_latest(warn=self.warn)
            self.restored_prefix = self.checkpointer.restored_prefix
            self._iterator_restored = step is not None
        except tf.errors.OpError as error:
            if not checkpoints.is_iterator_mismatch(error):
                raise
            self._fresh_iterator()
            without_iterator = tf.train.Checkpoint(step=self.trainer.iteration, **self._objects)
            step, prefix, damaged = checkpoints.read_latest(self.restore_dir, without_iterator)
            checkpoints.report_damaged(damaged, prefix, self.warn, move=self.restore_dir == self.checkpoint_dir)
            self.restored_prefix = prefix
            self.warn(f"the data position saved in {prefix} does not fit this input pipeline (were flags such as "
                      f"--skip_corrupt changed?): networks, optimizers and the iteration are restored, the data "
                      f"stream starts afresh")
        return step

    def _restore_position(self, step):
        """This worker's own data position of iteration `step` (`data_position_dir`); a fresh stream, with a
        warning, when there is none (e.g. the run was checkpointed by another number of workers)."""
        prefix = os.path.join(self._position.directory, f"ckpt-{step:09d}", "ckpt")
        try:
            self._position.checkpoint.read(prefix).assert_existing_objects_matched()
            self._iterator_restored = True
        except (tf.errors.OpError, ValueError, AssertionError) as error:
            self._fresh_iterator()
            why = (str(error).strip().splitlines() or [type(error).__name__])[0]
            self.warn(f"this worker's data position of iteration {step} ({prefix}) does not read ({why}): its data "
                      f"stream starts afresh")

    def _fresh_iterator(self):
        """A fresh data stream (a failed or unusable restore leaves the iterator unusable), in the checkpoint saved
        from now on."""
        self.iterator = iter(self._dataset)
        if self._position is not None:
            self._position.checkpoint = tf.train.Checkpoint(iterator=self.iterator)
        self.checkpoint = self._main_checkpoint(self._objects)
        self.checkpointer.checkpoint = self.checkpoint
        self._iterator_restored = False

    def _latest_lacks_average(self):
        latest = self.checkpointer.latest_prefix(self.restore_dir)
        if latest is None:
            return False
        try:
            return not checkpoints.holds(latest, AVERAGE_KEY)
        except (tf.errors.OpError, ValueError):
            return False  # unreadable: restore_latest names it and falls back to an older one

    def _restore_without_average(self):
        """Resume a stage checkpointed without a moving average of G_rgb (--g_ema_decay was 0): everything else is
        restored, and the average starts from the restored G_rgb."""
        full = self.checkpointer.checkpoint
        objects = {k: v for k, v in self._objects.items() if not k.startswith(AVERAGE_KEY)}
        self.checkpointer.checkpoint = self._main_checkpoint(objects)
        try:
            step = self.checkpointer.restore_latest(warn=self.warn)
        finally:
            self.checkpointer.checkpoint = full  # saved from now on with the average
        self.restored_prefix = self.checkpointer.restored_prefix
        self._iterator_restored = step is not None
        self._average.reset()
        self.warn(f"{self.restored_prefix} holds no moving average of G_rgb (trained with --g_ema_decay=0): it "
                  f"starts from the restored G_rgb")
        return step

    def _next_batch(self):
        return pipeline.distribute_batch(self.strategy, self._next_global_batch(), local=self._local_batches)

    def _next_global_batch(self):
        try:
            return next(self.iterator)
        except tf.errors.OpError as error:
            if self._iterator_restored and checkpoints.is_late_iterator_mismatch(error):
                # Elements buffered by an expr3d whose records parsed to other fields (e.g. before
                # label/action_units_valid existed): the restore succeeded, reading fails. Continue as a mismatch
                # found at restore does.
                self._fresh_iterator()
                self.warn(f"the data position saved in {self.restored_prefix} holds batches of another structure "
                          f"than this input pipeline's (written by an earlier expr3d?): networks, optimizers and the "
                          f"iteration are restored, the data stream starts afresh")
                return next(self.iterator)
            described = self.describe_input_error(error) if self.describe_input_error is not None else None
            if described is None:
                raise
            raise described from None

    def save(self, step):
        prefix = self.checkpointer.save(step)
        if self._position is not None:
            self._position.save(step)
        if self.on_checkpoint is not None:
            self.on_checkpoint(step)
        self.sync.barrier()  # the chief's checkpoint is complete before any worker reads or moves on
        return prefix

    def _stop_requested(self):
        """The signal every worker stops for: this process's own, or one another worker received (agreed by an
        all-reduce each iteration, so all checkpoint the same iteration); None to go on."""
        own = signal.Signals[self.stop.requested].value if self.stop.requested else 0
        (agreed,) = self.sync.max(own)
        return signal.Signals(int(agreed)).name if agreed else None

    def _set_learning_rates(self, step):
        for key, schedule in self.schedules.items():
            value = schedule(step)
            if self._current_lr.get(key) != value:
                runtime.set_learning_rate(self.trainer.optimizers[key], value)
                self._current_lr[key] = value

    def run(self):
        """Train to `num_steps`. Returns "complete" or the name of the signal that stopped the run.

        Raises:
            NonFiniteLossError: a loss term is NaN/inf (nothing is saved; the last good checkpoint stays).
        """
        step = int(self.trainer.iteration.numpy())
        stage = self.trainer.stage
        if step >= self.num_steps:
            return "complete"
        progress = Progress(self.num_steps, desc=f"stage {stage}", unit="it", initial=step) if self.show_progress else None
        last_saved = step
        status = "complete"
        while step < self.num_steps:
            requested = self._stop_requested()
            if requested:
                status = requested
                break
            self._set_learning_rates(step)
            kind = self.trainer.step_kind(step)
            if self.hooks.poison_batch(step):
                update = {"both": True, "critic": False}.get(kind, kind)
                poisoned = make_distributed_step(self.strategy, self.trainer, update, self._jit_compile, True)
                logs = poisoned(self._next_batch())
            else:
                logs = self._steps[kind](self._next_batch())
            logs = {name: float(np.asarray(value)) for name, value in logs.items()}
            bad = [name for name, value in logs.items() if not math.isfinite(value)]
            if bad:
                raise NonFiniteLossError(
                    f"non-finite loss in stage {stage} at iteration {step + 1}: "
                    + ", ".join(f"{name}={logs[name]}" for name in bad)
                    + f"; stopped without saving, the last good checkpoint is "
                    f"{self.checkpointer.latest_prefix(self.restore_dir) or '(none)'}"
                )
            step += 1
            self.trainer.iteration.assign(step)
            if self.summaries is not None and (step % max(self.summary_every, 1) == 0 or step == self.num_steps):
                self.summaries.scalars(logs, step, learning_rates=self._current_lr)
            if self.sample_fn is not None and self.sample_every and step % self.sample_every == 0:
                self.sample_fn(step)
            if self.checkpoint_every and step % self.checkpoint_every == 0:
                self.save(step)
                last_saved = step
            if progress is not None:
                progress.update(1, postfix=format_logs(logs))
            self.hooks.after_step(step)
        if step != last_saved:
            self.save(step)
        if status == "complete" and self.sample_fn is not None and (not self.sample_every or step % self.sample_every):
            self.sample_fn(step)
        if progress is not None and progress.done != progress.total:
            progress.close()
        if self.summaries is not None:
            self.summaries.flush()
        return status


__all__ = ["NonFiniteLossError", "StageLoop", "StepHooks", "StopRequest"]
