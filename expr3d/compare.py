"""Put several evaluated runs in one table and overlay their curves and histograms (the paper's Tables 1 and 3).

    python -m expr3d.compare runs/baseline_seed0 runs/baseline_seed1 runs/depth_seed0 runs/depth_seed1 \
        --output=runs/comparison

Each argument is an evaluation output directory (holding results.json from `python -m expr3d.evaluate`) or a run
directory whose `evaluation/results.json` exists. Runs are grouped by label (`--group=auto`: labels that differ only
by a trailing `_seedN` / `-seedN` form one row, reported as mean ± std over the seeds; `--group=none`: one row per run).
Writes `comparison.md`, `comparison.json` (per-group mean/std/n of every metric) and figures/learning_curves.png
(Fig. 9, losses averaged over a group's seeds) and figures/identity_histogram.png (Fig. 4), when the inputs allow.
"""
import json
import os
import re

import numpy as np

_SEED_SUFFIX = re.compile(r"[_-]seed\d+$")
_SEED = re.compile(r"[_-]seed(\d+)$")

# The metrics of the paired per-seed differences (`--baseline`), each with the direction that is better.
DIFFERENCE_METRICS = (
    ("expression_generation_rate", "expression rate %", +1),
    ("paired_ssim", "paired SSIM", +1),
    ("paired_l1", "paired L1", -1),
    ("background_l1", "background L1", -1),
    ("geometry_target_accuracy", "depth judged as target %", +1),
    ("fid", "FID", -1),
    # Transfer runs (--model=transfer; expr3d.metrics.transfer_evaluation)
    ("au_mae", "AU error vs exemplar", -1),
    ("transfer_ssim", "SSIM vs true transfer", +1),
    ("transfer_l1", "L1 vs true transfer", -1),
    ("depth_l1", "transfer depth L1", -1),
    ("free_r2", "R² of AUs from AU-free map", -1),
    ("code_r2", "R² of AUs from code", +1),
)


def find_results(path):
    """results.json of an evaluation dir or of `RUN/evaluation`; FileNotFoundError naming both places."""
    for candidate in (os.path.join(path, "results.json"), os.path.join(path, "evaluation", "results.json")):
        if os.path.isfile(candidate):
            return candidate
    raise FileNotFoundError(f"{path}: no results.json (looked at {path}/results.json and "
                            f"{path}/evaluation/results.json); run `python -m expr3d.evaluate --model_dir=RUN` first")


def load_results(path):
    results_path = find_results(path)
    try:
        with open(results_path, encoding="utf-8") as f:
            document = json.load(f)
    except ValueError as error:  # not JSON, or not UTF-8
        raise ValueError(f"{results_path} is not a valid results file ({error}); evaluate the run again") from None
    if not isinstance(document, dict):
        raise ValueError(f"{results_path} is not a results file written by `python -m expr3d.evaluate`")
    document["_results_dir"] = os.path.dirname(results_path)
    return document


def group_label(label, mode="auto"):
    return _SEED_SUFFIX.sub("", label) if mode == "auto" else label


def group_documents(documents, mode="auto"):
    """[(group label, [documents])] in first-appearance order."""
    groups = {}
    for document in documents:
        groups.setdefault(group_label(document.get("label", "run"), mode), []).append(document)
    return list(groups.items())


def summarize(groups):
    """{group: {metric key: {"mean", "std", "n", "values"}}} over every numeric metric."""
    from expr3d.metrics.report import flatten_metrics

    out = {}
    for label, documents in groups:
        flats = [flatten_metrics(d) for d in documents]
        keys = sorted({k for f in flats for k, v in f.items() if isinstance(v, (int, float)) and v is not None})
        entry = {}
        for key in keys:
            values = [f[key] for f in flats if isinstance(f.get(key), (int, float)) and f.get(key) is not None]
            entry[key] = {"mean": float(np.mean(values)), "std": float(np.std(values, ddof=1)) if len(values) > 1
                          else 0.0, "n": len(values), "values": values}
        out[label] = entry
    return out


