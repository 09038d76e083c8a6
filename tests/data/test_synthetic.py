"""Tests of the procedural face dataset (expr3d.data.synthetic): determinism, splits, pairs, geometry, detection, CLI."""
import collections
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest

from tests.file_snapshots import snapshot, unchanged

from expr3d import outputs
from expr3d.data import dataset_card, records
from expr3d.data.synthetic import action_units, dataset, face_model, render, render_example
from expr3d.labels import ACTION_UNITS, EXPRESSIONS

SMALL = dict(num_identities=4, image_size=32, test_fraction=0.25, images_per_identity=4, examples_per_shard=8)


def _contents(directory):
    """Every decoded example of both splits with its shard, as comparable tuples."""
    out = []
    for split in dataset_card.SPLITS:
        shards = [os.path.basename(p) for p in records.list_shards(directory, split)]
        for ex in records.iterate_examples(directory, split):
            aus = None if ex.action_units is None else ex.action_units.tobytes()
            out.append((split, ex.key, ex.expression, ex.identity, ex.pair_id, aus, ex.image.tobytes(),
                        ex.depth.tobytes(), ex.mask.tobytes(), ex.normals.tobytes()))
        out.append((split, tuple(shards)))
    return out


@pytest.fixture(scope="module")
def small_dataset(tmp_path_factory):
    directory = str(tmp_path_factory.mktemp("synthetic") / "d")
    card = dataset.generate_dataset(directory, seed=3, workers=1, progress=False, **SMALL)
    return directory, card


def test_card_counts_and_balance(small_dataset):
    directory, card = small_dataset
    assert card["image_size"] == 32
    assert card["splits"]["train"]["num_examples"] == 3 * 4
    assert card["splits"]["test"]["num_examples"] == 1 * 8
    assert card["identity_disjoint_splits"] is True
    assert card["provenance"]["seed"] == 3
    assert card["provenance"]["generator_version"] == dataset.GENERATOR_VERSION
    # Train classes are balanced up to one example per class.
    counts = [card["splits"]["train"]["counts"][name] for name in EXPRESSIONS]
    assert max(counts) - min(counts) <= 1
    assert len(records.list_shards(directory, "train")) == 2  # 12 examples, 8 per shard


def test_same_seed_same_examples_other_seed_differs(small_dataset, tmp_path):
    directory, _ = small_dataset
    again = str(tmp_path / "again")
    dataset.generate_dataset(again, seed=3, workers=1, progress=False, preview=False, **SMALL)
    assert _contents(again) == _contents(directory)
    other = str(tmp_path / "other")
    dataset.generate_dataset(other, seed=4, workers=1, progress=False, preview=False, **SMALL)
    first = next(records.iterate_examples(directory, "train"))
    first_other = next(records.iterate_examples(other, "train"))
    assert not np.array_equal(first.image, first_other.image)


def test_identities_disjoint_between_splits(small_dataset):
    directory, _ = small_dataset
    train_ids = {ex.identity for ex in records.iterate_examples(directory, "train")}
    test_ids = {ex.identity for ex in records.iterate_examples(directory, "test")}
    assert train_ids == {0, 1, 2} and test_ids == {3}
    jobs = dataset.plan(0, 50, 0.2, 8)
    assert not {j.identity for j in jobs["train"]} & {j.identity for j in jobs["test"]}
    assert len({j.identity for j in jobs["test"]}) == 10


def test_test_split_is_paired(small_dataset):
    directory, _ = small_dataset
    pairs = collections.defaultdict(list)
    for ex in records.iterate_examples(directory, "test"):
        pairs[ex.pair_id].append(ex)
    assert pairs and all(pid >= 0 for pid in pairs)
    for pid, examples in pairs.items():
        assert sorted(ex.expression for ex in examples) == list(range(8))
        assert len({ex.identity for ex in examples}) == 1
        neutral = next(ex for ex in examples if ex.expression == 0)
        for ex in examples:
            # Identical pose, light and background: pixels that are background in both are equal, and so is the
            # forehead/hair (far from the mouth and brows) where both are head.
            background = ~neutral.mask & ~ex.mask
            assert background.mean() > 0.2
            np.testing.assert_array_equal(ex.image[background], neutral.image[background])


