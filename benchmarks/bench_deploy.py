"""Deployment figures: generator latency (batch 1) and throughput (batch 16) of the SavedModel and the TFLite variants,
with model sizes and parity (PSNR / max abs error vs the SavedModel), at 128 and 256 px.

    python benchmarks/bench_deploy.py [--sizes=128,256] [--variants=fp32,fp16,int8,int8_full] [--data_dir=DATA]
        [--repeats=5] [--threads=2] [--json=benchmarks/out/deploy.json]

The generator is the one of --model_dir (a training run: its trained G_rgb, run fully convolutionally at each size),
else a full-size one (conv_dim 64, 6 residual blocks) with random weights (timing does not depend on the weights;
quantisation parity does, so give a trained run for the final numbers). It is exported the way expr3d.export does:
the inference clone (expr3d.deploy.inference: 4-D instance norm, sub-pixel up-sampling); --graph=training exports
the training graph as is (GroupNormalization, Conv2DTranspose) for comparison. Parity and the int8_full
representative set use --data_dir's faces (test split / train split) when given, else uniform noise (said in the
output). Ratios are within one run on this machine: speed-up = SavedModel fp32 latency / variant latency. TensorFlow
and LiteRT get the same number of threads (--threads).
"""
import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402


def _round_robin(functions, repeats):
    """Median seconds per call of each function, timed in interleaved rounds after one warm-up call each."""
    for fn in functions:
        fn()  # warm-up (graph building, delegate preparation)
    times = [[] for _ in functions]
    for _ in range(repeats):
        for fn, bucket in zip(functions, times):
            start = time.perf_counter()
            fn()
            bucket.append(time.perf_counter() - start)
    return [statistics.median(bucket) for bucket in times]


def load_generator(model_dir, graph):
    """(generator, description): the run's trained G_rgb or a random full-size one, as exported (`graph`)."""
    import keras

    from expr3d.deploy.inference import inference_clone
    from expr3d.models import StarGANGenerator

    if model_dir:
        from expr3d.run_dir import RunDir

        run = RunDir(model_dir).load_generators()
        g_rgb = run.g_rgb
        what = f"trained G_rgb of {model_dir} (step {run.step}, trained at {run.image_size} px)"
    else:
        keras.utils.set_random_seed(0)
        g_rgb = StarGANGenerator(cond_dim=8, conv_dim=64, num_res_blocks=6, name="g_rgb")
        what = "random full-size G_rgb (conv_dim 64, 6 residual blocks)"
    if graph == "inference":
        g_rgb, _ = inference_clone(g_rgb)
    return g_rgb, f"{what}, {graph} graph"


