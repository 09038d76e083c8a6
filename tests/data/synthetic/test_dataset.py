"""Tests of expr3d.data.synthetic.dataset: the card, determinism, identity-disjoint splits, pairs, overwrite rules,
the transfer ground truth."""
import collections
import dataclasses
import os
import re
import shutil

import numpy as np
import pytest

from expr3d import outputs
from expr3d.data import records, schema
from expr3d.data.synthetic import action_units, dataset
from expr3d.labels import EXPRESSIONS, NUM_EXPRESSIONS
from tests.data.synthetic.fixtures import SMALL, contents


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
    assert contents(again) == contents(directory)
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


def test_overwrite_replaces_a_dataset_written_before_manifests_and_nothing_else(small_dataset, tmp_path):
    out = tmp_path / "old"
    dataset.generate_dataset(str(out), seed=4, workers=1, progress=False, preview=True, **SMALL)
    os.remove(out / outputs.MANIFEST_NAME)  # as written by an earlier version
    (out / "notes.txt").write_text("mine")
    dataset.generate_dataset(str(out), seed=3, workers=1, progress=False, preview=False, overwrite=True, **SMALL)
    assert contents(str(out)) == contents(small_dataset[0])
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


PAIRED = dict(num_identities=3, image_size=32, test_fraction=0.34, images_per_identity=16, examples_per_shard=8)


@pytest.fixture(scope="module")
def paired_dataset(tmp_path_factory):
    directory = str(tmp_path_factory.mktemp("paired") / "d")
    card = dataset.generate_dataset(directory, seed=3, workers=1, progress=False, preview=False, train_pairs=True,
                                    **PAIRED)
    return directory, card


@pytest.mark.slow  # 2 s in the full suite
def test_train_pairs_render_each_group_under_every_expression_in_one_scene(paired_dataset, tmp_path):
    directory, card = paired_dataset
    assert card["provenance"]["train_pairs"] is True
    assert card["paired_splits"] == ["train", "test"]
    assert card["splits"]["train"]["num_examples"] == 2 * 16
    assert card["splits"]["train"]["num_pairs"] == 2 * 2  # two identities x two groups
    groups = collections.defaultdict(list)
    for ex in records.iterate_examples(directory, "train"):
        groups[ex.pair_id].append(ex)
    test_pairs = {ex.pair_id for ex in records.iterate_examples(directory, "test")}
    assert not set(groups) & test_pairs and min(groups) >= PAIRED["num_identities"]
    backgrounds = []
    for examples in groups.values():
        assert sorted(ex.expression for ex in examples) == list(range(8))
        assert len({ex.identity for ex in examples}) == 1
        neutral = next(ex for ex in examples if ex.expression == 0)
        for ex in examples:
            shared = ~neutral.mask & ~ex.mask
            np.testing.assert_array_equal(ex.image[shared], neutral.image[shared])
        backgrounds.append(neutral.image[0, 0])
    # Each group has its own scene: the two groups of an identity differ.
    assert len({tuple(b) for b in backgrounds}) > 1
    # The test split does not depend on how the train split is rendered.
    unpaired = str(tmp_path / "unpaired")
    dataset.generate_dataset(unpaired, seed=3, workers=1, progress=False, preview=False, **PAIRED)
    test_only = [entry for entry in contents(directory) if entry[0] == "test"]
    assert test_only == [entry for entry in contents(unpaired) if entry[0] == "test"]


def test_train_pairs_need_a_multiple_of_eight_renders_per_identity():
    with pytest.raises(ValueError, match="--images_per_identity must be a multiple of 8"):
        dataset.check_arguments(4, 32, images_per_identity=12, train_pairs=True)
    dataset.check_arguments(4, 32, images_per_identity=12)  # unpaired: any count


