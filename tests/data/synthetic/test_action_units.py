"""Tests of expr3d.data.synthetic.action_units: stored AU labels follow each expression's prototype."""
import numpy as np

from expr3d.data import dataset_card, records
from expr3d.data.synthetic import action_units
from expr3d.labels import ACTION_UNITS, EXPRESSIONS


def test_action_unit_labels_follow_prototypes(small_dataset):
    directory, _ = small_dataset
    seen = set()
    for split in dataset_card.SPLITS:
        for ex in records.iterate_examples(directory, split):
            required, allowed = action_units.prototype_mask(ex.expression)
            aus = ex.action_units
            assert aus.shape == (len(ACTION_UNITS),)
            assert np.all(aus[required] >= 0.4), (ex.key, aus)
            assert np.all(aus[~allowed] == 0.0), (ex.key, aus)
            assert np.all((aus >= 0) & (aus <= 1))
            seen.add(ex.expression)
    assert seen == set(range(8))
    rng = np.random.default_rng(0)
    sides = [action_units.sample_expression(EXPRESSIONS.index("contempt"), rng) for _ in range(20)]
    # Contempt is unilateral: exactly one side carries AU12/AU14.
    au12 = action_units.AU_INDEX[12]
    assert all((s.left[au12] > 0) != (s.right[au12] > 0) for s in sides)
