r"""Where a transfer run's AU error sits: its decoder given B's AUs as read by different readers.

    python benchmarks/bench_transfer_code_readers.py --model_dir=RUN --data_dir=data/synthetic64tp \
        [--reader=RUN/guide] [--judge=auto|DIR] [--output=benchmarks/out/transfer_code_readers.json]

For a `--model=transfer` run whose code IS the AU estimate (`--transfer_code=action_units` or `guide`) and the
transfer split of `--data_dir` (A, B and the true render of A with B's AUs): the AU judge's error on A decoded with
B's AUs as (1) the run's own encoder reads them (the transfer itself), (2) another AU regressor reads them
(`--reader`, e.g. the run's AU guide `RUN/guide`), (3) B's TRUE AUs; and each reader's own AU error on B. So the
transfer's AU error splits into what its code misreads and what its decoder misdraws, and (2) tells what a better
reader would give before training one in (`--transfer_code=guide`).

Session 35, data/synthetic64tp, 400 transfers, AU judge 4, the reader the width-16 AU guide of an earlier run
(reads B at 0.031): the split run with the AU code trained end to end (session 34) 0.157 / 0.163 / 0.165 (its code
read B at 0.188: the decoder had learnt to distrust the code); `synthetic_transfer64.flags` (session 35) 0.068 /
**0.055** / 0.052 (its code read B at 0.067).
Accuracy figures, not timings: nothing here depends on machine load.
"""
import argparse
import json
import os
import sys

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model_dir", required=True)
    parser.add_argument("--data_dir", required=True)
    parser.add_argument("--reader", default=None, help="an AU regressor's folder (expr3d.metrics.au_judge format)")
    parser.add_argument("--judge", default="auto")
    parser.add_argument("--output", default=None)
    args = parser.parse_args()
    import tensorflow as tf

    from expr3d.data.transfer import make_transfer_dataset
    from expr3d.metrics.au_judge import auto_au_judge, load_au_regressor
    from expr3d.run_dir import RunDir

    run = RunDir(args.model_dir).load_transfer()
    if run.encoder.get_config().get("code") not in ("action_units", "guide"):
        raise SystemExit(f"bench_transfer_code_readers: {args.model_dir}'s code is learned, not AU intensities: "
                         f"another reader's AUs mean nothing to its decoder")
    judge = load_au_regressor(auto_au_judge(run.image_size) if args.judge == "auto" else args.judge,
                              image_size=run.image_size)
    reader = load_au_regressor(args.reader, image_size=run.image_size) if args.reader else None

    @tf.function(autograph=False, reduce_retracing=True)
    def decode(source, code):
        _, free, _ = run.encoder(source, training=False)
        return tf.cast(run.decoder.with_attention([free, code, source], training=False)[0], tf.float32)

    errors = {}

    def add(key, values):
        errors.setdefault(key, []).append(np.abs(values))

    for batch in make_transfer_dataset(args.data_dir, 32, image_size=run.image_size, allow_resize=False):
        source, exemplar = (tf.constant(np.asarray(batch[r]["image"], np.float32)) for r in ("source", "exemplar"))
        truth = np.asarray(batch["truth"]["action_units"], np.float32)
        codes = {"own code": np.asarray(run.encoder(exemplar, training=False)[0], np.float32), "true AUs": truth}
        if reader is not None:
            codes["reader"] = reader.predict(exemplar).astype(np.float32)
        for name, code in codes.items():
            add(f"decoded with {name}", judge.predict(np.asarray(decode(source, tf.constant(code)))) - truth)
            if name != "true AUs":
                add(f"{name}: error on B", code - truth)
    report = {"model_dir": os.path.abspath(args.model_dir), "reader": args.reader and os.path.abspath(args.reader),
              "judge": judge.path, "transfers": int(sum(len(v) for v in errors["decoded with true AUs"])),
              "au_mae": {key: float(np.concatenate(values).mean()) for key, values in errors.items()}}
    for key, value in report["au_mae"].items():
        print(f"{key:32s} {value:.4f}")
    if args.output:
        os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
        with open(args.output, "w") as handle:
            json.dump(report, handle, indent=2)


if __name__ == "__main__":
    main()
