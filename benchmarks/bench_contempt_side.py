r"""Is a run's contempt one-sided, like the true renders?

    python benchmarks/bench_contempt_side.py --model_dir=runs/synthetic --data_dir=data/synthetic64p \
        [--max_examples=800] [--output=benchmarks/out/contempt_side.json]

Contempt is one-sided (AU12 + AU14 on one side), and the procedural renderer draws the side at random. For every
unseen neutral test source s whose contempt render t* exists (paired synthetic data), and the run's G(s, contempt):
the share of the change |x - s| (channel mean) that lies right of the face mask's centre in the picture. A one-sided
change scores near 0 or 1, a two-sided one 0.5. Reported: the medians of the one-sidedness |2 share - 1| of the truth
and of the output, and the output's share of faces changed mostly on the picture's left.

Session 25 (session 24's main command, seed 0, 100 sources): one-sidedness of the truth 0.91, of the output 0.21 —
the paired terms had learnt the average of both sides (`--contempt_side`, docs/training.md). Accuracy figures, not timings: nothing here depends on machine load.
"""
import argparse
import os
import sys

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)


def right_shares(source, changed, mask):
    """Per face, the share of |changed - source| (channel mean) right of the face mask's centre; `[N, H, W, C]`
    images, `[N, H, W, 1]` masks."""
    columns = np.arange(source.shape[2], dtype=np.float64)[None, None, :]
    weights = mask[..., 0].astype(np.float64)
    centre = (weights * columns).sum(axis=(1, 2)) / np.maximum(weights.sum(axis=(1, 2)), 1.0)
    change = np.abs(changed - source).mean(axis=-1)
    right = (change * (columns > centre[:, None, None])).sum(axis=(1, 2))
    return right / np.maximum(change.sum(axis=(1, 2)), 1e-12)


def measure(model_dir, data_dir, max_examples=None, batch_size=100):
    from expr3d.labels import EXPRESSIONS
    from expr3d.metrics.context import EvaluationContext
    from expr3d.metrics.paired import build_paired_index

    contempt = EXPRESSIONS.index("contempt")
    context = EvaluationContext(model_dir, data_dir, {"batch_size": batch_size, "max_examples": max_examples})
    batches = list(context.test_batches())
    index = build_paired_index(batches)
    if not len(index):
        raise SystemExit(f"--data_dir={data_dir}: the test split has no pair ids (paired synthetic data needed)")
    truth_shares, output_shares = [], []
    for batch in batches:
        rows, truth, _, _ = index.lookup(batch.pair_id, np.full(batch.size, contempt))
        neutral = batch.expression[rows] == 0
        rows, truth = rows[neutral], truth[neutral]
        if not len(rows):
            continue
        source, mask = batch.image[rows], batch.mask[rows]
        fake = np.asarray(context.network_call("translate", source, context.one_hot(np.full(len(rows), contempt))))
        truth_shares += list(right_shares(source, truth, mask))
        output_shares += list(right_shares(source, fake, mask))
    truth_shares, output_shares = np.array(truth_shares), np.array(output_shares)
    if not len(truth_shares):
        raise SystemExit(f"--data_dir={data_dir}: no neutral test source with a contempt render")
    return {
        "model_dir": model_dir, "data_dir": data_dir, "faces": int(len(truth_shares)),
        "truth_one_sidedness_median": float(np.median(np.abs(2 * truth_shares - 1))),
        "output_one_sidedness_median": float(np.median(np.abs(2 * output_shares - 1))),
        "output_mostly_left_share": float(np.mean(output_shares < 0.5)),
        "truth_mostly_left_share": float(np.mean(truth_shares < 0.5)),
        "truth_right_share": [round(float(v), 4) for v in truth_shares],
        "output_right_share": [round(float(v), 4) for v in output_shares],
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model_dir", required=True)
    parser.add_argument("--data_dir", required=True)
    parser.add_argument("--max_examples", type=int, default=None)
    parser.add_argument("--output", default=None, help="write the figures here as JSON")
    args = parser.parse_args(argv)
    result = measure(args.model_dir, args.data_dir, args.max_examples)
    print(f"{result['faces']} neutral sources to contempt: one-sidedness (|2 right-share - 1|, median) truth "
          f"{result['truth_one_sidedness_median']:.2f}, output {result['output_one_sidedness_median']:.2f}; "
          f"changed mostly on the picture's left: truth {result['truth_mostly_left_share']:.0%}, output "
          f"{result['output_mostly_left_share']:.0%}")
    if args.output:
        from expr3d.storage import atomic_write_json

        atomic_write_json(args.output, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
