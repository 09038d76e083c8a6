"""expr3d.imaging.pixels: [-1, 1] <-> uint8 on known values, both roundings, dtypes kept."""
import numpy as np
import pytest

from expr3d.imaging.pixels import from_uint8, to_uint8


def test_to_uint8_round_trips_uint8():
    pixels = np.arange(256, dtype=np.uint8).reshape(1, 16, 16, 1)
    restored = to_uint8(pixels / 127.5 - 1.0, dtype=np.float32)
    assert restored.dtype == np.uint8
    np.testing.assert_array_equal(restored, pixels)
    np.testing.assert_array_equal(to_uint8(np.array([-3.0, 3.0]), dtype=np.float32), [0, 255])


def test_from_uint8_known_values():
    out = from_uint8(np.array([0, 51, 127, 128, 255], np.uint8))
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, np.float32([0, 51, 127, 128, 255]) / np.float32(127.5) - np.float32(1.0))
    assert out[0] == -1.0 and out[-1] == 1.0
    np.testing.assert_array_equal(to_uint8(from_uint8(np.arange(256, dtype=np.uint8))), np.arange(256))
    # Float pixel values (a resized image) take the same path.
    np.testing.assert_array_equal(from_uint8(np.float32([0.0, 127.5, 255.0])), [-1.0, 0.0, 1.0])


def test_to_uint8_roundings_on_known_values():
    # Exact in binary: (x + 1) * 127.5 = 0, 0.498..., 31.875, 63.75, 127.5, 159.375, 191.25, 255, and out of range.
    x = np.array([-1.0, -1.0 + 2.0 ** -8, -0.75, -0.5, 0.0, 0.25, 0.5, 1.0, -1.5, 1.5])
    np.testing.assert_array_equal(to_uint8(x), [0, 0, 32, 64, 128, 159, 191, 255, 0, 255])
    np.testing.assert_array_equal(to_uint8(x, rounding="truncate"), [0, 0, 31, 63, 127, 159, 191, 255, 0, 255])
    # Halves go to the even level (np.round): float32 values whose level is exactly 64.5 and 65.5.
    halves = np.float32([64.5, 65.5]) / np.float32(127.5) - np.float32(1.0)
    assert np.array_equal((halves + np.float32(1.0)) * np.float32(127.5), [64.5, 65.5])
    np.testing.assert_array_equal(to_uint8(halves), [64, 66])
    with pytest.raises(ValueError, match="rounding"):
        to_uint8(x, rounding="floor")


def test_to_uint8_computes_in_the_input_dtype_unless_told():
    # Level 0.50000035 in float64 (-> 1), 0.49999997 once cast to float32 (-> 0).
    x = np.array([-0.9960784286333153])
    assert to_uint8(x)[0] == 1 and to_uint8(x, dtype=np.float32)[0] == 0
    assert to_uint8(x.astype(np.float32))[0] == 0
    np.testing.assert_array_equal(to_uint8(np.float16([-1, 0, 1])), [0, 128, 255])
