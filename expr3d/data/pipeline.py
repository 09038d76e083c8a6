# Over 400 lines: the tf.data stages and the scan that names bad records (scan_split) share one shard reader.
"""The tf.data input pipeline: sharded TFRecords of schema v1 -> augmented, normalised batches.

    dataset = make_dataset("data/synthetic64", "train", batch_size=16)
    batch = next(iter(dataset))  # a dict, see below

Stages (training mode):
    shard list from the dataset card -> seeded shuffle of the files (reshuffled every epoch) -> repeat ->
    parallel interleave of the shards (each read in its own dataset, so a truncated or corrupt shard is reported by
    name) -> seeded shuffle of the SERIALIZED records (small buffers, small iterator checkpoints) -> element index ->
    optional class-balanced rejection (before decoding) -> parallel parse + decode + augmentation -> batch by the
    global batch size -> prefetch.

Batches are dicts of:
    image  float32 [B, S, S, 3] in [-1, 1] (RGB uint8 / 127.5 - 1)
    depth  float32 [B, S, S, 1] in [-1, 1]
    normals float32 [B, S, S, 3] unit camera-space vectors inside the mask, 0 outside
    mask   float32 [B, S, S, 1] in {0, 1}
    expression int32 [B]; action_units float32 [B, 17]; has_action_units bool [B]; action_units_mask float32
    [B, 17] (1 where an AU intensity is measured; schema.parse_example); identity int64 [B]; pair_id int64 [B];
    key string [B]

Depth convention (the README's "depth convention"): records store z_depth, the positive distance along the optical
axis (smaller = nearer). The pipeline maps it per face, after cropping and resizing, to
    depth = 1 - 2 * (z - z_min) / (z_max - z_min)   inside the mask,   -1 outside,
with z_min / z_max the nearest / farthest valid depth of that face: +1 is the nearest point, -1 the farthest valid
point AND the background. A face of constant depth maps to +1 everywhere inside its mask. The GAN's 3-channel
"geometry map" is this depth replicated three times (or the normals); depth is read back as the channel mean.

Augmentation keeps geometry consistent: a horizontal flip mirrors image, depth, normals and mask and negates the
normals' x component; a random crop (side fraction drawn from `crop`, aspect kept) and the resize to `image_size`
apply identically to all four. Depth and normals are resized mask-weighted, resize(v * mask) / resize(mask), so
values never blend with the background; the mask is thresholded at 0.5 and normals renormalised to unit length.
All randomness of an element is stateless, seeded by (seed, element index), so a deterministic run is bit-identical
regardless of parallelism, and the data position can be checkpointed with `tf.train.Checkpoint(iterator=...)`.

Bad data: every record is checked as it is parsed (`schema.parse_example`: fields, formats, sizes against the card,
a non-empty mask, finite positive depth) and every shard's record count against the card. The first bad record stops
the iteration; `checked` / `describe_read_error` turn the error into one line naming the shard and the record (a
scan finds the record when TensorFlow's own parser failed). With `skip_corrupt=True` bad records, missing shards and
the rest of truncated shards are skipped instead, and `scan_split` counts and names them (the CLIs' --skip_corrupt).
"""
import os

from absl import logging

from expr3d.data import dataset_card, records, schema
from expr3d.labels import NUM_EXPRESSIONS

GEOMETRY_KINDS = ("depth", "normals")
_MAX_CYCLE_LENGTH = 8
_EPS = 1e-6


def _tf():
    import tensorflow as tf

    return tf


# --- sampling ------------------------------------------------------------------------------------------------------

def balanced_acceptance(counts):
    """Per-class keep probabilities that make the kept stream uniform over the classes present (count > 0)."""
    present = [count for count in counts if count > 0]
    if not present:
        raise ValueError("balanced sampling needs at least one example")
    smallest = min(present)
    return [smallest / count if count > 0 else 0.0 for count in counts]


# --- per-example ops (usable eagerly and inside tf.data.map) ------------------------------------------------------

def graph_only(function):
    """`function`, for tf.data, traced as written, without autograph's conversion: the pipeline's functions use tf ops
    only (tf.cond, no Python control flow on tensors), and converting each map/filter function cost seconds of every
    process's start-up (7.8 s of a tiny training run's 45 s, measured with cProfile)."""
    return _tf().autograph.experimental.do_not_convert(function)


