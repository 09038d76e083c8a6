"""Transfer ground truth: for a pair of test identities (A, B), A rendered with B's exact action units in A's own
pose, light and background, and B with A's - what exemplar expression transfer (Shao et al., TIP 2021) should return.

    dataset = make_transfer_dataset("data/synthetic64t", batch_size=16)
    batch = next(iter(dataset))
    batch["source"]["image"], batch["exemplar"]["image"], batch["truth"]["image"]   # [B, S, S, 3] in [-1, 1]

Only procedural datasets have it, and only when asked: `python -m expr3d.data.synthetic --transfer_pairs=N` writes
the split "transfer" (16 records a pair; `expr3d.data.synthetic.dataset` documents how pairs and swaps are drawn).
Each of its records is the truth; `transfer/source_key` names the test-split render it keeps identity, pose, light
and background of (A), and `transfer/exemplar_key` the test-split render whose action units and label it carries
(B). The truth of "A with B's expression" and of "B with A's" for one swap are consecutive records.

Stream: the transfer split's shards in card order -> each record parsed, its two keys looked up in a table of the
test records they name (read once, up front, and held in memory: 16 records a pair) -> the three parsed and
normalised as `pipeline.make_dataset` does in evaluation mode (no augmentation) -> batch -> prefetch.

Batches: {"source": ..., "exemplar": ..., "truth": ...}, each a dict with the keys of `pipeline.make_dataset`
(image, depth, normals, mask, expression, action_units, has_action_units, identity, pair_id, key). The truth's
action_units and expression are the exemplar's; its identity and pair_id are the source's.
"""
import collections

from expr3d.data import dataset_card, pipeline, records, schema

TRANSFER_SPLIT = dataset_card.TRANSFER_SPLIT
SOURCE_SPLIT = "test"
ROLES = ("source", "exemplar", "truth")

TransferExample = collections.namedtuple("TransferExample", ROLES)
TransferExample.__doc__ = "One transfer ground truth with its inputs, as schema.FaceExamples."


def transfer_count(card):
    """Records of the transfer split in a dataset card (0 when it has none)."""
    return int(card["splits"].get(TRANSFER_SPLIT, {}).get("num_examples", 0))


def require_transfer_split(data_dir, card):
    """ValueError (one line naming the directory and the flag that renders it) when `card` has no transfer split."""
    if transfer_count(card) == 0:
        raise ValueError(f"{data_dir}: no transfer ground truth (no '{TRANSFER_SPLIT}' split in its "
                         f"{dataset_card.CARD_NAME}); render a procedural dataset with it: `python -m "
                         f"expr3d.data.synthetic --output=DIR --transfer_pairs=N ...`")


def transfer_references(data_dir, card=None):
    """[(truth key, source key, exemplar key, where)] of the transfer split in file order, labels only (no images).

    A record without both references is a RecordError naming the shard and the record.
    """
    card = card or dataset_card.load_card(data_dir)
    require_transfer_split(data_dir, card)
    references = []
    for path in records.split_files(data_dir, TRANSFER_SPLIT, card):
        for index, record in records._records(path, name=path):
            where = f"{path} record {index}"
            key, source, exemplar = schema.read_transfer_keys(record, where=where)
            if not (source and exemplar):
                raise schema.RecordError(f"{where} (key {key}): transfer ground truth without "
                                         f"{schema.TRANSFER_FEATURES[0 if not source else 1]}")
            references.append((key, source, exemplar, where))
    return references


def _referenced_test_records(data_dir, card, references):
    """{key: (serialized record, "<shard> record <index>")} of the test records `references` name; a name the test
    split does not hold is a RecordError naming the transfer record."""
    wanted = {key for _, source, exemplar, _ in references for key in (source, exemplar)}
    found = {}
    for path in records.split_files(data_dir, SOURCE_SPLIT, card):
        for index, record in records._records(path, name=path):
            where = f"{path} record {index}"
            key = schema.read_labels(record, where=where)[3]
            if key in wanted:
                found[key] = (record, where)
    for truth, source, exemplar, where in references:
        for feature, key in zip(schema.TRANSFER_FEATURES, (source, exemplar)):
            if key not in found:
                raise schema.RecordError(f"{where} (key {truth}): field '{feature}' names {key!r}, which the "
                                         f"'{SOURCE_SPLIT}' split of {data_dir} does not hold")
    return found


