"""Throughput of the procedural face generator (expr3d.data.synthetic).

    python benchmarks/bench_synthetic.py [--faces=600] [--workers=2]

Prints: faces per minute at 64 px with `--workers` processes, end to end (render + encode + write shards + card),
excluding process start-up; then the single-process cost per face at 64, 128 and 256 px (render only, and render +
encode) and its ratio to the 64 px cost; then, at 64 px in one process, the cost of a transfer ground-truth face
(`--transfer_pairs`) beside that of the test renders it is made from, alternated so that load on the machine falls
on both alike.
"""
import os
import shutil
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # this checkout's expr3d first

from absl import app, flags  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_integer("faces", 640, "Faces to generate in the end-to-end run (a multiple of 8 is exact).")
flags.DEFINE_integer("workers", 2, "Worker processes for the end-to-end run.")
flags.DEFINE_integer("per_size", 12, "Faces per size for the per-face cost.")


def main(argv):
    del argv
    import multiprocessing

    from expr3d.data import schema
    from expr3d.data.synthetic import dataset
    from expr3d.labels import NUM_EXPRESSIONS

    # Warm the worker pool's imports out of the timing: start-up is a one-off cost, not throughput.
    tmp = tempfile.mkdtemp(prefix="bench_synthetic_")
    try:
        ids = max(2, FLAGS.faces // 8)
        warm = os.path.join(tmp, "warm")
        dataset.generate_dataset(warm, 2, 64, images_per_identity=8, workers=1, progress=False, preview=False)
        start = time.perf_counter()
        out = os.path.join(tmp, "run")
        card = dataset.generate_dataset(out, ids, 64, seed=1, images_per_identity=8, workers=FLAGS.workers,
                                        progress=False, preview=False)
        elapsed = time.perf_counter() - start
        total = sum(s["num_examples"] for s in card["splits"].values())
        # Pool start-up (spawned interpreters importing numpy/cv2) measured separately and subtracted.
        ctx = multiprocessing.get_context("spawn")
        t0 = time.perf_counter()
        with ctx.Pool(FLAGS.workers) as pool:
            pool.map(dataset._render_chunk, [(0, [], 64)] * FLAGS.workers)
        startup = time.perf_counter() - t0
        rate = total / max(elapsed - startup, 1e-9) * 60
        print(f"64px end-to-end, {FLAGS.workers} workers: {total} faces in {elapsed:.1f} s "
              f"(pool start-up {startup:.1f} s excluded) -> {rate:.0f} faces/min "
              f"(target >= 2000; including start-up {total / elapsed * 60:.0f}/min)")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    jobs = dataset.plan(0, 16, 0.2, 8)["train"]
    base = None
    for size in (64, 128, 256):
        dataset.render_job(0, jobs[0], size)  # topology cache
        t0 = time.perf_counter()
        examples = [dataset.render_job(0, job, size) for job in jobs[: FLAGS.per_size]]
        render_s = (time.perf_counter() - t0) / len(examples)
        t0 = time.perf_counter()
        for example in examples:
            schema.encode_example(example)
        encode_s = (time.perf_counter() - t0) / len(examples)
        cost = render_s + encode_s
        base = base or cost
        print(f"{size}px, 1 process: {1000 * render_s:.1f} ms render + {1000 * encode_s:.1f} ms encode = "
              f"{1000 * cost:.1f} ms/face ({cost / base:.1f}x the 64px cost)")

    pairs = max(1, FLAGS.per_size // 16)
    jobs = dataset.plan(0, 10 * pairs, 0.2, 8, transfer_pairs=pairs)
    transfer_jobs, test_jobs = jobs["transfer"], jobs["test"][:len(jobs["transfer"])]
    dataset.render_job(0, test_jobs[0], 64)  # topology cache
    spent = {"test": 0.0, "transfer": 0.0}
    for test_job, transfer_job in zip(test_jobs, transfer_jobs):
        for name, job in (("test", test_job), ("transfer", transfer_job)):
            t0 = time.perf_counter()
            schema.encode_example(dataset.render_job(0, job, 64))
            spent[name] += time.perf_counter() - t0
    per_face = {name: 1000 * value / len(transfer_jobs) for name, value in spent.items()}
    print(f"64px transfer ground truth, 1 process: {per_face['transfer']:.1f} ms/face (render + encode) vs "
          f"{per_face['test']:.1f} ms/face for test renders ({per_face['transfer'] / per_face['test']:.2f}x); "
          f"{len(transfer_jobs)} faces, {2 * NUM_EXPRESSIONS} a pair")
    return 0


if __name__ == "__main__":
    sys.exit(app.run(main))
