"""Pieces shared by the two trainers: replica scaling, the gradient penalty pass and loss-scaled updates.

TensorFlow-only (GradientTape, tf.distribute): this is the edge where the backend-agnostic models meet the critic and
generator steps.
"""

import keras
import tensorflow as tf

from expr3d import losses


def replica_scale():
    """`1 / num_replicas_in_sync` of the current strategy.

    Each replica's loss is a mean over its share of the global batch and the optimizer SUMS gradients across
    replicas, so scaling by this factor makes the update the gradient of the global-batch mean.
    """
    return 1.0 / tf.distribute.get_strategy().num_replicas_in_sync


def is_loss_scaled(optimizer):
    return isinstance(optimizer, keras.optimizers.LossScaleOptimizer)


def gradient_penalty(critic, real, fake, alpha):
    """WGAN-GP term of `critic` at `x_hat = alpha * real + (1 - alpha) * fake`, computed in float32.

    `x_hat` is a float32 tensor and the gradient of the summed `src` patch map is taken with respect to it, so the
    gradient, its per-sample norm and the penalty are float32 even when the critic's layers compute in a
    mixed-precision dtype (the critic's first layer casts its input; its `src` output is float32).
    """
    x_hat = losses.interpolate(tf.stop_gradient(real), tf.stop_gradient(fake), alpha)
    with tf.GradientTape() as inner:
        inner.watch(x_hat)
        src, _ = critic(x_hat, training=True)
        total = tf.reduce_sum(tf.cast(src, tf.float32))
    gradients = inner.gradient(total, x_hat)
    return losses.gradient_penalty(gradients)


def scaled_for_update(loss, optimizers):
    """Per-optimizer losses to differentiate: `loss / num_replicas`, times each float16 optimizer's loss scale.

    Call INSIDE the tape so the scaling is recorded.
    """
    loss = loss * replica_scale()
    return [optimizer.scale_loss(loss) if is_loss_scaled(optimizer) else loss for optimizer in optimizers]


def apply_updates(tape, scaled_losses, optimizers, variable_lists, computed_first):
    """Differentiate and apply; `scaled_losses[i]` updates `variable_lists[i]` with `optimizers[i]`.

    Without loss scaling all entries are the same tensor, so one backward pass serves every optimizer; with float16
    loss scaling each optimizer has its own scale, so the (persistent) tape is walked once per optimizer.

    `computed_first` (the step's logged loss values) must be computed before any variable is written. Not every
    variable read feeds a gradient: in the gradient-penalty pass a critic's biases reach the penalty only through
    LeakyReLU masks, whose derivative is `zeros_like(features)`. Grappler folds that to a constant, and its
    dependency optimizer then drops the write-after-read control edges `tf.function` had added (TF 2.21), so the
    update could run before the penalty's forward pass read the bias, and the penalty then used the updated bias
    (seen as the "critic step not reproducible" bug: a different d_gp in ~1 graph execution in 25). A control
    dependency on the loss values, which read every variable they use, restores the order.
    """
    with tf.control_dependencies(tf.nest.flatten(computed_first)):
        _differentiate_and_apply(tape, scaled_losses, optimizers, variable_lists)


def _differentiate_and_apply(tape, scaled_losses, optimizers, variable_lists):
    """The body of `apply_updates`, not ordered after the loss values (benchmarks/check_step_reproducibility.py
    calls it alone to measure the pre-fix code)."""
    if all(s is scaled_losses[0] for s in scaled_losses):
        flat = [v for variables in variable_lists for v in variables]
        gradients = tape.gradient(scaled_losses[0], flat)
        start = 0
        for optimizer, variables in zip(optimizers, variable_lists):
            optimizer.apply(gradients[start:start + len(variables)], variables)
            start += len(variables)
        return
    for scaled, optimizer, variables in zip(scaled_losses, optimizers, variable_lists):
        optimizer.apply(tape.gradient(scaled, variables), variables)


def class_one_hot(labels, num_classes):
    return tf.one_hot(tf.cast(labels, tf.int32), num_classes, dtype=tf.float32)


def as_float_logs(logs):
    """Every log entry as a float32 scalar (same structure in every branch of a `tf.cond`)."""
    return {name: tf.cast(value, tf.float32) for name, value in logs.items()}


class NCriticSchedule:
    """Mixin of both trainers: n_critic critic updates per generator update (StarGAN's counting).

    One iteration = one critic update on one global batch, plus a generator update on every n_critic-th iteration.
    The host class provides `critic_step`, `generator_step`, `n_critic` and `iteration`.
    A host with `critic_warmup_steps > 0` (and a `critic_warmup_step`) runs that step instead of an iteration for
    `critic_warmup_steps` iterations, after `generator_warmup_steps` iterations of its `generator_warmup_step`; they
    count as iterations (checkpoints, learning-rate schedule), and the n_critic schedule counts from the first
    iteration after them.
    """

    critic_warmup_steps = 0
    generator_warmup_steps = 0

    def step_kind(self, step):
        """What iteration `step` (0-based) runs: "generator_warmup" (the first `generator_warmup_steps`), "warmup"
        (the next `critic_warmup_steps`), then "critic" (critic update only) or "both"."""
        if step < self.generator_warmup_steps:
            return "generator_warmup"
        warmup = self.generator_warmup_steps + self.critic_warmup_steps
        if step < warmup:
            return "warmup"
        return "both" if (step - warmup + 1) % self.n_critic == 0 else "critic"

    def run_iteration(self, batch, update_generator):
        """One iteration with a Python-decided generator update (what the training loop traces, once per value)."""
        logs = as_float_logs(self.critic_step(batch))
        if update_generator:
            logs.update(as_float_logs(self.generator_step(batch)))
        return logs
