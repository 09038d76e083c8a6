import numpy as np

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
