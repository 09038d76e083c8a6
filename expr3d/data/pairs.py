"""Paired training streams: a face and a render of the same identity, pose and light under another expression.

    dataset = make_paired_dataset("data/synthetic64p", "train", batch_size=16, seed=0)
    batch = next(iter(dataset))   # `pipeline.make_dataset`'s keys for the source, plus the pair's target

A dataset is paired where records share a `pair_id` (schema v1: renders of one identity, pose and light under
different expressions): the procedural test split always, its train split with `--train_pairs`. Training against
the true render of the target expression (`--target_mode=paired --lambda_pair`) is what such data allows and
unpaired data (AffectNet) does not.

Stages: shards in card order -> repeat -> records with pair_id >= 0 -> grouped by pair_id (`group_size` at a time;
datasets write a group's records together, so few groups are open at once) -> groups with two different
expressions -> seeded shuffle of the groups (serialized: small buffers) -> group index -> a source and a target of
another expression, drawn statelessly from (seed, index) -> both parsed and augmented with the same seed (the same
flip and crop) -> batch -> prefetch.

Batches: every key of `pipeline.make_dataset` for the source, plus `target_image` float32 [B, S, S, 3] in [-1, 1],
`target_expression` int32 [B] (the target render's label, the training target c_trg) and the target render's
`target_action_units` / `target_action_units_mask` [B, 17] (the target of AU-conditioned training).

With `exemplar="partner"` (procedural data rendered with `--train_swap_pairs`: train identities 2k and 2k + 1 share
their paired groups' exact AUs) a group is both partners' renders (16), the source and target are one partner's, and
the batch also holds `partner_image`: the OTHER identity's render of the target's class, under the target's exact AUs
in its own pose and light. Decoding the source with the partner's expression must give the target: a cross-identity
swap with a known answer (`--pair_exemplar=partner`).

Procedural data rendered with `--train_dial_renders=K` holds after each group's eight renders K *dial renders*
(keys ending `_dial`: one of the group's renders with one AU set to a random level, labelled with its class). With
`dial_renders=True` (AU-conditioned and transfer training) a group is all 8 + K renders and the target is any OTHER
render of it (the source's own class too: its dial render is a dial with a known answer); otherwise dial renders are
left out and the stream is the one of the data without them.
"""

from expr3d.data import dataset_card, pipeline, records
from expr3d.data.dataset_card import DIAL_RENDERS, SWAP_PARTNERS
from expr3d.labels import EXPRESSIONS, NUM_EXPRESSIONS


def paired_count(card, split):
    """Paired groups of `split` in a dataset card (0 when the card does not count them)."""
    return int(card["splits"].get(split, {}).get("num_pairs", 0))


EXEMPLARS = ("target", "partner")
# Where a contempt target's one-sided change is put (`contempt_side`): as rendered (either side), or mirrored so that
# it lies on this side of the picture.
CONTEMPT_SIDES = ("as_rendered", "image_left", "image_right")
_CONTEMPT = EXPRESSIONS.index("contempt")


