"""Sharded TFRecord files of schema v1: an atomic writer and a validating reader (the dataset card that lists the
shards is `expr3d.data.dataset_card`).

Layout of a dataset directory:
    dataset_card.json              schema version, image size, conventions, per-split/per-class counts, provenance
    train-00000.tfrecord ...       shards of the train split
    test-00000.tfrecord ...        shards of the test split

A shard is written under a hidden temporary name and renamed into place only when complete, so a killed writer never
leaves a file the reader would take for a shard.
"""
import glob
import os
import re
import tempfile

import numpy as np

from expr3d import storage
from expr3d.data import schema
from expr3d.data.dataset_card import CARD_NAME, DIAL_RENDERS, read_dataset_card
from expr3d.labels import EXPRESSIONS, NUM_ACTION_UNITS

_SHARD_RE = re.compile(r"^(?P<split>[a-z0-9_]+)-(?P<index>\d{5})\.tfrecord$")


def shard_name(split, index):
    return f"{split}-{index:05d}.tfrecord"


def list_shards(data_dir, split):
    """Return the sorted complete shard paths of `split` in `data_dir` (temporary files are never listed)."""
    paths = glob.glob(os.path.join(glob.escape(data_dir), f"{split}-*.tfrecord"))
    return sorted(p for p in paths if _SHARD_RE.match(os.path.basename(p)))


