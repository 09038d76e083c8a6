r"""Stage-2 train-step throughput and achieved FLOP/s as a fraction of this machine's matmul peak; peak memory.

    python benchmarks/bench_train.py                       # both configs, plain + depth-guided, fp32 + bf16, memory
    python benchmarks/bench_train.py --configs=synthetic --precisions=mixed_bfloat16 --modes=depth --nomemory

For every (config, mode, precision) it times, on random data of the config's size:
  - the generator step alone (`DepthGuidedStarGAN.generator_step`),
  - a critic-only iteration and a critic+generator iteration, and from them the whole StarGAN iteration
    "5 critic + 1 generator" = 4 x critic-only + 1 x critic+generator,
and reports images/s (global batch / time) and achieved FLOP/s / peak. The peak is measured in the same run with a
large `tf.linalg.matmul` loop in the same precision (float32, or bfloat16 for mixed_bfloat16).

FLOPs are analytic (benchmarks/flops.py: 2 per multiply-accumulate of every conv / transposed conv), with
F_x the forward FLOPs of network x at the batch size:
  - a forward+backward pass costs 3 F (forward, input gradients, weight gradients);
  - the gradient penalty costs 6 F_D: forward at x_hat (F), the inner input-gradient pass (F), then differentiating
    both for the weight update (2 F + 2 F) - the double backward counted in full;
  - critic step  = F_G (fake, no gradient) + 2 x 3 F_D (real, fake) + 6 F_D (GP)
                   [+ F_Gd + 12 F_Dd with depth guidance];
  - generator step = 2 x 3 F_G (x_t, reconstruction) + 3 F_D  [+ 2 x 3 F_Gd (to_geometry, to_rgb) + 3 F_Dd].
Peak memory: a child process trains stage 2 (depth-guided, float32) at 128x128, batch 8, full-size networks for
two iterations and reports its ru_maxrss.
"""

import json
import os
import resource
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # this checkout's expr3d first

from absl import app, flags  # noqa: E402

from peak import matmul_peak  # noqa: E402  (benchmarks/ is on sys.path when run as a script)

FLAGS = flags.FLAGS
flags.DEFINE_list("configs", ["reference", "synthetic"], "Configurations: reference (StarGAN 64px), synthetic.")
flags.DEFINE_list("modes", ["plain", "depth"], "plain = --depth_weight=0, depth = --depth_weight=0.1.")
flags.DEFINE_list("precisions", ["float32", "mixed_bfloat16"], "Dtype policies.")
flags.DEFINE_integer("repeats", 3, "Timed repetitions of each step (best is reported).")
flags.DEFINE_bool("memory", True, "Also measure the peak memory of a 128x128 batch-8 full-size training process.")
flags.DEFINE_bool("memory_child", False, "Internal: be the memory-measuring child process.")
flags.DEFINE_string("json_out", None, "Also write the results as JSON here.")

CONFIGS = {
    # StarGAN's reference configuration at 64 px.
    "reference": dict(image_size=64, batch_size=8, g_conv_dim=64, g_num_res_blocks=6, d_conv_dim=64, d_num_layers=6,
                      depth_g_conv_dim=64, depth_g_num_res_blocks=6, depth_d_conv_dim=64, depth_d_num_layers=6),
    # experiments/synthetic48.flags (the main command until session 19).
    "synthetic": dict(image_size=48, batch_size=8, g_conv_dim=16, g_num_res_blocks=2, d_conv_dim=32, d_num_layers=4,
                      depth_g_conv_dim=16, depth_g_num_res_blocks=2, depth_d_conv_dim=16, depth_d_num_layers=4),
    # Peak-memory configuration: StarGAN's full size at 128 px, batch 8.
    "memory": dict(image_size=128, batch_size=8, g_conv_dim=64, g_num_res_blocks=6, d_conv_dim=64, d_num_layers=6,
                   depth_g_conv_dim=64, depth_g_num_res_blocks=6, depth_d_conv_dim=64, depth_d_num_layers=6),
}


def build(config_name, depth_weight, precision):
    import keras

    from expr3d.models import ModelConfig, build_models
    from expr3d.training.depth_guided_stargan import DepthGuidedStarGAN

    keras.mixed_precision.set_global_policy(precision)
    cfg = dict(CONFIGS[config_name])
    batch_size = cfg.pop("batch_size")
    networks = build_models(ModelConfig(**cfg))
    gan = DepthGuidedStarGAN(**networks, depth_weight=depth_weight)
    gan.compile(optimizers={k: keras.optimizers.Adam(1e-4, 0.5, 0.999, name=k) for k in networks})
    gan.build_optimizers()
    return gan, networks, cfg["image_size"], batch_size


