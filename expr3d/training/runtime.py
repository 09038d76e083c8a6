"""Process-level setup for training: logical devices, dtype policy, distribution strategy, seeds.

Order matters: `configure_cpu_devices` must run before TensorFlow initialises its devices (before the first op), and
`set_precision` before the models are built (layers read the global policy when they are constructed).
"""

import os
import random
import re

import numpy as np

PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")
AUTO = "auto"


def cpu_has_native_bfloat16(cpuinfo="/proc/cpuinfo"):
    """True when the CPU computes bfloat16 natively (AVX-512 BF16 or AMX). Without it (e.g. AVX2-only CPUs) oneDNN
    falls back to slow reference kernels: a bf16 training step measured ~9x slower than float32 on such a machine."""
    try:
        with open(cpuinfo, encoding="utf-8", errors="replace") as handle:
            text = handle.read()
    except OSError:
        return False
    return re.search(r"\b(avx512_bf16|amx_bf16)\b", text) is not None


def auto_precision():
    """The fastest safe dtype policy here: bf16 on GPUs of compute capability >= 8 and on CPUs with native bf16;
    float16 (with loss scaling) on older GPUs; float32 otherwise."""
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        capability = tf.config.experimental.get_device_details(gpus[0]).get("compute_capability", (0, 0))
        return "mixed_bfloat16" if tuple(capability) >= (8, 0) else "mixed_float16"
    return "mixed_bfloat16" if cpu_has_native_bfloat16() else "float32"


def resolve_precision(policy):
    """`policy`, or for "auto" the policy `auto_precision` picks for this machine."""
    return auto_precision() if policy == AUTO else policy
STRATEGIES = ("default", "mirrored", "multi_worker")


def configure_cpu_devices(count):
    """Split the host CPU into `count` logical devices (for testing `--strategy=mirrored` without GPUs).

    Must be called before TensorFlow initialises; raises RuntimeError naming the flag otherwise.
    """
    import tensorflow as tf

    if count is None or count <= 1:
        return
    cpus = tf.config.list_physical_devices("CPU")
    try:
        tf.config.set_logical_device_configuration(cpus[0], [tf.config.LogicalDeviceConfiguration()] * count)
    except RuntimeError as error:
        raise RuntimeError(f"--cpu_devices={count}: TensorFlow was already initialised ({error})") from None


def set_op_determinism(enabled):
    """Bit-reproducible kernels on or off for this process (off is TensorFlow's default; turning it off again
    matters only when several runs share a process, e.g. the ablation study's)."""
    import tensorflow as tf

    if enabled:
        tf.config.experimental.enable_op_determinism()
        return
    from tensorflow.python.framework import config as tf_config  # no public "disable" in TF 2.21

    if tf_config.is_op_determinism_enabled():
        tf_config.disable_op_determinism()


def set_precision(policy):
    """Set the global Keras dtype policy ("auto": `auto_precision`); returns whether optimizers need loss scaling.

    Only `mixed_float16` needs a `LossScaleOptimizer`: float16 has 5 exponent bits, so small gradients underflow;
    bfloat16 keeps float32's 8-bit exponent range, so its gradients do not underflow and need no scaling.
    """
    import keras

    policy = resolve_precision(policy)
    if policy not in PRECISIONS:
        raise ValueError(f"--mixed_precision={policy!r}: expected one of {', '.join(PRECISIONS)} or {AUTO}")
    keras.mixed_precision.set_global_policy(policy)
    return policy == "mixed_float16"


def make_strategy(name, role=None, startup_timeout=300.0):
    """`default` -> the default (single-device) strategy; `mirrored` -> MirroredStrategy over every GPU, else every
    logical CPU device; `multi_worker` -> MultiWorkerMirroredStrategy over the workers of TF_CONFIG (`role`: this
    process's `cluster.WorkerRole`), returned once every worker is up (or the process ends after `startup_timeout`
    seconds naming the missing ones). Call before any TensorFlow op."""
    import tensorflow as tf

    if name == "multi_worker":
        from expr3d.training import cluster
        from expr3d.training.workers import WorkerSync

        with cluster.StartupWatchdog(role or cluster.read_tf_config(), startup_timeout):
            # Ring all-reduce: NCCL needs GPUs; ring works between CPUs and GPUs alike.
            options = tf.distribute.experimental.CommunicationOptions(
                implementation=tf.distribute.experimental.CommunicationImplementation.RING)
            strategy = tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)
            WorkerSync(strategy).barrier()  # the first collective: every worker is up
        return strategy
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        gpus = tf.config.list_logical_devices("GPU")
        devices = [d.name for d in (gpus or tf.config.list_logical_devices("CPU"))]
        # Reduction across CPU devices needs the plain (non-NCCL) all-reduce.
        cross_device_ops = None if gpus else tf.distribute.ReductionToOneDevice()
        return tf.distribute.MirroredStrategy(devices=devices, cross_device_ops=cross_device_ops)
    raise ValueError(f"--strategy={name!r}: expected one of {', '.join(STRATEGIES)}")


def seed_everything(seed):
    """Seed Python, NumPy, TensorFlow and Keras (weight initialisers) from one integer."""
    import keras

    os.environ["PYTHONHASHSEED"] = str(seed)
    random.seed(seed)
    np.random.seed(seed)
    keras.utils.set_random_seed(seed)


def make_optimizer(learning_rate, beta_1, beta_2, loss_scaled, name, epsilon=1e-7, epsilon_mode="keras"):
    """Adam, wrapped in a `LossScaleOptimizer` when training in float16 (call inside `strategy.scope()`).

    `epsilon_mode="keras"`: `keras.optimizers.Adam` (epsilon added to the un-corrected sqrt(v); Keras' default 1e-7);
    `"pytorch"`: `expr3d.training.adam.TorchAdam` (epsilon added to the bias-corrected sqrt(v_hat), as
    `torch.optim.Adam`, whose default is 1e-8). Same variables either way, so checkpoints are interchangeable.
    """
    import keras

    from expr3d.training.adam import make_adam

    optimizer = make_adam(learning_rate, beta_1, beta_2, epsilon=epsilon, epsilon_mode=epsilon_mode, name=name)
    if loss_scaled:
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer, name=f"{name}_loss_scale")
    return optimizer


def set_learning_rate(optimizer, value):
    """Assign a new learning rate to an (optionally loss-scaled) Keras optimizer without retracing."""
    import keras

    inner = optimizer.inner_optimizer if isinstance(optimizer, keras.optimizers.LossScaleOptimizer) else optimizer
    inner.learning_rate = float(value)


def get_learning_rate(optimizer):
    import keras

    inner = optimizer.inner_optimizer if isinstance(optimizer, keras.optimizers.LossScaleOptimizer) else optimizer
    return float(keras.ops.convert_to_numpy(inner.learning_rate))
