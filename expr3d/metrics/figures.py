"""Evaluation figures with matplotlib's Agg backend: the paper's Figs. 4, 5, 8 and 9 for one run or several.

- `confusion_matrix_figure` (Fig. 8): the independent classifier on generated faces, rows = target, row-normalised.
- `learning_curves_figure` (Fig. 9): reconstruction, classification and adversarial losses read from the runs'
  TensorBoard event files (`read_scalars`), one line per run and loss term, lightly smoothed.
- `histogram_figure` (Fig. 4): identity-distance distributions, one per run.
- `sample_grid_figure` (Fig. 5): source | the source translated to each target, with G_depth's depth under each.
"""
import glob
import os
import re

import numpy as np

from expr3d.imaging.grid import cell_centres, tile_grid
from expr3d.labels import EXPRESSIONS
from expr3d.run_dir import RunDir

# Loss terms of the trainer's summaries (tags "<stage>/loss/<term>"), grouped as in the paper's Fig. 9.
CURVE_GROUPS = (
    ("reconstruction", ("g_rec", "gd_rec")),
    ("classification", ("g_cls", "d_cls", "gd_cls", "dd_cls")),
    ("adversarial", ("g_adv", "d_adv", "gd_adv", "dd_adv")),
)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path):
    plt = _pyplot()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = os.path.join(os.path.dirname(os.path.abspath(path)), f".tmp-{os.getpid()}-{os.path.basename(path)}")
    fig.savefig(tmp, dpi=100, format="png", bbox_inches="tight")
    plt.close(fig)
    os.replace(tmp, path)
    return path


def read_scalars(logdir):
    """`{tag: (steps int64[N], values float64[N])}` of every scalar in the TensorBoard event files under `logdir`.

    Reads `tf.compat.v1.Event` records (TF2 `tf.summary` writes scalars as 0-d tensors, TF1 as `simple_value`);
    duplicate steps (a resumed run) keep the last value. Missing directory -> {}.
    """
    import tensorflow as tf

    found = {}
    if not logdir or not os.path.isdir(logdir):
        return {}
    files = sorted(glob.glob(os.path.join(logdir, "**", "*tfevents*"), recursive=True))
    for path in files:
        try:
            for raw in tf.data.TFRecordDataset(path):
                event = tf.compat.v1.Event.FromString(raw.numpy())
                if not event.HasField("summary"):
                    continue
                for value in event.summary.value:
                    if value.HasField("simple_value"):
                        number = float(value.simple_value)
                    elif value.HasField("tensor") and value.tensor.dtype in (tf.float32.as_datatype_enum,
                                                                             tf.float64.as_datatype_enum):
                        array = tf.make_ndarray(value.tensor)
                        if array.size != 1:
                            continue
                        number = float(array.reshape(-1)[0])
                    else:
                        continue
                    found.setdefault(value.tag, {})[int(event.step)] = number
        except tf.errors.DataLossError:
            continue  # a file being written (truncated last record): keep what was read
    out = {}
    for tag, points in found.items():
        steps = np.asarray(sorted(points), np.int64)
        out[tag] = (steps, np.asarray([points[s] for s in steps], np.float64))
    return out


def _smooth(values, weight=0.6):
    out, last = np.empty_like(values), None
    for i, v in enumerate(values):
        last = v if last is None else weight * last + (1 - weight) * v
        out[i] = last
    return out


def curve_tags(scalars, terms):
    """Tags of `scalars` whose last path component is one of `terms` and that lie under a ".../loss/" path."""
    pattern = re.compile(r"(^|/)loss/(%s)$" % "|".join(re.escape(t) for t in terms))
    return sorted(tag for tag in scalars if pattern.search(tag))


LINE_STYLES = ("-", "--", ":", "-.")


def learning_curves_figure(runs, path, title="Learning curves"):
    """Fig. 9: `runs` = {label: scalars from `read_scalars`}; one panel per loss group. Returns the path or None."""
    if not any(curve_tags(s, sum((t for _, t in CURVE_GROUPS), ())) for s in runs.values()):
        return None
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(CURVE_GROUPS), figsize=(5 * len(CURVE_GROUPS), 3.8))
    # One colour per run in every panel, one line style per term: a run's d_ and g_ curves read as a pair, and
    # twelve curves no longer wrap round the ten-colour cycle onto each other.
    palette = plt.get_cmap("tab10" if len(runs) <= 10 else "tab20")
    for axis, (group, terms) in zip(axes, CURVE_GROUPS):
        for index, (label, scalars) in enumerate(runs.items()):
            for tag_index, tag in enumerate(curve_tags(scalars, terms)):
                steps, values = scalars[tag]
                name = tag if len(runs) == 1 else f"{label}: {tag}"
                color = None if len(runs) == 1 else palette(index % palette.N)
                axis.plot(steps, _smooth(values), label=name, linewidth=1.2, color=color,
                          linestyle=LINE_STYLES[tag_index % len(LINE_STYLES)])
        axis.set_title(f"{group} losses")
        axis.set_xlabel("iteration")
        axis.grid(alpha=0.3)
        if axis.lines:
            axis.legend(fontsize=6)
    fig.suptitle(title)
    return _save(fig, path)


