"""Turns pipeline batches into trainer batches: geometry map, target expressions and gradient-penalty weights.

Every random draw of an iteration (the targets `c_trg`, the gradient-penalty mixing weights) is made here, on the
GLOBAL batch, with stateless ops seeded by (seed, batch index). So a run is a pure function of its data stream: the
data iterator's checkpoint restores the randomness too, and 1 or N replicas see exactly the same numbers.
"""

import tensorflow as tf

from expr3d.data import dataset_card, pairs, pipeline
from expr3d.training import critic_augment as critic_augment_module

TARGET_MODES = ("permute", "uniform", "paired")
TRAINER_KEYS = ("image", "geometry", "expression", "target", "alpha", "alpha_depth")
PAIRED_KEYS = ("target_image",)  # with target_mode "paired": the true render of `image` under `target`
ACTION_UNIT_KEYS = ("action_units", "action_units_mask")  # with_action_units: the transfer family's AU labels


def add_training_fields(index, batch, geometry, num_classes, seed, target_mode="permute", with_action_units=False,
                        critic_augment=False, au_dial_targets=0.0):
    """One batch of `pipeline.make_dataset` -> the dict the trainers consume (`TRAINER_KEYS`).

    Args:
        index: the batch's position in the stream (from `Dataset.enumerate`), i.e. the stage's iteration.
        batch: a pipeline batch (image, depth, normals, expression, ...).
        geometry: "depth" (depth replicated x3) or "normals".
        num_classes: expressions, for uniform targets.
        seed: run seed.
        target_mode: "permute" (StarGAN: a random permutation of the batch's own labels), "uniform", or "paired"
            (the batch comes from `pairs.make_paired_dataset`: the target is the label of the pair's other render,
            which is passed on as `target_image`).
        with_action_units: also pass on the AU intensities and their validity mask (`ACTION_UNIT_KEYS`) and those of
            the face whose label became the target (`target_action_units`, `target_action_units_mask`: the AU
            targets of continuous AU control; with "paired", the target render's).
        critic_augment: also pass `critic_augment`, float32 `[B, critic_augment.DRAWS, critic_augment.NUM_UNIFORMS]`
            uniforms in [0, 1): the random numbers of `--critic_augment` (a stream of their own: every other draw
            is the same with and without them).
        au_dial_targets: with `with_action_units`: this fraction of the rows (a stateless draw per row) get as AU
            target not another face's (or, "paired", the true render's) AUs but their own with ONE AU (uniform over
            the 17) set to a uniform intensity in [0, 1] (that AU then counts as known): what a user's dial asks
            (`--au_dial_targets`; other faces' whole AU vectors move AUs only together, as expressions do). With
            "paired" a dialled row has no true render: `pair_weight` `[B]` float32 is 0 there and 1 elsewhere, and
            the trainer leaves those rows out of the terms that compare with `target_image`.
    """
    if target_mode not in TARGET_MODES:
        raise ValueError(f"--target_mode={target_mode!r}: expected one of {', '.join(TARGET_MODES)}")
    labels = tf.cast(batch["expression"], tf.int32)
    size = tf.shape(labels)[0]
    seeds = tf.random.experimental.stateless_split(
        tf.stack([tf.cast(seed, tf.int64), tf.cast(index, tf.int64)]), num=3
    )
    extra = {key: batch[key] for key in ACTION_UNIT_KEYS} if with_action_units else {}
    if target_mode == "permute":
        order = tf.argsort(tf.random.stateless_uniform([size], seed=seeds[0]))
        target = tf.gather(labels, order)
        for key in ACTION_UNIT_KEYS if with_action_units else ():
            extra[f"target_{key}"] = tf.gather(batch[key], order)
        if with_action_units and au_dial_targets > 0:
            extra["target_action_units"], extra["target_action_units_mask"], _ = _dial_targets(
                batch["action_units"], batch["action_units_mask"], extra["target_action_units"],
                extra["target_action_units_mask"], au_dial_targets, tf.random.experimental.stateless_fold_in(
                    seeds[0], 0xD1A1))
    elif target_mode == "paired":
        target = tf.cast(batch["target_expression"], tf.int32)
        extra["target_image"] = batch["target_image"]
        if "partner_image" in batch:
            extra["partner_image"] = batch["partner_image"]
        for key in ACTION_UNIT_KEYS if with_action_units else ():
            extra[f"target_{key}"] = batch[f"target_{key}"]
        if with_action_units and au_dial_targets > 0:
            extra["target_action_units"], extra["target_action_units_mask"], dialled = _dial_targets(
                batch["action_units"], batch["action_units_mask"], extra["target_action_units"],
                extra["target_action_units_mask"], au_dial_targets, tf.random.experimental.stateless_fold_in(
                    seeds[0], 0xD1A1))
            extra["pair_weight"] = 1.0 - tf.cast(dialled, tf.float32)
    else:
        target = tf.random.stateless_uniform([size], seed=seeds[0], minval=0, maxval=num_classes, dtype=tf.int32)
    if critic_augment:
        augment_seed = tf.random.experimental.stateless_fold_in(seeds[0], 0x0A06)
        extra["critic_augment"] = tf.random.stateless_uniform(
            [size, critic_augment_module.DRAWS, critic_augment_module.NUM_UNIFORMS], seed=augment_seed)
    return {
        **extra,
        "image": batch["image"],
        "geometry": tf.cast(pipeline.geometry_map(batch, geometry), tf.float32),
        "expression": labels,
        "target": target,
        "alpha": tf.random.stateless_uniform([size, 1, 1, 1], seed=seeds[1]),
        "alpha_depth": tf.random.stateless_uniform([size, 1, 1, 1], seed=seeds[2]),
    }


