"""`python -m expr3d.figure`: the README's comparison picture (issue #12 §5) - layout, the choice of faces, the
depth tiles, one real end-to-end run of the command and its refusals."""
import json
import os
import shutil
import subprocess

import cv2
import numpy as np
import pytest

from expr3d import cli, figure
from expr3d.imaging.grid import GUTTER, header_height
from expr3d.labels import EXPRESSIONS
from tests.file_snapshots import snapshot, unchanged
from tests.metrics import fixtures
from tests import forked_cli

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HAPPY, SAD, SURPRISE, FEAR, DISGUST = (EXPRESSIONS.index(n) for n in ("happy", "sad", "surprise", "fear", "disgust"))
# TensorFlow's C++ start-up lines, printed before TF_CPP_MIN_LOG_LEVEL is read (as in tests/test_cli_bad_input.py).
NOISE = ("WARNING: All log messages before absl::InitializeLog()", "I0000 ", "E0000 ", "W0000 ")


# --- flags, layout and the choice of faces (no TensorFlow) ----------------------------------------------------------

def test_targets_are_expression_names_in_order_without_repeats():
    assert figure.parse_targets(figure.DEFAULT_TARGETS) == [HAPPY, SURPRISE, FEAR, DISGUST]
    assert figure.parse_targets(" Happy, surprised ,happy") == [HAPPY, SURPRISE]  # RaFD spelling, repeat dropped
    with pytest.raises(ValueError, match=r"^--targets: Unknown expression 'grumpy'"):
        figure.parse_targets("happy,grumpy")
    with pytest.raises(ValueError, match=r"^--targets is empty"):
        figure.parse_targets(" , ")


def test_runs_are_labelled_directories_in_flag_order():
    assert figure.parse_runs(["StarGAN=runs/plain", "depth-guided = runs/a=b"]) == [
        ("StarGAN", "runs/plain"), ("depth-guided", "runs/a=b")]  # a path may hold '='
    assert figure.parse_runs(None) == []  # the required-flag check names a missing --run
    for values, message in ((["runs/plain"], "is not LABEL=RUN_DIR"), (["=runs/plain"], "is not LABEL=RUN_DIR"),
                            (["a="], "is not LABEL=RUN_DIR"), (["a=x", "a=y"], "'a' is given twice"),
                            ([f"r{i}=x" for i in range(5)], "at most 4 runs")):
        with pytest.raises(ValueError, match=message) as error:
            figure.parse_runs(values)
        assert str(error.value).startswith("--run: ")


def test_the_layout_names_every_column_and_sizes_the_figure():
    sheet = figure.layout([HAPPY, SURPRISE, FEAR, DISGUST], ["StarGAN", "depth-guided"], num_identities=4, cell=64)
    assert sheet.labels[:4] == ("source", "true happy", "StarGAN happy", "depth-guided happy")
    assert sheet.labels[-3:] == ("true disgust", "StarGAN disgust", "depth-guided disgust")
    assert sheet.columns == len(sheet.labels) == 1 + 4 * (1 + 2)
    assert sheet.rows == 8  # an RGB row and a depth row per identity
    assert sheet.header == header_height(sheet.labels, 64) > 0
    assert sheet.shape == (sheet.header + GUTTER + 8 * (64 + GUTTER), GUTTER + 13 * (64 + GUTTER))
    assert figure.layout(["happy"], ["only"], 1, 32).labels == ("source", "true happy", "only happy")


def test_the_source_is_neutral_or_the_first_other_expression_not_a_target():
    everything = set(range(8))
    assert figure.source_expression(everything, [HAPPY, SURPRISE]) == 0  # neutral
    assert figure.source_expression(everything, [0, HAPPY]) == SAD  # neutral is a target: the next non-target
    assert figure.source_expression({HAPPY, SURPRISE}, [HAPPY, SURPRISE]) == HAPPY  # nothing else: a target


