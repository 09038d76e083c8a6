"""Unit tests of the prepare modules: analytic mesh depth through crops, readers, meshes, quality."""
import csv
import os

import cv2
import numpy as np
import pytest

from expr3d.data.prepare import build, depth_sources, fixtures, meshes, quality, readers
from expr3d.imaging import crops
from expr3d.labels import expression_id


def _interior(face, limit=0.8):
    rows, cols = np.mgrid[0:face["mask"].shape[0], 0:face["mask"].shape[1]]
    return face["mask"] & (np.nan_to_num(face["z"]) > 0) & ~np.isnan(face["z"]), rows, cols


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


def test_affectnet_reader_rows(tmp_path):
    path = tmp_path / "train.csv"
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["subDirectory_filePath", "face_x", "face_y", "face_width", "face_height",
                         "facial_landmarks", "expression", "valence", "arousal"])
        landmarks = ";".join(str(v) for v in np.arange(136))
        writer.writerow(["1/a.jpg", 1, 2, 30, 30, landmarks, 6, 0, 0])
        writer.writerow(["1/b.jpg", 1, 2, 30, 30, "", 9, 0, 0])
        writer.writerow(["../escape.jpg", 1, 2, 30, 30, "", 1, 0, 0])
        writer.writerow(["1/c.jpg", 1, 2, 0, 30, "", 1, 0, 0])
        writer.writerow(["1/d.jpg", 1, 2, 30, 30, "", "sad", 0, 0])
        writer.writerow(["1/a.jpg", 1, 2, 30, 30, "", 6, 0, 0])
    items, skipped = readers.read_affectnet(str(path), str(tmp_path), split="train")
    assert [(i.key, i.expression, i.box) for i in items] == [("1/a", 6, (1.0, 2.0, 30.0, 30.0))]
    assert len(items[0].landmarks) == 136
    assert [(s.key, s.reason) for s in skipped] == [("1/b", "dropped_class"), ("../escape.jpg", "missing_path"),
                                                     ("1/c", "bad_annotation"), ("1/d", "unknown_label"),
                                                     ("1/a", "duplicate")]
    (tmp_path / "wrong.csv").write_text("path,label\nx.jpg,1\n")
    with pytest.raises(ValueError, match="subDirectory_filePath"):
        readers.read_affectnet(str(tmp_path / "wrong.csv"), str(tmp_path))


def test_rafd_names_splits_and_cap():
    fields = readers.parse_rafd_name("Rafd090_01_Caucasian_female_angry_frontal.jpg")
    assert fields == {"angle": 90, "subject": 1, "ethnicity": "Caucasian", "gender": "female", "expression": "angry",
                      "gaze": "frontal"}
    assert expression_id(fields["expression"]) == expression_id("anger")
    assert readers.parse_rafd_name("Rafd090_01_Caucasian_female_angry_upward.jpg") is None
    assert readers.parse_rafd_name("IMG_0001.jpg") is None
    items = [readers.Item(key=f"s{s}_{e}", rel_path="", expression=e, group=f"s{s}") for s in range(10)
             for e in range(8)]
    readers.assign_splits(items, 0.2, seed=3)
    test_groups = {i.group for i in items if i.split == "test"}
    assert len(test_groups) == 2 and not test_groups & {i.group for i in items if i.split == "train"}
    again = [readers.Item(key=i.key, rel_path="", expression=i.expression, group=i.group) for i in items]
    readers.assign_splits(again, 0.2, seed=3)
    assert [i.split for i in again] == [i.split for i in items]  # deterministic for a seed
    kept, dropped = readers.cap_per_class(items, 5, seed=0)
    by_class = {}
    for item in kept:
        by_class[(item.split, item.expression)] = by_class.get((item.split, item.expression), 0) + 1
    assert max(by_class.values()) == 5 and all(d.reason == "over_class_cap" for d in dropped)
    assert len(kept) + len(dropped) == len(items)


def test_quality_flags_spikes_and_holes():
    face = fixtures.ellipsoid_face(64, 64, (32, 32), (20, 24, 14))
    depth = np.where(face["mask"], 100.0 - np.nan_to_num(face["z"]), 0.0).astype(np.float32)
    box = face["box"]
    good = quality.scores(depth, face["mask"], 0.0, box, 64)
    assert not quality.failures(good, quality.Thresholds()) and good["score"] > 0.8
    spiky = depth.copy()
    spiky[20:40:2, 20:40:2] += 60.0
    bad = quality.scores(spiky, face["mask"], 0.0, box, 64)
    assert any("discontinuity" in f or "outliers" in f for f in quality.failures(bad, quality.Thresholds()))
    shifted = quality.scores(depth, face["mask"], 0.4, (40, 40, 20, 20), 64)
    failed = " ".join(quality.failures(shifted, quality.Thresholds()))
    assert "hole_fraction" in failed and "box_iou" in failed


def test_output_refusals(tmp_path):
    config = build.Config(dataset="folder", images=str(tmp_path / "images"))
    (tmp_path / "images").mkdir()
    with pytest.raises(build.OutputError, match="overlaps"):
        build.check_output(str(tmp_path / "images" / "out"), config, {"--images": str(tmp_path / "images")}, True,
                           "x")
    out = tmp_path / "out"
    (out / "review").mkdir(parents=True)
    (out / "keep.txt").write_text("user data")
    (out / "review" / "mine.png").write_bytes(b"user sheet")
    # Someone else's files that prepare does not write: left alone, with or without --overwrite.
    assert build.check_output(str(out), config, {}, False, "x") == "fresh"
    assert build.check_output(str(out), config, {}, True, "x") == "fresh"
    assert (out / "keep.txt").read_text() == "user data" and (out / "review" / "mine.png").exists()
    # A file of a name prepare writes, but that prepare did not write: refused even with --overwrite.
    (out / "report.txt").write_text("my report")
    for overwrite in (False, True):
        with pytest.raises(build.OutputError, match="report.txt.*did not write"):
            build.check_output(str(out), config, {}, overwrite, "x")
    assert (out / "report.txt").read_text() == "my report"


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


def test_non_utf8_file_names_are_skipped_by_name(tmp_path):
    images = tmp_path / "images"
    (images / "happy").mkdir(parents=True)
    cv2.imwrite(str(images / "happy" / "fine.png"), np.zeros((40, 40, 3), np.uint8))
    with open(os.fsencode(images / "happy") + b"/caf\xe9.png", "wb") as handle:
        handle.write(cv2.imencode(".png", np.zeros((40, 40, 3), np.uint8))[1].tobytes())
    os.makedirs(os.fsencode(images) + b"/sad\xff")
    with open(os.fsencode(images) + b"/sad\xff/x.png", "wb") as handle:
        handle.write(b"any")
    items, skipped = readers.read_folder(str(images))
    assert [item.rel_path for item in items] == ["happy/fine.png"]
    assert sorted((s.path, s.reason) for s in skipped) == [("happy/caf\\xe9.png", readers.NON_UTF8_NAME),
                                                           ("sad\\xff/x.png", readers.NON_UTF8_NAME)]
    assert all(s.key.encode("utf-8") and s.path.encode("utf-8") for s in skipped)  # reportable as UTF-8