def iterate_transfer_examples(data_dir):
    """Yield a TransferExample(source, exemplar, truth) of decoded, validated schema.FaceExamples per transfer
    record, in file order (NumPy; for checks and figures - `make_transfer_dataset` is the batched stream)."""
    card = dataset_card.load_card(data_dir)
    references = transfer_references(data_dir, card)
    size = int(card["image_size"])
    tests = {key: schema.decode_example(record, where=where, expected_size=size)
             for key, (record, where) in _referenced_test_records(data_dir, card, references).items()}
    for truth in records.iterate_examples(data_dir, TRANSFER_SPLIT):
        yield TransferExample(tests[truth.transfer_source_key], tests[truth.transfer_exemplar_key], truth)


def make_transfer_dataset(data_dir, batch_size, image_size=None, drop_remainder=False, allow_resize=True):
    """The batched stream of (source, exemplar, truth) triples of `data_dir` (see the module docstring), in file
    order, once.

    Args:
        data_dir: a procedural dataset with a transfer split (`--transfer_pairs`).
        batch_size: the GLOBAL batch size.
        image_size: output side; None = the card's.
        drop_remainder: drop a last partial batch.
        allow_resize: if False, an `image_size` different from the card's is an error.
    """
    import tensorflow as tf

    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    card = dataset_card.load_card(data_dir)
    references = transfer_references(data_dir, card)
    image_size = dataset_card.resolve_image_size(card, image_size, data_dir, allow_resize)
    stored_size = int(card["image_size"])
    antialias = image_size < 0.9 * stored_size
    tests = _referenced_test_records(data_dir, card, references)
    keys = tf.constant(sorted(tests))
    # Two tables of the same keys: the serialized test record, and where it lies (for a bad record's error line).
    test_records = tf.lookup.StaticHashTable(tf.lookup.KeyValueTensorInitializer(
        keys, tf.constant([tests[key][0] for key in sorted(tests)])), default_value="")
    test_sources = tf.lookup.StaticHashTable(tf.lookup.KeyValueTensorInitializer(
        keys, tf.constant([tests[key][1] for key in sorted(tests)])), default_value="")
    paths = records.split_files(data_dir, TRANSFER_SPLIT, card)
    expected = [int(shard["num_examples"]) for shard in card["splits"][TRANSFER_SPLIT]["shards"]]

    def triple(serialized, source):
        features = schema.parse_example(serialized, source=source, expected_size=stored_size)
        element = {"truth": pipeline.preprocess(features, image_size, antialias=antialias)}
        for role, name in (("source", "transfer_source_key"), ("exemplar", "transfer_exemplar_key")):
            key = features[name]
            parsed = schema.parse_example(test_records.lookup(key), source=test_sources.lookup(key),
                                          expected_size=stored_size)
            element[role] = pipeline.preprocess(parsed, image_size, antialias=antialias)
        return {role: element[role] for role in ROLES}

    files = tf.data.Dataset.from_tensor_slices((paths, tf.constant(expected, tf.int64)))
    dataset = files.flat_map(pipeline.graph_only(lambda path, count: pipeline._read_shard(path, count, False)))
    dataset = dataset.map(pipeline.graph_only(triple), num_parallel_calls=tf.data.AUTOTUNE)
    dataset = dataset.batch(batch_size, drop_remainder=drop_remainder)
    options = tf.data.Options()
    options.deterministic = True
    return dataset.prefetch(tf.data.AUTOTUNE).with_options(options)


__all__ = ["ROLES", "SOURCE_SPLIT", "TRANSFER_SPLIT", "TransferExample", "iterate_transfer_examples",
           "make_transfer_dataset", "require_transfer_split", "transfer_count", "transfer_references"]