def test_groups_are_distinct_identities_holding_every_target_in_split_order():
    full = set(range(8))
    groups = [(10, 1, full), (11, 1, full),  # the same identity twice (another pose): one row
              (12, 2, {0, HAPPY}),  # lacks a target
              (13, -1, full), (14, -1, full)]  # unknown identities: each its own person
    assert figure.choose_groups(groups, [HAPPY, SURPRISE], 3) == [(10, 0), (13, 0), (14, 0)]
    assert figure.choose_groups(groups, [HAPPY, SURPRISE], 9) == [(10, 0), (13, 0), (14, 0)]  # all there is
    # Mid-read: a group still missing expressions may get them later, so the choice waits for it...
    assert figure.choose_groups(groups, [HAPPY, SURPRISE], 3, finished=False) is None
    # ...unless enough groups before it are complete.
    assert figure.choose_groups(groups, [HAPPY, SURPRISE], 1, finished=False) == [(10, 0)]
    assert figure.choose_groups(groups[:2], [HAPPY], 2, finished=False) is None  # may find another identity


def test_depth_tiles_share_one_scale_and_black_backgrounds():
    depth = np.full((8, 8), -1.0, np.float32)
    mask = np.zeros((8, 8), bool)
    depth[2:6, 2:6], mask[2:6, 2:6] = 0.0, True
    depth[3, 3] = 1.0  # the nearest point
    tile = figure.depth_tile(depth, mask)
    assert tile.shape == (8, 8, 3) and tile.dtype == np.uint8
    assert not tile[~mask].any()  # background black
    assert tile[3, 3].sum() > tile[2, 2].sum() > 0  # near is brighter
    # One fixed scale: the same depth has the same colour whatever else the face holds (no per-face stretch).
    flat = figure.depth_tile(np.where(mask, 0.0, -1.0), mask)
    assert np.array_equal(flat[2, 2], tile[2, 2])
    # An estimate: background where it is at the background value, the same colours elsewhere.
    estimate = figure.estimate_tile(np.repeat(depth[..., None], 3, axis=-1), "depth")
    assert np.array_equal(estimate, tile)
    normals = np.zeros((8, 8, 3), np.float32)
    normals[mask] = (0.0, 0.0, 1.0)
    normal_tile = figure.estimate_tile(normals, "normals")
    assert not normal_tile[~mask].any() and (normal_tile[mask] == (127, 127, 255)).all()


# --- real runs and data ----------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A paired dataset (2 identities x 8 expressions, 32 px), the same at 64 px, an unpaired one, a plain StarGAN
    run (no G_depth) and a depth-guided run (real tiny networks, `tests/metrics/fixtures.write_run`), and the broken
    inputs of the refusals."""
    from tests.training.conftest import write_tiny_dataset

    root = tmp_path_factory.mktemp("figure")
    paths = {"root": str(root),
             "data": fixtures.write_paired_dataset(str(root / "data")),
             "data64": fixtures.write_paired_dataset(str(root / "data64"), size=64),
             "unpaired": write_tiny_dataset(str(root / "unpaired")),
             "plain": fixtures.write_run(str(root / "plain"), with_depth=False, logs=False),
             "depth": fixtures.write_run(str(root / "depth"), logs=False, seed=1)}
    # A run directory whose training exported nothing yet.
    paths["no_models"] = str(root / "no_models")
    os.makedirs(paths["no_models"])
    shutil.copy(os.path.join(paths["plain"], "config.json"), paths["no_models"])
    # A run of another image size (its config says 64 px: refused before anything loads).
    paths["size64"] = str(root / "size64")
    shutil.copytree(paths["depth"], paths["size64"])
    config_path = os.path.join(paths["size64"], "config.json")
    with open(config_path) as handle:
        config = json.load(handle)
    config["model_config"]["image_size"] = 64
    with open(config_path, "w") as handle:
        json.dump(config, handle)
    paths["existing"] = str(root / "out" / "existing.png")
    os.makedirs(os.path.dirname(paths["existing"]))
    with open(paths["existing"], "wb") as handle:
        handle.write(b"a figure someone keeps")
    return paths


def rendered_records(data_dir, size):
    """{key: uint8 image} of a dataset's test split as the pipeline reads it at `size`."""
    from expr3d.data import pipeline
    from expr3d.imaging.pixels import to_uint8

    out = {}
    for batch in pipeline.make_dataset(data_dir, "test", 64, image_size=size, training=False, repeat=False,
                                       drop_remainder=False).as_numpy_iterator():
        for key, image in zip(batch["key"], batch["image"]):
            out[key.decode()] = to_uint8(image)
    return out


