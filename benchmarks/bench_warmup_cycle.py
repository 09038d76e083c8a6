r"""Cost of a generator warm-up iteration with and without the cycle pass (issue #12's 15-minute budget), as a
ratio inside one run: the main recipe's G_rgb (attention, 32 channels, 3 residual blocks, 64 px, batch 8, XLA),
paired targets and the expression guide's feature term (a guide classifier of the trained guide's shape; its weights
do not change the cost), timed round-robin, best of the rounds.

    python benchmarks/bench_warmup_cycle.py [--rounds=5] [--repeats=5]
"""
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # this checkout's expr3d first

from absl import app, flags  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_integer("image_size", 64, "image side")
flags.DEFINE_integer("batch_size", 8, "batch")
flags.DEFINE_integer("g_conv_dim", 32, "G_rgb width")
flags.DEFINE_integer("g_num_res_blocks", 3, "G_rgb residual blocks")
flags.DEFINE_integer("rounds", 5, "timing rounds")
flags.DEFINE_integer("repeats", 5, "iterations per timing")


def build(cycle):
    import keras
    import tensorflow as tf

    from expr3d.metrics.expression_classifier import build_classifier
    from expr3d.models import ModelConfig, build_models
    from expr3d.training.depth_guided_stargan import DepthGuidedStarGAN
    from expr3d.training.loop import make_distributed_step

    networks = build_models(ModelConfig(
        image_size=FLAGS.image_size, g_conv_dim=FLAGS.g_conv_dim, g_num_res_blocks=FLAGS.g_num_res_blocks,
        d_conv_dim=32, d_num_layers=4, depth_g_conv_dim=16, depth_g_num_res_blocks=2, depth_d_conv_dim=16,
        depth_d_num_layers=4, generator="attention"))
    gan = DepthGuidedStarGAN(**networks, depth_weight=0.1, lambda_pair=10.0, generator_warmup_steps=1,
                             generator_warmup_cycle=cycle, expression_guide=build_classifier(FLAGS.image_size),
                             lambda_guide_features=10.0)
    gan.compile(optimizers={k: keras.optimizers.Adam(5e-4, 0.5, 0.999, name=k) for k in networks})
    gan.build_optimizers()
    return make_distributed_step(tf.distribute.get_strategy(), gan, update_generator="generator_warmup",
                                 jit_compile=True)


def batch():
    import tensorflow as tf

    b, s = FLAGS.batch_size, FLAGS.image_size
    return {"image": tf.random.uniform([b, s, s, 3], -1, 1), "geometry": tf.random.uniform([b, s, s, 3], -1, 1),
            "target_image": tf.random.uniform([b, s, s, 3], -1, 1),
            "expression": tf.random.uniform([b], 0, 8, tf.int32), "target": tf.random.uniform([b], 0, 8, tf.int32),
            "alpha": tf.random.uniform([b, 1, 1, 1]), "alpha_depth": tf.random.uniform([b, 1, 1, 1])}


def timed(step, data, repeats):
    start = time.perf_counter()
    for _ in range(repeats):
        out = step(data)
    [float(v) for v in out.values()]
    return (time.perf_counter() - start) / repeats


def main(argv):
    del argv
    data = batch()
    steps = {"with the cycle (default)": build(True), "--nogenerator_warmup_cycle": build(False)}
    for step in steps.values():  # trace and warm up
        timed(step, data, 2)
    best = {name: float("inf") for name in steps}
    for _ in range(FLAGS.rounds):
        for name, step in steps.items():
            best[name] = min(best[name], timed(step, data, FLAGS.repeats))
    first = best["with the cycle (default)"]
    print(f"{'warm-up iteration':28s} {'s':>8s} {'it/s':>7s} {'ratio':>6s}")
    for name, seconds in best.items():
        print(f"{name:28s} {seconds:8.4f} {1 / seconds:7.2f} {seconds / first:6.2f}")


if __name__ == "__main__":
    app.run(main)