def test_action_unit_labels_follow_prototypes(small_dataset):
    directory, _ = small_dataset
    seen = set()
    for split in dataset_card.SPLITS:
        for ex in records.iterate_examples(directory, split):
            required, allowed = action_units.prototype_mask(ex.expression)
            aus = ex.action_units
            assert aus.shape == (len(ACTION_UNITS),)
            assert np.all(aus[required] >= 0.4), (ex.key, aus)
            assert np.all(aus[~allowed] == 0.0), (ex.key, aus)
            assert np.all((aus >= 0) & (aus <= 1))
            seen.add(ex.expression)
    assert seen == set(range(8))
    rng = np.random.default_rng(0)
    sides = [action_units.sample_expression(EXPRESSIONS.index("contempt"), rng) for _ in range(20)]
    # Contempt is unilateral: exactly one side carries AU12/AU14.
    au12 = action_units.AU_INDEX[12]
    assert all((s.left[au12] > 0) != (s.right[au12] > 0) for s in sides)


def test_expressions_show_in_geometry():
    rng = np.random.default_rng(5)
    face = face_model.sample_identity(rng)
    pose, light = render.Pose(), render.Light()
    size = 64
    base = render.render_face(face, action_units.neutral(), pose, light, size)
    rows = slice(int(0.55 * size), int(0.85 * size))
    cols = slice(int(0.3 * size), int(0.7 * size))

    def mouth_change(expression):
        ex = action_units.sample_expression(EXPRESSIONS.index(expression), np.random.default_rng(1),
                                            strength=(0.8, 0.8))
        out = render.render_face(face, ex, pose, light, size)
        both = base.mask[rows, cols] & out.mask[rows, cols]
        return np.abs(out.depth[rows, cols] - base.depth[rows, cols])[both].mean()

    # Metres: the jaw drop of surprise moves the lower face by centimetres; a smile by millimetres.
    assert mouth_change("surprise") > 0.004
    assert mouth_change("happy") > 0.0007
    # Brows: anger lowers them, surprise raises them (normals change around the brows).
    brows = slice(int(0.25 * size), int(0.42 * size))
    angry = render.render_face(face, action_units.sample_expression(6, np.random.default_rng(1)), pose, light, size)
    assert np.abs(angry.normals[brows, cols] - base.normals[brows, cols]).mean() > 0.02
    # Depth is the z distance, inside the frame's plausible range, and normals face the camera.
    assert 0.6 < base.depth[base.mask].min() < base.depth[base.mask].max() < 1.0
    # (Perspective: normals face the viewing ray, so n_z dips slightly below 0 only at grazing silhouettes.)
    assert np.mean(base.normals[base.mask][:, 2] > 0) > 0.98
    np.testing.assert_allclose(np.linalg.norm(base.normals[base.mask], axis=-1), 1.0, atol=1e-3)
    assert np.all(base.depth[~base.mask] == 0)


@pytest.mark.parametrize("size", [256, 128])
def test_haar_cascade_detects_frontal_neutral_face(size):
    cascade = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")
    assert not cascade.empty()
    for identity in range(3):
        image = render_example(0, size, seed=1, identity=identity).image
        found = cascade.detectMultiScale(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY), scaleFactor=1.1, minNeighbors=5)
        assert len(found), f"no face found in identity {identity} at {size}px"
        x, y, w, h = max(found, key=lambda box: box[2] * box[3])
        assert w > 0.3 * size and x < size / 2 < x + w and y < size / 2 < y + h


