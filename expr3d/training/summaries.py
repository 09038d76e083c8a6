"""TensorBoard summaries (loss terms, learning rates, flags as text; written with `tf.summary`) and sample grids
saved as PNG.

Grid layouts (one tile per image, 2 px white gutters; drawn by expr3d.imaging.grid):
  - stage "depth": one row per sample source: RGB source | real geometry | estimated geometry G(x) |
    reconstruction G'(G(x)).
  - stage "gan": two rows per sample source: [source | G_rgb(x, c) for each of the eight expressions] and under it
    [real geometry of the source | estimated geometry G_depth(G_rgb(x, c)) of each output] (the second row is left
    out when the depth network was never trained, i.e. a plain StarGAN run without a stage-1 checkpoint). With an
    attention generator (`--generator=attention`) a row of its edit masks [empty | mask of each output] comes between.
Geometry tiles show depth (the channel mean) as grey levels, white = nearest; normals as RGB = (n + 1) / 2.
Edit-mask tiles are grey levels: black = source pixel copied, white = fully generated.
`render_samples` puts a white header strip over every grid naming its columns (OpenCV text): "source" then the
eight target expressions (stage "gan"), or source | real | estimated | reconstruction (stage "depth"). The sources are
different identities (`expr3d.training.inputs.sample_batch`).
"""

import os

import numpy as np
import tensorflow as tf

from expr3d import storage
from expr3d.imaging.grid import tile_grid, with_column_labels
from expr3d.imaging.pixels import to_uint8
from expr3d.labels import ACTION_UNITS, EXPRESSIONS, NUM_ACTION_UNITS


def geometry_tile(geometry, kind):
    """A 3-channel geometry map [S,S,3] in [-1, 1] as an RGB uint8 tile."""
    geometry = np.asarray(geometry, np.float32)
    if kind == "depth":
        depth = geometry.mean(axis=-1, keepdims=True)
        return to_uint8(np.repeat(depth, 3, axis=-1))
    return to_uint8(geometry)


def image_tile(image):
    """An RGB image [S,S,3] in [-1, 1] as a uint8 tile."""
    return to_uint8(image, dtype=np.float32)


def mask_tile(mask):
    """An edit mask [S,S,1] in [0, 1] as an RGB uint8 tile (black = source copied, white = generated)."""
    mask = np.clip(np.asarray(mask, np.float32), 0.0, 1.0)
    return np.repeat(np.round(mask * 255.0).astype(np.uint8), 3, axis=-1)


def gan_column_labels():
    return ("source",) + tuple(EXPRESSIONS)


# The AU-control grid's columns (--condition=action_units): no AU, then single AUs at full intensity that show in a
# face (smile, brow lowerer, inner brow raiser, jaw drop, lip corner depressor, nose wrinkler, outer brow raiser).
SAMPLE_ACTION_UNITS = (12, 4, 1, 26, 15, 9, 2)


def action_unit_columns():
    """(labels, conditions `[columns, A]`) of the AU-control sample grid."""
    conditions = np.zeros((1 + len(SAMPLE_ACTION_UNITS), NUM_ACTION_UNITS), np.float32)
    for column, unit in enumerate(SAMPLE_ACTION_UNITS, start=1):
        conditions[column, ACTION_UNITS.index(unit)] = 1.0
    return ("source", "no AU") + tuple(f"AU{unit}" for unit in SAMPLE_ACTION_UNITS), conditions


def depth_column_labels(kind):
    return ("source", f"real {kind}", f"estimated {kind}", "reconstruction")


def depth_stage_grid(samples, outputs, kind):
    rows = []
    for i in range(len(samples["image"])):
        rows.append([
            image_tile(samples["image"][i]),
            geometry_tile(samples["geometry"][i], kind),
            geometry_tile(outputs["geometry"][i], kind),
            image_tile(outputs["reconstruction"][i]),
        ])
    return tile_grid(rows)


def gan_stage_grid(samples, outputs_per_class, kind, show_geometry=True):
    """`outputs_per_class[c]` = {"image": [N,S,S,3], "geometry": [N,S,S,3]} for target class c, plus
    "attention" [N,S,S,1] (edit masks) from an attention generator."""
    rows = []
    for i in range(len(samples["image"])):
        rows.append([image_tile(samples["image"][i])] + [image_tile(out["image"][i]) for out in outputs_per_class])
        if "attention" in outputs_per_class[0]:
            rows.append([None] + [mask_tile(out["attention"][i]) for out in outputs_per_class])
        if show_geometry:
            rows.append(
                [geometry_tile(samples["geometry"][i], kind)]
                + [geometry_tile(out["geometry"][i], kind) for out in outputs_per_class]
            )
    return tile_grid(rows)