def random_batch(image_size, batch_size):
    import tensorflow as tf

    shape = [batch_size, image_size, image_size, 3]
    return {
        "image": tf.random.uniform(shape, -1, 1),
        "geometry": tf.random.uniform(shape, -1, 1),
        "expression": tf.random.uniform([batch_size], 0, 8, tf.int32),
        "target": tf.random.uniform([batch_size], 0, 8, tf.int32),
        "alpha": tf.random.uniform([batch_size, 1, 1, 1]),
        "alpha_depth": tf.random.uniform([batch_size, 1, 1, 1]),
    }


def analytic_flops(networks, image_size, batch_size, uses_depth):
    from flops import forward_flops  # benchmarks/ is on sys.path when run as a script

    image = (batch_size, image_size, image_size, 3)
    f_g = forward_flops(networks["g_rgb"], [image, (batch_size, 8)])
    f_d = forward_flops(networks["d_rgb"], image)
    critic = f_g + 6 * f_d + 6 * f_d
    generator = 6 * f_g + 3 * f_d
    if uses_depth:
        f_gd = forward_flops(networks["g_depth"], [image, (batch_size, 2)])
        f_dd = forward_flops(networks["d_depth"], image)
        critic += f_gd + 12 * f_dd
        generator += 6 * f_gd + 3 * f_dd
    return {"critic": critic, "generator": generator, "forward_g_rgb": f_g, "forward_d_rgb": f_d}


def best_time(fn, batch, repeats):
    fn(batch)  # trace + warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn(batch)
        [float(v) for v in out.values()]
        times.append(time.perf_counter() - start)
    return min(times)


def measure(config_name, mode, precision, peaks, repeats):
    import tensorflow as tf

    from expr3d.training.loop import make_distributed_step

    depth_weight = 0.1 if mode == "depth" else 0.0
    gan, networks, image_size, batch_size = build(config_name, depth_weight, precision)
    batch = random_batch(image_size, batch_size)
    strategy = tf.distribute.get_strategy()
    generator_only = tf.function(lambda b: gan.generator_step(b))
    critic_iteration = make_distributed_step(strategy, gan, update_generator=False)
    full_iteration = make_distributed_step(strategy, gan, update_generator=True)
    t_gen = best_time(generator_only, batch, repeats)
    t_critic = best_time(critic_iteration, batch, repeats)
    t_full = best_time(full_iteration, batch, repeats)
    t_whole = 4 * t_critic + t_full  # 5 critic updates + 1 generator update
    flops = analytic_flops(networks, image_size, batch_size, gan.uses_depth)
    peak = peaks["bfloat16" if precision == "mixed_bfloat16" else "float32"]
    whole_flops = 5 * flops["critic"] + flops["generator"]
    return {
        "config": config_name, "mode": mode, "precision": precision, "batch_size": batch_size,
        "image_size": image_size,
        "generator_step_s": t_gen, "critic_iteration_s": t_critic, "whole_iteration_s": t_whole,
        "generator_images_per_s": batch_size / t_gen,
        "iteration_images_per_s": batch_size / t_whole,
        "generator_gflop": flops["generator"] / 1e9, "whole_gflop": whole_flops / 1e9,
        "generator_fraction_of_peak": flops["generator"] / t_gen / peak,
        "whole_fraction_of_peak": whole_flops / t_whole / peak,
    }