@pytest.mark.slow  # 2 s in the full suite
def test_swap_partners_share_their_groups_action_units_and_nothing_else(tmp_path):
    directory = str(tmp_path / "swap")
    # Three train identities: 0 and 1 are partners, 2 (odd last) has none.
    card = dataset.generate_dataset(directory, seed=3, workers=1, progress=False, preview=False, train_pairs=True,
                                    train_swap_pairs=True, **dict(PAIRED, num_identities=4, test_fraction=0.25))
    assert card["provenance"]["train_swap_pairs"] is True
    assert card["swap_partners"]["split"] == "train" and card["swap_partners"]["groups_per_identity"] == 2
    renders = {(ex.identity, ex.pair_id, ex.expression): ex for ex in records.iterate_examples(directory, "train")}
    first = 4  # pair_id = num_identities + identity * groups + group
    for group in range(2):
        for e in range(NUM_EXPRESSIONS):
            a, b = renders[(0, first + group, e)], renders[(1, first + 2 + group, e)]
            np.testing.assert_array_equal(a.action_units, b.action_units)  # the same AUs to the last bit
            assert np.abs(a.image.astype(float) - b.image.astype(float)).mean() > 5  # on another face and scene
            if e:  # neutral is the same for everyone; the other classes are drawn per identity and group
                other = renders[(2, first + 4 + group, e)]
                assert np.abs(other.action_units - a.action_units).max() > 1e-3
    # Identity 0 keeps its own stream: its renders are those of the plain paired split of the same seed.
    plain = str(tmp_path / "plain")
    dataset.generate_dataset(plain, seed=3, workers=1, progress=False, preview=False, train_pairs=True,
                             **dict(PAIRED, num_identities=4, test_fraction=0.25))
    plain_renders = {(ex.identity, ex.pair_id, ex.expression): ex for ex in records.iterate_examples(plain, "train")}
    for key, ex in renders.items():
        if key[0] != 1:
            np.testing.assert_array_equal(ex.image, plain_renders[key].image)
    assert [e for e in contents(directory) if e[0] == "test"] == [e for e in contents(plain) if e[0] == "test"]
    with pytest.raises(ValueError, match="--train_swap_pairs needs --train_pairs"):
        dataset.check_arguments(4, 32, train_swap_pairs=True)


@pytest.mark.slow  # 2 s in the full suite
def test_dial_renders_are_a_group_s_renders_with_one_action_unit_dialled(tmp_path):
    directory, plain = str(tmp_path / "dial"), str(tmp_path / "plain")
    paired = dict(PAIRED, num_identities=4, test_fraction=0.25)
    card = dataset.generate_dataset(directory, seed=3, workers=1, progress=False, preview=False, train_pairs=True,
                                    train_dial_renders=10, **paired)
    dataset.generate_dataset(plain, seed=3, workers=1, progress=False, preview=False, train_pairs=True, **paired)
    assert card["provenance"]["train_dial_renders"] == 10
    assert card["dial_renders"]["per_group"] == 10 and card["dial_renders"]["key_suffix"] == dataset.DIAL_SUFFIX
    examples = list(records.iterate_examples(directory, "train"))
    assert card["splits"]["train"]["num_examples"] == len(examples) == 3 * 2 * (8 + 10)
    dials = [ex for ex in examples if ex.key.endswith(dataset.DIAL_SUFFIX)]
    # Every other record is the plain paired split's, to the byte and in order; the test split is untouched.
    def summary(ex):
        return ex.key, ex.pair_id, ex.image.tobytes(), ex.depth.tobytes(), ex.action_units.tobytes()

    assert [summary(ex) for ex in examples if not ex.key.endswith(dataset.DIAL_SUFFIX)] == [
        summary(ex) for ex in records.iterate_examples(plain, "train")]
    assert [e for e in contents(directory) if e[0] == "test"] == [e for e in contents(plain) if e[0] == "test"]
    # A group's records stay together: its eight, then its dial renders.
    pair_ids = [ex.pair_id for ex in examples]
    assert all(pair_ids[i * 18:(i + 1) * 18] == [pair_ids[i * 18]] * 18 for i in range(6))
    base = {(ex.pair_id, ex.expression): ex for ex in examples if not ex.key.endswith(dataset.DIAL_SUFFIX)}
    assert len(dials) == 60 and {ex.expression for ex in dials} == set(range(NUM_EXPRESSIONS))
    units = set()
    for ex in dials:
        source = base[(ex.pair_id, ex.expression)]
        changed = np.flatnonzero(ex.action_units != source.action_units)
        assert len(changed) <= 1  # one AU dialled (a draw may land on the AU's own level: none then)
        units.update(changed.tolist())
        assert 0.0 <= ex.action_units.max() <= 1.0
        # The same pose, light and background: the picture's corners match the group's render.
        assert np.abs(ex.image[:3, :3].astype(float) - source.image[:3, :3].astype(float)).max() <= 2
    assert len(units) >= 8  # dials spread over the AUs
    with pytest.raises(ValueError, match="--train_dial_renders needs --train_pairs"):
        dataset.check_arguments(4, 32, train_dial_renders=2)
    with pytest.raises(ValueError, match="--train_dial_renders must be a non-negative integer"):
        dataset.check_arguments(4, 32, train_pairs=True, train_dial_renders=-1)