def confusion_matrix_figure(confusion, classes, path, title="Expression classifier on generated faces"):
    """Fig. 8: row-normalised confusion matrix (rows = target, columns = predicted) with percentages."""
    plt = _pyplot()
    confusion = np.asarray(confusion, np.float64)
    rows = confusion.sum(axis=1, keepdims=True)
    normalised = np.divide(confusion, rows, out=np.zeros_like(confusion), where=rows > 0)
    fig, axis = plt.subplots(figsize=(1.0 + 0.7 * len(classes), 0.8 + 0.7 * len(classes)))
    axis.imshow(normalised, cmap="Blues", vmin=0, vmax=1)
    for i in range(len(classes)):
        for j in range(len(classes)):
            axis.text(j, i, f"{100 * normalised[i, j]:.0f}", ha="center", va="center", fontsize=8,
                      color="white" if normalised[i, j] > 0.5 else "black")
    axis.set_xticks(range(len(classes)), classes, rotation=45, ha="right")
    axis.set_yticks(range(len(classes)), classes)
    axis.set_xlabel("predicted")
    axis.set_ylabel("target")
    axis.set_title(title, fontsize=9)
    return _save(fig, path)


def histogram_figure(distributions, path, xlabel="identity distance (L2 of embeddings)", title="Identity distance"):
    """Fig. 4: overlaid histograms of `distributions` = {label: values}. Returns the path or None if empty."""
    distributions = {k: np.asarray(v, np.float64) for k, v in distributions.items() if len(v)}
    if not distributions:
        return None
    plt = _pyplot()
    everything = np.concatenate(list(distributions.values()))
    bins = np.linspace(everything.min(), everything.max() + 1e-9, 40)
    fig, axis = plt.subplots(figsize=(6, 4))
    for label, values in distributions.items():
        axis.hist(values, bins=bins, alpha=0.5, density=True, label=f"{label} (mean {values.mean():.3f})")
    axis.set_xlabel(xlabel)
    axis.set_ylabel("density")
    axis.set_title(title)
    axis.legend(fontsize=8)
    return _save(fig, path)


def _to_unit(x):
    return np.clip((np.asarray(x, np.float32) + 1.0) / 2.0, 0.0, 1.0)


def sample_grid_figure(inputs, fakes, targets, path, input_depth=None, fake_depth=None, identities=None):
    """Fig. 5: per sample a row [source | G(x, t) for each target] and, if given, a row of estimated depth under it;
    column labels ("source", then each target's name) along the top, and each row's identity id when given.

    Args: inputs `[N, S, S, 3]`, fakes `[N, T, S, S, 3]` (in [-1, 1]), targets `[T]` class ids, depths `[N(,T), S, S, 1]`,
    identities `[N]` ids (-1 unknown).
    """
    plt = _pyplot()
    inputs, fakes = _to_unit(inputs), _to_unit(fakes)
    n, t, size = len(inputs), fakes.shape[1], inputs.shape[1]
    with_depth = input_depth is not None and fake_depth is not None
    rows_per = 2 if with_depth else 1
    gutter = max(1, size // 32)
    rows = []
    for i in range(n):
        rows.append([inputs[i]] + [fakes[i, j] for j in range(t)])
        if with_depth:
            rows.append([np.repeat(_to_unit(input_depth[i]), 3, axis=-1)]
                        + [np.repeat(_to_unit(fake_depth[i, j]), 3, axis=-1) for j in range(t)])
    grid = tile_grid(rows, gutter=gutter, background=1.0)
    fig, axis = plt.subplots(figsize=(1.1 * (t + 1), 1.1 * n * rows_per + 0.6))
    axis.imshow(grid, interpolation="nearest")
    axis.xaxis.tick_top()
    axis.set_xticks(cell_centres(t + 1, size, gutter), ["source"] + [EXPRESSIONS[int(k)] for k in targets], fontsize=7)
    if identities is not None:
        centres = cell_centres(n * rows_per, size, gutter)[::rows_per]
        axis.set_yticks(centres, [f"id {int(k)}" if int(k) >= 0 else "" for k in identities], fontsize=7)
    else:
        axis.set_yticks([])
    axis.set_title("translations" + (" (estimated depth below each face, white = near)" if with_depth else ""),
                   fontsize=8)
    return _save(fig, path)


def evaluation_figures(document, arrays, directory):
    """The figures of one evaluation (whatever its metrics allow); returns paths relative to the output dir."""
    written = []
    label = document.get("label", "run")
    details = document.get("details", {})
    if "expression_generation_rate" in details and details["expression_generation_rate"]:
        d = details["expression_generation_rate"]
        written.append(confusion_matrix_figure(d["confusion"], d["classes"],
                                               os.path.join(directory, "confusion_matrix.png"),
                                               title=f"{label}: classifier on generated faces (% of target row)"))
    scalars = read_scalars(RunDir(document["model_dir"]).logs_dir)
    written.append(learning_curves_figure({label: scalars}, os.path.join(directory, "learning_curves.png"),
                                          title=f"{label}: learning curves"))
    if "identity/l2" in arrays:
        written.append(histogram_figure({label: arrays["identity/l2"]},
                                        os.path.join(directory, "identity_histogram.png")))
    if "samples/inputs" in arrays:
        written.append(sample_grid_figure(arrays["samples/inputs"], arrays["samples/fakes"], arrays["samples/targets"],
                                          os.path.join(directory, "samples.png"), arrays.get("samples/input_depth"),
                                          arrays.get("samples/fake_depth"), arrays.get("samples/identity")))
    base = os.path.dirname(os.path.abspath(directory))
    return [os.path.relpath(p, base) for p in written if p]