def memory_child():
    """Train stage 2 at 128 px, batch 8, full size, float32, depth-guided for two iterations; print ru_maxrss."""
    import tensorflow as tf

    from expr3d.training.loop import make_distributed_step

    gan, _, image_size, batch_size = build("memory", 0.1, "float32")
    batch = random_batch(image_size, batch_size)
    step = make_distributed_step(tf.distribute.get_strategy(), gan, update_generator=True)
    for _ in range(2):
        [float(v) for v in step(batch).values()]
    print("MAXRSS_KB", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def main(argv):
    del argv
    if FLAGS.memory_child:
        memory_child()
        return
    import tensorflow as tf

    tf.get_logger().setLevel("ERROR")  # each row builds fresh step functions; retracing warnings are expected
    print(f"TensorFlow {tf.__version__}, {os.cpu_count()} CPU(s), load average {os.getloadavg()[0]:.1f}")
    peaks = {}
    if "float32" in FLAGS.precisions:
        peaks["float32"] = matmul_peak(tf.float32)
    if "mixed_bfloat16" in FLAGS.precisions:
        peaks["bfloat16"] = matmul_peak(tf.bfloat16)
    for name, value in peaks.items():
        print(f"matmul peak {name}: {value / 1e12:.3f} TFLOP/s (2048^2 chain, same process)")
    print("(the peak is re-measured before every row and the HIGHEST value seen is used, so a busy machine during one"
          " measurement cannot inflate the fractions)")
    results = []
    header = (f"{'config':<10} {'mode':<6} {'precision':<15} {'gen step':>9} {'gen img/s':>9} {'gen %pk':>8} "
              f"{'iter(5+1)':>10} {'iter img/s':>10} {'iter %pk':>8}")
    print(header)
    for config_name in FLAGS.configs:
        for mode in FLAGS.modes:
            for precision in FLAGS.precisions:
                key = "bfloat16" if precision == "mixed_bfloat16" else "float32"
                peaks[key] = max(peaks[key], matmul_peak(tf.bfloat16 if key == "bfloat16" else tf.float32))
                r = measure(config_name, mode, precision, peaks, FLAGS.repeats)
                results.append(r)
                print(f"{config_name:<10} {mode:<6} {precision:<15} {r['generator_step_s']:>8.3f}s "
                      f"{r['generator_images_per_s']:>9.1f} {100 * r['generator_fraction_of_peak']:>7.1f}% "
                      f"{r['whole_iteration_s']:>9.3f}s {r['iteration_images_per_s']:>10.2f} "
                      f"{100 * r['whole_fraction_of_peak']:>7.1f}%", flush=True)
    for config_name in FLAGS.configs:
        for mode in FLAGS.modes:
            fp32 = [r for r in results if (r["config"], r["mode"], r["precision"]) == (config_name, mode, "float32")]
            bf16 = [r for r in results
                    if (r["config"], r["mode"], r["precision"]) == (config_name, mode, "mixed_bfloat16")]
            if fp32 and bf16:
                print(f"bf16 / fp32 speed-up, {config_name} {mode}: "
                      f"{fp32[0]['whole_iteration_s'] / bf16[0]['whole_iteration_s']:.2f}x per iteration")
        plain = [r for r in results if r["config"] == config_name and r["mode"] == "plain"]
        depth = [r for r in results if r["config"] == config_name and r["mode"] == "depth"]
        for p in plain:
            for d in depth:
                if p["precision"] == d["precision"]:
                    print(f"depth-guided / plain time, {config_name} {p['precision']}: "
                          f"{d['whole_iteration_s'] / p['whole_iteration_s']:.2f}x")
    print("highest matmul peaks seen: " + ", ".join(f"{k} {v / 1e12:.3f} TFLOP/s" for k, v in peaks.items()))
    # Rows measured before the highest peak was seen are re-expressed against it (the conservative figure).
    print("fractions of the highest peak seen:")
    for r in results:
        peak = peaks["bfloat16" if r["precision"] == "mixed_bfloat16" else "float32"]
        r["generator_fraction_of_peak"] = r["generator_gflop"] * 1e9 / r["generator_step_s"] / peak
        r["whole_fraction_of_peak"] = r["whole_gflop"] * 1e9 / r["whole_iteration_s"] / peak
        print(f"  {r['config']:<10} {r['mode']:<6} {r['precision']:<15} generator step "
              f"{100 * r['generator_fraction_of_peak']:5.1f}%   whole iteration {100 * r['whole_fraction_of_peak']:5.1f}%")
    summary = {"peaks_flops": peaks, "results": results}
    if FLAGS.memory:
        child = subprocess.run([sys.executable, __file__, "--memory_child"], capture_output=True, text=True,
                               env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
        lines = [line for line in child.stdout.splitlines() if line.startswith("MAXRSS_KB")]
        if child.returncode != 0 or not lines:
            print(f"memory child failed ({child.returncode}): {child.stderr[-2000:]}")
        else:
            kb = int(lines[0].split()[1])
            summary["peak_memory_mb"] = kb / 1024
            print(f"peak memory (ru_maxrss) of stage-2 depth-guided float32 training at 128x128, batch 8, full-size "
                  f"networks: {kb / 1024:.0f} MiB")
    if FLAGS.json_out:
        with open(FLAGS.json_out, "w") as handle:
            json.dump(summary, handle, indent=1)


if __name__ == "__main__":
    app.run(main)