TRANSFER = dict(num_identities=4, image_size=32, test_fraction=0.5, images_per_identity=2, examples_per_shard=16)


@pytest.fixture(scope="module")
def transfer_dataset(tmp_path_factory):
    directory = str(tmp_path_factory.mktemp("transfer") / "d")
    card = dataset.generate_dataset(directory, seed=3, workers=1, progress=False, preview=False, transfer_pairs=1,
                                    **TRANSFER)
    return directory, card


def _raw_records(directory, split):
    return {schema.read_labels(record)[3]: record for path in records.list_shards(directory, split)
            for _, record in records._records(path)}


def test_transfer_truth_of_a_face_with_its_own_action_units_is_its_own_test_render(transfer_dataset):
    directory, _ = transfer_dataset
    stored = _raw_records(directory, "test")
    a = 2  # the first test identity
    for expression in range(NUM_EXPRESSIONS):
        # The transfer code path with A as its own exemplar (source: another of A's renders) ...
        job = dataset.TransferJob(a, (expression + 1) % NUM_EXPRESSIONS, a, expression)
        truth = dataset.render_transfer_job(3, job, TRANSFER["image_size"])
        assert truth.transfer_exemplar_key == dataset.paired_test_job(a, expression).key
        # ... is A's own test render to the byte, once given the test record's key: pixels, depth, normals, AUs.
        own = dataclasses.replace(truth, key=truth.transfer_exemplar_key, transfer_source_key="",
                                  transfer_exemplar_key="")
        assert schema.encode_example(own) == stored[own.key], EXPRESSIONS[expression]
    # In the dataset itself: B's neutral AUs are all zero, A's too, so A "with B's neutral" is A's neutral render.
    truths = list(records.iterate_examples(directory, "transfer"))
    with_neutral = next(t for t in truths if t.identity == a and t.expression == 0)
    own_neutral = next(t for t in records.iterate_examples(directory, "test") if t.identity == a and t.expression == 0)
    np.testing.assert_array_equal(with_neutral.image, own_neutral.image)
    np.testing.assert_array_equal(with_neutral.mask, own_neutral.mask)


def test_transfer_truth_carries_the_exemplar_action_units_and_names_its_inputs(transfer_dataset):
    directory, card = transfer_dataset
    tests = {ex.key: ex for ex in records.iterate_examples(directory, "test")}
    truths = list(records.iterate_examples(directory, "transfer"))
    assert len(truths) == card["splits"]["transfer"]["num_examples"] == 2 * NUM_EXPRESSIONS
    (pair,) = card["transfer"]["identity_pairs"]
    assert (pair["a"], pair["b"]) == (2, 3) and 1 <= pair["shift"] < NUM_EXPRESSIONS
    assert card["provenance"]["transfer_pairs"] == 1 and card["identity_disjoint_splits"] is True
    for truth in truths:
        source, exemplar = tests[truth.transfer_source_key], tests[truth.transfer_exemplar_key]
        assert {source.identity, exemplar.identity} == {2, 3} and exemplar.identity != source.identity
        assert truth.action_units.tobytes() == exemplar.action_units.tobytes()  # B's vector, exactly
        assert truth.expression == exemplar.expression != source.expression
        assert (truth.identity, truth.pair_id) == (source.identity, source.pair_id)
        # A's pose, light and background: the background both leave free is A's own, pixel for pixel.
        background = ~truth.mask & ~source.mask
        assert background.mean() > 0.2
        np.testing.assert_array_equal(truth.image[background], source.image[background])
    # A swap is two neighbouring records, each the other's mirror; B's eight renders are each an exemplar once.
    for first, second in zip(truths[::2], truths[1::2]):
        assert (first.transfer_source_key, first.transfer_exemplar_key) == (second.transfer_exemplar_key,
                                                                            second.transfer_source_key)
    assert len({truth.transfer_exemplar_key for truth in truths}) == 2 * NUM_EXPRESSIONS


