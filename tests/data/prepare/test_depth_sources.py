"""Tests of expr3d.data.prepare.depth_sources: analytic mesh depth through crops, depth maps, a saved depth model."""
import os

import cv2
import numpy as np
import pytest

from expr3d.data.prepare import depth_sources, readers
from expr3d.imaging import crops
from tests.data.prepare import fixtures


@pytest.mark.parametrize("mesh_format", ["obj", "ply", "ascii.ply"])
def test_mesh_depth_matches_analytic_ellipsoid(tmp_path, mesh_format):
    """A pixel-space ellipsoid mesh, read from disk and rasterised through the identity crop, has the analytic depth
    (up to the constant z reference) and normals."""
    face = fixtures.ellipsoid_face(64, 64, (31.5, 30.0), (20.0, 24.0, 14.0), num_lat=96, num_lon=192)
    ext = "ply" if "ply" in mesh_format else "obj"
    fixtures.write_face_files(face, "f", str(tmp_path / "img"), mesh_dir=str(tmp_path / "mesh"),
                              mesh_format=mesh_format)
    settings = depth_sources.SourceSettings(mesh_dir=str(tmp_path / "mesh"))
    source = depth_sources.MeshDirSource(settings)
    item = readers.Item(key="f", rel_path="f.png", expression=0)
    assert os.path.exists(tmp_path / "mesh" / f"f.{ext}")
    data = source.load(item, (64, 64))
    matrix = crops.crop_matrix((0, 0, 64, 64), 64, margin=0.0)
    np.testing.assert_allclose(matrix, [[1, 0, 0], [0, 1, 0]], atol=1e-12)
    geom = source.render(data, matrix, 64, None)
    r2 = ((np.mgrid[0:64, 0:64][1] - 31.5) / 20.0) ** 2 + ((np.mgrid[0:64, 0:64][0] - 30.0) / 24.0) ** 2
    interior = r2 < 0.8
    assert geom.mask[interior].all() and not geom.mask[r2 > 1.05].any()
    # depth = z_reference - z: depth + z is constant (the mesh's front pole is at z = c, reference = c + 1).
    total = geom.depth[interior] + face["z"][interior]
    np.testing.assert_allclose(total, 15.0, atol=0.05)
    cos = np.sum(geom.normals[interior] * face["normals"][interior], axis=-1)
    assert np.degrees(np.arccos(np.clip(cos, -1, 1))).max() < 2.0


def test_mesh_depth_through_scaled_rotated_crop():
    """Crop with scale and rotation: depth in output pixels scales with the crop, and mesh and image stay aligned."""
    face = fixtures.ellipsoid_face(120, 100, (60.0, 50.0), (30.0, 36.0, 20.0), num_lat=96, num_lon=192)
    item = readers.Item(key="f", rel_path="f.png", expression=0)

    class Memory(depth_sources.MeshDirSource):
        def __init__(self):
            self.settings = depth_sources.SourceSettings()

    source = Memory()
    data = {"vertices": face["vertices"], "faces": face["faces"], "notes": [], "path": "mem", "shape": (100, 120),
            "uv": face["vertices"][:, :2]}
    matrix = crops.crop_matrix(face["box"], 48, margin=0.2, angle_deg=20.0)
    scale = crops.crop_scale(matrix)
    geom = source.render(data, matrix, 48, None)
    # Depth relief (max - min) scales with the crop: c * scale.
    relief = geom.depth[geom.mask].max() - geom.depth[geom.mask].min()
    assert abs(relief - 20.0 * scale) < 0.15 * 20.0 * scale
    # The warped analytic mask and the rasterised mask agree.
    warped = cv2.warpAffine(face["mask"].astype(np.float32), matrix, (48, 48)) > 0.5
    assert (warped != geom.mask).mean() < 0.03
    # depth_dir path: the same face as a depth map gives the same crop depth, up to the constant.
    depth_map = np.where(face["mask"], 1000.0 - np.nan_to_num(face["z"]), 0.0)
    d, valid = crops.warp_depth(depth_map, face["mask"], matrix, 48)
    both = valid & geom.mask & (cv2.erode(geom.mask.astype(np.uint8), np.ones((5, 5))) > 0)
    diff = d[both] * scale - geom.depth[both]
    assert np.ptp(diff) < 0.6


def test_depth_dir_png16_near_large_and_bad_maps(tmp_path):
    face = fixtures.ellipsoid_face(48, 48, (24, 24), (14, 16, 10))
    fixtures.write_face_files(face, "a", str(tmp_path / "img"), depth_dir=str(tmp_path / "d"), depth_format="png")
    settings = depth_sources.SourceSettings(depth_dir=str(tmp_path / "d"), depth_near="large", depth_scale=0.01)
    source = depth_sources.DepthDirSource(settings)
    data = source.load(readers.Item("a", "a.png", 0), (48, 48))
    mask = data["mask"]
    assert (mask == face["mask"]).mean() > 0.99
    # Larger stored value (higher z) is nearer: depth + z constant.
    total = data["depth"][mask] + np.nan_to_num(face["z"])[mask]
    assert np.ptp(total) < 0.02
    with pytest.raises(depth_sources.SourceError) as error:
        source.load(readers.Item("b", "b.png", 0), (48, 48))
    assert error.value.reason == "no_depth"
    np.save(tmp_path / "d" / "c.npy", np.where(face["mask"], np.inf, np.nan))
    with pytest.raises(depth_sources.SourceError) as error:
        depth_sources.DepthDirSource(depth_sources.SourceSettings(depth_dir=str(tmp_path / "d"))).load(
            readers.Item("c", "c.png", 0), (48, 48))
    assert error.value.reason == "nan_depth"


def test_model_source_loads_a_saved_depth_translator(tmp_path):
    """depth_source=model: a saved .keras DepthTranslator labels a crop; depth = mean of its 3 channels mapped to a
    positive pseudo-depth (+1 nearest)."""
    keras = pytest.importorskip("keras")
    from expr3d.models.depth_translator import DepthTranslator

    model = DepthTranslator(conv_dim=4, num_res_blocks=1)
    crop = np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8)
    x = crop.astype(np.float32)[None] / 127.5 - 1.0
    expected = np.asarray(model.to_geometry(x)).mean(axis=-1)[0]
    path = str(tmp_path / "depth.keras")
    model.save(path)
    settings = depth_sources.SourceSettings(depth_model=path, model_mask_threshold=-2.0, model_depth_range=0.5)
    source = depth_sources.ModelSource(settings)
    geom = source.render(source.load(None, (32, 32)), np.eye(2, 3), 32, crop)
    assert geom.mask.all()
    np.testing.assert_allclose(geom.depth, 32 * (1 + 0.5 * (1 - expected) / 2), rtol=1e-4)
    depth, mask, normals, _ = depth_sources.complete_geometry(geom)
    assert mask.mean() > 0.9 and np.all(normals[mask][:, 2] > 0)
    (tmp_path / "junk.keras").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="junk.keras"):
        depth_sources.ModelSource(depth_sources.SourceSettings(depth_model=str(tmp_path / "junk.keras"))).render(
            {}, None, 32, crop)