def _run_cli(*flags):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.run([sys.executable, "-m", "expr3d.data.synthetic", *flags], capture_output=True, text=True,
                          env=env, timeout=300)


@pytest.mark.parametrize("flag,value", [("num_identities", "0"), ("image_size", "40"), ("image_size", "1024"),
                                        ("test_fraction", "1.5"), ("images_per_identity", "-1"), ("workers", "0")])
def test_cli_rejects_bad_flags(tmp_path, flag, value):
    result = _run_cli(f"--output={tmp_path / 'out'}", f"--{flag}={value}")
    assert result.returncode != 0
    assert f"--{flag}" in result.stderr
    assert not (tmp_path / "out").exists()


def test_cli_writes_dataset_and_respects_overwrite(small_dataset, tmp_path):
    # Two CLI runs (not three): a refusal, then the --overwrite run that also checks multi-worker == single-worker.
    out = tmp_path / "cli"
    dataset.generate_dataset(str(out), seed=4, workers=1, progress=False, preview=False, **SMALL)  # someone's data
    before = _contents(str(out))
    # The user's own files beside the dataset: never touched, with or without --overwrite.
    (out / "notes.txt").write_text("my notes")
    (out / "review").mkdir()
    (out / "review" / "train-00000.tfrecord").write_bytes(b"not ours either")
    user_files = snapshot(out / "notes.txt", out / "review")
    flags = [f"--output={out}", "--seed=3", "--num_identities=4", "--image_size=32", "--test_fraction=0.25",
             "--images_per_identity=4", "--examples_per_shard=8"]
    refused = _run_cli(*flags, "--workers=1")
    assert refused.returncode != 0 and "--overwrite" in refused.stderr
    assert _contents(str(out)) == before and not unchanged(user_files, snapshot(out))
    result = _run_cli(*flags, "--workers=2", "--overwrite")
    assert not unchanged(user_files, snapshot(out))
    assert result.returncode == 0, result.stderr
    assert "ETA" in result.stderr
    # Two worker processes give the very same shards as one in-process worker (and nothing of the seed-4 data stays).
    assert _contents(str(out)) == _contents(small_dataset[0])
    card = dataset_card.read_dataset_card(str(out))
    assert card["provenance"]["seed"] == 3 and "--seed=3" in card["provenance"]["command"]
    preview = cv2.imread(str(out / "preview.png"))
    assert preview is not None and preview.shape[1] == 8 * 32
    leftovers = [name for name in os.listdir(tmp_path) if name.startswith(".cli.")]
    assert not leftovers


def test_overwrite_replaces_a_dataset_written_before_manifests_and_nothing_else(small_dataset, tmp_path):
    out = tmp_path / "old"
    dataset.generate_dataset(str(out), seed=4, workers=1, progress=False, preview=True, **SMALL)
    os.remove(out / outputs.MANIFEST_NAME)  # as written by an earlier version
    (out / "notes.txt").write_text("mine")
    dataset.generate_dataset(str(out), seed=3, workers=1, progress=False, preview=False, overwrite=True, **SMALL)
    assert _contents(str(out)) == _contents(small_dataset[0])
    expected = [n for n in os.listdir(small_dataset[0]) if n != dataset.PREVIEW_NAME] + ["notes.txt"]
    assert sorted(os.listdir(out)) == sorted(expected)  # the old preview is gone: it was ours


def test_a_shard_it_did_not_write_is_refused_even_with_overwrite(tmp_path):
    out = tmp_path / "foreign"
    out.mkdir()
    (out / "test-00000.tfrecord").write_bytes(b"someone else's shard")
    with pytest.raises(outputs.OutputError, match="test-00000.tfrecord, which this command writes but did not"):
        dataset.generate_dataset(str(out), seed=3, workers=1, progress=False, overwrite=True, **SMALL)
    assert os.listdir(out) == ["test-00000.tfrecord"]
    assert not [n for n in os.listdir(tmp_path) if n.startswith(".foreign.")]
