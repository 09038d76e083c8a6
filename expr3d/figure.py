# Over 400 lines: one CLI picture; its input checks, layout and drawing share the Layout and Face types, used only here.
"""The README's comparison picture: unseen test faces, their true renders under a few targets, and what each run made
of them, with the depth under every face (issue #12 §5).

    python -m expr3d.figure --data_dir=data/synthetic64 \
        --run="StarGAN=runs/plain" --run="depth-guided=runs/synthetic" \
        --targets=happy,surprise,fear,disgust --num_identities=4 --output=docs/comparison.png

Layout (one PNG, `tile_grid` cells of the runs' image size with 2 px white gutters, one header strip naming the
columns on top):
    columns   source | for each target: "true <target>", then "<label> <target>" for each --run, in flag order
    rows      per identity two rows: the RGB faces, and under each face its depth
Depth tiles use the procedural dataset's preview colours (`data.synthetic.dataset.depth_preview`: inferno, near =
bright, background black) on ONE fixed scale, the pipeline's normalised depth [-1, 1], so a colour means the same
depth in every tile. The source and true tiles show the dataset's real depth inside the record's face mask; a run's
tiles show its own G_depth's estimate of the face it made (`to_geometry`, the channel mean), black where the estimate
is at the background value (<= ESTIMATE_BACKGROUND). A run without G_depth (plain StarGAN without stage 1) leaves its
depth cells empty. `--depth_model_dir=RUN` instead judges EVERY face with that one run's G_depth - source and true
renders included - so all columns are compared by the same depth network. A G_depth trained on normals
(`--geometry=normals`) shows its normals (RGB = (n + 1) / 2) instead.

Data: `--data_dir`'s test split must be paired (records sharing a `pair_id` are one identity, pose and light under
different expressions: the procedural test split). Rows are the first `--num_identities` pair groups, in test-split
order, of distinct identities that hold every target; each is shown from the first of neutral, happy, ... (the
`labels.EXPRESSIONS` order) that it holds and that is not a target (a target only when nothing else is there). The
split is read at the runs' image size (resized when the data has another); runs of different sizes are refused.

Writes `--output` (a .png) atomically; an existing file only with --overwrite, never one of the inputs. Errors are
one line naming the flag (expr3d.cli): 2 for a bad command line (unknown target, a malformed --run), 1 for inputs it
cannot use (a run without exported models, an unpaired dataset, too few identities, runs of different sizes, an
existing --output).
"""
import dataclasses
import json
import os
import sys

import numpy as np
from absl import flags

from expr3d.labels import EXPRESSIONS, NUM_EXPRESSIONS, expression_id

PROGRAM = "expr3d.figure"
FLAGS = flags.FLAGS
MAX_RUNS = 4
DEFAULT_TARGETS = "happy,surprise,fear,disgust"
DEPTH_SPAN = (-1.0, 1.0)  # the pipeline's normalised depth: +1 nearest, -1 farthest valid point and background
ESTIMATE_BACKGROUND = -0.95  # an estimated depth at or below this is drawn as background (black)
BATCH_SIZE = 64  # test records per read


class FigureError(ValueError):
    """An input the figure cannot use (run directory, dataset, output); the message names the flag."""


# --- flags ----------------------------------------------------------------------------------------------------------

def parse_targets(text):
    """'happy,surprise' -> [1, 3] (labels.EXPRESSIONS ids, RaFD spellings accepted, repeats dropped); ValueError
    naming --targets."""
    names = [name.strip() for name in (text or "").split(",") if name.strip()]
    if not names:
        raise ValueError("--targets is empty; pass expression names like happy,surprise")
    try:
        return list(dict.fromkeys(expression_id(name) for name in names))
    except ValueError as error:
        raise ValueError(f"--targets: {error}") from None


def parse_runs(values):
    """['StarGAN=runs/plain', ...] -> [('StarGAN', 'runs/plain'), ...] in flag order; ValueError naming --run.
    None (the flag not given) is [] here: the required-flag check reports it."""
    runs = []
    for value in values or ():
        label, sep, path = str(value).partition("=")
        label, path = label.strip(), path.strip()
        if not sep or not label or not path:
            raise ValueError(f"--run: {value!r} is not LABEL=RUN_DIR (e.g. --run=depth-guided=runs/synthetic)")
        if label in [known for known, _ in runs]:
            raise ValueError(f"--run: the label {label!r} is given twice; each column needs its own label")
        runs.append((label, path))
    if len(runs) > MAX_RUNS:
        raise ValueError(f"--run: given {len(runs)} times; at most {MAX_RUNS} runs fit one figure")
    return runs