def element_seeds(seed, index, num=4):
    """`num` stateless seeds [num, 2] derived from (seed, element index)."""
    tf = _tf()
    key = tf.stack([tf.cast(seed, tf.int64), tf.cast(index, tf.int64)])
    return tf.random.experimental.stateless_split(key, num=num)


def normalize_depth(depth, mask):
    """Map z_depth [..., H, W, 1] per face to [-1, 1]: +1 nearest valid point, -1 farthest valid and background."""
    tf = _tf()
    valid = mask > 0.5
    big = tf.constant(3.0e38, depth.dtype)
    z_min = tf.reduce_min(tf.where(valid, depth, big), axis=[-3, -2, -1], keepdims=True)
    z_max = tf.reduce_max(tf.where(valid, depth, -big), axis=[-3, -2, -1], keepdims=True)
    span = tf.maximum(z_max - z_min, 1e-12)
    scaled = 1.0 - 2.0 * (depth - z_min) / span
    return tf.where(valid, tf.clip_by_value(scaled, -1.0, 1.0), -tf.ones_like(depth))


def preprocess(features, image_size, augment=False, seed=(0, 0), flip=True, crop=(0.85, 1.0), antialias=True,
               force_flip=None):
    """Turn one parsed example (`schema.parse_example`) into the pipeline's normalised element.

    Args:
        features: dict from `schema.parse_example` (image uint8 [H,W,3], depth z [H,W,1], mask, normals, labels).
        image_size: output side S.
        augment: apply the random flip and crop.
        seed: a stateless seed [2] (see `element_seeds`); only used when `augment`.
        flip: allow horizontal flips (probability 0.5).
        force_flip: None, or a scalar bool tensor that decides the flip instead of the draw (with `augment`; even
            with `flip` False). The draws of the crop stay the same either way.
        crop: (min, max) side fraction of the random crop, or None for no crop.
        antialias: filter when shrinking (needed well below the source size; costs ~3x a plain bilinear resize,
            which is exact when enlarging).

    Returns:
        A dict with image/depth/normals/mask of size S (see the module docstring) and the labels unchanged.
    """
    tf = _tf()
    image = tf.cast(features["image"], tf.float32)
    mask = tf.cast(features["mask"], tf.float32)
    # One stack, so flip, crop and resize are identical for every map; depth and normals premultiplied by the mask.
    stack = tf.concat([image, features["depth"] * mask, features["normals"] * mask, mask], axis=-1)
    height, width = tf.shape(stack)[0], tf.shape(stack)[1]
    if augment:
        seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), num=3)
        if flip or force_flip is not None:
            do_flip = _flip_draw(seeds[0]) if force_flip is None else tf.cast(force_flip, tf.bool)
            mirrored = tf.reverse(stack, axis=[1]) * tf.constant([1, 1, 1, 1, -1, 1, 1, 1], tf.float32)
            stack = tf.where(do_flip, mirrored, stack)
        if crop is not None:
            scale = tf.random.stateless_uniform([], seed=seeds[1], minval=crop[0], maxval=crop[1])
            crop_h = tf.clip_by_value(tf.cast(tf.round(scale * tf.cast(height, tf.float32)), tf.int32), 1, height)
            crop_w = tf.clip_by_value(tf.cast(tf.round(scale * tf.cast(width, tf.float32)), tf.int32), 1, width)
            offsets = tf.random.stateless_uniform([2], seed=seeds[2])
            top = tf.minimum(tf.cast(offsets[0] * tf.cast(height - crop_h + 1, tf.float32), tf.int32), height - crop_h)
            left = tf.minimum(tf.cast(offsets[1] * tf.cast(width - crop_w + 1, tf.float32), tf.int32), width - crop_w)
            stack = stack[top:top + crop_h, left:left + crop_w]
    def resize():
        # Linear (antialiased: a wider linear filter), so the mask-weighted ratio below stays a weighted mean.
        return tf.image.resize(stack, [image_size, image_size], method="bilinear", antialias=antialias)

    if augment:
        stack = resize()
    else:
        same_size = tf.logical_and(tf.equal(height, image_size), tf.equal(width, image_size))
        stack = tf.cond(same_size, lambda: tf.identity(stack), resize)
    image, depth_w, normals_w, mask_w = tf.split(stack, [3, 1, 3, 1], axis=-1)
    mask = tf.cast(mask_w >= 0.5, tf.float32)
    weight = tf.maximum(mask_w, _EPS)
    depth_z = depth_w / weight * mask
    normals = tf.math.l2_normalize(normals_w / weight, axis=-1) * mask
    out = {
        "image": tf.ensure_shape(tf.clip_by_value(image, 0.0, 255.0) / 127.5 - 1.0, [image_size, image_size, 3]),
        "depth": tf.ensure_shape(normalize_depth(depth_z, mask), [image_size, image_size, 1]),
        "normals": tf.ensure_shape(normals, [image_size, image_size, 3]),
        "mask": tf.ensure_shape(mask, [image_size, image_size, 1]),
    }
    for name in ("expression", "action_units", "has_action_units", "action_units_mask", "identity", "pair_id", "key"):
        out[name] = features[name]
    return out


