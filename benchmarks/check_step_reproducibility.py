"""How often does one traced critic step give a different gradient penalty on the same weights and batch?

Re-traces the stage-2 critic step (tiny networks, SGD, a fixed random batch) `--traces` times, runs each trace
`--calls` times from the same initial weights, and counts the distinct (d_gp, dd_gp) pairs. With
`--without_order_fix` the updates are applied without `apply_updates`' control dependency on the loss values (the
code before the fix), so the two rates come from one run. Not a test: the old bug showed in a few % of executions,
more under load.

    python benchmarks/check_step_reproducibility.py --traces=40 --calls=3
"""
import collections
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags, logging  # noqa: E402

flags.DEFINE_integer("traces", 40, "fresh traces of the critic step per mode")
flags.DEFINE_integer("calls", 3, "executions of each trace, each from the same initial weights")
flags.DEFINE_bool("without_order_fix", True, "also measure the pre-fix update (no control dependency on the losses)")
FLAGS = flags.FLAGS


def main(_):
    logging.set_verbosity(logging.ERROR)  # each trace is deliberate: no retracing warnings
    import keras
    import numpy as np
    import tensorflow as tf

    from expr3d.training import common
    from tests.training.helpers import sgd_one_step_trainer, tiny_networks

    rng = np.random.default_rng(0)
    batch = {
        "image": tf.constant(rng.uniform(-1, 1, (4, 32, 32, 3)), tf.float32),
        "geometry": tf.constant(rng.uniform(-1, 1, (4, 32, 32, 3)), tf.float32),
        "expression": tf.constant([0, 3, 5, 7]),
        "target": tf.constant([2, 0, 7, 4]),
        "alpha": tf.constant(rng.uniform(0, 1, (4, 1, 1, 1)), tf.float32),
        "alpha_depth": tf.constant(rng.uniform(0, 1, (4, 1, 1, 1)), tf.float32),
    }
    keras.utils.set_random_seed(5)
    initial = {name: net.get_weights() for name, net in tiny_networks(seed=5).items()}
    fixed_apply = common.apply_updates

    def unordered_apply(tape, scaled_losses, optimizers, variable_lists, computed_first):
        del computed_first  # the pre-fix code: apply_updates' body without its control dependency on the losses
        return common._differentiate_and_apply(tape, scaled_losses, optimizers, variable_lists)

    modes = {"with the order fix": None}
    if FLAGS.without_order_fix:
        modes["without it (pre-fix)"] = unordered_apply
    for label, replacement in modes.items():
        common.apply_updates = replacement or fixed_apply
        outcomes = collections.Counter()
        for _ in range(FLAGS.traces):
            networks = tiny_networks()
            trainer = sgd_one_step_trainer("gan", networks)
            step = tf.function(trainer.critic_step)
            for _ in range(FLAGS.calls):
                for name, weights in initial.items():
                    networks[name].set_weights(weights)
                logs = step(batch)
                outcomes[(f"{float(logs['d_gp']):.7g}", f"{float(logs['dd_gp']):.7g}")] += 1
        common.apply_updates = fixed_apply
        total = sum(outcomes.values())
        majority = outcomes.most_common(1)[0][1]
        print(f"{label}: {total} executions, {len(outcomes)} distinct (d_gp, dd_gp); "
              f"{total - majority} differ from the majority {dict(outcomes)}", flush=True)


if __name__ == "__main__":
    app.run(main)
