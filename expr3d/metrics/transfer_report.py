"""The transfer evaluation's report: results.md (the issue's targets beside each figure) and its figures
(`expr3d.metrics.transfer_evaluation` computes the document they read)."""
import os

import numpy as np

from expr3d.labels import ACTION_UNITS, NUM_ACTION_UNITS


def transfer_markdown(document):
    m = document["metrics"]
    lines = [f"# Transfer evaluation: {document['label']}", "",
             f"Run `{document['model_dir']}` (step {document['run'].get('step')}), data `{document['data_dir']}`: "
             f"{document['counts']['transfers']} transfers against their true renders."
             + (f" An AU-conditioned run as an exemplar transfer: B's AUs read by "
                f"`{document['route']['exemplar_reader']}`, A drawn by G_rgb with them." if "route" in document
                else ""), "",
             "| figure | value | baseline / floor | issue #13 target |", "|---|---|---|---|"]

    def row(name, value, other, target):
        lines.append(f"| {name} | {value} | {other} | {target} |")

    if "transfer_paired" in m:
        p = m["transfer_paired"]
        row("SSIM vs truth", f"{p['transfer_ssim']:.3f}", f"A unchanged {p['source_ssim']:.3f}", "≥ 0.85")
        row("L1 vs truth", f"{p['transfer_l1']:.4f}", f"A unchanged {p['source_l1']:.4f}", "≤ 0.06")
        row("background change", f"{p['background_l1']:.4f}", f"truth {p['background_l1_truth']:.4f}", "")
    if "action_units" in m:
        a = m["action_units"]
        row("AU MAE (AU judge)", f"{a['au_mae']:.3f}", f"truth {a['au_mae_truth']:.3f}, A unchanged "
                                                       f"{a['au_mae_source']:.3f}", "≤ 0.10")
        if "au_mae_self_transfer" in a:  # results written before session 22 lack the diagnostic
            row("diagnostic: self-transfer (A with the truth's own code): AU MAE / SSIM",
                f"{a['au_mae_self_transfer']:.3f} / {a['self_transfer_ssim']:.3f}",
                "the decoder's rendering, without the cross-identity code", "")
        if "au_mae_class_mean" in a:  # results before session 36 lack it
            row("diagnostic: B's class's mean AUs (train split) against B's AUs, no image",
                f"{a['au_mae_class_mean']:.3f}", "what B's expression label tells of its AUs at best: the floor of a "
                "label-conditioned generator before rendering", "")
        if "code_au_mae" in a:  # a code that is the AU estimate (--transfer_code=action_units)
            row("diagnostic (the code is the AU estimate): the code's AU error on B / the decoder given B's true AUs",
                f"{a['code_au_mae']:.3f} / {a['au_mae_true_code']:.3f}",
                "the transfer's AU error split between the encoder and the decoder", "")
    if "stargan_comparison" in m:
        s = m["stargan_comparison"]
        row("StarGAN asked for B's class: AU MAE", f"{s['stargan_au_mae']:.3f}",
            f"reduction by transfer {s['au_mae_reduction_percent']:.1f} %", "reduction ≥ 30 %")
        row("StarGAN: SSIM / L1 vs truth", f"{s['stargan_ssim']:.3f} / {s['stargan_l1']:.4f}", "", "")
    if "transfer_depth" in m:
        d = m["transfer_depth"]
        row(f"{d['geometry_kind']} error of G_depth(result)", f"{d['depth_l1']:.4f}",
            f"G_depth(truth) {d['depth_l1_truth']:.4f}, A unchanged {d['depth_l1_source']:.4f}", "")
    if "identity" in m:
        i = m["identity"]
        row("identity cosine distance to A", f"{i['identity_cosine']:.4f}", f"truth {i['identity_cosine_truth']:.4f}",
            "")
    if "disentanglement" in m:
        d = m["disentanglement"]
        row("R² of AUs from AU-free features", f"{d['free_r2']:.3f}",
            f"ridge {d['free_r2_ridge']:.3f}, MLP {d['free_r2_mlp']:.3f}", "≤ 0.05")
        row("R² of AUs from AU-related code", f"{d['code_r2']:.3f}",
            f"ridge {d['code_r2_ridge']:.3f}, MLP {d['code_r2_mlp']:.3f}", "≥ 0.8")
        if "free_map_effect_l1" in d:  # results written before session 33 lack the diagnostic
            row("diagnostic: L1 change of the result with another face's AU-free map / with A's own code",
                f"{d['free_map_effect_l1']:.4f} / {d['code_effect_l1']:.4f}",
                "0 = the decoder ignores that feature", "")
    if document["skipped"]:
        lines += ["", "Skipped:"] + [f"- {k}: {v}" for k, v in document["skipped"].items()]
    return "\n".join(lines) + "\n"


def transfer_figures(document, arrays, directory, per_au):
    from expr3d.imaging.grid import cell_centres, tile_grid
    from expr3d.metrics import figures

    written = {}
    if "samples/source" in arrays:
        columns = [("source", "A"), ("exemplar", "exemplar B"), ("result", "A with B's"), ("mask", "edit mask"),
                   ("truth", "truth"), ("stargan", "StarGAN, B's class")]
        columns = [(k, t) for k, t in columns if f"samples/{k}" in arrays]
        rows = []
        for i in range(len(arrays["samples/source"])):
            row = []
            for key, _ in columns:
                image = arrays[f"samples/{key}"][i]
                row.append(np.repeat(image, 3, axis=-1) if key == "mask" else figures._to_unit(image))
            rows.append(row)
        size = rows[0][0].shape[0]
        gutter = max(1, size // 32)
        plt = figures._pyplot()
        fig, axis = plt.subplots(figsize=(1.2 * len(columns), 1.2 * len(rows) + 0.5))
        axis.imshow(tile_grid(rows, gutter=gutter, background=1.0), interpolation="nearest")
        axis.xaxis.tick_top()
        axis.set_xticks(cell_centres(len(columns), size, gutter), [t for _, t in columns], fontsize=7)
        axis.set_yticks([])
        axis.set_title("exemplar expression transfer against the true render", fontsize=8)
        written["samples"] = figures._save(fig, os.path.join(directory, "transfer_samples.png"))
    if per_au:
        plt = figures._pyplot()
        fig, axis = plt.subplots(figsize=(9, 3))
        names = [("result", "transfer"), ("stargan", "StarGAN, B's class"), ("source", "A unchanged"),
                 ("truth", "true render (judge's floor)")]
        names = [(k, t) for k, t in names if k in per_au]
        width = 0.8 / len(names)
        for j, (key, text) in enumerate(names):
            axis.bar(np.arange(NUM_ACTION_UNITS) + (j - (len(names) - 1) / 2) * width, per_au[key], width, label=text)
        axis.set_xticks(np.arange(NUM_ACTION_UNITS), [f"AU{unit}" for unit in ACTION_UNITS], fontsize=7, rotation=45)
        axis.set_ylabel("AU absolute error", fontsize=8)
        axis.set_title("AU error against the exemplar's true intensities, read by the AU judge", fontsize=8)
        axis.legend(fontsize=7)
        written["action_unit_errors"] = figures._save(fig, os.path.join(directory, "action_unit_errors.png"))
    return written



__all__ = ["transfer_figures", "transfer_markdown"]