def bench_size(size, variants, data_dir, repeats, threads, generator=None, log=print):
    import tensorflow as tf

    from expr3d.deploy import tflite
    from expr3d.deploy.signatures import ServingFunctions, build_archive

    work = tempfile.mkdtemp(prefix=f"bench_deploy_{size}_")
    saved_model = os.path.join(work, "1")
    build_archive(ServingFunctions(generator, None, size)).write_out(saved_model, verbose=False)
    images, source = tflite.parity_images(data_dir, size, 16)
    if len(images) < 16:
        images = np.concatenate([images] * (16 // len(images) + 1))[:16]
    conditions = tflite.conditions_for(16)
    reference_fn = tflite.saved_model_generator(saved_model)
    reference = reference_fn(images, conditions)
    signature = tf.saved_model.load(saved_model).signatures["generator"]
    x1, c1 = tf.constant(images[:1]), tf.constant(conditions[:1])
    x16, c16 = tf.constant(images), tf.constant(conditions)
    variables = os.path.join(saved_model, "variables")
    sm_bytes = sum(os.path.getsize(os.path.join(variables, f)) for f in os.listdir(variables))
    rows = [{"size": size, "model": "SavedModel fp32", "size_mb": sm_bytes / 1e6, "psnr_db": None,
             "max_abs_error": None}]
    runners = [(lambda: signature(image=x1, condition=c1)["image"].numpy(),
                lambda: signature(image=x16, condition=c16)["image"].numpy())]
    representative = images if "int8_full" in variants else None
    if "int8_full" in variants and data_dir:
        representative = tflite.images_from_records(data_dir, "train", size, 32)
    for variant in variants:
        model = tflite.convert(saved_model, variant, representative=representative)
        generator = tflite.LiteGenerator(model, num_threads=threads)
        figures = tflite.compare(reference, generator(images, conditions))
        rows.append({"size": size, "model": f"TFLite {variant}", "size_mb": len(model) / 1e6,
                     "psnr_db": figures["psnr_db"], "max_abs_error": figures["max_abs_error"]})
        runners.append((lambda g=generator: g(images[:1], conditions[:1]), lambda g=generator: g(images, conditions)))
        log(f"{size}px TFLite {variant}: {len(model) / 1e6:.1f} MB, PSNR {figures['psnr_db']:.1f} dB, "
            f"max abs err {figures['max_abs_error']:.3f}")
    # Round-robin timing (every model once per round, medians over rounds): on a shared machine the load drifts,
    # and timing one model after the other would fold that drift into the ratios.
    latencies, batches = _round_robin([b1 for b1, _ in runners], repeats), \
        _round_robin([b16 for _, b16 in runners], max(1, repeats // 2))
    for row, latency, batch in zip(rows, latencies, batches):
        row.update(latency_ms=1e3 * latency, images_per_s_b16=16 / batch)
        log(f"{size}px {row['model']}: {1e3 * latency:.1f} ms/image (b1), {16 / batch:.2f} img/s (b16)")
    for row in rows:
        row["speedup_b1_vs_savedmodel"] = rows[0]["latency_ms"] / row["latency_ms"]
        row["parity_images"] = source
    shutil.rmtree(work, ignore_errors=True)
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="128,256")
    parser.add_argument("--variants", default="fp32,fp16,int8,int8_full")
    parser.add_argument("--data_dir", default=None)
    parser.add_argument("--model_dir", default=None, help="training run whose G_rgb to benchmark (default: random "
                        "full-size weights)")
    parser.add_argument("--graph", default="inference", choices=["inference", "training"],
                        help="export the inference clone (as expr3d.export does) or the training graph as is")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2, help="threads of LiteRT and of TensorFlow's intra-op pool "
                        "(this machine: 2 cores)")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    from expr3d.deploy import tflite

    variants = tflite.parse_variants(args.variants)
    started = time.time()
    rows = []
    generator, described = load_generator(args.model_dir, args.graph)
    print(f"generator: {described}")
    for size in [int(s) for s in args.sizes.split(",")]:
        rows += bench_size(size, variants, args.data_dir, args.repeats, args.threads, generator=generator)
    print()
    print(f"| size | model | latency b1 (ms) | speed-up b1 vs SavedModel | throughput b16 (img/s) | size (MB) | "
          f"PSNR vs SavedModel (dB) | max abs err |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        psnr = "-" if r["psnr_db"] is None else f"{r['psnr_db']:.1f}"
        err = "-" if r["max_abs_error"] is None else f"{r['max_abs_error']:.3f}"
        print(f"| {r['size']} | {r['model']} | {r['latency_ms']:.1f} | {r['speedup_b1_vs_savedmodel']:.2f}x | "
              f"{r['images_per_s_b16']:.2f} | {r['size_mb']:.1f} | {psnr} | {err} |")
    print(f"\ngenerator: {described}\nparity images: {rows[0]['parity_images']}; threads (TF and LiteRT): "
          f"{args.threads}; "
          f"load average at the end: {os.getloadavg()[0]:.1f}; wall time {time.time() - started:.0f} s")
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)


if __name__ == "__main__":
    main()
