"""One worker of bench_multi_worker.py's all-reduce probe (started by `python -m expr3d.launch --program=THIS`).

Takes expr3d.train's flags (the networks' sizes and --strategy=multi_worker), builds the networks in the strategy's
scope and times the all-reduce of one gradient per variable, inside `strategy.run` as the optimizers do: the
critics' (D_rgb + D_depth) and the generators' (G_rgb + G_depth). The chief prints `ALLREDUCE {json}`.
"""
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags  # noqa: E402

from expr3d import train  # noqa: E402
from expr3d.training.config import TrainConfig  # noqa: E402

REPEATS = 20


def main(argv):
    import tensorflow as tf

    from expr3d.models import build_models
    from expr3d.training import cluster, runtime

    config = TrainConfig.from_flags(flags.FLAGS)
    role = cluster.read_tf_config()
    strategy = runtime.make_strategy("multi_worker", role=role)
    with strategy.scope():
        networks = build_models(config.model_config())

    def timed(names):
        variables = [v for name in names for v in networks[name].trainable_variables]

        @tf.function
        def all_reduce():
            def replica():
                gradients = [tf.ones_like(v) for v in variables]
                return tf.distribute.get_replica_context().all_reduce(tf.distribute.ReduceOp.SUM, gradients)

            return strategy.run(replica)

        all_reduce()  # trace and warm up
        start = time.perf_counter()
        for _ in range(REPEATS):
            result = all_reduce()
        float(tf.reduce_sum(strategy.experimental_local_results(result[0])[0]))
        return (time.perf_counter() - start) / REPEATS, sum(int(tf.size(v)) for v in variables)

    critic_seconds, critic_values = timed(["d_rgb", "d_depth"])
    generator_seconds, generator_values = timed(["g_rgb", "g_depth"])
    if role.is_chief:
        print("ALLREDUCE " + json.dumps({
            "critic_seconds": round(critic_seconds, 5), "critic_values": critic_values,
            "generator_seconds": round(generator_seconds, 5), "generator_values": generator_values,
            "n_critic": config.n_critic}), flush=True)


if __name__ == "__main__":
    train.define_flags()
    app.run(main)