def cell(image, sheet, row, column):
    """The tile at (row, column) of a figure drawn with `sheet`."""
    top = sheet.header + GUTTER + row * (sheet.cell + GUTTER)
    left = GUTTER + column * (sheet.cell + GUTTER)
    return image[top:top + sheet.cell, left:left + sheet.cell]


@pytest.mark.slow  # a subprocess that loads TensorFlow and two runs: ~15-25 s on 2 busy cores
def test_the_command_draws_sources_true_renders_and_each_run_with_depth(world):
    output = os.path.join(world["root"], "figures", "comparison.png")
    done = forked_cli.run(["-m", "expr3d.figure", f"--data_dir={world['data']}",
                           f"--run=StarGAN={world['plain']}", f"--run=depth-guided={world['depth']}",
                           "--num_identities=2", f"--output={output}"],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    targets = [HAPPY, SURPRISE, FEAR, DISGUST]  # the default
    sheet = figure.layout(targets, ["StarGAN", "depth-guided"], num_identities=2, cell=32)
    assert len(sheet.labels) == 13
    image = cv2.cvtColor(cv2.imread(output, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    assert image.shape[:2] == sheet.shape
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["columns"] == list(sheet.labels) and summary["size"] == [sheet.shape[1], sheet.shape[0]]
    assert [row["source_key"] for row in summary["rows"]] == ["p0e0", "p1e0"]  # two identities, neutral sources
    # Quiet: the only line on stderr is the note that the plain run has no depth network.
    lines = [line for line in done.stderr.splitlines() if line.strip() and not line.startswith(NOISE)]
    assert len(lines) == 1 and lines[0].startswith("note: --run=StarGAN=") and "no G_depth" in lines[0], lines
    # The header is white with text; the source and true columns are the dataset's renders, pixel for pixel.
    assert (image[:sheet.header] < 128).any() and (image[:sheet.header] == 255).mean() > 0.5
    renders = rendered_records(world["data"], 32)
    for block, pair in enumerate((0, 1)):
        assert np.array_equal(cell(image, sheet, 2 * block, 0), renders[f"p{pair}e0"])
        for k, target in enumerate(targets):
            column = 1 + 3 * k
            assert np.array_equal(cell(image, sheet, 2 * block, column), renders[f"p{pair}e{target}"])
            made = cell(image, sheet, 2 * block, column + 2)  # the depth-guided run's face
            assert made.std() > 0 and not np.array_equal(made, renders[f"p{pair}e{target}"])
            # Depth row: the true render's real depth (black background), the plain run's cell empty (no
            # G_depth: the grid's white), the depth-guided run's estimate.
            true_depth = cell(image, sheet, 2 * block + 1, column)
            assert (true_depth[0, 0] == 0).all() and true_depth.max() > 100
            assert (cell(image, sheet, 2 * block + 1, column + 1) == 255).all()
            assert not (cell(image, sheet, 2 * block + 1, column + 2) == 255).all()


@pytest.mark.slow  # 3 s in the full suite
def test_one_depth_network_judges_every_face_and_data_is_resized_to_the_runs(world):
    """In-process: --depth_model_dir fills every depth cell (the plain run's too), with the 64 px data read at the
    runs' 32 px."""
    notes = []
    image, details = figure.draw_figure(world["data64"], [("StarGAN", world["plain"]), ("ours", world["depth"])],
                                        [HAPPY, SAD], 1, depth_model_dir=world["depth"], log=notes.append)
    sheet = figure.layout([HAPPY, SAD], ["StarGAN", "ours"], 1, 32)
    assert image.shape == sheet.shape + (3,) and details["image_size"] == 32
    assert len(notes) == 1 and "64 px" in notes[0] and "resized" in notes[0]  # no "no G_depth" note
    for column in range(sheet.columns):
        assert not (cell(image, sheet, 1, column) == 255).all(), column  # no empty depth cell
    assert details["depth"].startswith("G_depth of ")


# --- refusals ---------------------------------------------------------------------------------------------------------

@pytest.mark.slow  # 3 s in the full suite
def test_bad_inputs_are_one_line_naming_the_flag_and_leave_no_file(world):
    def argv(*extra, data=world["data"], runs=(("a", world["plain"]),), output=None):
        output = output or os.path.join(world["root"], "refused", "figure.png")
        return (["-m", "expr3d.figure", f"--data_dir={data}", *(f"--run={label}={path}" for label, path in runs),
                 f"--output={output}", *extra])

    usage, error = cli.EXIT_USAGE, cli.EXIT_ERROR
    cases = {  # name: (argv, exit code, text the error line must hold)
        "unknown target": (argv("--targets=happy,grumpy"), usage, "--targets=happy,grumpy: Unknown expression"),
        "malformed run": (argv(runs=(("a", ""),)), usage, "flag --run="),
        "five runs": (argv(runs=[(f"r{i}", world["plain"]) for i in range(5)]), usage, "at most 4 runs"),
        "not a png": (argv(output=os.path.join(world["root"], "refused", "figure.jpg")), usage, "--output="),
        "no identities": (argv("--num_identities=0"), usage, "--num_identities=0: must be >= 1"),
        "run without models": (argv(runs=(("a", world["no_models"]),)), error,
                               f"--run=a={world['no_models']}: {world['no_models']}/models/g_rgb.keras is missing"),
        "no run directory": (argv(runs=(("a", os.path.join(world["root"], "nowhere")),)), error, "--run=a="),
        "unpaired data": (argv(data=world["unpaired"]), error, "test split is not paired"),
        "no data": (argv(data=os.path.join(world["root"], "nowhere")), error, "--data_dir: "),
        "existing output": (argv(output=world["existing"]), error, "pass --overwrite"),
        "sizes differ": (argv(runs=(("a", world["plain"]), ("b", world["size64"]))), error,
                         "--run: the runs work at different image sizes (a: 32 px, b: 64 px)"),
        "depth run without G_depth": (argv(f"--depth_model_dir={world['plain']}"), error,
                                      f"--depth_model_dir={world['plain']}: "),
    }
    before = snapshot(world["root"])
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    env.pop(cli.TRACEBACK_ENV, None)
    results, pending = {}, list(cases.items())
    while pending:  # 4 at a time: each refusal comes before TensorFlow loads (about a second each)
        batch, pending = pending[:4], pending[4:]
        running = [(name, forked_cli.popen([*case[0]], cwd=REPO, env=env, stdout=subprocess.PIPE,
                                           stderr=subprocess.PIPE, text=True)) for name, case in batch]
        for name, process in running:
            _, stderr = process.communicate(timeout=120)
            results[name] = (process.returncode, stderr)
    failures = []
    for name, (_, code, text) in cases.items():
        returncode, stderr = results[name]
        lines = [line for line in stderr.splitlines() if line.strip() and not line.startswith(NOISE)]
        if returncode != code or len(lines) != 1 or not lines[0].startswith("expr3d.figure: error: ") \
                or text not in lines[0] or "Traceback" in stderr:
            failures.append(f"{name}: exit {returncode} (expected {code}), stderr {stderr!r}")
    assert not failures, "\n".join(failures)
    after = snapshot(world["root"])
    assert not unchanged(before, after) and sorted(after) == sorted(before)  # nothing changed, nothing written
    assert not os.path.exists(os.path.join(world["root"], "refused"))
