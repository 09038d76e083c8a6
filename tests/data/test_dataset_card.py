import pytest

from expr3d.data import dataset_card, records
from tests.data.fixtures import hemisphere_example


def test_card_errors_name_the_problem(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        dataset_card.read_dataset_card(str(tmp_path / "nope"))
    with pytest.raises(FileNotFoundError, match="dataset_card.json is missing"):
        dataset_card.read_dataset_card(str(tmp_path))
    (tmp_path / "dataset_card.json").write_text('{"schema_version": 2, "image_size": 16, "splits": {}}')
    with pytest.raises(ValueError, match="schema_version 2"):
        dataset_card.read_dataset_card(str(tmp_path))


def test_a_written_card_loads_describes_and_counts_in_expression_order(tmp_path):
    with records.ShardedWriter(str(tmp_path), "train", examples_per_shard=4) as writer:
        for i in range(6):
            writer.write(hemisphere_example(size=16, expression=i % 3, identity=i // 2, key=f"train{i}", seed=i))
    written = dataset_card.write_dataset_card(str(tmp_path), name="tiny", image_size=16)
    card = dataset_card.load_card(str(tmp_path))
    assert card["splits"] == written["splits"] and list(card["splits"]) == ["train"]  # no test shards: no test split
    assert dataset_card.class_counts(card, "train") == [2, 2, 2, 0, 0, 0, 0, 0]  # expr3d.labels order
    assert "16 px" in dataset_card.describe(str(tmp_path)) and "train" in dataset_card.describe(str(tmp_path))
    assert dataset_card.resolve_image_size(card, None) == 16
    with pytest.raises(ValueError, match="image_size=8 does not match"):
        dataset_card.resolve_image_size(card, 8, str(tmp_path), allow_resize=False)


def test_a_directory_without_a_card_says_how_to_make_one(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"does not exist.*expr3d\.data\.synthetic"):
        dataset_card.load_card(str(tmp_path / "nowhere"))
    with records.ShardedWriter(str(tmp_path), "train") as writer:
        writer.write(hemisphere_example(size=16, key="x"))
    with pytest.raises(FileNotFoundError, match=r"1 shard.*expr3d\.data\.dataset_card\.write_dataset_card"):
        dataset_card.load_card(str(tmp_path))