def paired_differences(groups, baseline):
    """Per-seed differences of every other group against the `baseline` group, on the seeds both have.

    {group: {metric: {"mean", "std", "n", "t", "better", "differences", "seeds"}}} for `DIFFERENCE_METRICS` present
    in both; `t` is the paired t statistic mean / (std / sqrt(n)) (None with n < 2 or std 0), `better` how many seeds
    moved in the metric's better direction. UsageError (a ValueError) naming the group when `baseline` is not one.
    """
    from expr3d.metrics.report import flatten_metrics

    from expr3d.cli import UsageError  # a ValueError; the CLI reports it as a bad flag (exit 2)

    by_label = dict(groups)
    if baseline not in by_label:
        raise UsageError(f"--baseline={baseline!r} is not one of the compared groups {sorted(by_label)}")

    def per_seed(documents):
        out = {}
        for document in documents:
            match = _SEED.search(document.get("label", ""))
            if match:
                out[int(match.group(1))] = flatten_metrics(document)
        return out

    reference = per_seed(by_label[baseline])
    result = {}
    for label, documents in groups:
        if label == baseline:
            continue
        runs = per_seed(documents)
        seeds = sorted(set(runs) & set(reference))
        entry = {}
        for key, _, direction in DIFFERENCE_METRICS:
            pairs = [(seed, runs[seed].get(key), reference[seed].get(key)) for seed in seeds]
            pairs = [(seed, a, b) for seed, a, b in pairs if isinstance(a, (int, float)) and isinstance(b, (int, float))]
            if not pairs:
                continue
            differences = np.array([a - b for _, a, b in pairs], dtype=np.float64)
            std = float(np.std(differences, ddof=1)) if len(differences) > 1 else 0.0
            entry[key] = {
                "mean": float(differences.mean()), "std": std, "n": len(differences),
                "t": float(differences.mean() / (std / np.sqrt(len(differences)))) if std > 0 else None,
                "better": int(np.sum(differences * direction > 0)),
                "differences": differences.tolist(), "seeds": [seed for seed, _, _ in pairs],
            }
        result[label] = entry
    return result


def differences_markdown(differences, baseline):
    """The `paired_differences` as a markdown table: mean ± std (t, seeds better / seeds) per metric."""
    keys = [(key, name) for key, name, _ in DIFFERENCE_METRICS if any(key in e for e in differences.values())]
    if not keys:
        return ""
    lines = [f"## Paired per-seed differences against {baseline}", "",
             "Each cell: mean ± std over seeds of (variant − baseline) on the same seed, the paired t statistic, and "
             "how many seeds moved in the better direction.", "",
             "| variant | " + " | ".join(name for _, name in keys) + " |",
             "|---|" + "---|" * len(keys)]
    for label, entry in differences.items():
        cells = []
        for key, _ in keys:
            if key not in entry:
                cells.append("–")
                continue
            d = entry[key]
            digits = 4 if abs(d["mean"]) < 0.1 and key != "fid" else 2
            t = f"t {d['t']:.1f}" if d["t"] is not None else "t –"
            cells.append(f"{d['mean']:+.{digits}f} ± {d['std']:.{digits}f} ({t}, {d['better']}/{d['n']})")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _mean_curves(scalar_dicts):
    """Average tags over runs on the steps every run has."""
    if len(scalar_dicts) == 1:
        return scalar_dicts[0]
    out = {}
    for tag in set.intersection(*(set(s) for s in scalar_dicts)):
        common = set.intersection(*(set(s[tag][0].tolist()) for s in scalar_dicts))
        if not common:
            continue
        steps = np.asarray(sorted(common))
        values = np.mean([[dict(zip(s[tag][0].tolist(), s[tag][1]))[int(k)] for k in steps] for s in scalar_dicts],
                         axis=0)
        out[tag] = (steps, values)
    return out


# Everything `compare` writes into --output.
COMPARE_WRITES = ("comparison.json", "comparison.md", "figures/learning_curves.png", "figures/identity_histogram.png")