def test_transfer_pairs_leave_the_train_and_test_shards_byte_identical(transfer_dataset, tmp_path):
    directory, _ = transfer_dataset
    without = str(tmp_path / "without")
    card = dataset.generate_dataset(without, seed=3, workers=1, progress=False, preview=False, **TRANSFER)
    assert "transfer" not in card["splits"] and "transfer" not in card
    for split in ("train", "test"):
        shards = [os.path.basename(p) for p in records.list_shards(without, split)]
        assert shards == [os.path.basename(p) for p in records.list_shards(directory, split)]
        for name in shards:
            with open(os.path.join(without, name), "rb") as a, open(os.path.join(directory, name), "rb") as b:
                assert a.read() == b.read(), name


def test_transfer_pairs_are_checked():
    with pytest.raises(ValueError, match="--transfer_pairs must be at most 1: each pair takes two of the 2 test"):
        dataset.check_arguments(4, 32, test_fraction=0.5, transfer_pairs=2)
    for bad in (-1, True, 1.0):
        with pytest.raises(ValueError, match="--transfer_pairs must be a non-negative integer"):
            dataset.check_arguments(4, 32, test_fraction=0.5, transfer_pairs=bad)
    dataset.check_arguments(4, 32, test_fraction=0.5, transfer_pairs=1)


def test_overwrite_without_transfer_pairs_removes_the_old_transfer_shards(transfer_dataset, tmp_path):
    out = tmp_path / "d"
    shutil.copytree(transfer_dataset[0], out)
    (out / "transfer-00099.tfrecord").write_bytes(b"someone else's")  # not ours: never touched
    dataset.generate_dataset(str(out), seed=3, workers=1, progress=False, preview=False, overwrite=True, **TRANSFER)
    assert sorted(n for n in os.listdir(out) if n.startswith("transfer-")) == ["transfer-00099.tfrecord"]


def test_an_expression_strength_range_draws_slight_expressions_everywhere_and_is_recorded(tmp_path):
    directory = str(tmp_path / "slight")
    card = dataset.generate_dataset(directory, seed=3, workers=1, progress=False, preview=False,
                                    transfer_pairs=1, expression_strength=(0.2, 0.3), **TRANSFER)
    assert card["provenance"]["expression_strength"] == [0.2, 0.3]
    tests = {ex.key: ex for ex in records.iterate_examples(directory, "test")}
    for split in ("train", "test"):
        for ex in records.iterate_examples(directory, split):
            required, _ = action_units.prototype_mask(ex.expression)
            assert np.all(ex.action_units[required] >= 0.2 * 0.85 - 1e-6), ex.key
            assert np.all(ex.action_units[required] <= 0.3 * 1.15 + 1e-6), ex.key
    # The transfer truth takes its exemplar's slight AUs, exactly.
    for truth in records.iterate_examples(directory, "transfer"):
        assert truth.action_units.tobytes() == tests[truth.transfer_exemplar_key].action_units.tobytes()
    for bad, message in (((0.0, 1.0), "0 < LOW <= HIGH <= 1, got 0,1"), ((0.6, 0.5), "got 0.6,0.5"),
                         (("x",), "must be two numbers LOW,HIGH")):
        with pytest.raises(ValueError, match=re.escape("--expression_strength ") + ".*" + re.escape(message)):
            dataset.generate_dataset(str(tmp_path / "bad"), seed=3, workers=1, progress=False, preview=False,
                                     expression_strength=bad, **TRANSFER)
    assert not (tmp_path / "bad").exists()
