"""Pixel values: images in [-1, 1] (what the networks read and write) to uint8 [0, 255] and back.

The one place the mapping `uint8 = (x + 1) * 127.5` lives, for images and for normals stored as 8-bit RGB alike.
numpy only; the TensorFlow graphs (tf.data parsing, the serving signatures) do the same arithmetic in-graph.
"""
import numpy as np

ROUNDINGS = ("round", "truncate")


def to_uint8(x, rounding="round", dtype=None):
    """[-1, 1] floats -> uint8 [0, 255]: `(x + 1) * 127.5`, rounded, clipped to [0, 255].

    Args:
        x: array-like of floats; the arithmetic runs in its own float dtype (float64 stays float64).
        rounding: "round" to the nearest level (halves to even, `np.round`), or "truncate" towards zero (what
            `astype(np.uint8)` of the clipped value does; the normals previews of prepare and synthetic use it).
        dtype: cast `x` to this dtype first (e.g. np.float32), or None to keep it.
    """
    if rounding not in ROUNDINGS:
        raise ValueError(f"rounding must be one of {ROUNDINGS}, got {rounding!r}")
    x = np.asarray(x) if dtype is None else np.asarray(x, dtype)
    levels = (x + 1.0) * 127.5
    if rounding == "round":
        levels = np.round(levels)
    return np.clip(levels, 0, 255).astype(np.uint8)


def from_uint8(pixels):
    """uint8 [0, 255] (or float pixel values on that scale) -> float32 in [-1, 1]: `pixels / 127.5 - 1`."""
    return np.asarray(pixels).astype(np.float32) / 127.5 - 1.0