def _flip_draw(flip_seed):
    tf = _tf()
    return tf.random.stateless_uniform([], seed=flip_seed) < 0.5


def flip_draw(seed, index):
    """The horizontal flip `parse_and_preprocess(..., index, augment=True, seed=seed)` draws (a scalar bool)."""
    tf = _tf()
    return _flip_draw(tf.random.experimental.stateless_split(tf.cast(element_seeds(seed, index)[0], tf.int64),
                                                             num=3)[0])


def parse_and_preprocess(serialized, source, index, image_size, augment=False, seed=0, flip=True,
                         crop=(0.85, 1.0), antialias=True, expected_size=None, force_flip=None):
    """`schema.parse_example` + `preprocess`, with the element's stateless seed derived from (seed, index)."""
    features = schema.parse_example(serialized, source=source, expected_size=expected_size)
    seeds = element_seeds(seed, index)
    return preprocess(features, image_size, augment=augment, seed=seeds[0], flip=flip, crop=crop,
                      antialias=antialias, force_flip=force_flip)


# --- helpers for the trainer and export ---------------------------------------------------------------------------

def geometry_map(batch, kind):
    """The GAN's 3-channel geometry map of a batch: depth replicated x3 ("depth") or the normals ("normals")."""
    import keras

    if kind == "depth":
        depth = batch["depth"]
        return keras.ops.concatenate([depth, depth, depth], axis=-1)
    if kind == "normals":
        return batch["normals"]
    raise ValueError(f"geometry kind must be one of {GEOMETRY_KINDS}, got {kind!r}")


def depth_from_geometry_map(geometry):
    """Depth [..., 1] read back from a 3-channel geometry map: the mean of its channels."""
    import keras

    return keras.ops.mean(geometry, axis=-1, keepdims=True)


def distribute_batch(strategy, batch, local=False):
    """Split a global batch into per-replica batches (replica i gets rows [i*B/n, (i+1)*B/n)).

    Across workers (MultiWorkerMirroredStrategy) each worker passes the same global batch and keeps its own
    replicas' rows: replica i is global, its device the worker's own (i modulo the worker's devices). `local`: the
    batch is this worker's own (data sharded by file), split over the worker's replicas only.
    Use this with a plain iterator of `make_dataset` instead of `strategy.experimental_distribute_dataset` when the
    data position must be checkpointed: TF 2.21's distributed iterators are not trackable, a plain one is
    (`tf.train.Checkpoint(iterator=iterator)`). With one replica the batch is returned unchanged.
    """
    tf = _tf()
    if strategy.num_replicas_in_sync == 1:
        return batch
    devices = strategy.extended.worker_devices
    replicas = len(devices) if local else strategy.num_replicas_in_sync
    size = int(tf.nest.flatten(batch)[0].shape[0])
    if size % replicas:
        raise ValueError(f"the {'worker' if local else 'global'} batch of {size} does not split evenly over {replicas} replicas; "
                         f"use a batch_size divisible by {replicas} (and drop_remainder=True)")

    def replica_values(context):
        index = context.replica_id_in_sync_group % replicas if local else context.replica_id_in_sync_group

        def part(tensor):
            piece = tf.split(tensor, replicas, axis=0)[index]
            if tensor.dtype == tf.string:
                return piece  # strings stay on the host
            with tf.device(devices[index % len(devices)]):
                return tf.identity(piece)

        return tf.nest.map_structure(part, batch)

    return strategy.experimental_distribute_values_from_function(replica_values)


# --- the dataset --------------------------------------------------------------------------------------------------

