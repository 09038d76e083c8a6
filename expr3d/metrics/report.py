"""results.md tables in the layout of the paper's Table 1 (method | geometry | conf. penalty | acc % | FID | PSNR |
SSIM), followed by the metrics the paper does not have (KID, identity, geometry consistency, paired ground truth,
background preservation, and the judge's accuracy on the real test faces that bounds the expression rate).

For several runs (`expr3d.compare`) each cell is `mean ± std (n)` over the runs of a group (seeds of one variant).
"""
import numpy as np

# (column header, results key, decimals)
TABLE1_COLUMNS = (("acc %", "expression_generation_rate", 1), ("FID", "fid", 2), ("PSNR", "psnr", 2),
                  ("SSIM", "ssim", 3))
EXTRA_COLUMNS = (("KID", "kid", 4), ("identity L2", "identity_l2", 3), ("identity cos", "identity_cosine", 3),
                 ("geom. rigid L1", "geometry_rigid_l1", 3), ("geom. target acc %", "geometry_target_accuracy", 1),
                 ("geom. real-estimate acc %", "geometry_real_estimate_accuracy", 1),
                 ("paired L1", "paired_l1", 3), ("paired PSNR", "paired_psnr", 2), ("paired SSIM", "paired_ssim", 3),
                 ("edit share", "paired_edit_share", 2),
                 ("paired depth L1", "paired_depth_l1", 3), ("background L1", "background_l1", 4),
                 ("judge acc % (real test)", "classifier_accuracy_on_evaluated_test_split", 1))
# A transfer run's (--model=transfer) table: its own metrics (expr3d.metrics.transfer_evaluation).
TRANSFER_COLUMNS = (("AU error vs exemplar", "au_mae", 3), ("SSIM vs truth", "transfer_ssim", 3),
                    ("L1 vs truth", "transfer_l1", 4), ("background L1", "background_l1", 4),
                    ("depth L1", "depth_l1", 3), ("R² free", "free_r2", 3), ("R² code", "code_r2", 3))
TRANSFER_EXTRA_COLUMNS = (("AU error, self-transfer", "au_mae_self_transfer", 3),
                          ("AU error, truth (judge floor)", "au_mae_truth", 3),
                          ("AU error, A unchanged", "au_mae_source", 3), ("depth L1, truth", "depth_l1_truth", 3),
                          ("mask mean", "mask_mean", 3), ("identity cos", "identity_cosine", 3),
                          ("StarGAN AU error", "stargan_au_mae", 3))


def run_geometry(run_flags):
    """"–" for a plain StarGAN run (depth_weight 0), else the guidance map ("depth" / "normals")."""
    if not run_flags:
        return "?"
    if float(run_flags.get("depth_weight", 0.0) or 0.0) == 0.0:
        return "–"
    return str(run_flags.get("geometry", "depth"))


def run_penalty(run_flags):
    """"no", or "yes (critic)" / "yes (generator)": the side the confidence penalty was on (`confidence_penalty_on`;
    runs from before that flag existed had it on the generator)."""
    if not run_flags:
        return "?"
    used = (float(run_flags.get("depth_weight", 0.0) or 0.0) > 0
            and float(run_flags.get("confidence_penalty", 0) or 0) > 0)
    return f"yes ({run_flags.get('confidence_penalty_on', 'generator')})" if used else "no"


def flatten_metrics(document):
    """{key: value} over every metric of a results.json document."""
    out = {}
    for values in document.get("metrics", {}).values():
        out.update(values)
    return out


def _cell(values, decimals):
    values = [v for v in values if isinstance(v, (int, float)) and v is not None and np.isfinite(v)]
    if not values:
        return "–"
    if len(values) == 1:
        return f"{values[0]:.{decimals}f}"
    return f"{np.mean(values):.{decimals}f} ± {np.std(values, ddof=1):.{decimals}f} (n={len(values)})"


def table(rows, columns, head=("method", "geometry", "conf. penalty")):
    """Markdown table; `rows` = [(leading cells tuple, [flat metric dicts of the group's runs])]."""
    lines = ["| " + " | ".join(list(head) + [c[0] for c in columns]) + " |",
             "|" + "---|" * (len(head) + len(columns))]
    for lead, runs in rows:
        cells = [_cell([r.get(key) for r in runs], decimals) for _, key, decimals in columns]
        lines.append("| " + " | ".join(list(lead) + cells) + " |")
    return "\n".join(lines)