def _dial_targets(units, mask, other_units, other_mask, fraction, seed):
    """Rows chosen with probability `fraction`: their own `units` with one AU set to a uniform level (see
    `add_training_fields`); the other rows keep `other_units` / `other_mask`. Returns (units, mask, chosen [B])."""
    size, count = tf.shape(units)[0], tf.shape(units)[1]
    draws = tf.random.experimental.stateless_split(seed, num=3)
    chosen = tf.random.stateless_uniform([size], seed=draws[0]) < fraction
    unit = tf.random.stateless_uniform([size], seed=draws[1], minval=0, maxval=count, dtype=tf.int32)
    level = tf.random.stateless_uniform([size], seed=draws[2])
    dialled = tf.one_hot(unit, count) > 0.5
    own_units = tf.where(dialled, level[:, None], tf.cast(units, tf.float32))
    own_mask = tf.where(dialled, tf.ones_like(mask), mask)
    return (tf.where(chosen[:, None], own_units, tf.cast(other_units, tf.float32)),
            tf.where(chosen[:, None], own_mask, other_mask), chosen)


def worker_seed(seed, worker):
    """The data seed of worker `worker` of a run sharded by file (worker 0: `seed` itself), so that the workers'
    shuffles, augmentation and target draws differ."""
    return int(seed) + 1_000_003 * int(worker)


