import types

import cv2
import numpy as np
import pytest

from expr3d.metrics import loop, samples
from tests.metrics import fixtures


def _context(limit):
    return types.SimpleNamespace(options={"num_samples": limit}, target_classes=(0, 1), has_depth_networks=False)


def _paired_batches(num_identities, batch_size, size=4):
    """A paired test split stored identity by identity (8 expressions each), cut into batches."""
    identity = np.repeat(np.arange(num_identities), 8)
    expression = np.tile(np.arange(8), num_identities)
    image = (identity[:, None, None, None] * 8 + expression[:, None, None, None]) * np.ones((1, size, size, 3))
    for start in range(0, len(identity), batch_size):
        part = slice(start, start + batch_size)
        yield types.SimpleNamespace(image=image[part], identity=identity[part], expression=expression[part],
                                    size=len(identity[part]))


def _run(limit, num_identities, batch_size):
    metric = samples.Samples()
    metric.setup(_context(limit))
    for batch in _paired_batches(num_identities, batch_size):
        metric.update_real(batch)
        for target in (0, 1):
            metric.update(types.SimpleNamespace(target=target, fake=batch.image + 1000 * (target + 1)))
    return metric.result(), metric.arrays()


def test_sources_are_different_identities_with_different_expressions():
    result, arrays = _run(limit=4, num_identities=5, batch_size=5)  # batches straddle identities
    assert arrays["identity"].tolist() == [0, 1, 2, 3]
    codes = arrays["inputs"][:, 0, 0, 0].astype(int)
    assert (codes // 8).tolist() == [0, 1, 2, 3]
    # The k-th source prefers expression k among its identity's faces in the same batch (identity 3's first batch
    # holds only its neutral face).
    assert (codes % 8).tolist() == [0, 1, 2, 0]
    np.testing.assert_array_equal(arrays["fakes"][:, 1, 0, 0, 0], arrays["inputs"][:, 0, 0, 0] + 2000)
    assert result == {"samples_count": 4, "samples_identities": 4}


def test_too_few_identities_are_filled_with_further_faces():
    result, arrays = _run(limit=5, num_identities=2, batch_size=16)
    assert arrays["identity"].tolist()[:2] == [0, 1] and len(arrays["identity"]) == 5
    assert result == {"samples_count": 5, "samples_identities": 2}


@pytest.mark.slow  # 2 s in the full suite
def test_evaluation_grid_shows_several_identities(tmp_path):
    data = fixtures.write_paired_dataset(str(tmp_path / "data"))  # 2 identities x 8 expressions
    run = fixtures.write_run(str(tmp_path / "run"), generator=fixtures.identity_generator(), depth_weight=0.0,
                             logs=False)
    document = loop.evaluate(run, data, "samples", output=str(tmp_path / "out"), progress=False, num_samples=3,
                             batch_size=4)
    assert document["metrics"]["samples"] == {"samples_count": 3, "samples_identities": 2}
    with np.load(tmp_path / "out" / "arrays.npz") as arrays:
        assert arrays["samples/identity"].tolist()[:2] == [0, 1]
    assert cv2.imread(str(tmp_path / "out" / "figures" / "samples.png")) is not None
