"""Evaluate an AU-conditioned run (`expr3d.train --condition=action_units`, issue #13 item 3): does the face show the
AU intensities it was asked for?

    python -m expr3d.evaluate --model_dir=runs/synthetic_au --data_dir=data/synthetic48 [--au_judge=auto]

Every reading is made by the independent AU judge (`expr3d.metrics.au_judge`: trained on other procedural
identities; `--au_judge=auto` builds or reuses the cached one). Metrics (the test split, `--max_examples` faces):

- `au_dial`: a user's dial. For each face and each of `DIAL_UNITS` (the sample grid's AUs: smile, brow lowerer, ...),
  the face's own true AUs with that one AU set to 0, 0.25, 0.5, 0.75 and 1; the judge reads that AU back. Reported:
  the mean absolute error of the read-back against the dial (issue target <= 0.15), per AU and per level, beside the
  judge's own error on the real faces for those AUs, its read-back of the same AUs on the data's TRUE dial renders
  (`judge_dial_floor_mae`, when the data has them: `--train_dial_renders`: the truth's own reading), the generator
  asked for those same true dials on their base renders (`true_dials_generator_mae`: faces of the train split, so a
  run trained on this data shows whether it learnt the dials at all) and the "ignore the dial" baseline (the source).
- `au_target`: every face asked for another test face's whole AU vector; the judge's mean absolute error over the
  17 AUs, beside the source's (the "do nothing" baseline).
- `au_paired`: procedural paired data only: each face asked for the true AUs of its own render under another
  expression (same identity, pose, light, background); L1 and SSIM against that render, and the change outside the
  dilated face mask.
- `au_sweep`: figures/au_sweep.png, one face, a row per dialled AU, a column per level.

Writes `results.json`, `results.md`, `arrays.npz` and `figures/` into `--output`, as the other evaluations.
"""
import os
import sys
import time

import numpy as np

from expr3d import outputs, storage
from expr3d.metrics import writing
from expr3d.labels import ACTION_UNITS, NUM_ACTION_UNITS
from expr3d.metrics.context import EvaluationError, run_errors
from expr3d.run_dir import RunDir

AU_METRICS = ("au_dial", "au_target", "au_paired", "au_sweep")
DESCRIPTIONS = {
    "au_dial": "single AUs dialled 0..1 on each face, read back by the AU judge: mean absolute error (AU runs)",
    "au_target": "each face asked for another face's 17 AUs: the AU judge's mean absolute error (AU runs)",
    "au_paired": "procedural data: each face asked for the AUs of its own render under another expression; L1 / SSIM "
                 "against that render (AU runs)",
    "au_sweep": "figure: one face, a row per dialled AU, a column per level (AU runs)",
}
DIAL_UNITS = (12, 4, 1, 26, 15, 9, 2)  # as training.summaries.SAMPLE_ACTION_UNITS
DIAL_LEVELS = (0.0, 0.25, 0.5, 0.75, 1.0)
WRITES = ("results.json", "results.md", "arrays.npz", "figures/au_sweep.png")
RESULTS_FORMAT_VERSION = 1


def parse_au_metrics(text):
    """"a,b" (or "all") -> the AU-control metric names; ValueError naming an unknown one."""
    return writing.parse_names(text, AU_METRICS, "--condition=action_units")


def dialled_conditions(true_units, unit, levels=DIAL_LEVELS):
    """`[len(levels) * N, 17]`: each face's own AUs (missing ones 0) with AU `unit` set to each level (level-major)."""
    base = np.nan_to_num(np.clip(np.asarray(true_units, np.float32), 0.0, 1.0))
    column = ACTION_UNITS.index(unit)
    out = np.repeat(base[None], len(levels), axis=0)
    for i, level in enumerate(levels):
        out[i, :, column] = level
    return out.reshape(-1, NUM_ACTION_UNITS)


