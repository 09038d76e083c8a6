import json
import os
import textwrap

import pytest

from expr3d.data import dataset_card, records, schema
from tests.data.fixtures import hemisphere_example
from tests import forked_cli


def _write(data_dir, split, n, per_shard=3, identity_offset=0, **kwargs):
    with records.ShardedWriter(str(data_dir), split, examples_per_shard=per_shard, **kwargs) as writer:
        for i in range(n):
            writer.write(hemisphere_example(size=16, expression=i % 8, identity=identity_offset + i // 4,
                                            key=f"{split}{i}", seed=i))
    return writer


def test_writer_card_and_reader(tmp_path):
    writer = _write(tmp_path, "train", 10)
    _write(tmp_path, "test", 4, identity_offset=100)
    assert [os.path.basename(p) for p in writer.shards] == [f"train-0000{i}.tfrecord" for i in range(4)]
    card = dataset_card.write_dataset_card(str(tmp_path), name="tiny", image_size=16, provenance={"made_by": "test"})
    on_disk = dataset_card.read_dataset_card(str(tmp_path))
    assert on_disk["splits"] == json.loads(json.dumps(card["splits"]))
    train = card["splits"]["train"]
    assert train["num_examples"] == 10 and [s["num_examples"] for s in train["shards"]] == [3, 3, 3, 1]
    # Table 4 layout: alphabetical class columns then the total.
    assert list(train["counts"]) == ["anger", "contempt", "disgust", "fear", "happy", "neutral", "sad", "surprise",
                                     "total"]
    assert train["counts"]["neutral"] == 2 and train["counts"]["contempt"] == 1 and train["counts"]["total"] == 10
    assert card["identity_disjoint_splits"] is True
    assert card["schema_version"] == 1 and card["image_size"] == 16 and card["provenance"] == {"made_by": "test"}
    keys = [ex.key for ex in records.iterate_examples(str(tmp_path), "train")]
    assert keys == [f"train{i}" for i in range(10)]
    records.verify_split(str(tmp_path), "train")


def test_identity_overlap_is_reported(tmp_path):
    _write(tmp_path, "train", 4)
    _write(tmp_path, "test", 4)
    assert dataset_card.write_dataset_card(str(tmp_path), "tiny", 16)["identity_disjoint_splits"] is False


def test_never_overwrites_without_flag(tmp_path):
    _write(tmp_path, "train", 4)
    with pytest.raises(FileExistsError, match="--overwrite"):
        _write(tmp_path, "train", 4)
    _write(tmp_path, "train", 2, overwrite=True)
    assert len(records.list_shards(str(tmp_path), "train")) == 1


def test_failed_writer_leaves_no_partial_shard(tmp_path):
    with pytest.raises(RuntimeError):
        with records.ShardedWriter(str(tmp_path), "train", examples_per_shard=3) as writer:
            for i in range(5):
                writer.write(hemisphere_example(size=16, key=str(i)))
            raise RuntimeError("boom")
    # The first full shard was completed; the two buffered examples were never written; no temp files remain.
    assert sorted(os.listdir(tmp_path)) == ["train-00000.tfrecord"]


@pytest.mark.slow
def test_killed_writer_leaves_nothing_the_reader_accepts(tmp_path):
    # A real process is SIGKILLed while its shard is half written: only a hidden temp file may remain.
    script = textwrap.dedent(f"""
        import os, signal, sys
        sys.path.insert(0, {os.getcwd()!r})
        from expr3d.data import records
        from tests.data.fixtures import hemisphere_example
        from expr3d.data import schema
        record = schema.encode_example(hemisphere_example(size=16))
        def records_then_die():
            for i in range(50):
                yield record
                if i == 20:
                    os.kill(os.getpid(), signal.SIGKILL)
        records.write_shard(os.path.join({str(tmp_path)!r}, records.shard_name("train", 0)), records_then_die())
    """)
    result = forked_cli.run(["-c", script], capture_output=True, timeout=120)
    assert result.returncode == -9, result.stderr.decode()[-2000:]
    assert records.list_shards(str(tmp_path), "train") == []
    leftovers = os.listdir(tmp_path)
    assert all(name.startswith(".") and name.endswith(".tmp") for name in leftovers), leftovers