def _read_shard(path, expected, skip_corrupt):
    """Records of one shard tagged with "<path> record <index>"; a short read (truncation, CRC error) is reported by
    name.

    TFRecordDataset's DataLossError does not name the file. Each shard is read on its own, errors end it
    (ignore_errors), and a sentinel after the last record compares the count with the card: a mismatch fails with
    the shard's path (one line, `schema.data_error_line`), or with `skip_corrupt` logs a warning and continues.
    The element structure (record, source string) is what iterator checkpoints of earlier runs hold.
    """
    tf = _tf()
    # Checked again each time the shard is opened (every epoch): a shard deleted or made unreadable during a run
    # must fail (or be skipped) by name, not reach TFRecordDataset(...).ignore_errors(), which retries forever.
    present = _shard_present(path)
    if skip_corrupt:
        warn = tf.cond(present, tf.no_op, lambda: tf.print(
            "WARNING: expr3d.data.pipeline:", path, f": shard listed in {dataset_card.CARD_NAME} is missing or "
            "unreadable - skipped", output_stream=logging.warning))
    else:
        def fail():
            line = tf.strings.join([schema.DATA_ERROR_PREFIX, path, f": shard listed in {dataset_card.CARD_NAME} is "
                                    "missing or unreadable (deleted or moved while the command was reading it?)"])
            with tf.control_dependencies([tf.debugging.Assert(False, [line])]):
                return tf.no_op()

        warn = tf.cond(present, tf.no_op, fail)
    with tf.control_dependencies([warn]):
        limit = tf.where(present, tf.constant(-1, tf.int64), tf.constant(0, tf.int64))
    # take(0) never opens the file.
    tagged = tf.data.TFRecordDataset(path, buffer_size=1 << 20).take(limit).ignore_errors().map(
        graph_only(lambda record: (record, tf.constant(False))))
    tagged = tagged.concatenate(tf.data.Dataset.from_tensors((tf.constant(b""), tf.constant(True))))

    def count(read, element):
        record, is_end = element
        return read + tf.cast(tf.logical_not(is_end), tf.int64), (record, is_end, read)

    def check(record, is_end, read):
        complete = tf.logical_or(tf.logical_not(is_end), tf.equal(read, expected))

        def message():  # built only for a shard that came up short
            return tf.strings.join([path, ": truncated or corrupt shard: read ", tf.strings.as_string(read), " of ",
                                    tf.strings.as_string(expected), f" records listed in {dataset_card.CARD_NAME}"])

        if skip_corrupt:
            deps = [tf.cond(complete, tf.no_op,
                            lambda: tf.print("WARNING: expr3d.data.pipeline:", message(), "- skipped the rest",
                                             output_stream=logging.warning))]
        else:
            def fail():
                line = tf.strings.join([schema.DATA_ERROR_PREFIX, message()])
                with tf.control_dependencies([tf.debugging.Assert(False, [line])]):
                    return tf.constant(False)

            deps = [tf.cond(complete, lambda: tf.constant(True), fail)]
        with tf.control_dependencies(deps):
            # `read` counts the records before this one: it is this record's index in the shard.
            return tf.identity(record), is_end, tf.strings.join([path, " record ", tf.strings.as_string(read)])

    checked = tagged.scan(tf.constant(0, tf.int64), graph_only(count)).map(graph_only(check))
    return checked.filter(graph_only(lambda record, is_end, source: tf.logical_not(is_end))).map(
        graph_only(lambda record, is_end, source: (record, source)))


def _shard_present(path):
    """A scalar bool tensor: `path` exists (an in-graph check a checkpointed iterator can hold: MatchingFiles, with
    the glob characters of the path escaped)."""
    tf = _tf()
    pattern = tf.strings.regex_replace(path, r"([\\*?\[\]])", r"\\\1")
    return tf.size(tf.io.matching_files(pattern)) > 0


def _label_of(serialized):
    tf = _tf()
    parsed = tf.io.parse_single_example(serialized, {"label/expression": tf.io.FixedLenFeature([], tf.int64)})
    return tf.clip_by_value(tf.cast(parsed["label/expression"], tf.int32), 0, NUM_EXPRESSIONS - 1)


