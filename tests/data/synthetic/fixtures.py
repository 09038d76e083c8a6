"""What the synthetic-data tests share: a small dataset's settings and a comparable dump of a dataset's contents."""
import os

from expr3d.data import dataset_card, records

SMALL = dict(num_identities=4, image_size=32, test_fraction=0.25, images_per_identity=4, examples_per_shard=8)


def contents(directory):
    """Every decoded example of both splits with its shard, as comparable tuples."""
    out = []
    for split in dataset_card.SPLITS:
        shards = [os.path.basename(p) for p in records.list_shards(directory, split)]
        for ex in records.iterate_examples(directory, split):
            aus = None if ex.action_units is None else ex.action_units.tobytes()
            out.append((split, ex.key, ex.expression, ex.identity, ex.pair_id, aus, ex.image.tobytes(),
                        ex.depth.tobytes(), ex.mask.tobytes(), ex.normals.tobytes()))
        out.append((split, tuple(shards)))
    return out