def test_truncated_and_corrupt_shards_are_named(tmp_path):
    _write(tmp_path, "train", 6)
    dataset_card.write_dataset_card(str(tmp_path), "tiny", 16)
    path = os.path.join(tmp_path, "train-00001.tfrecord")
    data = open(path, "rb").read()
    with open(path, "wb") as handle:
        handle.write(data[: len(data) // 2])
    with pytest.raises(schema.RecordError, match="train-00001.tfrecord"):
        list(records.iterate_examples(str(tmp_path), "train"))
    with pytest.raises(schema.RecordError, match="train-00001.tfrecord"):
        records.verify_split(str(tmp_path), "train")
    stats = {}
    survivors = list(records.iterate_examples(str(tmp_path), "train", skip_corrupt=True, stats=stats))
    assert 3 <= len(survivors) < 6 and stats["skipped_shards"] == 1


def test_flipped_bits_are_detected(tmp_path):
    _write(tmp_path, "train", 3)
    path = records.list_shards(str(tmp_path), "train")[0]
    data = bytearray(open(path, "rb").read())
    data[len(data) // 2] ^= 0xFF
    open(path, "wb").write(bytes(data))
    with pytest.raises(schema.RecordError, match="train-00000.tfrecord"):
        list(records.iterate_examples(str(tmp_path), "train"))


def test_shards_get_normal_permissions_and_identical_bytes(tmp_path):
    first, second = tmp_path / "a", tmp_path / "b"
    _write(first, "train", 3)
    _write(second, "train", 3)
    path = records.list_shards(str(first), "train")[0]
    umask = os.umask(0)
    os.umask(umask)
    assert os.stat(path).st_mode & 0o777 == 0o666 & ~umask
    assert open(path, "rb").read() == open(records.list_shards(str(second), "train")[0], "rb").read()


def test_class_mean_action_units_averages_measured_intensities_per_class(tmp_path):
    import numpy as np

    faces = []
    for i, (expression, aus, valid, key) in enumerate([(1, 0.2, None, "f0"), (1, 0.6, None, "f1"),
                                                       (2, 0.9, [0] + [1] * 16, "f2"), (2, 0.5, None, "f3"),
                                                       (3, None, None, "f4"), (1, 1.0, None, "f5_dial")]):
        face = hemisphere_example(size=16, expression=expression, identity=i, key=key, seed=i,
                                  with_aus=aus is not None)
        if aus is not None:
            face.action_units = np.full(17, aus, np.float32)
            face.action_units_valid = None if valid is None else np.asarray(valid, bool)
        faces.append(face)
    with records.ShardedWriter(str(tmp_path), "train", examples_per_shard=2) as writer:
        for face in faces:
            writer.write(face)
    card = dataset_card.write_dataset_card(str(tmp_path), name="tiny", image_size=16)
    # Without a dial-render entry in the card, f5_dial is one more happy face.
    assert records.class_mean_action_units(str(tmp_path), "train")[0][1, 0] == pytest.approx(0.6)  # (.2+.6+1)/3
    # A dial render (a class's render with one AU set at random; the card lists them) says nothing of its class.
    card["dial_renders"] = {"split": "train", "per_group": 1, "key_suffix": "_dial"}
    json.dump(card, open(tmp_path / "dataset_card.json", "w"))
    means, counts = records.class_mean_action_units(str(tmp_path), "train")
    assert means.shape == counts.shape == (8, 17)
    np.testing.assert_allclose(means[1], 0.4, rtol=1e-6)
    assert counts[1].tolist() == [2] * 17
    # Class 2: AU1 is missing on one face (stored as 0), so its mean is the other face's alone.
    assert means[2, 0] == pytest.approx(0.5) and means[2, 1] == pytest.approx(0.7)
    assert counts[2, 0] == 1 and counts[2, 1] == 2
    # A face without AUs and classes without faces: nothing measured, NaN.
    assert np.isnan(means[3]).all() and np.isnan(means[0]).all() and counts[3].sum() == 0
