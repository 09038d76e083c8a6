"""expr3d.deploy.signatures: the depth <-> normals conversions of the exported signatures (the signatures themselves
are checked against the Keras models in test_export.py)."""
import numpy as np
import tensorflow as tf

from expr3d.deploy import signatures


def test_normals_from_depth_of_a_tilted_plane():
    size = 16
    cols = np.arange(size, dtype=np.float32)
    # depth rises to the right by 0.1 per pixel: the surface faces left-and-forward (n_x < 0), no y component.
    depth = np.tile(cols * 0.1, (size, 1))[None, :, :, None]
    normals = signatures.normals_from_depth(tf.constant(depth), relief=1.0).numpy()
    slope = 0.1 / (2.0 / size)  # dh/dx in image-width units
    expected = np.array([-slope, 0.0, 1.0]) / np.sqrt(slope ** 2 + 1)
    np.testing.assert_allclose(normals[0, 4:-4, 4:-4], np.broadcast_to(expected, (size - 8, size - 8, 3)), atol=1e-5)
    # Rows run down, y up: a surface nearer toward the bottom of the image faces up (n_y > 0).
    normals = signatures.normals_from_depth(tf.constant(np.transpose(depth, (0, 2, 1, 3))), relief=1.0).numpy()
    np.testing.assert_allclose(normals[0, 4:-4, 4:-4, 1], -expected[0], atol=1e-5)


def test_depth_from_normals_recovers_a_dome():
    size = 32
    v, u = np.mgrid[0:size, 0:size].astype(np.float32)
    r2 = ((u - 15.5) ** 2 + (v - 15.5) ** 2) / 15.5 ** 2
    depth = (2.0 * np.exp(-3.0 * r2) - 1.0)[None, :, :, None]
    normals = signatures.normals_from_depth(tf.constant(depth))
    recovered = signatures.depth_from_normals(normals).numpy()
    assert recovered.shape == depth.shape and recovered.min() >= -1 and recovered.max() <= 1
    assert np.corrcoef(recovered.ravel(), depth.ravel())[0, 1] > 0.95