def _load_test_faces(data_dir, image_size, limit, batch_size):
    """The first `limit` test faces as numpy: image, mask, action_units, action_units_mask, expression, pair_id."""
    from expr3d.data import pipeline

    keys = ("image", "mask", "action_units", "action_units_mask", "expression", "pair_id")
    parts = {key: [] for key in keys}
    count = 0
    for batch in pipeline.make_dataset(data_dir, "test", batch_size, image_size=image_size, training=False):
        for key in keys:
            parts[key].append(np.asarray(batch[key]))
        count += len(parts["image"][-1])
        if limit and count >= limit:
            break
    if not count:
        raise EvaluationError(f"--data_dir={data_dir}: its test split holds no examples; nothing to evaluate")
    faces = {key: np.concatenate(values)[:limit or None] for key, values in parts.items()}
    faces["action_units"] = np.where(faces["action_units_mask"] > 0.5, faces["action_units"], np.nan)
    return faces


def other_render_of_the_same_scene(pair_id, expression):
    """For each face, the index of the next face of its pair group (same pair_id) with another expression, or -1."""
    partner = np.full(len(pair_id), -1)
    groups = {}
    for i, key in enumerate(pair_id):
        if key >= 0:
            groups.setdefault(int(key), []).append(i)
    for members in groups.values():
        for position, i in enumerate(members):
            for j in members[position + 1:] + members[:position]:
                if expression[j] != expression[i]:
                    partner[i] = j
                    break
    return partner


