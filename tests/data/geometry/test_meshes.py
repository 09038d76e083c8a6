"""Checks of expr3d.data.geometry.meshes: face and vertex normals of a sphere and of single triangles."""

import numpy as np

from expr3d.data import geometry
from tests.data.geometry.analytic import angle_deg


def test_vertex_and_face_normals(fine_sphere):
    unit_v, faces = fine_sphere
    vn = geometry.vertex_normals(unit_v, faces)
    assert angle_deg(vn, unit_v).max() < 0.5  # radial on a sphere
    fn = geometry.face_normals(unit_v, faces)
    centroids = unit_v[faces].mean(axis=1)
    assert np.all(np.sum(fn * centroids, axis=-1) > 0)  # outward, counter-clockwise
    tri = np.array([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [2.0, 0.0, 0.0]])
    fn = geometry.face_normals(tri, np.array([[0, 1, 2], [0, 1, 3]]))
    np.testing.assert_allclose(fn, [[0.0, 0.0, 1.0], [0.0, 0.0, 0.0]])
