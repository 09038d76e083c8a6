import types

import numpy as np

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
