"""Tests of expr3d.data.prepare.meshes: OBJ / PLY reading and its errors."""
import numpy as np
import pytest

from expr3d.data.prepare import meshes


def test_mesh_reader_formats_and_errors(tmp_path):
    vertices, tris = np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0.5]], float), np.array([[0, 1, 2], [0, 2, 3]])
    for name, binary in (("b.ply", True), ("a.ply", False)):
        meshes.write_ply(str(tmp_path / name), vertices, tris, binary=binary)
        mesh = meshes.read_mesh(str(tmp_path / name))
        np.testing.assert_allclose(mesh.vertices, vertices)
        np.testing.assert_array_equal(mesh.faces, tris)
    (tmp_path / "quad.obj").write_text("v 0 0 0 1 0 0\nv 1 0 0 0 1 0\nv 1 1 0 0 0 1\nv 0 1 0 1 1 1\n"
                                       "vn 0 0 1\nvn 0 0 1\nvn 0 0 1\nvn 0 0 1\nf 1/1/1 2/2/2 3/3/3 4/4/4\n")
    mesh = meshes.read_mesh(str(tmp_path / "quad.obj"))
    np.testing.assert_array_equal(mesh.faces, [[0, 1, 2], [0, 2, 3]])
    assert mesh.colors.shape == (4, 3) and mesh.normals.shape == (4, 3)
    (tmp_path / "rel.obj").write_text("v 0 0 0\nv 1 0 0\nv 1 1 0\nf -3 -2 -1\n")
    np.testing.assert_array_equal(meshes.read_mesh(str(tmp_path / "rel.obj")).faces, [[0, 1, 2]])
    (tmp_path / "bad.obj").write_text("v 0 0 0\nv 1 0 0\nf 1 2 7\n")
    with pytest.raises(meshes.MeshError, match="bad.obj"):
        meshes.read_mesh(str(tmp_path / "bad.obj"))
    (tmp_path / "cut.ply").write_bytes((tmp_path / "b.ply").read_bytes()[:-10])
    with pytest.raises(meshes.MeshError, match="cut.ply"):
        meshes.read_mesh(str(tmp_path / "cut.ply"))