def _used_columns(columns, flats):
    return [c for c in columns if any(c[1] in f for f in flats)]


def evaluation_markdown(document):
    """results.md of one evaluation."""
    flat = flatten_metrics(document)
    run = document.get("run", {})
    lead = (document.get("label", "run"), run.get("geometry", "?"), run.get("confidence_penalty", "?"))
    counts = document.get("counts", {})
    lines = [f"# Evaluation of {document.get('label')}", "",
             f"Run `{document.get('model_dir')}` (step {run.get('step')}), data `{document.get('data_dir')}`: "
             f"{counts.get('test_images')} test images x {len(counts.get('targets', []))} targets = "
             f"{counts.get('translations')} translations.", "",
             "## Table 1 layout", "", table([(lead, [flat])], TABLE1_COLUMNS), ""]
    extra = _used_columns(EXTRA_COLUMNS, [flat])
    if extra:
        lines += ["## Further metrics", "", table([(lead, [flat])], extra), ""]
    lines += ["## All values", "", "| metric | value |", "|---|---|"]
    for key, value in sorted(flat.items()):
        lines.append(f"| {key} | {value:.4f} |" if isinstance(value, float) else f"| {key} | {value} |")
    if document.get("skipped"):
        lines += ["", "## Skipped", ""] + [f"- **{k}**: {v}" for k, v in document["skipped"].items()]
    if document.get("warnings"):
        lines += ["", "## Warnings", ""] + [f"- {w}" for w in document["warnings"]]
    timing = document.get("timing_seconds", {})
    if timing:
        lines += ["", "## Time (s)", "", "| part | seconds |", "|---|---|"]
        lines += [f"| {k} | {v:.1f} |" for k, v in timing.items() if isinstance(v, (int, float))]
    lines += ["", "FID/KID are comparable only between evaluations with the same feature extractor "
              f"({flat.get('fid_feature_extractor', flat.get('kid_feature_extractor', 'n/a'))}) and sample counts.",
              ""]
    if document.get("figures"):
        lines += ["## Figures", ""] + [f"![{p}]({p})" for p in document["figures"]] + [""]
    return "\n".join(lines)


def comparison_markdown(groups, title="Comparison"):
    """`groups` = [(label, [results documents])] -> Table 1 (and Table 3 shape: add λ_depth) + further metrics."""
    rows, flats = [], []
    transfer = any(d.get("family") == "transfer" for _, documents in groups for d in documents)
    for label, documents in groups:
        run = documents[0].get("run", {})
        flags = run.get("flags", {}) or {}
        # A transfer evaluation records the run's flags only: the geometry and penalty cells come from them.
        lead = (label, run.get("geometry", run_geometry(flags) if transfer else "?"),
                run.get("confidence_penalty", run_penalty(flags) if transfer else "?"),
                str(flags.get("depth_weight", "?")), str(len(documents)))
        group_flats = [flatten_metrics(d) for d in documents]
        flats += group_flats
        rows.append((lead, group_flats))
    head = ("method", "geometry", "conf. penalty", "λ_depth", "runs")
    main, further = (TRANSFER_COLUMNS, TRANSFER_EXTRA_COLUMNS) if transfer else (TABLE1_COLUMNS, EXTRA_COLUMNS)
    lines = [f"# {title}", "", "Cells are mean ± sample std over the runs of a row (n = runs with the value).", "",
             table(rows, main, head), ""]
    extra = _used_columns(further, flats)
    if extra:
        lines += ["## Further metrics", "", table(rows, extra, head), ""]
    extractors = sorted({f.get("fid_feature_extractor") for f in flats if f.get("fid_feature_extractor")})
    if extractors:
        lines += ["FID/KID features: " + "; ".join(extractors) + (
            " — MIXED extractors: these FID/KID values are not comparable across rows" if len(extractors) > 1
            else "" if "comparable" in extractors[0]
            else " (comparable only with evaluations that used the same extractor)"), ""]
    lines += ["## Runs", ""]
    for label, documents in groups:
        lines += [f"- {label}: " + ", ".join(f"`{d.get('model_dir')}`" for d in documents)]
    return "\n".join(lines) + "\n"