def write_shard(path, serialized_examples):
    """Write serialized examples to `path` atomically; return the count. Used by parallel writers."""
    import tensorflow as tf

    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=directory)
    os.close(fd)
    count = 0
    try:
        with tf.io.TFRecordWriter(tmp) as writer:
            for record in serialized_examples:
                writer.write(record)
                count += 1
        storage.publish(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return count


class ShardedWriter:
    """Writes FaceExamples of one split into shards of `examples_per_shard`, each renamed into place when complete.

    Args:
        data_dir: the dataset directory (created if missing).
        split: split name ("train", "test").
        examples_per_shard: examples per shard.
        overwrite: if False, refuse when shards of this split already exist; if True, delete them first.
        first_index: number of the first shard (parallel writers use disjoint ranges).

    Example:
        with ShardedWriter("data/synthetic64", "train") as writer:
            for example in examples:
                writer.write(example)
    """

    def __init__(self, data_dir, split, examples_per_shard=512, overwrite=False, first_index=0):
        if examples_per_shard < 1:
            raise ValueError(f"examples_per_shard must be >= 1, got {examples_per_shard}")
        if not re.fullmatch(r"[a-z0-9_]+", split):
            raise ValueError(f"split must be lower-case letters, digits or '_', got {split!r}")
        os.makedirs(data_dir, exist_ok=True)
        existing = list_shards(data_dir, split)
        if existing and not overwrite:
            raise FileExistsError(f"{data_dir} already holds {len(existing)} '{split}' shard(s); "
                                  f"pass --overwrite to replace them")
        for path in existing:
            os.remove(path)
        self.data_dir = data_dir
        self.split = split
        self.examples_per_shard = examples_per_shard
        self._index = first_index
        self._buffer = []
        self.shards = []
        self.count = 0

    def write(self, example):
        """Append one FaceExample (or already-serialized bytes)."""
        record = example if isinstance(example, bytes) else schema.encode_example(example)
        self._buffer.append(record)
        self.count += 1
        if len(self._buffer) >= self.examples_per_shard:
            self._flush()

    def _flush(self):
        if not self._buffer:
            return
        path = os.path.join(self.data_dir, shard_name(self.split, self._index))
        write_shard(path, self._buffer)
        self.shards.append(path)
        self._buffer = []
        self._index += 1

    def close(self):
        self._flush()

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.close()
        # On error the buffered examples are dropped: no partial shard is written.
        return False


def _records(path, name=None):
    """Yield raw records of one shard, turning TF's data-loss errors into RecordError naming the shard."""
    import tensorflow as tf

    index = -1
    name = name or os.path.basename(path)
    try:
        for index, record in enumerate(tf.data.TFRecordDataset(path).as_numpy_iterator()):
            yield index, record
    except (tf.errors.DataLossError, tf.errors.OutOfRangeError, tf.errors.InvalidArgumentError) as error:
        raise schema.RecordError(f"{name}: truncated or corrupt shard after record {index} "
                                 f"({type(error).__name__}: {schema.tf_error_text(error)})") from None


def scan_shard(path):
    """Count the examples of one shard by class, reading labels only. Raises RecordError naming the shard."""
    counts = {name: 0 for name in EXPRESSIONS}
    identities, pairs = set(), set()
    total = 0
    name = os.path.basename(path)
    for index, record in _records(path):
        expression, identity, pair_id, _ = schema.read_labels(record, where=f"{name} record {index}")
        counts[EXPRESSIONS[expression]] += 1
        identities.add(identity)
        if pair_id >= 0:
            pairs.add(pair_id)
        total += 1
    return {"file": name, "num_examples": total, "counts": counts, "identities": identities, "pairs": pairs}


def iterate_examples(data_dir, split, skip_corrupt=False, stats=None, log=None):
    """Yield fully decoded and validated FaceExamples of `split`.

    With a dataset card, its shards in its order (a listed shard that is missing is an error) and its image_size
    (a record of another size is an error); without one, the shards found on disk. Raises RecordError naming the
    shard, the record and the field. With `skip_corrupt`, bad records, missing shards and the rest of truncated
    shards are skipped instead: `stats` (a dict you pass in) counts them - "skipped" records (a missing shard counts
    its card's records, a truncated one the records it lost, when the card says), "skipped_shards" - and `log` (a
    callable) gets one line per skip.
    """
    card = read_dataset_card(data_dir) if os.path.exists(os.path.join(data_dir, CARD_NAME)) else None
    if card is not None and split in card.get("splits", {}):
        shards = split_files(data_dir, split, card, missing_ok=skip_corrupt)
        expected = [shard.get("num_examples") for shard in card["splits"][split]["shards"]]
        expected_size = int(card["image_size"])
    else:
        shards = list_shards(data_dir, split)
        expected, expected_size = [None] * len(shards), None
    if not shards:
        raise FileNotFoundError(f"no '{split}' shards in {data_dir}")

    def skipped(count, message, shard=False):
        if stats is not None:
            stats["skipped"] = stats.get("skipped", 0) + count
            if shard:
                stats["skipped_shards"] = stats.get("skipped_shards", 0) + 1
        if log is not None:
            log(f"skipped: {message}")

    for path, count in zip(shards, expected):
        if not os.path.exists(path):
            skipped(count or 0, f"{path}: shard listed in {CARD_NAME} is missing ({count} records)", shard=True)
            continue
        read = 0
        try:
            for index, record in _records(path, name=path):
                read = index + 1
                try:
                    yield schema.decode_example(record, where=f"{path} record {index}", expected_size=expected_size)
                except schema.RecordError as error:
                    if not skip_corrupt:
                        raise
                    skipped(1, str(error))
            if count is not None and read < count:
                raise schema.RecordError(f"{path}: truncated or corrupt shard: read {read} of {count} records "
                                         f"listed in {CARD_NAME}")
        except schema.RecordError as error:
            if not skip_corrupt:
                raise
            skipped(max((count or read) - read, 0), str(error), shard=True)


def class_mean_action_units(data_dir, split="train"):
    """Per expression class, the mean of each AU over the measured intensities of `split` (labels only, no image
    decoding): float64 [8, 17] means (NaN where a class has no measured value) and int64 [8, 17] counts. What an
    expression label says about a face's AUs at best. The dial renders the card lists (a class's render with one AU
    set at random, data/README.md) are left out: their label is not what their AUs show. Raises RecordError naming
    the shard and record."""
    card = read_dataset_card(data_dir)
    dials = card.get(DIAL_RENDERS)
    dial_suffix = dials.get("key_suffix") if isinstance(dials, dict) and dials.get("split") == split else None
    sums = np.zeros((len(EXPRESSIONS), NUM_ACTION_UNITS))
    counts = np.zeros((len(EXPRESSIONS), NUM_ACTION_UNITS), np.int64)
    for path in split_files(data_dir, split, card):
        for index, record in _records(path, name=path):
            expression, aus, valid, key = schema.read_action_units(record, where=f"{path} record {index}")
            if aus is not None and not (dial_suffix and key.endswith(dial_suffix)):
                sums[expression] += np.where(valid, aus, 0.0)
                counts[expression] += valid
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan), counts


def split_files(data_dir, split, card=None, missing_ok=False):
    """The shard paths of `split` listed in the card, checked to exist (MissingShardError naming the first missing
    one; with `missing_ok`, missing shards are listed too and the caller deals with them)."""
    card = card or read_dataset_card(data_dir)
    if split not in card["splits"]:
        raise ValueError(f"{data_dir}: split '{split}' not in the dataset card (has {sorted(card['splits'])})")
    paths = []
    for shard in card["splits"][split]["shards"]:
        path = os.path.join(data_dir, shard["file"])
        if not missing_ok and not os.path.exists(path):
            raise schema.MissingShardError(f"{path}: shard listed in {CARD_NAME} is missing "
                                           f"({shard.get('num_examples', '?')} records)")
        paths.append(path)
    return paths


def verify_split(data_dir, split, card=None):
    """Check every shard of `split` reads to the end with the card's count. Raises RecordError naming the shard."""
    card = card or read_dataset_card(data_dir)
    for shard, path in zip(card["splits"][split]["shards"], split_files(data_dir, split, card)):
        count = sum(1 for _ in _records(path))
        if count != shard["num_examples"]:
            raise schema.RecordError(f"{shard['file']}: holds {count} records, the dataset card says "
                                     f"{shard['num_examples']}")