TRANSFER_COLUMNS = ("face", "exemplar", "swapped", "mask", "self-rec")


def transfer_stage_grid(samples, outputs):
    """One row per sample face: the face, its exemplar (the previous row's face), the face with the exemplar's
    expression ("swapped"), the decoder's edit mask and the face's self-reconstruction."""
    rows = []
    for i in range(len(samples["image"])):
        rows.append([image_tile(samples["image"][i]), image_tile(outputs["exemplar"][i]),
                     image_tile(outputs["swapped"][i]), mask_tile(outputs["attention"][i]),
                     image_tile(outputs["reconstruction"][i])])
    return tile_grid(rows)


def write_png(path, image):
    storage.atomic_write_bytes(path, tf.io.encode_png(image).numpy())


def flags_markdown(values):
    lines = ["| flag | value |", "|---|---|"]
    for name in sorted(values):
        lines.append(f"| --{name} | `{values[name]}` |")
    return "\n".join(lines)


class RunSummaries:
    """One TensorBoard writer per stage (`<model_dir>/logs/<stage>`) plus PNG copies of the sample grids.

    Tags: `<stage>/loss/<term>` and `<stage>/learning_rate/<network>` (scalars), `<stage>/samples` (the uint8 grid,
    an image), `<stage>/flags` (a markdown table, text). Runs written before the switch to `tf.summary` used the
    same tags, so their curves continue.

    Args:
        model_dir: the run directory.
        stage: "depth" or "gan".

    Example:
    ```python
    summaries = RunSummaries(model_dir, "gan")
    summaries.scalars({"g_rec": 0.3}, step=100, learning_rates={"g_rgb": 1e-4})
    ```
    """

    def __init__(self, model_dir, stage):
        self.stage = stage
        self.log_dir = os.path.join(model_dir, "logs", stage)
        self.sample_dir = os.path.join(model_dir, "samples")
        os.makedirs(self.sample_dir, exist_ok=True)
        self.writer = tf.summary.create_file_writer(self.log_dir)

    def scalars(self, logs, step, learning_rates=None):
        with self.writer.as_default(step=step):
            for name, value in logs.items():
                tf.summary.scalar(f"{self.stage}/loss/{name}", float(value))
            for name, value in (learning_rates or {}).items():
                tf.summary.scalar(f"{self.stage}/learning_rate/{name}", float(value))

    def flags_text(self, values, step=0):
        with self.writer.as_default(step=step):
            tf.summary.text(f"{self.stage}/flags", flags_markdown(values))

    def grid(self, image, step):
        """Log the uint8 grid to TensorBoard and save `samples/<stage>-<step>.png` (+ `<stage>-latest.png`)."""
        with self.writer.as_default(step=step):
            tf.summary.image(f"{self.stage}/samples", image[np.newaxis], max_outputs=1)
        path = os.path.join(self.sample_dir, f"{self.stage}-{step:09d}.png")
        write_png(path, image)
        write_png(os.path.join(self.sample_dir, f"{self.stage}-latest.png"), image)
        return path

    def flush(self):
        self.writer.flush()

    def close(self):
        self.writer.close()


def render_samples(trainer, samples, kind, show_geometry=True):
    """The sample grid (uint8) of `trainer` (a DepthPretrainer, DepthGuidedStarGAN or ExpressionTransferTrainer) on
    the fixed `samples`."""
    image = tf.constant(samples["image"])
    size = int(image.shape[1])
    if trainer.stage == "depth":
        outputs = {k: v.numpy() for k, v in trainer.sample_outputs(image).items()}
        return with_column_labels(depth_stage_grid(samples, outputs, kind), depth_column_labels(kind), size)
    if trainer.stage == "transfer":
        outputs = {k: v.numpy() for k, v in trainer.sample_outputs(image).items()}
        return with_column_labels(transfer_stage_grid(samples, outputs), TRANSFER_COLUMNS, size)
    count = image.shape[0]
    if getattr(trainer, "condition", "expression") == "action_units":
        labels, conditions = action_unit_columns()
        targets = [tf.repeat(tf.constant(condition[None]), count, axis=0) for condition in conditions]
    else:
        labels, targets = gan_column_labels(), [tf.fill([count], c) for c in range(len(EXPRESSIONS))]
    per_class = [{k: v.numpy() for k, v in trainer.sample_outputs(image, target).items()} for target in targets]
    return with_column_labels(gan_stage_grid(samples, per_class, kind, show_geometry=show_geometry), labels, size)