def define_flags():
    """Define the CLI flags (here, not at import, so several CLIs can be imported in one process)."""
    from expr3d import cli

    flags.DEFINE_string("data_dir", None, "Dataset directory with a paired test split (e.g. the procedural faces).")
    flags.DEFINE_multi_string("run", None, "LABEL=RUN_DIR of a run written by `python -m expr3d.train`, 1 to "
                              f"{MAX_RUNS} times, in column order (e.g. --run=StarGAN=runs/plain "
                              "--run=depth-guided=runs/synthetic).")
    flags.DEFINE_string("targets", DEFAULT_TARGETS, "Comma-separated target expressions (neutral, happy, sad, "
                        "surprise, fear, disgust, anger, contempt).")
    flags.DEFINE_integer("num_identities", 4, "Rows: distinct test identities (two rows each: faces and depth).")
    flags.DEFINE_string("depth_model_dir", None, "Optional: a run whose G_depth estimates the depth under EVERY face "
                        "(source and true renders too), so one depth network judges all columns. Default: each "
                        "run's own G_depth, and the dataset's real depth under the source and true renders.")
    flags.DEFINE_string("output", None, "Where to write the figure (a .png file).")
    flags.DEFINE_bool("overwrite", False, "Replace an existing --output (never an input).")
    cli.required("data_dir", "run", "output")
    cli.parses("run", parse_runs)
    cli.parses("targets", parse_targets)
    cli.at_least("num_identities", 1)
    cli.check("output", lambda value: str(value).lower().endswith(".png"), "a file name ending in .png")


# --- layout ---------------------------------------------------------------------------------------------------------

def column_labels(targets, run_labels):
    """The header: "source", then per target "true <target>" and "<label> <target>" for each run."""
    labels = ["source"]
    for target in targets:
        name = EXPRESSIONS[target] if isinstance(target, (int, np.integer)) else str(target)
        labels += [f"true {name}"] + [f"{label} {name}" for label in run_labels]
    return tuple(labels)


@dataclasses.dataclass(frozen=True)
class Layout:
    """Where everything goes: `labels` (one per column), `num_identities` row blocks (RGB row, depth row) of square
    cells `cell` px wide with `GUTTER` px gutters, under a header strip of `header` px."""

    labels: tuple
    num_identities: int
    cell: int

    @property
    def columns(self):
        return len(self.labels)

    @property
    def rows(self):
        return 2 * self.num_identities

    @property
    def header(self):
        from expr3d.imaging.grid import header_height

        return header_height(self.labels, self.cell)

    @property
    def shape(self):
        """(height, width) of the figure in pixels."""
        from expr3d.imaging.grid import GUTTER

        return (self.header + GUTTER + self.rows * (self.cell + GUTTER),
                GUTTER + self.columns * (self.cell + GUTTER))


def layout(targets, run_labels, num_identities, cell):
    """The `Layout` of a figure of these targets (ids or names) and runs (labels, in column order)."""
    return Layout(column_labels(targets, run_labels), int(num_identities), int(cell))


# --- choosing the faces ---------------------------------------------------------------------------------------------

def source_expression(present, targets):
    """The source of a pair group holding the expressions `present`: the first in labels.EXPRESSIONS order (neutral
    first) that is not a target; the first present when every one is a target."""
    ordered = [e for e in range(NUM_EXPRESSIONS) if e in present]
    return next((e for e in ordered if e not in targets), ordered[0])


def choose_groups(groups, targets, count, finished=True):
    """[(pair_id, source expression)] of the first `count` pair groups of distinct identities that hold every target.

    Args:
        groups: [(pair_id, identity, set of expressions present)] in test-split order (identity -1: unknown, each
            such group its own person).
        targets: target expression ids.
        count: groups wanted.
        finished: the whole split was read. If not, a group missing expressions may still get them, so the choice is
            final only when it is made before reaching such a group: None otherwise (read on).
    Returns the choice (fewer than `count` groups only when `finished`), or None.
    """
    chosen, people = [], set()
    for pair, identity, present in groups:
        if len(chosen) == count:
            break
        person = identity if identity >= 0 else ("pair", pair)
        if person in people:
            continue
        if not finished and len(present) < NUM_EXPRESSIONS:
            return None
        if set(targets) <= set(present):
            chosen.append((pair, source_expression(present, targets)))
            people.add(person)
    return chosen if finished or len(chosen) == count else None


