"""Damaged copies of small datasets, one kind of damage per case, for the bad-data tests of every CLI.

    data_dir = corrupt.damaged_copy(clean_dir, tmp_path / "data", "train", "nan_depth")

Record-level damage rewrites a shard through `records.write_shard` (the framing and CRCs stay valid, the card's
counts stay right): only the reader's checks can find it. `CASES` maps each case to the regex its one-line error
must match, given the damaged shard's path.
"""
import os
import re
import shutil

import cv2
import numpy as np

from expr3d.data import dataset_card, records, schema

CASES = ("truncated_shard", "missing_field", "wrong_type", "missing_shard", "nan_depth", "zero_mask",
         "size_mismatch")


def write_dataset(data_dir, size=32, train_per_class=3, test_per_class=1, train_per_shard=8, test_per_shard=4):
    """A small dataset of hemispheres (8 classes) with several shards per split, so one shard can be damaged."""
    from tests.data.fixtures import hemisphere_example

    index = 0
    for split, per_class, per_shard in (("train", train_per_class, train_per_shard),
                                        ("test", test_per_class, test_per_shard)):
        with records.ShardedWriter(str(data_dir), split=split, examples_per_shard=per_shard) as writer:
            for i in range(per_class):
                for expression in range(8):
                    example = hemisphere_example(size=size, expression=expression, identity=index % 5,
                                                 key=f"{split}-{index}", radius=0.2 + 0.03 * expression, seed=index,
                                                 pair_id=i if split == "test" else -1)
                    writer.write(example)
                    index += 1
    dataset_card.write_dataset_card(str(data_dir), name="corrupt-test-hemispheres", image_size=size)
    return str(data_dir)


def readable_records(path):
    """How many records TensorFlow's reader gets out of a shard before an error."""
    import tensorflow as tf

    assert os.path.exists(path), path  # TFRecordDataset(missing).ignore_errors() would retry forever
    return sum(1 for _ in tf.data.TFRecordDataset(path).ignore_errors())


def _example(serialized):
    import tensorflow as tf

    return tf.train.Example.FromString(serialized)


def _missing_field(serialized, size):
    proto = _example(serialized)
    del proto.features.feature["image/encoded"]
    return proto.SerializeToString()


def _wrong_type(serialized, size):
    proto = _example(serialized)
    value = proto.features.feature["label/expression"].int64_list.value[0]
    proto.features.feature["label/expression"].Clear()
    proto.features.feature["label/expression"].float_list.value.append(float(value))
    return proto.SerializeToString()


def _nan_depth(serialized, size):
    proto = _example(serialized)
    proto.features.feature["depth/scale"].float_list.value[:] = [float("nan")]
    return proto.SerializeToString()


def _zero_mask(serialized, size):
    proto = _example(serialized)
    empty = cv2.imencode(".png", np.zeros((size, size), np.uint8))[1].tobytes()
    proto.features.feature["mask/encoded"].bytes_list.value[:] = [empty]
    return proto.SerializeToString()


def _size_mismatch(serialized, size):
    """A self-consistent record (every map and the header agree) at half the card's size."""
    from tests.data.fixtures import hemisphere_example

    example = schema.decode_example(serialized)
    half = hemisphere_example(size=size // 2, expression=example.expression, identity=example.identity,
                              key=example.key, pair_id=example.pair_id)
    return schema.encode_example(half)


RECORD_DAMAGE = {"missing_field": _missing_field, "wrong_type": _wrong_type, "nan_depth": _nan_depth,
                 "zero_mask": _zero_mask, "size_mismatch": _size_mismatch}

# What the one-line message says besides the shard (and, for record damage, "record N").
WHAT = {"truncated_shard": "truncated or corrupt shard", "missing_field": "field 'image/encoded' is missing",
        "wrong_type": "field 'label/expression' is stored as float_list", "missing_shard": "is missing",
        "nan_depth": "non-finite", "zero_mask": "field 'mask/encoded' is empty",
        "size_mismatch": "image_size"}


def damage(data_dir, split, case, shard=-1, indices=None):
    """Damage `data_dir` in place; return the path of the damaged shard (`shard`: its position in the card's list).

    `indices`: the records to damage (default: all of the shard)."""
    card = dataset_card.read_dataset_card(data_dir)
    path = records.split_files(data_dir, split, card)[shard]
    if case == "truncated_shard":
        with open(path, "rb") as handle:
            data = handle.read()
        with open(path, "wb") as handle:
            handle.write(data[: len(data) * 3 // 5])
    elif case == "missing_shard":
        os.remove(path)
    else:
        import tensorflow as tf

        serialized = [record.numpy() for record in tf.data.TFRecordDataset(path)]
        chosen = range(len(serialized)) if indices is None else indices
        for index in chosen:
            serialized[index] = RECORD_DAMAGE[case](serialized[index], int(card["image_size"]))
        records.write_shard(path, serialized)
    return path


def damaged_copy(source, destination, split, case, shard=-1, indices=None):
    """A copy of the dataset `source` at `destination` with `damage` applied; returns (data_dir, damaged shard)."""
    shutil.copytree(source, destination)
    return str(destination), damage(str(destination), split, case, shard=shard, indices=indices)


def message_pattern(case, shard_path):
    """The regex a one-line error of `case` on `shard_path` must match."""
    where = re.escape(shard_path) + ("" if case in ("truncated_shard", "missing_shard") else r" record \d+")
    return where + r".*" + re.escape(WHAT[case])


def last_line(stderr):
    """The last non-empty line of a command's stderr."""
    lines = [line for line in stderr.splitlines() if line.strip()]
    return lines[-1] if lines else ""
