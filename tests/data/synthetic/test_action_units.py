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


def test_the_default_strength_draws_what_it_drew_before_the_strength_range_and_a_range_bounds_it():
    # Session 36 moved the required AUs' clip floor from 0.4 to 0; the default strengths never reached 0.4.
    def before(expression, rng):
        required, optional = action_units.PROTOTYPES[EXPRESSIONS[expression]]
        values = np.zeros(len(ACTION_UNITS), np.float32)
        overall = rng.uniform(0.7, 1.0)
        for au in required:
            values[action_units.AU_INDEX[au]] = np.clip(overall * rng.uniform(0.85, 1.15), 0.4, 1.0)
        for au in optional:
            if rng.uniform() < 0.5:
                values[action_units.AU_INDEX[au]] = rng.uniform(0.4, 0.9)
        if EXPRESSIONS[expression] in action_units.UNILATERAL:
            rng.uniform()  # the side
        return values

    for expression in range(1, 8):
        new, old = np.random.default_rng(expression), np.random.default_rng(expression)
        for _ in range(200):
            np.testing.assert_array_equal(action_units.sample_expression(expression, new).intensities,
                                          before(expression, old))
    rng = np.random.default_rng(1)
    slight = [action_units.sample_expression(EXPRESSIONS.index("happy"), rng, strength=(0.1, 0.2)).intensities
              for _ in range(100)]
    smile = np.array([values[action_units.AU_INDEX[12]] for values in slight])
    assert smile.min() >= 0.1 * 0.85 - 1e-6 and smile.max() <= 0.2 * 1.15 + 1e-6
