r"""Do expression judges agree on a run's translations, and on real faces changed part of the way?

    python benchmarks/bench_judge_agreement.py --model_dir=runs/synthetic --data_dir=data/synthetic64p \
        --judge=auto=~/.cache/expr3d/judges/KEY/classifier --judge=wide=DIR [--judge=guide=runs/synthetic/guide] \
        [--max_examples=800] --output=benchmarks/out/judges

For every unseen test source s and every other target t whose true render t* exists (paired synthetic data):
- real blends s + a (t* - s) for a in 0.1 ... 1: how far along the true change each judge starts reading t;
- the run's translation G(s, t): each judge's rate, and the share of the true change it carries
  (`expr3d.metrics.paired.edit_share`: <G(s, t) - s, t* - s> / |t* - s|^2).
Judges that agree on the blends but not on the translations disagree about what the generator painted, not about
how faint an edit may be (session 24: the guide's width-16 network against width-32 ones; docs/evaluation.md).

Writes OUTPUT/judge_agreement.json and OUTPUT/judge_agreement.png (rate against a for each judge, the translations'
rate as a marker at their median edit share). Accuracy figures, not timings: nothing here depends on machine load.
"""
import argparse
import os
import sys

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

ALPHAS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)


def measure(model_dir, data_dir, judges, max_examples=None, batch_size=100):
    from expr3d.labels import EXPRESSIONS
    from expr3d.metrics.context import EvaluationContext
    from expr3d.metrics.expression_classifier import load_classifier
    from expr3d.metrics.paired import build_paired_index, edit_share

    context = EvaluationContext(model_dir, data_dir, {"batch_size": batch_size, "max_examples": max_examples})
    loaded = {name: load_classifier(path, image_size=context.image_size) for name, path in judges.items()}
    batches = list(context.test_batches())
    index = build_paired_index(batches)
    if not len(index):
        raise SystemExit(f"--data_dir={data_dir}: the test split has no pair ids (paired synthetic data needed)")
    blend_hits = {name: np.zeros([len(ALPHAS), 8]) for name in loaded}
    generated_hits = {name: np.zeros(8) for name in loaded}
    agreement = np.zeros([len(loaded), len(loaded)])
    counts = np.zeros(8)
    shares = [[] for _ in range(8)]
    for batch in batches:
        for target in range(8):
            rows, truth, _, _ = index.lookup(batch.pair_id, np.full(batch.size, target))
            edited = batch.expression[rows] != target
            rows, truth = rows[edited], truth[edited]
            if not len(rows):
                continue
            source = batch.image[rows]
            fake = context.network_call("translate", source, context.one_hot(np.full(len(rows), target)))
            shares[target] += list(edit_share(source, fake, truth))
            counts[target] += len(rows)
            predictions = []
            for name, judge in loaded.items():
                for i, alpha in enumerate(ALPHAS):
                    blend = source + alpha * (truth - source)
                    blend_hits[name][i, target] += np.sum(np.argmax(judge.predict_logits(blend), -1) == target)
                predicted = np.argmax(judge.predict_logits(fake), -1)
                generated_hits[name][target] += np.sum(predicted == target)
                predictions.append(predicted)
            for i, a in enumerate(predictions):
                for j, b in enumerate(predictions):
                    agreement[i, j] += np.sum(a == b)
    total = counts.sum()
    judges_out = {}
    for name, judge in loaded.items():
        judges_out[name] = {
            "path": judge.path,
            "architecture": {k: judge.metadata.get(k) for k in ("backbone", "width", "stem_stride")},
            "test_accuracy": judge.metadata.get("test_accuracy"),
            "blend_rate": {str(a): float(blend_hits[name][i].sum() / total) for i, a in enumerate(ALPHAS)},
            "generated_rate": float(generated_hits[name].sum() / total),
            "generated_rate_by_target": dict(zip(EXPRESSIONS, (generated_hits[name] / counts).tolist())),
        }
    return {"model_dir": model_dir, "data_dir": data_dir, "translations": int(total), "alphas": list(ALPHAS),
            "edit_share_median": float(np.nanmedian(np.concatenate([np.asarray(s) for s in shares]))),
            "edit_share_median_by_target": {c: float(np.nanmedian(s)) for c, s in zip(EXPRESSIONS, shares)},
            "judges": judges_out, "agreement": (agreement / total).tolist(), "judge_order": list(loaded)}


def figure(result, path):
    from expr3d.metrics.figures import _pyplot, _save

    fig, ax = _pyplot().subplots(figsize=(6.4, 4.2), dpi=120)
    share = result["edit_share_median"]
    for name, judge in result["judges"].items():
        arch = judge["architecture"]
        label = f"{name} (width {arch.get('width')})"
        line, = ax.plot(result["alphas"], [100 * judge["blend_rate"][str(a)] for a in result["alphas"]], "-o",
                        ms=3, label=label)
        ax.plot([share], [100 * judge["generated_rate"]], "*", ms=12, color=line.get_color())
    ax.axvline(share, color="grey", lw=0.8, ls=":")
    ax.plot([], [], "*", ms=10, color="grey", label="the run's translations (x: median edit share)")
    ax.set_xlabel("a of the real blend s + a (true render - s)")
    ax.set_ylabel("judged as the target, %")
    ax.set_title(f"{result['translations']:,} translations of unseen test faces", fontsize=10)
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    _save(fig, path)  # atomic: a temporary file renamed into place


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model_dir", required=True)
    parser.add_argument("--data_dir", required=True)
    parser.add_argument("--judge", action="append", required=True, help="NAME=CLASSIFIER_DIR (repeat)")
    parser.add_argument("--max_examples", type=int, default=None)
    parser.add_argument("--output", required=True)
    args = parser.parse_args()
    judges = {}
    for spec in args.judge:
        name, sep, path = spec.partition("=")
        if not sep or not name or not path:
            parser.error(f"--judge={spec}: expected NAME=CLASSIFIER_DIR")
        judges[name] = os.path.expanduser(path)
    result = measure(args.model_dir, args.data_dir, judges, args.max_examples)
    from expr3d.storage import atomic_write_json

    os.makedirs(args.output, exist_ok=True)
    atomic_write_json(os.path.join(args.output, "judge_agreement.json"), result)
    figure(result, os.path.join(args.output, "judge_agreement.png"))
    print(f"{result['translations']} translations; median edit share {result['edit_share_median']:.2f}")
    for name, judge in result["judges"].items():
        blends = " ".join(f"{a}:{100 * judge['blend_rate'][str(a)]:.0f}" for a in (0.5, 0.6, 0.8, 1.0))
        width = judge["architecture"].get("width")
        print(f"{name:10s} width {width}: translations {100 * judge['generated_rate']:.1f} %; "
              f"real blends (a: %) {blends}")


if __name__ == "__main__":
    main()
