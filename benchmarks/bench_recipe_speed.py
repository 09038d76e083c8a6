r"""Stage-2 iteration cost of candidate synthetic recipes, as ratios inside one run (issue #12's time budget).

    python benchmarks/bench_recipe_speed.py [--image_size=64] [--batch_size=8] [--variants=...] [--rounds=5]

Each variant is "generator/depth/jit/g_conv_dim/d_conv_dim/d_num_layers[/lambda_id]" (depth 0 = plain StarGAN;
lambda_id > 0 adds the identity term's generator pass, as synthetic.flags' 10 does; default 0, the trainer's).
The variants' critic-only and critic+generator iterations are timed round-robin (one timing of each variant per
round, best of the rounds kept), so a load change on this shared machine hits all of them alike. Prints seconds per
iteration and the ratio to the first variant; "its/s at n_critic=5" converts to the training loop's throughput.
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
flags.DEFINE_list("variants", ["stargan/0.1/0/16/32/4", "stargan/0.1/1/16/32/4", "attention/0.1/0/16/32/4",
                               "attention/0.1/1/16/32/4", "attention/0/1/16/32/4"], "variants (see the docstring)")
flags.DEFINE_integer("rounds", 5, "timing rounds")
flags.DEFINE_integer("g_num_res_blocks", 2, "G_rgb residual blocks")


def build(spec):
    import keras
    import tensorflow as tf

    from expr3d.models import ModelConfig, build_models
    from expr3d.training.depth_guided_stargan import DepthGuidedStarGAN
    from expr3d.training.loop import make_distributed_step

    generator, depth, jit, g_dim, d_dim, d_layers, *rest = spec.split("/")
    networks = build_models(ModelConfig(
        image_size=FLAGS.image_size, g_conv_dim=int(g_dim), g_num_res_blocks=FLAGS.g_num_res_blocks,
        d_conv_dim=int(d_dim), d_num_layers=int(d_layers), depth_g_conv_dim=16, depth_g_num_res_blocks=2,
        depth_d_conv_dim=16, depth_d_num_layers=4, generator=generator))
    gan = DepthGuidedStarGAN(**networks, depth_weight=float(depth), lambda_id=float(rest[0]) if rest else 0.0)
    gan.compile(optimizers={k: keras.optimizers.Adam(1e-4, 0.5, 0.999, name=k) for k in networks})
    gan.build_optimizers()
    strategy = tf.distribute.get_strategy()
    return (make_distributed_step(strategy, gan, update_generator=False, jit_compile=jit == "1"),
            make_distributed_step(strategy, gan, update_generator=True, jit_compile=jit == "1"))


def batch():
    import tensorflow as tf

    b, s = FLAGS.batch_size, FLAGS.image_size
    return {"image": tf.random.uniform([b, s, s, 3], -1, 1), "geometry": tf.random.uniform([b, s, s, 3], -1, 1),
            "expression": tf.random.uniform([b], 0, 8, tf.int32), "target": tf.random.uniform([b], 0, 8, tf.int32),
            "alpha": tf.random.uniform([b, 1, 1, 1]), "alpha_depth": tf.random.uniform([b, 1, 1, 1])}


def timed(fn, data, repeats=3):
    start = time.perf_counter()
    for _ in range(repeats):
        out = fn(data)
    [float(v) for v in out.values()]
    return (time.perf_counter() - start) / repeats


def main(argv):
    del argv
    data = batch()
    steps = {spec: build(spec) for spec in FLAGS.variants}
    for critic, full in steps.values():  # trace and warm up
        timed(critic, data, 1), timed(full, data, 1)
    best = {spec: [float("inf"), float("inf")] for spec in steps}
    for _ in range(FLAGS.rounds):
        for spec, (critic, full) in steps.items():
            best[spec][0] = min(best[spec][0], timed(critic, data))
            best[spec][1] = min(best[spec][1], timed(full, data))
    first = None
    print(f"{'variant':34s} {'critic s':>9s} {'c+g s':>9s} {'its/s n5':>9s} {'its/s n1':>9s} {'ratio':>6s}")
    for spec, (t_critic, t_full) in best.items():
        per5 = (4 * t_critic + t_full) / 5
        first = first or per5
        print(f"{spec:34s} {t_critic:9.4f} {t_full:9.4f} {1 / per5:9.2f} {1 / t_full:9.2f} {per5 / first:6.2f}")


if __name__ == "__main__":
    app.run(main)