def make_dataset(data_dir, split, batch_size, image_size=None, training=True, seed=0, shuffle_buffer=2048,
                 augment=None, flip=True, crop=(0.85, 1.0), balanced=False, deterministic=False, repeat=None,
                 drop_remainder=None, skip_corrupt=False, num_parallel_calls=None, allow_resize=True, options=None,
                 shard=None):
    """A `tf.data.Dataset` of batches (see the module docstring) from the dataset in `data_dir`.

    Args:
        data_dir: a dataset directory with `dataset_card.json` and shards.
        split: "train" or "test" (any split in the card).
        batch_size: the GLOBAL batch size (split per replica with `distribute_batch`, which keeps the iterator
            checkpointable, or with `strategy.experimental_distribute_dataset`).
        image_size: output side; None = the card's size. Another size resizes (if `allow_resize`).
        training: shuffles files and records; sets the defaults of augment, repeat and drop_remainder.
        seed: seeds the shuffles, the augmentation and balanced sampling.
        shuffle_buffer: records in the shuffle buffer (serialized, so cheap); 0 disables record shuffling.
        augment: random flip/crop (default: `training`).
        flip: allow horizontal flips when augmenting.
        crop: (min, max) side fraction of the random crop, or None.
        balanced: keep elements with class-dependent probability so the classes present are equally frequent.
        deterministic: same seed -> bit-identical batches (costs some throughput). Evaluation mode
            (`training=False`) is always deterministic: shards in card order, records in file order.
        repeat: repeat forever (default: `training`).
        drop_remainder: drop a last partial batch (default: `training`).
        skip_corrupt: skip bad records (every check of `schema.parse_example`), missing shards and the rest of
            truncated shards instead of failing (missing and truncated shards are logged; `scan_split` counts and
            names what is skipped). Without it the first bad record stops the iteration with an error that
            `describe_read_error` turns into one line naming the shard and the record.
        num_parallel_calls: parallelism of interleave/map/batch; None = AUTOTUNE.
        allow_resize: if False, an `image_size` different from the card's is an error.
        options: extra `tf.data.Options` merged in.
        shard: `(index, count)`: read only the split's shards `index, index + count, ...` in card order (a
            multi-worker run sharded by file: each worker its own files; `batch_size` is then the worker's share).

    Example:
        dataset = make_dataset("data/synthetic64", "train", batch_size=16, seed=1)
        iterator = iter(dataset)
        checkpoint = tf.train.Checkpoint(iterator=iterator)  # resumes the exact data position
    """
    tf = _tf()
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    if not isinstance(shuffle_buffer, int) or shuffle_buffer < 0:
        raise ValueError(f"shuffle_buffer must be an int >= 0, got {shuffle_buffer!r}")
    if crop is not None:
        if len(crop) != 2 or not 0.0 < float(crop[0]) <= float(crop[1]) <= 1.0:
            raise ValueError(f"crop must be (min, max) side fractions with 0 < min <= max <= 1, got {crop!r}")
        crop = (float(crop[0]), float(crop[1]))
    card = dataset_card.load_card(data_dir)
    if split not in card["splits"]:
        raise ValueError(f"split {split!r} is not in the dataset card of {data_dir!r} (has {sorted(card['splits'])})")
    image_size = dataset_card.resolve_image_size(card, image_size, data_dir, allow_resize)
    paths = records.split_files(data_dir, split, card, missing_ok=skip_corrupt)
    expected = [int(entry["num_examples"]) for entry in card["splits"][split]["shards"]]
    if shard is not None:
        index, count = shard
        if not 0 <= index < count or len(paths) < count:
            raise ValueError(f"shard {index} of {count}: split {split!r} of {data_dir!r} has {len(paths)} shards")
        paths, expected = paths[index::count], expected[index::count]
    # A shard that cannot be opened must not reach TFRecordDataset(...).ignore_errors(): it would retry forever.
    unreadable = [path for path in paths if os.path.exists(path) and not os.access(path, os.R_OK)]
    if unreadable and not skip_corrupt:
        raise schema.RecordError(f"{unreadable[0]}: shard is not readable (permission denied)")
    if skip_corrupt:
        missing = [path for path in paths if not os.path.exists(path) or path in unreadable]
        for path in missing:
            logging.warning("expr3d.data.pipeline: %s: shard listed in %s is missing or unreadable - skipped", path,
                            dataset_card.CARD_NAME)
        expected = [count for path, count in zip(paths, expected) if path not in missing]
        paths = [path for path in paths if path not in missing]
        if not paths:
            raise schema.MissingShardError(f"every shard of split {split!r} of {data_dir!r} is missing")
    if sum(expected) == 0:
        raise ValueError(f"split {split!r} of {data_dir!r} holds no examples")
    augment = training if augment is None else augment
    repeat = training if repeat is None else repeat
    drop_remainder = training if drop_remainder is None else drop_remainder
    parallel = tf.data.AUTOTUNE if num_parallel_calls is None else num_parallel_calls

    files = tf.data.Dataset.from_tensor_slices((paths, tf.constant(expected, tf.int64)))
    if training:
        files = files.shuffle(len(paths), seed=seed, reshuffle_each_iteration=True)
    if repeat:
        files = files.repeat()
    if training:
        dataset = files.interleave(graph_only(lambda path, count: _read_shard(path, count, skip_corrupt)),
                                   cycle_length=min(len(paths), _MAX_CYCLE_LENGTH), block_length=1,
                                   num_parallel_calls=parallel)
    else:
        # Evaluation reads the shards in card order, so outputs line up with the data across runs.
        dataset = files.flat_map(graph_only(lambda path, count: _read_shard(path, count, skip_corrupt)))
    if training and shuffle_buffer > 0:
        dataset = dataset.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.enumerate()
    if balanced:
        acceptance = tf.constant(balanced_acceptance(dataset_card.class_counts(card, split)), tf.float32)

        def keep(index, element):
            draw = tf.random.stateless_uniform([], seed=element_seeds(seed, index)[1])
            return draw < tf.gather(acceptance, _label_of(element[0]))

        dataset = dataset.filter(graph_only(keep))

    # Antialias only when some output is shrunk by more than 10 %: below that plain bilinear aliases little.
    smallest_source = int(card["image_size"]) * (crop[0] if augment and crop is not None else 1.0)
    antialias = image_size < 0.9 * smallest_source
    stored_size = int(card["image_size"])

    def parse(index, element):
        serialized, source = element
        return parse_and_preprocess(serialized, source, index, image_size, augment=augment, seed=seed, flip=flip,
                                    crop=crop, antialias=antialias, expected_size=stored_size)

    dataset = dataset.map(graph_only(parse), num_parallel_calls=parallel)
    if skip_corrupt:
        dataset = dataset.ignore_errors(log_warning=True)
    dataset = dataset.batch(batch_size, drop_remainder=drop_remainder, num_parallel_calls=parallel)
    dataset = dataset.prefetch(tf.data.AUTOTUNE)
    pipeline_options = tf.data.Options()
    pipeline_options.deterministic = bool(deterministic) or not training
    if options is not None:
        pipeline_options = pipeline_options.merge(options)
    return dataset.with_options(pipeline_options)