@dataclasses.dataclass
class Face:
    """One test record at the runs' size: image [S, S, 3] in [-1, 1], pipeline depth [S, S] in [-1, 1], mask [S, S]."""

    image: np.ndarray
    depth: np.ndarray
    mask: np.ndarray
    key: str


def read_groups(data_dir, card, image_size, targets, count):
    """({pair_id: {expression: Face}} of the chosen groups, [(pair_id, source)]) from the test split, read in order
    until the choice (`choose_groups`) is final."""
    from expr3d.data import pipeline

    dataset = pipeline.make_dataset(data_dir, "test", BATCH_SIZE, image_size=image_size, training=False,
                                    deterministic=True, augment=False, repeat=False, drop_remainder=False)
    groups = {}  # pair_id -> (identity, {expression: Face}), in order of first appearance
    remaining = int(card["splits"]["test"]["num_examples"])
    chosen = None
    for batch in pipeline.checked(dataset.as_numpy_iterator(), data_dir, ["test"]):
        for i in range(len(batch["image"])):
            pair = int(batch["pair_id"][i])
            if pair < 0:
                continue
            _, faces = groups.setdefault(pair, (int(batch["identity"][i]), {}))
            faces.setdefault(int(batch["expression"][i]), Face(
                image=np.array(batch["image"][i], np.float32), depth=np.array(batch["depth"][i, ..., 0], np.float32),
                mask=np.array(batch["mask"][i, ..., 0] > 0.5), key=bytes(batch["key"][i]).decode("utf-8", "replace")))
        remaining -= len(batch["image"])
        # Stop at the count the card promises rather than asking tf.data for its end (expr3d.metrics.context).
        summary = [(pair, identity, set(faces)) for pair, (identity, faces) in groups.items()]
        chosen = choose_groups(summary, targets, count, finished=remaining <= 0)
        if chosen is not None:
            break
    if chosen is None:
        chosen = choose_groups([(pair, identity, set(faces)) for pair, (identity, faces) in groups.items()],
                               targets, count, finished=True)
    if len(chosen) < count:
        names = ", ".join(EXPRESSIONS[t] for t in targets)
        raise FigureError(f"--num_identities={count}: the test split of --data_dir={data_dir} has only {len(chosen)} "
                          f"identities rendered under every target ({names}); ask for fewer, or other --targets")
    return {pair: groups[pair][1] for pair, _ in chosen}, chosen


# --- the inputs, checked before any network loads ------------------------------------------------------------------

def check_dataset(data_dir):
    """The dataset card of `data_dir`; FigureError naming --data_dir when there is none or its test split is not
    paired."""
    from expr3d.data import dataset_card, pairs

    try:
        card = dataset_card.load_card(data_dir)
    except (OSError, ValueError) as error:
        raise FigureError(f"--data_dir: {error}") from None
    if card["splits"].get("test", {}).get("num_examples", 0) <= 0:
        raise FigureError(f"--data_dir={data_dir}: the dataset has no test split (the figure shows unseen test faces)")
    if pairs.paired_count(card, "test") == 0:
        raise FigureError(f"--data_dir={data_dir}: its test split is not paired (no records share a pair_id), so it "
                          f"has no true renders to show; use a procedural dataset (`python -m expr3d.data.synthetic`)")
    return card


def run_image_size(run, config):
    """The image size a run's networks work at (model_config.image_size, else the dataset it was trained on)."""
    from expr3d.run_dir import RunDirError

    size = run.model_config(config).get("image_size") or (config.get("dataset") or {}).get("image_size")
    if not isinstance(size, int) or isinstance(size, bool) or size < 1:
        raise RunDirError(f"{run.config_path}: model_config has no valid image_size ({size!r})")
    return size


def check_run(path, flag, need_rgb=True):
    """(RunDir, image size) of a run directory that has what the figure needs (G_rgb, or G_depth when not
    `need_rgb`); FigureError starting with `flag` (e.g. "--run=StarGAN=runs/plain") otherwise."""
    from expr3d.run_dir import RunDir, RunDirError

    if not os.path.isdir(path):
        raise FigureError(f"{flag}: {path} is not a directory (expected a training run directory with config.json "
                          f"and models/*.keras)")
    run = RunDir(path, flag=flag.split("=", 1)[0])
    try:
        config = run.config()
        if need_rgb:
            run.require_generator("drawn", condition="expression")
        elif not run.has_network("g_depth"):
            raise RunDirError(f"{run.model_path('g_depth')} is missing: {path} has no exported G_depth to judge "
                              f"the depth with")
        size = run_image_size(run, config)
    except RunDirError as error:
        raise FigureError(f"{flag}: {error}") from None
    return run, size


