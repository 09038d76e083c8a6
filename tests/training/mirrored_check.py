"""Run as a subprocess (needs two logical CPU devices before TensorFlow starts): prints a JSON report comparing one
iteration of each stage on 1 replica with the same iteration on 2 replicas (same global batch, same weights)."""
import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from expr3d.training import runtime  # noqa: E402

runtime.configure_cpu_devices(2)

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

# Same weights every run, and deterministic kernels (reduction order fixed), so a mismatch is reproducible and
# any difference is the distribution's, not the thread scheduling's.
keras.utils.set_random_seed(int(os.environ.get("EXPR3D_MIRRORED_SEED", "0")))
tf.config.experimental.enable_op_determinism()

from expr3d.models import ModelConfig, build_models  # noqa: E402
from expr3d.training import inputs  # noqa: E402
from expr3d.training.loop import make_distributed_step  # noqa: E402
from helpers import sgd_one_step_trainer  # noqa: E402  (run as a script: its own directory is on sys.path)

TINY = dict(image_size=32, g_conv_dim=8, g_num_res_blocks=0, d_conv_dim=8, d_num_layers=2, depth_g_conv_dim=8,
            depth_g_num_res_blocks=0, depth_d_conv_dim=8, depth_d_num_layers=2)


def one_iteration(strategy, stage, batch, initial):
    with strategy.scope():
        networks = build_models(ModelConfig(**TINY))
        for name, weights in initial.items():
            networks[name].set_weights(weights)
        trainer = sgd_one_step_trainer(stage, networks)
    step = make_distributed_step(strategy, trainer, update_generator=True)
    distributed = next(iter(strategy.experimental_distribute_dataset(tf.data.Dataset.from_tensors(batch))))
    logs = {k: float(v) for k, v in step(distributed).items()}
    return logs, {name: [w.copy() for w in net.get_weights()] for name, net in networks.items()}


def main(data_dir):
    batch = next(iter(inputs.training_dataset(data_dir, 4, 32, "depth", 8, seed=3)))
    batch = {k: v.numpy() for k, v in batch.items()}
    initial = {name: net.get_weights() for name, net in build_models(ModelConfig(**TINY)).items()}
    single = tf.distribute.get_strategy()
    mirrored = runtime.make_strategy("mirrored")
    report = {"replicas": mirrored.num_replicas_in_sync}
    for stage in ("depth", "gan"):
        logs_1, weights_1 = one_iteration(single, stage, batch, initial)
        logs_2, weights_2 = one_iteration(mirrored, stage, batch, initial)
        moved = max(float(np.max(np.abs(a - b))) for name in weights_1
                    for a, b in zip(weights_1[name], initial[name]))
        diff = max(float(np.max(np.abs(a - b))) for name in weights_1
                   for a, b in zip(weights_1[name], weights_2[name]))
        report[stage] = {"logs_1": logs_1, "logs_2": logs_2, "max_update": moved, "max_weight_diff": diff}
    # The CLI refuses a global batch the replicas cannot share, before any training.
    from expr3d import train

    config = train.parse_config(["expr3d.train", f"--data_dir={data_dir}", "--model_dir=/nonexistent/run",
                                 "--strategy=mirrored", "--batch_size=3"])
    try:
        train.run(config)
        report["indivisible_batch_error"] = None
    except train.UsageError as error:
        report["indivisible_batch_error"] = str(error)
    print("REPORT " + json.dumps(report))


if __name__ == "__main__":
    main(sys.argv[1])