# --- finding and naming bad records ---------------------------------------------------------------------------

def scan_split(data_dir, split, card=None, first_only=False):
    """Read every record of `split` through the pipeline's checks (`schema.parse_example`) and report the bad ones.

    Returns {"split", "records": the card's count, "skipped": records no reader can use (a missing shard counts its
    card's records, a truncated shard the records it lost), "problems": one line per bad record or shard, naming the
    shard path and the record index}. The cost is one pass of parsing and decoding (no augmentation or resizing),
    in parallel; used by the CLIs' --skip_corrupt to count and log what is skipped, and by `describe_read_error`
    (with `first_only`: stop at the first problem) to name a record TensorFlow's own errors do not name.
    """
    tf = _tf()
    card = card or dataset_card.load_card(data_dir)
    if split not in card["splits"]:
        raise ValueError(f"split {split!r} is not in the dataset card of {data_dir!r} (has {sorted(card['splits'])})")
    shards = card["splits"][split]["shards"]
    paths = records.split_files(data_dir, split, card, missing_ok=True)
    expected = [int(shard["num_examples"]) for shard in shards]
    size = int(card["image_size"])
    report = {"split": split, "records": sum(expected), "skipped": 0, "problems": []}

    def problem(count, line):
        report["skipped"] += count
        report["problems"].append(line)
        return first_only

    present = []
    for path, count in zip(paths, expected):
        if not os.path.exists(path):
            if problem(count, f"{path}: shard listed in {dataset_card.CARD_NAME} is missing ({count} records)"):
                return report
        elif not os.access(path, os.R_OK):
            if problem(count, f"{path}: shard is not readable (permission denied)"):
                return report
        else:
            present.append((path, count))
    if not present:
        return report

    def shard_stream(path):
        tagged = tf.data.TFRecordDataset(path, buffer_size=1 << 20).ignore_errors().map(
            graph_only(lambda record: (record, tf.constant(False))))
        tagged = tagged.concatenate(tf.data.Dataset.from_tensors((tf.constant(b""), tf.constant(True))))
        return tagged.enumerate().map(graph_only(lambda index, element: (path, index, element[0], element[1])))

    def check(path, index, record, is_end):
        def parsed():
            source = tf.strings.join([path, " record ", tf.strings.as_string(index)])
            return tf.reduce_sum(schema.parse_example(record, source=source, expected_size=size)["mask"])

        return path, index, is_end, tf.cond(is_end, lambda: tf.constant(0.0), parsed)

    dataset = tf.data.Dataset.from_tensor_slices([path for path, _ in present]).flat_map(graph_only(shard_stream))
    # A record failing a check raises inside the map: ignore_errors drops it, and the gap in the indices finds it.
    dataset = dataset.map(graph_only(check), num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).ignore_errors()
    counts = dict(present)
    state = {"path": None, "next": 0}

    def failed(path, indices):
        stop = False
        for index, line in _explain_records(path, indices, size):
            stop = problem(1, line) or stop
            if stop:
                break
        return stop

    for batch in dataset.batch(256).as_numpy_iterator():
        for path, index, is_end in zip(batch[0], batch[1], batch[2]):
            path, index = path.decode("utf-8", "surrogateescape"), int(index)
            if path != state["path"]:
                state.update(path=path, next=0)
            if index > state["next"] and failed(path, range(state["next"], index)):
                return report
            state["next"] = index + 1
            if is_end:
                if index < counts[path] and problem(
                        counts[path] - index, f"{path}: truncated or corrupt shard: read {index} of {counts[path]} "
                                              f"records listed in {dataset_card.CARD_NAME}"):
                    return report
    return report