def make_paired_dataset(data_dir, split, batch_size, image_size=None, seed=0, group_size=NUM_EXPRESSIONS,
                        shuffle_groups=256, flip=True, crop=(0.85, 1.0), allow_resize=True, exemplar="target",
                        contempt_side="as_rendered", dial_renders=False, dial_pair_share=0.0):
    """The repeated, shuffled, augmented stream of (source, target) batches of `split` (see the module docstring).

    Args:
        data_dir: a dataset directory with `dataset_card.json` and shards.
        split: the split to read; it must hold paired records (pair_id >= 0).
        batch_size: the GLOBAL batch size.
        image_size: output side; None = the card's.
        seed: seeds the group shuffle, the source/target draw and the augmentation.
        group_size: records of one pair_id gathered at a time (8: every expression once).
        shuffle_groups: groups in the shuffle buffer.
        flip, crop: augmentation, as `pipeline.make_dataset` (identical for a pair).
        allow_resize: if False, an `image_size` different from the card's is an error.
        exemplar: "target" (pairs of one identity), or "partner" (also `partner_image`; the module docstring).
        contempt_side: "as_rendered", or "image_left" / "image_right": a pair whose target is contempt (one-sided:
            the procedural renderer draws the side at random) is flipped, instead of by the random draw, so that the
            target's change lies on that side of the picture. A one-hot "contempt" says nothing of the side, so
            against renders of either side the paired terms' optimum is the average of both: a faint two-sided
            smile, which judges read as neutral (measured, session 25). The side is that of the change from the
            group's neutral render (from the source where the group has none), about the face mask's centre.
        dial_renders: on data with dial renders, pair any two renders of a group, dial renders included (the module
            docstring); False leaves them out. No effect on data without them.
        dial_pair_share: with `dial_renders`, the fraction of pairs (a draw of their own) whose target is a render of
            the source's own class, i.e. the source and its dial render (or the reverse): one AU changed, with its
            true render. 0: the target is any other render of the group.
    """
    import tensorflow as tf

    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    if group_size < 2:
        raise ValueError(f"group_size must be at least 2, got {group_size!r}")
    card = dataset_card.load_card(data_dir)
    if split not in card["splits"]:
        raise ValueError(f"split {split!r} is not in the dataset card of {data_dir!r} (has {sorted(card['splits'])})")
    if paired_count(card, split) == 0:
        raise ValueError(
            f"{data_dir}: split {split!r} holds no paired records (pair_id >= 0), which --target_mode=paired needs; "
            f"render a paired train split with `python -m expr3d.data.synthetic --train_pairs` "
            f"(or --synthetic_train_pairs with --generate_synthetic)")
    if exemplar not in EXEMPLARS:
        raise ValueError(f"exemplar must be one of {EXEMPLARS}, got {exemplar!r}")
    if contempt_side not in CONTEMPT_SIDES:
        raise ValueError(f"contempt_side must be one of {CONTEMPT_SIDES}, got {contempt_side!r}")
    entry = card.get(DIAL_RENDERS)
    dials = int(entry["per_group"]) if isinstance(entry, dict) and entry.get("split") == split else 0
    if dials and exemplar == "partner":
        raise ValueError(f"{data_dir}: split {split!r} holds dial renders, which have no swap partner "
                         f"(exemplar='partner')")
    partners = card.get(SWAP_PARTNERS)
    if exemplar == "partner" and (not isinstance(partners, dict) or partners.get("split") != split):
        raise ValueError(
            f"{data_dir}: split {split!r} has no swap partners (the card's {SWAP_PARTNERS!r} entry), which "
            f"--pair_exemplar=partner needs; render one with `python -m expr3d.data.synthetic --train_pairs "
            f"--train_swap_pairs` (or --synthetic_train_swap_pairs with --generate_synthetic)")
    image_size = dataset_card.resolve_image_size(card, image_size, data_dir, allow_resize)
    paths = records.split_files(data_dir, split, card)
    expected = [int(shard["num_examples"]) for shard in card["splits"][split]["shards"]]
    stored_size = int(card["image_size"])
    antialias = image_size < 0.9 * stored_size * (crop[0] if crop is not None else 1.0)
    parallel = tf.data.AUTOTUNE

    def pair_id_of(record, source):
        parsed = tf.io.parse_single_example(record, {"pair_id": tf.io.FixedLenFeature([], tf.int64,
                                                                                      default_value=-1)})
        return parsed["pair_id"]

    def labels_of(group):
        parsed = tf.io.parse_example(group, {"label/expression": tf.io.FixedLenFeature([], tf.int64)})
        return tf.cast(parsed["label/expression"], tf.int32)

    window = 2 * group_size if exemplar == "partner" else group_size
    with_dials = bool(dials) and dial_renders
    if with_dials:
        window = group_size + dials

    def kept(record, source):
        paired = pair_id_of(record, source) >= 0
        if not dials or with_dials:
            return paired
        key = tf.io.parse_single_example(record, {"key": tf.io.FixedLenFeature([], tf.string, default_value="")})
        dial = tf.strings.regex_full_match(key["key"], ".*" + entry["key_suffix"])
        return tf.logical_and(paired, tf.logical_not(dial))

    def group_key(record, source):
        if exemplar == "target":
            return pair_id_of(record, source)
        # pair_id = N + identity * G + g; partners 2k, 2k + 1 share the key N + k * G + g (their group g together).
        first_id, per_identity = int(card["provenance"]["num_identities"]), int(partners["groups_per_identity"])
        offset = pair_id_of(record, source) - first_id
        return first_id + offset // per_identity // 2 * per_identity + offset % per_identity

    def varied(group, sources):
        labels = labels_of(group)
        return tf.reduce_any(tf.not_equal(labels, labels[0]))

    def pair_ids_of(group):
        parsed = tf.io.parse_example(group, {"pair_id": tf.io.FixedLenFeature([], tf.int64)})
        return parsed["pair_id"]

    def complete(group, sources):
        # Both partners' whole groups. An odd last train identity has no partner: its window fills with its own
        # group read twice (the stream repeats) and is dropped.
        pair_ids = pair_ids_of(group)
        return tf.logical_and(tf.shape(group)[0] == window, tf.reduce_min(pair_ids) < tf.reduce_max(pair_ids))

    files = tf.data.Dataset.from_tensor_slices((paths, tf.constant(expected, tf.int64))).repeat()
    # Card order, one shard after another: a group's records stay together, so its window fills at once.
    graph_only = pipeline.graph_only
    groups = (files.flat_map(graph_only(lambda path, count: pipeline._read_shard(path, count, False)))
              .filter(graph_only(kept))
              .group_by_window(key_func=graph_only(group_key),
                               reduce_func=graph_only(lambda key, records: records.batch(window)),
                               window_size=window)
              .filter(graph_only(varied if exemplar == "target" else complete))
              .shuffle(shuffle_groups, seed=seed, reshuffle_each_iteration=True)
              .enumerate())

    def _change_on_the_right(group, sources, reference, changed):
        """Whether most of the change from record `reference` to record `changed` (as stored, not augmented) lies
        right of the face mask's centre in the picture."""
        before, after = (pipeline.parse_and_preprocess(group[i], sources[i], 0, stored_size,
                                                       expected_size=stored_size) for i in (reference, changed))
        mask = before["mask"][..., 0]
        columns = tf.cast(tf.range(tf.shape(mask)[1]), tf.float32)[None, :]
        centre = tf.reduce_sum(mask * columns) / tf.maximum(tf.reduce_sum(mask), 1.0)
        change = tf.reduce_mean(tf.abs(after["image"] - before["image"]), axis=-1)
        right = tf.reduce_sum(change * tf.cast(columns > centre, tf.float32))
        return right > 0.5 * tf.reduce_sum(change)

    def pick(index, element):
        group, sources = element
        labels = labels_of(group)
        draw_seed = pipeline.element_seeds(seed, index, num=4)[3]
        draws = tf.random.stateless_uniform([2], seed=draw_seed)
        if exemplar == "partner":
            # One partner's records are the source's group (a draw of its own picks which); the other's class-k
            # render is the exemplar of the target of class k.
            pair_ids = pair_ids_of(group)
            side = tf.random.stateless_uniform([], seed=tf.random.experimental.stateless_fold_in(draw_seed, 1))
            own_id = tf.where(side < 0.5, tf.reduce_min(pair_ids), tf.reduce_max(pair_ids))
            own = tf.reshape(tf.where(tf.equal(pair_ids, own_id)), [-1])
            other = tf.reshape(tf.where(tf.not_equal(pair_ids, own_id)), [-1])
            other_labels = tf.gather(labels, other)
            group, sources, labels, full = (tf.gather(group, own), tf.gather(sources, own), tf.gather(labels, own),
                                            (group, sources))
        count = tf.shape(labels)[0]
        first = tf.minimum(tf.cast(draws[0] * tf.cast(count, tf.float32), tf.int32), count - 1)
        if with_dials:
            others = tf.not_equal(tf.range(count), first)
            if dial_pair_share > 0:
                own_class = tf.logical_and(others, tf.equal(labels, labels[first]))
                share = tf.random.stateless_uniform([], seed=tf.random.experimental.stateless_fold_in(draw_seed, 2))
                others = tf.cond(tf.logical_and(share < dial_pair_share, tf.reduce_any(own_class)),
                                 lambda: own_class, lambda: others)
            others = tf.reshape(tf.where(others), [-1])
        else:
            others = tf.reshape(tf.where(tf.not_equal(labels, labels[first])), [-1])
        other_count = tf.shape(others)[0]
        second = tf.gather(others, tf.minimum(tf.cast(draws[1] * tf.cast(other_count, tf.float32), tf.int32),
                                              other_count - 1))
        force_flip = None
        if contempt_side != "as_rendered":
            reference = tf.reshape(tf.where(tf.equal(labels, 0)), [-1])
            reference = tf.cond(tf.size(reference) > 0, lambda: tf.cast(reference[0], tf.int32), lambda: first)
            is_contempt = tf.equal(labels[second], _CONTEMPT)
            on_right = tf.cond(is_contempt, lambda: _change_on_the_right(group, sources, reference, second),
                               lambda: tf.constant(False))
            drawn = tf.logical_and(pipeline.flip_draw(seed, index), flip)
            force_flip = tf.where(is_contempt, tf.not_equal(on_right, contempt_side == "image_right"), drawn)
        # The same index: the same stateless seeds, so the same flip and crop for both faces.
        source, target = (
            pipeline.parse_and_preprocess(group[i], sources[i], index, image_size, augment=True, seed=seed,
                                          flip=flip, crop=crop, antialias=antialias, expected_size=stored_size,
                                          force_flip=force_flip)
            for i in (first, second))
        source["target_image"] = target["image"]
        source["target_expression"] = target["expression"]
        source["target_action_units"] = target["action_units"]
        source["target_action_units_mask"] = target["action_units_mask"]
        if exemplar == "partner":
            row = tf.gather(other, tf.reshape(tf.where(tf.equal(other_labels, labels[second])), [-1])[0])
            partner = pipeline.parse_and_preprocess(full[0][row], full[1][row], index, image_size, augment=True,
                                                    seed=seed, flip=flip, crop=crop, antialias=antialias,
                                                    expected_size=stored_size)
            source["partner_image"] = partner["image"]
            source["partner_action_units"] = partner["action_units"]
        return source

    dataset = groups.map(graph_only(pick), num_parallel_calls=parallel)
    dataset = dataset.batch(batch_size, drop_remainder=True, num_parallel_calls=parallel)
    options = tf.data.Options()
    options.deterministic = True
    return dataset.prefetch(tf.data.AUTOTUNE).with_options(options)


__all__ = ["CONTEMPT_SIDES", "EXEMPLARS", "make_paired_dataset", "paired_count"]
