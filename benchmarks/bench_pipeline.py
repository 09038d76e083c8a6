"""Throughput of the tf.data input pipeline (expr3d.data.pipeline) in examples per second.

Run: python benchmarks/bench_pipeline.py [--sizes=64,128,256 --batch_size=16 --batches=40 --num_identities=16]

With --train_consumption (default) it also times stage-2 training at each size in the same run and prints the ratio
of what the pipeline supplies to what a training step consumes (target: >= 5x).

For each size, renders a small procedural dataset (expr3d.data.synthetic.generate_dataset) into a temporary
directory (or reads --data_dir), then times the training pipeline (shuffle, flip +
crop augmentation, batch 16, all cores, AUTOTUNE) and, in the same run, three variants:
  * train      : make_dataset(training=True) - what the trainer consumes
  * determ.    : the same with deterministic=True (bit-reproducible order)
  * no-aug     : training=True, augment=False - the cost of parse + decode + normalise alone
  * balanced   : training=True, balanced=True - class-balanced rejection sampling
Each variant is timed in --rounds round-robin rounds with fresh iterators; the best round counts. Prints
examples/s per variant and the ratios to the "train" column and to 64 px, so figures from a loaded machine
still compare within one run. The dataset repeats, so a small dataset measures the steady state. Also prints the
size of a `tf.train.Checkpoint(iterator=...)` of the training iterator (dominated by the shuffle buffer of
serialized records and the prefetched batches).
"""
import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # this checkout's expr3d first

from absl import app, flags  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_list("sizes", ["64", "128", "256"], "Image sizes to measure.")
flags.DEFINE_integer("batch_size", 16, "Global batch size.")
flags.DEFINE_integer("batches", 40, "Timed batches per variant and round (after warm-up).")
flags.DEFINE_integer("rounds", 3, "Rounds over the variants (fresh iterators each); the best round is reported.")
flags.DEFINE_integer("warmup", 8, "Untimed batches first (fills the shuffle buffer, lets AUTOTUNE settle).")
flags.DEFINE_integer("num_identities", 16, "Identities of the generated dataset (8 renders each in train).")
flags.DEFINE_string("data_dir", None, "Measure an existing dataset instead (its card's size; --sizes ignored).")
flags.DEFINE_list("variants", ["train", "determ", "no-aug", "balanced"], "Which pipeline variants to time.")
flags.DEFINE_bool("train_consumption", True,
                  "Also time stage-2 training of the synthetic configuration at each size (plain StarGAN, bf16: the "
                  "fastest consumer) in this run, and print pipeline supply / training demand.")


def _variant_kwargs(name):
    return {"train": {}, "determ": {"deterministic": True}, "no-aug": {"augment": False},
            "balanced": {"balanced": True}}[name]


def _time(data_dir, image_size, variant, checkpoint_dir=None):
    """Examples/s of one variant; with `checkpoint_dir`, also the size in MiB of an iterator checkpoint."""
    import tensorflow as tf

    from expr3d.data import pipeline

    dataset = pipeline.make_dataset(data_dir, "train", FLAGS.batch_size, image_size=image_size, training=True,
                                    seed=0, **_variant_kwargs(variant))
    iterator = iter(dataset)
    for _ in range(FLAGS.warmup):
        next(iterator)
    start, cpu_start = time.perf_counter(), time.process_time()
    for _ in range(FLAGS.batches):
        batch = next(iterator)
    batch["image"].numpy()
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    checkpoint_mib = None
    if checkpoint_dir:
        tf.train.Checkpoint(iterator=iterator).save(os.path.join(checkpoint_dir, "data"))
        checkpoint_mib = sum(os.path.getsize(os.path.join(checkpoint_dir, name))
                             for name in os.listdir(checkpoint_dir)) / 2 ** 20
        shutil.rmtree(checkpoint_dir)
    examples = FLAGS.batches * FLAGS.batch_size
    return examples / elapsed, examples / cpu, checkpoint_mib


def _train_consumption(image_size):
    """Examples/s that stage-2 training consumes: one global batch per critic update (benchmarks/bench_train.py)."""
    import keras

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import bench_train

    name = f"synthetic{image_size}"
    bench_train.CONFIGS[name] = dict(bench_train.CONFIGS["synthetic"], image_size=image_size)
    row = bench_train.measure(name, "plain", "mixed_bfloat16", {"bfloat16": 1.0, "float32": 1.0}, repeats=2)
    keras.mixed_precision.set_global_policy("float32")
    # whole_iteration_s covers 5 critic updates (5 batches) and 1 generator update.
    return 5 * row["batch_size"] / row["whole_iteration_s"]