def check_inputs(data_dir, runs, depth_model_dir=None):
    """(card, [(label, RunDir)], image size, depth RunDir or None): every input checked, nothing loaded yet."""
    card = check_dataset(data_dir)
    checked, sizes = [], {}
    for label, path in runs:
        run, size = check_run(path, f"--run={label}={path}")
        checked.append((label, run))
        sizes[label] = size
    if len(set(sizes.values())) > 1:
        listed = ", ".join(f"{label}: {size} px" for label, size in sizes.items())
        raise FigureError(f"--run: the runs work at different image sizes ({listed}); draw runs of one size together")
    size = next(iter(sizes.values()))
    depth_run = None
    if depth_model_dir:
        depth_run, depth_size = check_run(depth_model_dir, f"--depth_model_dir={depth_model_dir}", need_rgb=False)
        if depth_size != size:
            raise FigureError(f"--depth_model_dir={depth_model_dir}: its G_depth works at {depth_size} px, the runs "
                              f"at {size} px; judge them with a depth network of their size")
    return card, checked, size, depth_run


# --- tiles ----------------------------------------------------------------------------------------------------------

def depth_tile(depth, mask):
    """Pipeline depth [S, S] in [-1, 1] (+1 nearest) as an RGB uint8 tile: `depth_preview` colours on the fixed
    DEPTH_SPAN, black outside `mask`."""
    from expr3d.data.synthetic.dataset import depth_preview

    return depth_preview(-np.asarray(depth, np.float32), np.asarray(mask, bool), span=(-DEPTH_SPAN[1], -DEPTH_SPAN[0]))


def estimate_tile(geometry, kind):
    """A G_depth geometry map [S, S, 3] as an RGB uint8 tile: depth (the channel mean) by `depth_tile`, black at the
    background value; normals as RGB = (n + 1) / 2, black where the estimate is no unit vector (the background)."""
    from expr3d.data.synthetic.dataset import normals_preview

    geometry = np.asarray(geometry, np.float32)
    if kind == "depth":
        depth = geometry.mean(axis=-1)
        return depth_tile(depth, depth > ESTIMATE_BACKGROUND)
    return normals_preview(geometry, np.linalg.norm(geometry, axis=-1) > 0.5)


def image_tile(image):
    from expr3d.imaging.pixels import to_uint8

    return to_uint8(image, dtype=np.float32)


# --- the networks ---------------------------------------------------------------------------------------------------

def _numpy(tensor):
    import keras

    return np.asarray(keras.ops.convert_to_numpy(tensor), np.float32)


def translate(run, images, target):
    """G_rgb(images, target) of a loaded `run_dir.Run`, float32 [N, S, S, 3]."""
    num_classes = int(run.config["model_config"].get("num_classes", NUM_EXPRESSIONS))
    condition = np.eye(num_classes, dtype=np.float32)[np.full(len(images), target)]
    return _numpy(run.g_rgb([images, condition], training=False))


def estimate(run, images):
    """G_depth's geometry maps of `images` (float32 [N, S, S, 3])."""
    return _numpy(run.g_depth.to_geometry(images, training=False))


