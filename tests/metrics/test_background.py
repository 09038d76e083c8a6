import types

import numpy as np
import pytest

from expr3d.labels import EXPRESSIONS
from expr3d.metrics import background, loop
from tests.metrics import fixtures


def _disc(size, radius):
    v, u = np.mgrid[0:size, 0:size]
    return ((u - size / 2 + 0.5) ** 2 + (v - size / 2 + 0.5) ** 2) < radius ** 2


class _Context:
    def __init__(self, size, dilation=None):
        self.image_size = size
        self.options = {} if dilation is None else {"background_dilation": dilation}
        self.target_classes = tuple(range(len(EXPRESSIONS)))


def _run(source, mask, change, dilation=None):
    """The metric over one batch translated to every target, with G(x, t) = change(x, t)."""
    size = source.shape[1]
    metric = background.BackgroundPreservation()
    context = _Context(size, dilation)
    metric.radius, metric.index = background.dilation_radius(dilation, size), None   # setup without a test split
    memo = {}
    batch = types.SimpleNamespace(image=source, mask=mask[..., None].astype(np.float32), pair_id=np.full(len(source), -1),
                                  memo=lambda key, fn: memo.setdefault(key, fn()))
    metric.update_real(batch)
    for target in context.target_classes:
        step = types.SimpleNamespace(batch=batch, target=target, target_ids=np.full(len(source), target),
                                     fake=change(source, target), context=context)
        metric.update(step)
    return metric.result()


def _faces(size=64, count=2, seed=0):
    rng = np.random.default_rng(seed)
    source = rng.uniform(-0.8, 0.8, (count, size, size, 3)).astype(np.float32)
    mask = np.stack([_disc(size, size * 0.3)] * count)
    return source, mask


def test_radius_scales_with_the_image_size():
    assert [background.dilation_radius(2, s) for s in (32, 48, 64, 128, 256)] == [1, 2, 2, 4, 8]
    assert background.dilation_radius(None, 64) == background.DEFAULT_DILATION
    assert background.dilation_radius(0, 128) == 0
    with pytest.raises(ValueError, match="--background_dilation"):
        background.dilation_radius(-1, 64)


def test_returning_the_source_scores_zero():
    source, mask = _faces()
    result = _run(source, mask, lambda x, t: x.copy())
    assert result["background_l1"] == 0.0
    assert all(result[f"background_l1/{name}"] == 0.0 for name in EXPRESSIONS)
    assert result["background_count"] == 2 * len(EXPRESSIONS)
    assert 0.3 < result["background_fraction"] < 0.8


def test_changes_inside_the_mask_only_score_zero():
    source, mask = _faces()
    result = _run(source, mask, lambda x, t: np.where(mask[..., None], -x + 0.1 * t, x))
    assert result["background_l1"] == 0.0


def test_a_constant_shift_everywhere_scores_the_shift():
    source, mask = _faces()
    # On the [-1, 1] scale of paired_l1: +0.1 there is +0.05 on the [0, 1] scale.
    result = _run(source, mask, lambda x, t: x + 0.1)
    assert result["background_l1"] == pytest.approx(0.1, abs=1e-6)
    per_target = _run(source, mask, lambda x, t: x - 0.01 * t)
    for t, name in enumerate(EXPRESSIONS):
        assert per_target[f"background_l1/{name}"] == pytest.approx(0.01 * t, abs=1e-6)
    assert per_target["background_l1"] == pytest.approx(0.01 * np.mean(range(8)), abs=1e-6)


def test_dilation_excludes_a_ring_around_the_mask():
    size = 64
    source, mask = _faces(size)
    ring = _disc(size, size * 0.3 + 1.5) & ~mask   # about 1-2 px just outside the face
    assert ring.any()
    shift_ring = lambda x, t: np.where(ring[None, ..., None], x + 1.0, x)  # noqa: E731
    assert _run(source, mask, shift_ring)["background_l1"] == 0.0          # 2 px at 64 px (default) covers it
    undilated = _run(source, mask, shift_ring, dilation=0)
    assert undilated["background_l1"] == pytest.approx(ring.sum() / (~mask).sum(), rel=1e-6)
    assert undilated["background_dilation_px"] == 0
    region = background.background_region(mask[:1], background.dilation_radius(2, size))
    assert not (region[0] & ring).any() and (region[0] | _disc(size, size * 0.3 + 3)).all()


@pytest.fixture(scope="module")
def paths(tmp_path_factory):
    root = tmp_path_factory.mktemp("background")
    return {"data": fixtures.write_paired_dataset(str(root / "data")),
            "identity_run": fixtures.write_run(str(root / "identity_run"), generator=fixtures.identity_generator(),
                                               depth_weight=0.0, logs=False),
            "shift_run": fixtures.write_run(str(root / "shift_run"), generator=shift_generator(0.08),
                                            depth_weight=0.0, logs=False),
            "root": root}


def shift_generator(shift, size=32):
    """G(x, c) = x + shift everywhere."""
    import keras

    image = keras.Input((size, size, 3), name="image")
    condition = keras.Input((len(EXPRESSIONS),), name="condition")
    constant = keras.layers.Dense(1, name="shift", kernel_initializer="zeros",
                                  bias_initializer=keras.initializers.Constant(shift))(condition)
    return keras.Model([image, condition], keras.layers.Add()([image, keras.layers.Reshape((1, 1, 1))(constant)]),
                       name="g_rgb")


@pytest.mark.slow  # 5 s in the full suite
def test_evaluation_reports_it_in_results_and_tables(paths):
    same = loop.evaluate(paths["identity_run"], paths["data"], "background",
                         output=str(paths["root"] / "same"), progress=False)
    assert same["metrics"]["background"]["background_l1"] == 0.0
    assert same["metrics"]["background"]["background_count"] == 16 * 8
    assert np.isfinite(same["metrics"]["background"]["background_l1_truth"])  # paired split: the true renders' floor
    shifted = loop.evaluate(paths["shift_run"], paths["data"], "background",
                            output=str(paths["root"] / "shift"), progress=False)
    assert shifted["metrics"]["background"]["background_l1"] == pytest.approx(0.08, abs=1e-5)
    with open(paths["root"] / "shift" / "results.md") as f:
        markdown = f.read()
    assert "background L1" in markdown and "0.0800" in markdown

    from expr3d import compare

    summary = compare.compare([str(paths["root"] / "same"), str(paths["root"] / "shift")],
                              str(paths["root"] / "comparison"), group="none")
    assert summary["groups"]["shift_run"]["background_l1"]["mean"] == pytest.approx(0.08, abs=1e-5)
    with open(paths["root"] / "comparison" / "comparison.md") as f:
        assert "background L1" in f.read()