def _generate(directory, image_size):
    from expr3d.data.synthetic import generate_dataset

    start = time.perf_counter()
    card = generate_dataset(directory, num_identities=FLAGS.num_identities, image_size=image_size, seed=0,
                            progress=False, preview=False)
    return card["splits"]["train"]["num_examples"], time.perf_counter() - start


def main(argv):
    del argv
    import tensorflow as tf

    from expr3d.data import dataset_card, records

    print(f"tensorflow {tf.__version__}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}, "
          f"batch {FLAGS.batch_size}, best of {FLAGS.rounds} rounds of {FLAGS.batches} timed batches per variant")
    scratch = tempfile.mkdtemp(prefix="bench_pipeline_")
    rows = []
    try:
        if FLAGS.data_dir:
            cases = [(FLAGS.data_dir, int(dataset_card.read_dataset_card(FLAGS.data_dir)["image_size"]))]
        else:
            cases = []
            for size in (int(s) for s in FLAGS.sizes):
                directory = os.path.join(scratch, f"synthetic{size}")
                count, seconds = _generate(directory, size)
                print(f"generated {count} train faces at {size} px in {seconds:.1f} s")
                cases.append((directory, size))
        for directory, size in cases:
            shard_bytes = sum(os.path.getsize(p) for p in records.split_files(directory, "train"))
            count = dataset_card.read_dataset_card(directory)["splits"]["train"]["num_examples"]
            # Round-robin with the best round per variant: a shared, loaded machine slows rounds, not variants.
            rates, cpu_rates, checkpoint_mib = {v: 0.0 for v in FLAGS.variants}, {v: 0.0 for v in FLAGS.variants}, None
            for round_index in range(FLAGS.rounds):
                for variant in FLAGS.variants:
                    checkpoint_dir = (os.path.join(scratch, "ckpt") if variant == "train" and round_index == 0
                                      else None)
                    rate, cpu_rate, mib = _time(directory, size, variant, checkpoint_dir)
                    rates[variant] = max(rates[variant], rate)
                    cpu_rates[variant] = max(cpu_rates[variant], cpu_rate)
                    checkpoint_mib = mib if mib is not None else checkpoint_mib
            rows.append((size, shard_bytes / count / 1024, rates, checkpoint_mib, cpu_rates))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    header = (f"{'size':>5} {'KiB/rec':>8} " + " ".join(f"{v + ' ex/s':>15}" for v in FLAGS.variants)
              + f" {'iterator ckpt MiB':>18}")
    print("\n" + header)
    for size, kib, rates, mib, _ in rows:
        print(f"{size:>5} {kib:>8.1f} " + " ".join(f"{rates[v]:>15.0f}" for v in FLAGS.variants)
              + (f" {mib:>18.1f}" if mib is not None else f" {'-':>18}"))
    base_variant = FLAGS.variants[0]
    print(f"load average at the end {os.getloadavg()[0]:.1f}")
    print(f"\nratios to '{base_variant}' at the same size, and of '{base_variant}' to the first size:")
    first = rows[0][2][base_variant]
    for size, _, rates, _, _ in rows:
        ratios = " ".join(f"{v}={rates[v] / rates[base_variant]:.2f}" for v in FLAGS.variants[1:])
        print(f"{size:>5} {ratios}  {base_variant} vs {rows[0][0]} px={rates[base_variant] / first:.2f} "
              f"(pixels x{(size / rows[0][0]) ** 2:.0f})")

    if FLAGS.train_consumption:
        print("\nsupply vs demand: pipeline 'train' ex/s vs stage-2 training of the synthetic configuration at the "
              "same size (plain StarGAN, mixed_bfloat16, batch 8; one batch per critic update):")
        for size, _, rates, _, _ in rows:
            demand = _train_consumption(size)
            print(f"{size:>5} pipeline {rates[base_variant]:>8.0f} ex/s  training {demand:>8.1f} ex/s  "
                  f"ratio {rates[base_variant] / demand:>6.1f}x")

    cores = os.cpu_count() or 1
    print(f"\nexamples per CPU-second of this process (load-independent; x{cores} cores = rate on an idle machine "
          f"if the pipeline scales):")
    print(f"{'size':>5} " + " ".join(f"{v + ' ex/CPU-s':>19}" for v in FLAGS.variants) + f" {'train x cores':>14}")
    for size, _, _, _, cpu_rates in rows:
        print(f"{size:>5} " + " ".join(f"{cpu_rates[v]:>19.0f}" for v in FLAGS.variants)
              + f" {cpu_rates[base_variant] * cores:>14.0f}")


if __name__ == "__main__":
    app.run(main)