def _explain_records(path, indices, expected_size):
    """(index, one line) for records of `path` that failed in TensorFlow: the numpy reader's precise message, else
    the TensorFlow message of parsing that record alone."""
    tf = _tf()
    wanted = set(indices)
    try:
        for index, record in records._records(path, name=path):
            if index not in wanted:
                continue
            where = f"{path} record {index}"
            try:
                schema.decode_example(record, where=where, expected_size=expected_size)
            except schema.RecordError as error:
                yield index, str(error)
                continue
            try:
                schema.parse_example(tf.constant(record), source=tf.constant(where), expected_size=expected_size)
                yield index, f"{where}: TensorFlow cannot parse or decode it"
            except tf.errors.OpError as error:
                yield index, schema.data_error_line(error.message) or f"{where}: {schema.tf_error_text(error)}"
    except schema.RecordError:
        return  # the truncation itself is reported from the shard's count


def describe_read_error(error, data_dir, splits):
    """A `schema.RecordError` with ONE line naming the shard and the record for an error raised while reading
    `splits` of `data_dir`, or None when the error is not about the data (the caller re-raises it).

    The pipeline's own checks carry the line in their message; TensorFlow's parser and decoders do not name the
    record, so then the splits are scanned (`scan_split(first_only=True)`) for the first bad record.
    """
    tf = _tf()
    if isinstance(error, schema.RecordError):
        return error
    if not isinstance(error, tf.errors.OpError):
        return None
    line = schema.data_error_line(error.message)
    if line is None:
        try:
            card = dataset_card.load_card(data_dir)
        except (FileNotFoundError, ValueError):
            return None
        for split in splits:
            if split in card["splits"]:
                found = scan_split(data_dir, split, card=card, first_only=True)["problems"]
                if found:
                    line = found[0]
                    break
    return None if line is None else schema.RecordError(line)


def checked(iterable, data_dir, splits):
    """Iterate `iterable` (a dataset or an iterator over `data_dir`'s `splits`), turning data errors raised
    mid-iteration (TensorFlow's, without shard or record) into a one-line `schema.RecordError` naming them."""
    tf = _tf()
    iterator = iter(iterable)
    while True:
        try:
            item = next(iterator)
        except StopIteration:
            return
        except tf.errors.OpError as error:
            described = describe_read_error(error, data_dir, splits)
            if described is None:
                raise
            raise described from None
        yield item