def draw_figure(data_dir, runs, targets, num_identities, depth_model_dir=None, log=None):
    """The figure (uint8 [H, W, 3]) and what it shows ({"columns", "rows", "image_size", ...}).

    Args:
        data_dir: a dataset with a paired test split.
        runs: [(label, run directory)] in column order.
        targets: target expression ids.
        num_identities: row blocks.
        depth_model_dir: a run whose G_depth judges every face, or None (each run's own; real depth for the data).
        log: where notes go (default stderr).
    """
    from expr3d.imaging.grid import tile_grid, with_column_labels

    log = log or (lambda message: print(message, file=sys.stderr, flush=True))
    card, checked, size, depth_run = check_inputs(data_dir, runs, depth_model_dir)
    for label, run in checked:
        classes = int(run.model_config(run.config()).get("num_classes", NUM_EXPRESSIONS))
        if max(targets) >= classes:
            raise FigureError(f"--targets: --run={label}={run.path} has {classes} expression classes, so it cannot "
                              f"translate to {EXPRESSIONS[max(targets)]}")
    faces, chosen = read_groups(data_dir, card, size, targets, num_identities)
    # Notes only once every input has passed (an error stays the one line on stderr).
    if int(card["image_size"]) != size:
        log(f"note: the dataset's images are {card['image_size']} px; the runs work at {size} px, so test images "
            f"are resized")
    if depth_run is None:
        for label, run in checked:
            if not run.has_network("g_depth"):
                log(f"note: --run={label}={run.path} has no G_depth ({run.model_path('g_depth')}): its depth cells "
                    f"are empty; --depth_model_dir=RUN judges every face with one depth network")
    from expr3d.run_dir import RunDirError

    def load(run, flag, need_rgb=True):
        try:
            return run.load_generators(need_rgb=need_rgb)
        except RunDirError as error:  # a models/*.keras file that does not load: named by its path
            raise FigureError(f"{flag}: {error}") from None

    loaded = [(label, load(run, f"--run={label}={run.path}")) for label, run in checked]
    depth_judge = (load(depth_run, f"--depth_model_dir={depth_model_dir}", need_rgb=False)
                   if depth_run is not None else None)

    source_images = np.stack([faces[pair][source].image for pair, source in chosen])
    true_images = {t: np.stack([faces[pair][t].image for pair, _ in chosen]) for t in targets}
    made = {label: {t: translate(run, source_images, t) for t in targets} for label, run in loaded}
    # Depth tiles per column: [N] tiles (None = an empty cell).
    if depth_judge is not None:
        def judged(images):
            return [estimate_tile(g, depth_judge.geometry) for g in estimate(depth_judge, images)]

        source_depth = judged(source_images)
        true_depth = {t: judged(true_images[t]) for t in targets}
    else:
        source_depth = [depth_tile(faces[pair][source].depth, faces[pair][source].mask) for pair, source in chosen]
        true_depth = {t: [depth_tile(faces[pair][t].depth, faces[pair][t].mask) for pair, _ in chosen]
                      for t in targets}
    made_depth = {}
    for label, run in loaded:
        network = depth_judge if depth_judge is not None else run
        made_depth[label] = {t: ([estimate_tile(g, network.geometry) for g in estimate(network, made[label][t])]
                                 if network.g_depth is not None else [None] * len(chosen)) for t in targets}

    sheet = layout(targets, [label for label, _ in runs], num_identities, size)
    rows = []
    for i, (pair, source) in enumerate(chosen):
        rgb, depth = [image_tile(source_images[i])], [source_depth[i]]
        for target in targets:
            rgb.append(image_tile(true_images[target][i]))
            depth.append(true_depth[target][i])
            for label, _ in loaded:
                rgb.append(image_tile(made[label][target][i]))
                depth.append(made_depth[label][target][i])
        rows += [rgb, depth]
    image = with_column_labels(tile_grid(rows), sheet.labels, size)
    assert image.shape[:2] == sheet.shape, (image.shape, sheet.shape)
    details = {"columns": list(sheet.labels), "image_size": size,
               "rows": [{"pair_id": pair, "source": EXPRESSIONS[source], "source_key": faces[pair][source].key}
                        for pair, source in chosen],
               "depth": (f"G_depth of {depth_model_dir} under every face" if depth_judge is not None else
                         "real depth under source and true renders, each run's own G_depth under its faces")}
    return image, details


# --- the command ----------------------------------------------------------------------------------------------------

def main(argv):
    from expr3d import cli, outputs
    from expr3d.imaging import photos

    cli.no_arguments(argv)
    runs = parse_runs(FLAGS.run)
    targets = parse_targets(FLAGS.targets)
    inputs = [("--data_dir", FLAGS.data_dir)] + [("--run", path) for _, path in runs] + \
        [("--depth_model_dir", FLAGS.depth_model_dir)]
    outputs.check_output_file(FLAGS.output, "--output", FLAGS.overwrite, inputs)
    image, details = draw_figure(FLAGS.data_dir, runs, targets, FLAGS.num_identities, FLAGS.depth_model_dir)
    photos.write_image(FLAGS.output, image)
    print(json.dumps({"output": FLAGS.output, "size": [int(image.shape[1]), int(image.shape[0])], **details}))
    return 0


def run_cli():
    """`python -m expr3d.figure` and the `expr3d-figure` console script."""
    from expr3d import cli

    define_flags()
    cli.run(main, PROGRAM)


if __name__ == "__main__":
    run_cli()
