"""Tests of expr3d.data.transfer: the transfer ground truth read back with its source and exemplar, as NumPy triples
and as tf.data batches; the refusal of a dataset without it; old-style datasets still read."""
import numpy as np
import pytest

from expr3d.data import dataset_card, pipeline, records, schema, transfer
from expr3d.data.synthetic import dataset
from expr3d.labels import NUM_EXPRESSIONS
from tests.data.fixtures import hemisphere_example


@pytest.fixture(scope="module")
def transfer_dir(tmp_path_factory):
    directory = str(tmp_path_factory.mktemp("transfer") / "d")
    dataset.generate_dataset(directory, num_identities=4, image_size=32, seed=5, test_fraction=0.5,
                             images_per_identity=1, examples_per_shard=6, transfer_pairs=1, workers=1,
                             progress=False, preview=False)
    return directory


@pytest.mark.slow
def test_triples_resolve_to_the_test_renders_they_name(transfer_dir):
    triples = list(transfer.iterate_transfer_examples(transfer_dir))
    assert len(triples) == 2 * NUM_EXPRESSIONS
    tests = {ex.key: ex for ex in records.iterate_examples(transfer_dir, "test")}
    for triple in triples:
        assert triple.source.key == triple.truth.transfer_source_key and triple.source.key in tests
        assert triple.exemplar.key == triple.truth.transfer_exemplar_key and triple.exemplar.key in tests
        np.testing.assert_array_equal(triple.truth.action_units, triple.exemplar.action_units)
        assert triple.truth.identity == triple.source.identity != triple.exemplar.identity


@pytest.mark.slow
def test_batches_hold_source_exemplar_and_truth_in_file_order(transfer_dir):
    triples = list(transfer.iterate_transfer_examples(transfer_dir))
    batches = list(transfer.make_transfer_dataset(transfer_dir, batch_size=5))
    assert [len(b["truth"]["key"]) for b in batches] == [5, 5, 5, 1]
    for role in transfer.ROLES:
        batch = {name: np.concatenate([b[role][name].numpy() for b in batches]) for name in batches[0][role]}
        assert batch["image"].shape == (len(triples), 32, 32, 3) and batch["depth"].shape == (len(triples), 32, 32, 1)
        expected = [getattr(triple, role) for triple in triples]
        assert [key.decode() for key in batch["key"]] == [ex.key for ex in expected]
        # The pipeline's evaluation-mode normalisation of each stored render, unchanged.
        np.testing.assert_allclose(batch["image"], np.stack([ex.image for ex in expected]) / 127.5 - 1.0, atol=1e-6)
        np.testing.assert_array_equal(batch["action_units"], np.stack([ex.action_units for ex in expected]))
        np.testing.assert_array_equal(batch["expression"], [ex.expression for ex in expected])


def _old_style_dataset(directory):
    """A dataset as written before the transfer ground truth existed: train and test only, no transfer/* features."""
    for split, identities in (("train", (0, 1)), ("test", (2,))):
        with records.ShardedWriter(str(directory), split) as writer:
            for identity in identities:
                for expression in range(NUM_EXPRESSIONS):
                    writer.write(hemisphere_example(size=16, expression=expression, identity=identity,
                                                    key=f"{split}/{identity}/{expression}", seed=expression,
                                                    pair_id=identity if split == "test" else -1))
    return dataset_card.write_dataset_card(str(directory), name="old", image_size=16)


def test_a_dataset_without_the_split_is_refused_in_one_line_and_still_reads(tmp_path):
    card = _old_style_dataset(tmp_path)
    assert "transfer" not in card["splits"] and transfer.transfer_count(card) == 0
    for build in (lambda: transfer.make_transfer_dataset(str(tmp_path), batch_size=4),
                  lambda: next(transfer.iterate_transfer_examples(str(tmp_path)))):
        with pytest.raises(ValueError) as error:
            build()
        message = str(error.value)
        assert "\n" not in message and str(tmp_path) in message and "--transfer_pairs" in message
    # Everything else reads it as before; the transfer keys default to "".
    example = next(records.iterate_examples(str(tmp_path), "test"))
    assert (example.transfer_source_key, example.transfer_exemplar_key) == ("", "")
    batch = next(iter(pipeline.make_dataset(str(tmp_path), "test", batch_size=8, training=False)))
    assert batch["image"].shape == (8, 16, 16, 3) and "transfer_source_key" not in batch


def test_a_reference_the_test_split_lacks_names_the_record(transfer_dir, tmp_path):
    card = _old_style_dataset(tmp_path)
    truth = hemisphere_example(size=16, expression=3, identity=2, key="transfer/2/3", pair_id=2)
    truth.transfer_source_key, truth.transfer_exemplar_key = "test/2/0", "test/9/3"  # no identity 9 here
    with records.ShardedWriter(str(tmp_path), "transfer") as writer:
        writer.write(truth)
    dataset_card.write_dataset_card(str(tmp_path), name="old", image_size=16, splits=("train", "test", "transfer"))
    with pytest.raises(schema.RecordError, match=r"transfer-00000.tfrecord record 0 \(key transfer/2/3\): field "
                                                 r"'transfer/exemplar_key' names 'test/9/3', which the 'test' split"):
        transfer.make_transfer_dataset(str(tmp_path), batch_size=1)
    assert card["identity_disjoint_splits"] is True