class ActionUnitControlEvaluation:
    def __init__(self, model_dir, data_dir, names, options):
        from expr3d.data import dataset_card

        self.model_dir, self.data_dir, self.names, self.options = model_dir, data_dir, names, options
        run_dir = RunDir(model_dir)
        with run_errors():
            self.run = run_dir.load_generators()
        try:
            self.card = dataset_card.load_card(data_dir)
        except (OSError, ValueError) as error:
            raise EvaluationError(str(error) if data_dir in str(error) else f"--data_dir={data_dir}: {error}")
        from expr3d.metrics import au_judge

        choice = options.get("au_judge") or "auto"
        try:
            if choice == "auto":
                choice = au_judge.auto_au_judge(self.run.image_size, card=self.card,
                                                cache_dir=options.get("judge_cache_dir"))
            self.judge = au_judge.load_au_regressor(choice, image_size=self.run.image_size)
        except (OSError, ValueError) as error:
            raise EvaluationError(f"--au_judge={options.get('au_judge') or 'auto'}: {error}") from None
        import tensorflow as tf

        g_rgb, size = self.run.g_rgb, self.run.image_size
        spec = [tf.TensorSpec([None, size, size, 3], tf.float32), tf.TensorSpec([None, NUM_ACTION_UNITS], tf.float32)]
        self.translate = tf.function(lambda x, c: tf.cast(g_rgb([x, c], training=False), tf.float32),
                                     input_signature=spec, autograph=False)
        limit = int(options.get("max_examples") or 200)
        self.batch_size = int(options.get("batch_size") or 32)
        self.faces = _load_test_faces(data_dir, size, limit, self.batch_size)
        self.skipped, self.arrays, self.timing = {}, {}, {}

    def _generate(self, images, conditions):
        out = []
        for start in range(0, len(images), self.batch_size):
            out.append(np.asarray(self.translate(images[start:start + self.batch_size],
                                                 conditions[start:start + self.batch_size])))
        return np.concatenate(out)

    def _read(self, images):
        return np.concatenate([self.judge.predict(images[s:s + 256]) for s in range(0, len(images), 256)])

    def au_dial(self, bar):
        faces = self.faces
        images, truth = faces["image"], faces["action_units"]
        real_read = self._read(images)
        report, per_level = {}, np.zeros((len(DIAL_UNITS), len(DIAL_LEVELS)))
        errors, floors, baselines = [], [], []
        for row, unit in enumerate(DIAL_UNITS):
            column = ACTION_UNITS.index(unit)
            conditions = dialled_conditions(truth, unit)
            dialled = self._generate(np.tile(images, (len(DIAL_LEVELS), 1, 1, 1)), conditions)
            read = self._read(dialled)[:, column].reshape(len(DIAL_LEVELS), -1)
            levels = np.asarray(DIAL_LEVELS)[:, None]
            error = np.abs(read - levels)
            per_level[row] = error.mean(axis=1)
            errors.append(error.mean())
            known = np.isfinite(truth[:, column])
            floors.append(float(np.abs(real_read[known, column] - truth[known, column]).mean()) if known.any()
                          else float("nan"))
            baselines.append(float(np.abs(real_read[:, column][None] - levels).mean()))
            report[f"au{unit}_mae"] = float(error.mean())
            if bar:
                bar.update(len(images) * len(DIAL_LEVELS))
        self.arrays["au_dial/per_level_error"] = per_level
        report.update(self._true_dial_floor())
        report.update({"dial_mae": float(np.mean(errors)), "judge_floor_mae": float(np.nanmean(floors)),
                       "source_mae": float(np.mean(baselines)), "units": list(DIAL_UNITS), "levels": list(DIAL_LEVELS),
                       "faces": int(len(images))})
        return report

    def _true_dial_floor(self):
        """On the data's TRUE dial renders (its train split; the judge saw other identities): the judge's read-back of
        the DIAL_UNITS on the truth itself (no generator can be scored better), and on the generator asked for the
        same dial of the render each was dialled from (faces the run trained on, when it trained on this data: a
        dial it does not follow there is not learnt, rather than not generalised). Absent when the data holds no dial
        renders."""
        from expr3d.data import dataset_card
        from expr3d.metrics import au_judge

        if not isinstance(self.card.get(dataset_card.DIAL_RENDERS), dict):
            return {"judge_dial_floor_mae": None, "judge_dial_floor_dials": 0, "true_dials_generator_mae": None,
                    "true_dials_source_mae": None}
        import tensorflow as tf

        pairs = au_judge.true_dial_pairs(self.data_dir, units=DIAL_UNITS)
        size = self.run.image_size
        for key in ("base_image", "dial_image"):  # stored at the data's size; read at the run's, as the test faces
            if pairs[key].shape[1] != size:
                pairs[key] = np.asarray(tf.image.resize(pairs[key], (size, size), method="area"), np.float32)
        columns, levels = pairs["column"], pairs["level"]
        truth = au_judge.read_column(self.judge, pairs["dial_image"], columns)
        generated = au_judge.read_column(self.judge, self._generate(pairs["base_image"], pairs["dial_units"]),
                                         columns)
        source = au_judge.read_column(self.judge, pairs["base_image"], columns)
        return {"judge_dial_floor_mae": float(np.abs(truth - levels).mean()),
                "judge_dial_floor_dials": int(len(levels)),
                "true_dials_generator_mae": float(np.abs(generated - levels).mean()),
                "true_dials_source_mae": float(np.abs(source - levels).mean())}

    def au_target(self, bar):
        images, truth = self.faces["image"], self.faces["action_units"]
        order = np.roll(np.arange(len(images)), 1)
        target = truth[order]
        out = self._generate(images, np.nan_to_num(np.clip(target, 0.0, 1.0)).astype(np.float32))
        known = np.isfinite(target)
        read, read_source = self._read(out), self._read(images)
        if bar:
            bar.update(len(images))
        return {"target_mae": float(np.abs(read - target)[known].mean()),
                "source_mae": float(np.abs(read_source - target)[known].mean()), "faces": int(len(images))}

    def au_paired(self, bar):
        from expr3d.metrics import background, image_quality

        faces = self.faces
        partner = other_render_of_the_same_scene(faces["pair_id"], faces["expression"])
        rows = np.flatnonzero(partner >= 0)
        if not len(rows):
            raise _Skip(f"the test split of {self.data_dir} has no pair ids (only procedural data is paired)")
        source, truth = faces["image"][rows], faces["image"][partner[rows]]
        conditions = np.nan_to_num(np.clip(faces["action_units"][partner[rows]], 0.0, 1.0)).astype(np.float32)
        out = self._generate(source, conditions)
        radius = background.dilation_radius(self.options.get("background_dilation"), self.run.image_size)
        region = background.background_region(faces["mask"][rows], radius)
        if bar:
            bar.update(len(rows))
        return {"paired_l1": float(np.mean(image_quality.l1(out, truth))),
                "paired_ssim": float(np.mean(image_quality.ssim(out, truth))),
                "source_l1": float(np.mean(image_quality.l1(source, truth))),
                "source_ssim": float(np.mean(image_quality.ssim(source, truth))),
                "background_l1": float(np.nanmean(background.background_l1(out, source, region))),
                "pairs": int(len(rows))}

    def au_sweep(self, bar):
        face = self.faces["image"][:1]
        truth = self.faces["action_units"][:1]
        grid = [self._generate(np.repeat(face, len(DIAL_LEVELS), axis=0), dialled_conditions(truth, unit))
                for unit in DIAL_UNITS]
        self.arrays["au_sweep/images"] = np.stack(grid)  # [units, levels, S, S, 3]
        self.arrays["au_sweep/source"] = face[0]
        return {"units": list(DIAL_UNITS), "levels": list(DIAL_LEVELS)}