def compare(paths, output, group="auto", title="Comparison", overwrite=False, baseline=None):
    """Compare the evaluations at `paths`; writes into `output` and returns the summary dict.

    With `baseline` (a group label), also the paired per-seed differences of every other group against it.

    What an earlier comparison wrote in `output` is replaced only with `overwrite`; nothing else there is touched.
    """
    from expr3d import outputs, storage
    from expr3d.run_dir import RunDir
    from expr3d.metrics import figures, report

    folder = outputs.OutputFolder(output, "--output", "expr3d.compare")
    legacy = [n for n in COMPARE_WRITES if os.path.isfile(os.path.join(output, n))] if (
        os.path.isfile(os.path.join(output, "comparison.json")) and not folder.written()) else []
    replaced = folder.check(overwrite, will_write=COMPARE_WRITES, legacy=legacy,
                            inputs=[("input", p) for p in paths])
    documents = [load_results(p) for p in paths]
    groups = group_documents(documents, group)
    differences = paired_differences(groups, baseline) if baseline else None  # a wrong name fails before writing
    folder.adopt(legacy)
    folder.remove_written(replaced)
    folder.makedirs("figures")
    folder.record(*COMPARE_WRITES)
    figure_dir = os.path.join(output, "figures")
    written = []
    curves = {}
    for label, docs in groups:
        scalars = [figures.read_scalars(RunDir(d["model_dir"]).logs_dir) for d in docs]
        scalars = [s for s in scalars if s]
        if scalars:
            generator_terms = {tag: v for tag, v in _mean_curves(scalars).items()
                               if re.search(r"loss/(g_rec|g_cls|d_cls|g_adv|d_adv|t_rec|t_au|t_adv|t_swap|dr_adv)$",
                                            tag)}
            curves[label] = generator_terms
    if curves:
        written.append(figures.learning_curves_figure(curves, os.path.join(figure_dir, "learning_curves.png"),
                                                      title=f"{title}: learning curves (mean over seeds)"))
    distances = {}
    for label, docs in groups:
        values = []
        for d in docs:
            arrays_path = os.path.join(d["_results_dir"], "arrays.npz")
            if os.path.isfile(arrays_path):
                with np.load(arrays_path) as arrays:
                    if "identity/l2" in arrays:
                        values.append(arrays["identity/l2"])
        if values:
            distances[label] = np.concatenate(values)
    if distances:
        written.append(figures.histogram_figure(distances, os.path.join(figure_dir, "identity_histogram.png")))
    written = [os.path.relpath(p, output) for p in written if p]
    summary = {"groups": summarize(groups), "runs": {label: [d["model_dir"] for d in docs] for label, docs in groups},
               "figures": written}
    markdown = report.comparison_markdown(groups, title=title)
    if differences is not None:
        summary["paired_differences"] = {"baseline": baseline, "groups": differences}
        markdown += "\n" + differences_markdown(differences, baseline)
    if written:
        markdown += "\n## Figures\n\n" + "\n".join(f"![{p}]({p})" for p in written) + "\n"
    storage.atomic_write_json(os.path.join(output, "comparison.json"), summary)
    storage.atomic_write_bytes(os.path.join(output, "comparison.md"), markdown.encode("utf-8"))
    folder.remove_written([n for n in folder.written() if not os.path.exists(os.path.join(output, n))])
    return summary


def define_flags():
    """Define the CLI flags (here, not at import, so several CLIs can be imported in one process)."""
    from absl import flags

    flags.DEFINE_string("output", "comparison", "directory for comparison.md, comparison.json and figures/")
    flags.DEFINE_enum("group", "auto", ["auto", "none"], "auto: runs whose labels differ only by _seedN form a row")
    flags.DEFINE_string("title", "Comparison", "title of the table")
    flags.DEFINE_boolean("overwrite", False, "replace what an earlier comparison wrote in --output (only its files)")
    flags.DEFINE_string("baseline", None, "a group label (e.g. baseline): add the paired per-seed differences of every "
                                          "other group against it (runs matched by their _seedN)")


def main(argv):
    from absl import flags

    from expr3d import cli

    paths = argv[1:]
    if not paths:
        raise cli.UsageError("no evaluation given: python -m expr3d.compare EVAL_OR_RUN_DIR [...] --output=DIR")
    f = flags.FLAGS
    summary = compare(paths, f.output, group=f.group, title=f.title, overwrite=f.overwrite, baseline=f.baseline)
    with open(os.path.join(f.output, "comparison.md"), encoding="utf-8") as handle:
        print(handle.read())
    del summary
    return 0


def run_cli():
    """`python -m expr3d.compare` and the `expr3d-compare` console script."""
    from expr3d import cli

    define_flags()
    cli.run(main, "expr3d.compare")


if __name__ == "__main__":
    run_cli()
