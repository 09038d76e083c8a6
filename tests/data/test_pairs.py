"""Tests of expr3d.data.pairs: paired (source, target) streams from a paired train split."""
import numpy as np
import pytest

from expr3d.data import pairs
from expr3d.data.synthetic import dataset


@pytest.fixture(scope="module")
def paired_dir(tmp_path_factory):
    directory = str(tmp_path_factory.mktemp("pairs") / "d")
    dataset.generate_dataset(directory, num_identities=3, image_size=32, seed=5, test_fraction=0.34,
                             images_per_identity=8, examples_per_shard=5, workers=1, progress=False, preview=False,
                             train_pairs=True)
    return directory


def _batches(directory, count, seed=0):
    iterator = iter(pairs.make_paired_dataset(directory, "train", 4, seed=seed))
    return [{key: value.numpy() for key, value in next(iterator).items()} for _ in range(count)]


@pytest.mark.slow  # 6 s in the full suite
def test_each_source_comes_with_its_own_scene_under_another_expression(paired_dir):
    for batch in _batches(paired_dir, 3):
        assert batch["target_image"].shape == batch["image"].shape == (4, 32, 32, 3)
        assert np.all(batch["target_expression"] != batch["expression"])
        # The target render's own AUs come along (the targets of AU-conditioned training).
        assert batch["target_action_units"].shape == batch["target_action_units_mask"].shape == (4, 17)
        assert np.all(np.abs(batch["target_action_units"] - batch["action_units"]).max(axis=1) > 0.05)
        for source, target, mask in zip(batch["image"], batch["target_image"], batch["mask"]):
            # The same flip and crop for both: the background (outside the dilated source mask) matches.
            corners = np.concatenate([source[:2, :2], source[-2:, -2:]]) - np.concatenate(
                [target[:2, :2], target[-2:, -2:]])
            assert np.abs(corners).max() < 0.05
            assert np.abs(source - target).max() > 0.05  # but the faces differ
    # Groups cross shard boundaries (5 records a shard, 8 a group) and still pair within one identity.
    assert len({int(i) for b in _batches(paired_dir, 6) for i in b["identity"]}) == 2


@pytest.mark.slow  # 7 s in the full suite
def test_same_seed_same_stream_other_seed_differs(paired_dir):
    first, again, other = _batches(paired_dir, 2), _batches(paired_dir, 2), _batches(paired_dir, 2, seed=1)
    for a, b in zip(first, again):
        for key in ("image", "target_image", "target_expression"):
            np.testing.assert_array_equal(a[key], b[key])
    assert any(not np.array_equal(a["target_image"], c["target_image"]) for a, c in zip(first, other))


def test_an_unpaired_split_is_refused_with_the_fix(tmp_path):
    directory = str(tmp_path / "unpaired")
    dataset.generate_dataset(directory, num_identities=2, image_size=32, seed=0, test_fraction=0.5,
                             images_per_identity=2, workers=1, progress=False, preview=False)
    with pytest.raises(ValueError, match=r"unpaired: split 'train' holds no paired records.*--train_pairs"):
        pairs.make_paired_dataset(directory, "train", 2)


@pytest.fixture(scope="module")
def partner_dir(tmp_path_factory):
    directory = str(tmp_path_factory.mktemp("partners") / "d")
    # Train identities 0-1 and 2-3 are swap partners; 4 (odd last) has none and never appears.
    dataset.generate_dataset(directory, num_identities=6, image_size=32, seed=5, test_fraction=0.17,
                             images_per_identity=8, examples_per_shard=5, workers=1, progress=False, preview=False,
                             train_pairs=True, train_swap_pairs=True)
    return directory


@pytest.mark.slow  # 5 s in the full suite
def test_partner_batches_hold_the_other_identity_under_the_target_action_units(partner_dir):
    iterator = iter(pairs.make_paired_dataset(partner_dir, "train", 4, seed=0, exemplar="partner"))
    seen = set()
    for _ in range(6):
        batch = {key: value.numpy() for key, value in next(iterator).items()}
        assert batch["partner_image"].shape == batch["target_image"].shape == (4, 32, 32, 3)
        assert np.all(batch["target_expression"] != batch["expression"])
        # The partner's render carries the target's AUs exactly, on another face.
        np.testing.assert_array_equal(batch["partner_action_units"], batch["target_action_units"])
        assert np.all(np.abs(batch["partner_image"] - batch["target_image"]).mean(axis=(1, 2, 3)) > 0.05)
        seen.update(int(i) for i in batch["identity"])
    assert seen <= {0, 1, 2, 3} and len(seen) >= 3  # both partners are sources; the partnerless one never
    # The same seed gives the same stream; the target-mode stream is what it was (no partner key).
    again = next(iter(pairs.make_paired_dataset(partner_dir, "train", 4, seed=0, exemplar="partner")))
    first = next(iter(pairs.make_paired_dataset(partner_dir, "train", 4, seed=0, exemplar="partner")))
    np.testing.assert_array_equal(again["partner_image"].numpy(), first["partner_image"].numpy())
    assert "partner_image" not in next(iter(pairs.make_paired_dataset(partner_dir, "train", 4, seed=0)))


