import numpy as np
import pytest

from expr3d.metrics import geometry


def test_rigid_and_expression_regions_partition_the_face_mask():
    mask = np.zeros((1, 40, 40, 1), np.float32)
    mask[0, 10:30, 5:35] = 1  # bounding box rows 10..29 (20 rows)
    bands = geometry.expression_region_mask(mask)
    rigid = geometry.rigid_region_mask(mask)
    assert not np.any(bands & rigid)
    np.testing.assert_array_equal(bands | rigid, mask > 0.5)
    rows_in_bands = np.flatnonzero(bands[0, :, 10, 0])
    # eye band: fractions [0.2, 0.5) -> rows 14..19; mouth band [0.62, 0.92) -> rows 22..27
    assert rows_in_bands.tolist() == [14, 15, 16, 17, 18, 19, 22, 23, 24, 25, 26, 27]
    assert not geometry.rigid_region_mask(np.zeros((1, 8, 8, 1))).any()


def test_masked_l1():
    a = np.zeros((2, 4, 4, 1))
    b = np.zeros((2, 4, 4, 1))
    b[:, :2] = 1.0
    region = np.zeros((2, 4, 4, 1), bool)
    region[0, :2] = True
    region[0, 2:3] = True
    out = geometry.masked_l1(a, b, region)
    assert out[0] == 8 / 12
    assert np.isnan(out[1])


def _depth_reading_critic(data, size=32):
    """A D_depth whose class output is right on every REAL test geometry of `data`: nearest per-class mean depth
    (the tiny paired data's expressions change the hemisphere's radius)."""
    import keras

    from expr3d.data import pipeline

    sums, counts = np.zeros(8), np.zeros(8)
    for batch in pipeline.make_dataset(data, "test", 64, training=False, deterministic=True, augment=False,
                                       repeat=False, drop_remainder=False).as_numpy_iterator():
        np.add.at(sums, batch["expression"], batch["depth"].mean(axis=(1, 2, 3)))
        np.add.at(counts, batch["expression"], 1)
    means = (sums / counts).astype(np.float32)
    geometry = keras.Input((size, size, 3))
    pooled = keras.layers.GlobalAveragePooling2D()(geometry)
    source = keras.layers.Dense(1)(pooled)
    cls = keras.layers.Dense(8)
    logits = cls(pooled)
    kernel = np.zeros((3, 8), np.float32)
    kernel[0] = 2000.0 * means  # 1000 (v^2 - (v - m_k)^2): argmax is the nearest class mean
    cls.set_weights([kernel, -1000.0 * means ** 2])
    return keras.Model(geometry, [source, logits], name="d_depth")


@pytest.mark.slow  # 4 s in the full suite
@pytest.mark.parametrize("protocol, sources", [("all", 16), ("affectnet", 12)])
def test_depth_network_accuracy_on_real_geometry_and_chance_for_a_do_nothing_generator(tmp_path, protocol, sources):
    import os

    from expr3d.metrics import loop
    from tests.metrics import fixtures

    data = fixtures.write_paired_dataset(str(tmp_path / "data"))
    run = fixtures.write_run(str(tmp_path / "run"), generator=fixtures.identity_generator(), logs=False)
    _depth_reading_critic(data).save(os.path.join(run, "models", "d_depth.keras"))
    document = loop.evaluate(run, data, "geometry", output=str(tmp_path / protocol), progress=False,
                             protocol=protocol)
    result = document["metrics"]["geometry"]
    assert result["geometry_real_accuracy"] == 100.0  # it reads every real geometry's expression
    # G(x, t) = x: D_depth's answer on the generated face's geometry cannot depend on t, so exactly 1 in |classes|
    assert result["geometry_target_accuracy"] == pytest.approx(100.0 / (8 if protocol == "all" else 6))
    assert 0.0 <= result["geometry_real_estimate_accuracy"] <= 100.0
    assert result["geometry_count"] == 16 * (8 if protocol == "all" else 6)  # every source, to each target
    assert result["geometry_real_count"] == sources  # real faces of the protocol's classes only