def training_dataset(data_dir, batch_size, image_size, geometry, num_classes, seed, target_mode="permute",
                     balanced=False, skip_corrupt=False, with_action_units=False, shard=None, critic_augment=False,
                     au_dial_targets=0.0, pair_exemplar="target", contempt_side="as_rendered", dial_pair_share=0.0):
    """The repeated, shuffled, augmented training stream of trainer batches (global batch size); `skip_corrupt`,
    `shard` (this worker's files and share of the batch, then): see `pipeline.make_dataset`. With target_mode
    "paired", the pairs of `pairs.make_paired_dataset` (`pair_exemplar` "partner": with `partner_image`, its
    `exemplar="partner"`; `contempt_side`: see `pairs.make_paired_dataset`; with `with_action_units` the pairs
    include the data's dial renders, `dial_renders=True`, and `dial_pair_share`); `with_action_units`: the
    batches carry `ACTION_UNIT_KEYS` too; `critic_augment`: and the `critic_augment` uniforms; `au_dial_targets`: see
    `add_training_fields`."""
    if pair_exemplar != "target" and target_mode != "paired":
        raise ValueError(f"pair_exemplar={pair_exemplar!r} needs target_mode 'paired', got {target_mode!r}")
    if target_mode == "paired":
        if balanced or skip_corrupt or shard is not None:
            raise ValueError("--target_mode=paired does not combine with --balanced, --skip_corrupt or "
                             "--worker_sharding=file")
        dataset = pairs.make_paired_dataset(data_dir, "train", batch_size, image_size=image_size, seed=seed,
                                            exemplar=pair_exemplar, contempt_side=contempt_side,
                                            dial_renders=with_action_units, dial_pair_share=dial_pair_share)
    else:
        dataset = _unpaired(data_dir, batch_size, image_size, seed, balanced, skip_corrupt, shard)
    return dataset.enumerate().map(
        pipeline.graph_only(lambda index, batch: add_training_fields(
            index, batch, geometry, num_classes, seed, target_mode=target_mode, with_action_units=with_action_units,
            critic_augment=critic_augment, au_dial_targets=au_dial_targets,
        )),
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=True,
    ).prefetch(2)


def _unpaired(data_dir, batch_size, image_size, seed, balanced, skip_corrupt, shard):
    return pipeline.make_dataset(
        data_dir,
        "train",
        batch_size,
        image_size=image_size,
        training=True,
        seed=seed,
        balanced=balanced,
        deterministic=True,
        drop_remainder=True,
        skip_corrupt=skip_corrupt,
        shard=shard,
    )


def sample_batch(data_dir, count, image_size, geometry, scan=64, skip_corrupt=False):
    """The fixed grid sources: `count` unaugmented test examples (train if there is no test split).

    Among the first `max(scan, 8 * count)` examples, one per identity (in order of appearance) is taken, the j-th
    source preferring expression j mod 8, so a paired test split (every identity under all eight expressions, stored
    identity by identity) gives different people with different source expressions. Examples of unknown identity
    (-1, e.g. AffectNet) count as different people. Falls back to the first examples when there are too few
    identities.
    """
    card = dataset_card.load_card(data_dir)
    split = "test" if card["splits"].get("test", {}).get("num_examples", 0) > 0 else "train"
    scan = max(scan, 8 * count)
    dataset = pipeline.make_dataset(
        data_dir, split, max(scan, count), image_size=image_size, training=False, deterministic=True,
        drop_remainder=False, skip_corrupt=skip_corrupt,
    )
    batch = next(iter(dataset))
    identities = batch["identity"].numpy()
    expressions = batch["expression"].numpy()
    chosen = []
    # Unknown identities (-1) are each their own person.
    people = [identity if identity >= 0 else ("unknown", i) for i, identity in enumerate(identities.tolist())]
    for person in dict.fromkeys(people):
        if len(chosen) == count:
            break
        rows = [i for i in range(len(people)) if people[i] == person]
        preferred = [i for i in rows if expressions[i] == len(chosen) % 8]
        chosen.append((preferred or rows)[0])
    for i in range(len(identities)):
        if len(chosen) == count:
            break
        if i not in chosen:
            chosen.append(i)
    index = tf.constant(chosen)
    picked = {key: tf.gather(value, index) for key, value in batch.items()}
    return {
        "image": picked["image"].numpy(),
        "geometry": tf.cast(pipeline.geometry_map(picked, geometry), tf.float32).numpy(),
        "expression": picked["expression"].numpy(),
        "identity": picked["identity"].numpy(),
        "key": [k.decode("utf-8", "replace") for k in picked["key"].numpy()],
    }
