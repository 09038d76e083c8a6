import types

import numpy as np
import pytest

from expr3d.metrics import paired


def _batch(pairs, expressions, size=4):
    n = len(pairs)
    images = np.stack([np.full((size, size, 3), (e / 8.0) - 0.5 + 0.01 * p, np.float32)
                       for p, e in zip(pairs, expressions)])
    return types.SimpleNamespace(image=images, depth=images[..., :1], normals=images, mask=np.ones((n, size, size, 1)),
                                 pair_id=np.asarray(pairs), expression=np.asarray(expressions))


def test_lookup_returns_the_same_pair_under_the_target_expression():
    index = paired.build_paired_index([_batch([0, 0, 1, 1, -1], [0, 3, 0, 3, 5])])
    assert len(index) == 4  # pair id -1 is not indexed
    rows, images, depths, masks = index.lookup(np.asarray([1, 0, 1, 2]), np.asarray([3, 3, 5, 0]))
    assert rows.tolist() == [0, 1]  # (1,5) and (2,0) have no ground truth
    np.testing.assert_allclose(images[0], 3 / 8.0 - 0.5 + 0.01, atol=1 / 127.5)
    np.testing.assert_allclose(images[1], 3 / 8.0 - 0.5, atol=1 / 127.5)
    np.testing.assert_allclose(depths[0], 3 / 8.0 - 0.5 + 0.01, atol=1e-3)
    assert masks.dtype == bool and masks.all()


def test_edit_share_is_the_fraction_of_the_true_change_carried():
    rng = np.random.default_rng(0)
    source = rng.uniform(-1, 1, (4, 8, 8, 3))
    truth = source + rng.normal(0, 0.2, source.shape)
    change = truth - source
    orthogonal = rng.normal(0, 0.2, source.shape)  # made orthogonal to each row's change below
    for i in range(4):
        c, o = change[i].ravel(), orthogonal[i].ravel()
        orthogonal[i] = (o - c * (o @ c) / (c @ c)).reshape(orthogonal[i].shape)
    output = np.stack([source[0], truth[1], source[2] + 0.5 * change[2], source[3] + 0.5 * change[3] + orthogonal[3]])
    np.testing.assert_allclose(paired.edit_share(source, output, truth), [0.0, 1.0, 0.5, 0.5], atol=1e-9)
    # an edit in the opposite direction is negative; a pair whose truth equals the source has no share
    assert paired.edit_share(source[:1], source[:1] - change[:1], truth[:1])[0] == pytest.approx(-1.0)
    assert np.isnan(paired.edit_share(source[:1], truth[:1], source[:1])[0])


def test_paired_metric_reports_the_median_edit_share_per_target():
    index = paired.build_paired_index([_batch([0, 0, 1, 1], [0, 3, 0, 3], size=8)])
    metric = paired.PairedGroundTruth()
    metric.kind, metric.index, metric.with_depth = "depth", index, False
    batch = _batch([0, 1], [0, 0], size=8)
    truth = index.lookup(batch.pair_id, np.asarray([3, 3]))[1]
    half = batch.image + 0.5 * (truth - batch.image)  # half the true edit, as the generator's output
    metric.update(types.SimpleNamespace(batch=batch, target_ids=np.asarray([3, 3]), target=3, fake=half))
    copy = types.SimpleNamespace(batch=batch, target_ids=np.asarray([0, 0]), target=0, fake=batch.image)
    metric.update(copy)  # target = the source's own expression: no change to carry, left out of the share
    result = metric.result()
    assert result["paired_edit_share"] == pytest.approx(0.5, abs=0.02)  # uint8 truth: not exactly 0.5
    assert result["paired_edit_share/surprise"] == pytest.approx(0.5, abs=0.02)
    assert "paired_edit_share/neutral" not in result
    assert result["paired_count"] == 4