def test_partners_are_refused_on_data_without_them_with_the_fix(paired_dir):
    with pytest.raises(ValueError, match=r"split 'train' has no swap partners.*--train_swap_pairs"):
        pairs.make_paired_dataset(paired_dir, "train", 2, exemplar="partner")
    with pytest.raises(ValueError, match="exemplar must be one of"):
        pairs.make_paired_dataset(paired_dir, "train", 2, exemplar="other")


def _right_share(batch, row):
    """Share of the change from source to target right of the source's face-mask centre, in the picture."""
    mask = batch["mask"][row, ..., 0]
    columns = np.arange(mask.shape[1])[None, :]
    centre = (mask * columns).sum() / mask.sum()
    change = np.abs(batch["target_image"][row] - batch["image"][row]).mean(axis=-1)
    return (change * (columns > centre)).sum() / change.sum()


@pytest.mark.slow  # 8 s in the full suite
def test_contempt_side_mirrors_contempt_targets_to_one_side_and_leaves_the_rest_of_the_stream(paired_dir):
    contempt = pairs.EXPRESSIONS.index("contempt")
    streams = {side: [{key: value.numpy() for key, value in batch.items()}
                      for batch in pairs.make_paired_dataset(paired_dir, "train", 32, seed=2,
                                                             contempt_side=side).take(10)]
               for side in pairs.CONTEMPT_SIDES}
    shares = {side: [] for side in pairs.CONTEMPT_SIDES}
    for index, plain in enumerate(streams["as_rendered"]):
        others = plain["target_expression"] != contempt
        for side in ("image_left", "image_right"):
            batch = streams[side][index]
            np.testing.assert_array_equal(batch["target_expression"], plain["target_expression"])
            # Every other pair is drawn, flipped and cropped as before.
            np.testing.assert_array_equal(batch["image"][others], plain["image"][others])
            np.testing.assert_array_equal(batch["target_image"][others], plain["target_image"][others])
        for side, stream in streams.items():
            batch = stream[index]
            # From a neutral source the change is contempt's alone (its one-sided lip corner).
            for row in np.where((batch["target_expression"] == contempt) & (batch["expression"] == 0))[0]:
                shares[side].append(_right_share(batch, row))
    assert len(shares["as_rendered"]) >= 4
    assert max(shares["image_left"]) < 0.4 and min(shares["image_right"]) > 0.6
    # As rendered, both sides occur (the flip's draw).
    assert min(shares["as_rendered"]) < 0.4 and max(shares["as_rendered"]) > 0.6
    with pytest.raises(ValueError, match="contempt_side must be one of"):
        pairs.make_paired_dataset(paired_dir, "train", 4, contempt_side="left")


@pytest.fixture(scope="module")
def dial_dir(tmp_path_factory):
    directory = str(tmp_path_factory.mktemp("dials") / "d")
    dataset.generate_dataset(directory, num_identities=3, image_size=32, seed=5, test_fraction=0.34,
                             images_per_identity=8, examples_per_shard=5, workers=1, progress=False, preview=False,
                             train_pairs=True, train_dial_renders=8)
    return directory


@pytest.mark.slow  # 8 s in the full suite
def test_dial_renders_pair_only_when_asked_and_leave_the_other_stream_as_it_was(paired_dir, dial_dir):
    # Without dial_renders the stream is that of the same data rendered without them, batch for batch.
    for a, b in zip(_batches(paired_dir, 3), _batches(dial_dir, 3)):
        for key in ("image", "target_image", "target_action_units"):
            np.testing.assert_array_equal(a[key], b[key])
    iterator = iter(pairs.make_paired_dataset(dial_dir, "train", 4, seed=0, dial_renders=True))
    same_class = one_unit = 0
    for _ in range(12):
        batch = {key: value.numpy() for key, value in next(iterator).items()}
        change = np.abs(batch["target_action_units"] - batch["action_units"])
        assert np.all(change.max(axis=1) > 0) or np.all(np.abs(batch["target_image"] - batch["image"]).max() > 0)
        same_class += int(np.sum(batch["target_expression"] == batch["expression"]))
        one_unit += int(np.sum((change > 1e-6).sum(axis=1) == 1))
        corners = np.abs(batch["image"][:, :2, :2] - batch["target_image"][:, :2, :2]).max()
        assert corners < 0.05  # one scene, one flip and crop
    # A source's own class is a target now (its dial render, or the reverse): single-AU dials with their renders.
    assert same_class > 0 and one_unit > 0
    # dial_pair_share=1: every target is the source's own class, a render and its dial render: one AU apart.
    iterator = iter(pairs.make_paired_dataset(dial_dir, "train", 4, seed=0, dial_renders=True, dial_pair_share=1.0))
    for _ in range(4):
        batch = {key: value.numpy() for key, value in next(iterator).items()}
        np.testing.assert_array_equal(batch["target_expression"], batch["expression"])
        assert np.all((np.abs(batch["target_action_units"] - batch["action_units"]) > 1e-6).sum(axis=1) <= 1)
    with pytest.raises(ValueError, match="holds dial renders, which have no swap partner"):
        pairs.make_paired_dataset(dial_dir, "train", 2, exemplar="partner")
