"""Small analytic faces for data tests: a hemisphere on a plane with known depth and normals."""
import numpy as np

from expr3d.data import schema
from expr3d.labels import NUM_ACTION_UNITS


def hemisphere_example(size=32, expression=0, identity=0, key="k", radius=0.35, distance=3.0, seed=0,
                       with_aus=True, pair_id=-1):
    """An orthographic hemisphere of `radius` (fraction of the image) at `distance`, coloured by position."""
    rng = np.random.default_rng(seed)
    v, u = np.mgrid[0:size, 0:size].astype(np.float64)
    x = (u + 0.5) / size - 0.5
    y = 0.5 - (v + 0.5) / size
    r2 = x ** 2 + y ** 2
    mask = r2 < radius ** 2
    h = np.sqrt(np.clip(radius ** 2 - r2, 0, None))
    depth = np.where(mask, distance - h, 0.0).astype(np.float32)
    normals = np.zeros((size, size, 3), np.float32)
    normals[mask] = (np.stack([x, y, h], -1)[mask] / radius).astype(np.float32)
    image = np.zeros((size, size, 3), np.uint8)
    image[..., 0] = (255 * (u / max(size - 1, 1))).astype(np.uint8)
    image[..., 1] = (255 * (v / max(size - 1, 1))).astype(np.uint8)
    image[..., 2] = rng.integers(0, 255, (size, size), dtype=np.uint8)
    aus = rng.uniform(0, 1, NUM_ACTION_UNITS).astype(np.float32) if with_aus else None
    return schema.FaceExample(image=image, depth=depth, mask=mask, normals=normals, expression=expression,
                              identity=identity, key=key, action_units=aus, pair_id=pair_id)