class _Skip(Exception):
    pass


def _sweep_figure(arrays, path):
    from expr3d.imaging.grid import cell_centres, tile_grid
    from expr3d.metrics import figures

    images = figures._to_unit(arrays["au_sweep/images"])
    source = figures._to_unit(arrays["au_sweep/source"])
    rows = [[source] + list(images[i]) for i in range(len(images))]
    size = source.shape[0]
    gutter = max(1, size // 32)
    plt = figures._pyplot()
    fig, axis = plt.subplots(figsize=(1.1 * (len(DIAL_LEVELS) + 1), 1.1 * len(rows) + 0.5))
    axis.imshow(tile_grid(rows, gutter=gutter, background=1.0), interpolation="nearest")
    axis.xaxis.tick_top()
    axis.set_xticks(cell_centres(len(DIAL_LEVELS) + 1, size, gutter),
                    ["source"] + [f"{level:g}" for level in DIAL_LEVELS], fontsize=7)
    axis.set_yticks(cell_centres(len(rows), size, gutter), [f"AU{unit}" for unit in DIAL_UNITS], fontsize=7)
    axis.set_title("one AU dialled from 0 to 1 (the face's other AUs kept)", fontsize=8)
    return figures._save(fig, path)


def _markdown(document):
    m = document["metrics"]
    lines = [f"# AU-control evaluation: {document['label']}", "", "| figure | value | baseline / floor | target |",
             "|---|---|---|---|"]
    if "au_dial" in m:
        d = m["au_dial"]
        true_dials = (f"judge on {d['judge_dial_floor_dials']} TRUE dial renders {d['judge_dial_floor_mae']:.3f}"
                      if d.get("judge_dial_floor_mae") is not None else "no true dial renders in the data")
        lines.append(f"| dialled single AU, read-back MAE | {d['dial_mae']:.3f} | {true_dials}; judge on real faces "
                     f"{d['judge_floor_mae']:.3f}, source unchanged {d['source_mae']:.3f} | ≤ 0.15 |")
        if d.get("true_dials_generator_mae") is not None:
            lines.append(f"| the same, on the data's {d['judge_dial_floor_dials']} TRUE dial pairs (train "
                         f"split: the generator given each dial's base render) | "
                         f"{d['true_dials_generator_mae']:.3f} | "
                         f"the true dial render {d['judge_dial_floor_mae']:.3f}, the base render unchanged "
                         f"{d['true_dials_source_mae']:.3f} | |")
    if "au_target" in m:
        t = m["au_target"]
        lines.append(f"| another face's 17 AUs, MAE | {t['target_mae']:.3f} | source unchanged {t['source_mae']:.3f} | |")
    if "au_paired" in m:
        p = m["au_paired"]
        lines.append(f"| paired: SSIM / L1 vs the true render | {p['paired_ssim']:.3f} / {p['paired_l1']:.4f} | "
                     f"source {p['source_ssim']:.3f} / {p['source_l1']:.4f} | |")
    if document["skipped"]:
        lines += ["", "Skipped:"] + [f"- {k}: {v}" for k, v in document["skipped"].items()]
    return "\n".join(lines) + "\n"


def evaluate_action_unit_control(model_dir, data_dir, metrics, output=None, overwrite=False, progress=True,
                                 **options):
    """Evaluate the AU-conditioned run in `model_dir` on `data_dir`'s test split (module docstring); write and
    return the results document. Options: au_judge, judge_cache_dir, batch_size, max_examples (default 200),
    background_dilation, seed, label."""
    import keras

    from expr3d.progress import Progress

    names = parse_au_metrics(metrics)
    output = output or os.path.join(model_dir, "evaluation")
    folder = outputs.OutputFolder(output, "--output", "expr3d.evaluate")
    replaced = folder.check(overwrite, will_write=WRITES, inputs={"--model_dir": model_dir, "--data_dir": data_dir})
    keras.utils.set_random_seed(int(options.get("seed") or 0))
    started = time.time()
    evaluation = ActionUnitControlEvaluation(model_dir, data_dir, names, options)
    count = len(evaluation.faces["image"])
    work = {"au_dial": count * len(DIAL_UNITS) * len(DIAL_LEVELS), "au_target": count, "au_paired": count,
            "au_sweep": 0}
    bar = Progress(sum(work[n] for n in names), desc="evaluate AU control", unit="translations") if progress else None
    results = {}
    for name in names:
        start = time.perf_counter()
        try:
            results[name] = getattr(evaluation, name)(bar)
        except _Skip as reason:
            evaluation.skipped[name] = str(reason)
            sys.stderr.write(f"metric {name} skipped: {reason}\n")
        evaluation.timing[name] = time.perf_counter() - start
    if bar:
        bar.close()
    evaluation.timing["total"] = time.time() - started
    document = {
        "format_version": RESULTS_FORMAT_VERSION, "family": "stargan", "condition": "action_units",
        "label": options.get("label") or os.path.basename(os.path.normpath(model_dir)),
        "model_dir": os.path.abspath(model_dir), "data_dir": os.path.abspath(data_dir), "metrics_requested": names,
        "metrics": results, "skipped": evaluation.skipped, "counts": {"test_faces": count},
        "au_judge": {"path": os.path.abspath(evaluation.judge.path),
                     "test_mae": evaluation.judge.metadata.get("test_mae")},
        "timing_seconds": evaluation.timing,
        "flags": {"model_dir": model_dir, "data_dir": data_dir, "metrics": ",".join(names), "output": output,
                  **{k: v for k, v in options.items() if v is not None}},
        "versions": storage.library_versions("python", "numpy", "tensorflow", "keras", "matplotlib", "absl",
                                                "expr3d"),
        "run": {"flags": evaluation.run.config.get("flags", {}), "step": evaluation.run.step,
                "model_config": evaluation.run.config.get("model_config")},
    }
    if not results:
        return document

    def draw_figures(directory):
        if "au_sweep/images" not in evaluation.arrays:
            return {}
        return {"au_sweep": _sweep_figure(evaluation.arrays, os.path.join(directory, "au_sweep.png"))}

    return writing.write_results(folder, replaced, WRITES, document, evaluation.arrays, draw_figures, _markdown)


__all__ = ["AU_METRICS", "DESCRIPTIONS", "DIAL_LEVELS", "DIAL_UNITS", "dialled_conditions",
           "evaluate_action_unit_control", "other_render_of_the_same_scene", "parse_au_metrics"]
