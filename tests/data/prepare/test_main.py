"""End-to-end tests of `python -m expr3d.data.prepare` (expr3d/data/prepare/__main__.py): the CLI as a subprocess per
dataset layout, real shards read back, the report, resume and the reject-list round trip."""
import csv
import json
import os

import cv2
import numpy as np
import pytest

from expr3d.data import dataset_card, records
from expr3d.data.prepare import build, meshes
from tests.data.prepare import fixtures
from tests.file_snapshots import snapshot, unchanged
from tests import forked_cli

SIZE = 64


def run_cli(*args, expect=0):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    result = forked_cli.run(["-m", "expr3d.data.prepare", *args], capture_output=True, text=True,
                            env=env, timeout=300)
    assert result.returncode == expect, result.stdout + result.stderr
    return result


def read_split(out, split):
    return list(records.iterate_examples(out, split))


def add_bad_affectnet_rows(root):
    """Broken inputs next to the good fixture faces; returns {rel path or key: expected reason or 'written'}."""
    images = os.path.join(root, "images", "900")
    mesh_dir = os.path.join(root, "meshes", "900")
    os.makedirs(images, exist_ok=True)
    os.makedirs(mesh_dir, exist_ok=True)
    rows, expected = [], {}

    def face(i):
        return fixtures.ellipsoid_face(96, 88, (48, 44), (22, 27, 18), expression=i % 8, seed=50 + i)

    def row(name, label=1, box=None, f=None):
        x, y, w, h = box or (f or face(0))["box"]
        rows.append([f"900/{name}", round(x), round(y), round(w), round(h), "", label, 0, 0])

    with open(os.path.join(images, "corrupt.jpg"), "wb") as handle:
        handle.write(b"\xff\xd8\xff\xe0 this is not a jpeg")
    row("corrupt.jpg")
    expected["900/corrupt"] = "unreadable_image"
    f = face(1)
    cv2.imwrite(os.path.join(images, "gray.png"), cv2.cvtColor(f["image"], cv2.COLOR_RGB2GRAY))
    meshes.write_obj(os.path.join(mesh_dir, "gray.obj"), f["vertices"], f["faces"])
    row("gray.png", f=f)
    expected["900/gray"] = "written"
    f = face(2)
    cv2.imwrite(os.path.join(images, "deep.png"), cv2.cvtColor(f["image"], cv2.COLOR_RGB2BGR).astype(np.uint16) * 257)
    meshes.write_ply(os.path.join(mesh_dir, "deep.ply"), f["vertices"], f["faces"])
    row("deep.png", f=f)
    expected["900/deep"] = "written"
    cv2.imwrite(os.path.join(images, "tiny.png"), np.zeros((12, 12, 3), np.uint8))
    row("tiny.png", box=(1, 1, 10, 10))
    expected["900/tiny"] = "tiny_image"
    f = face(3)
    cv2.imwrite(os.path.join(images, "nomesh.png"), f["image"])
    row("nomesh.png", f=f)
    expected["900/nomesh"] = "no_depth"
    f = face(4)
    cv2.imwrite(os.path.join(images, "offimage.png"), f["image"])
    meshes.write_obj(os.path.join(mesh_dir, "offimage.obj"), f["vertices"] + [500, 0, 0], f["faces"])
    row("offimage.png", f=f)
    expected["900/offimage"] = "mesh_misses_image"
    f = face(5)
    cv2.imwrite(os.path.join(images, "badmesh.png"), f["image"])
    with open(os.path.join(mesh_dir, "badmesh.obj"), "w") as handle:
        handle.write("v 0 0 0\nv 1 nan_oops 0\nf 1 2 3\n")
    row("badmesh.png", f=f)
    expected["900/badmesh"] = "mesh_unreadable"
    row("missing.jpg")
    expected["900/missing"] = "missing_path"
    row("gray.png", label="happy")
    row("whatever.png", label=12)
    expected["unknown_label"] = 2  # two rows with unknown labels (one duplicates a good path)
    row("nonface.png", label=10)
    expected["900/nonface"] = "dropped_class"
    with open(os.path.join(root, "train.csv"), "a", newline="") as handle:
        csv.writer(handle).writerows(rows)
    return expected


@pytest.mark.slow
def test_affectnet_cli_report_resume_and_reject_list(tmp_path):
    root = str(tmp_path / "affectnet")
    good = fixtures.make_affectnet(root, per_class=2)
    bad = add_bad_affectnet_rows(root)
    out = str(tmp_path / "out")
    args = ["--dataset=affectnet", f"--images={root}/images", f"--annotations={root}/train.csv",
            f"--test_annotations={root}/val.csv", "--depth_source=mesh_dir", f"--mesh_dir={root}/meshes",
            f"--output={out}", f"--image_size={SIZE}", "--examples_per_shard=8", "--max_per_class=12"]
    result = run_cli(*args)
    assert "ETA" in result.stderr  # progress line

    # Labels and counts: 2 fixture faces per class + the converted gray and 16-bit faces (happy) in train, 1 per class
    # in test (the class cap of 12 does not bite here; tests/data/prepare/test_readers.py checks the cap).
    train = read_split(out, "train")
    test = read_split(out, "test")
    train_keys = {ex.key: ex.expression for ex in train}
    assert train_keys == dict(good["train"], **{"900/gray": 1, "900/deep": 1})
    assert {ex.key: ex.expression for ex in test} == dict(good["test"])
    for ex in train[:3]:
        assert ex.image.shape == (SIZE, SIZE, 3) and ex.mask.mean() > 0.3
        assert np.all(ex.normals[ex.mask][:, 2] > 0)  # facing the camera
    card = dataset_card.read_dataset_card(out)
    assert card["splits"]["test"]["counts"]["total"] == 8
    assert card["splits"]["train"]["counts"]["happy"] == 4 and card["splits"]["train"]["counts"]["sad"] == 2
    assert card["image_size"] == SIZE

    # The report names every bad input with its reason; conversions are listed.
    report = json.load(open(os.path.join(out, "report.json")))
    reasons = {s["key"]: s["reason"] for s in report["skipped"]}
    for key, reason in bad.items():
        if key != "unknown_label" and reason not in ("written", "dropped_class"):
            assert reasons.get(key) == reason, (key, reasons.get(key))
    assert report["skip_counts"]["unknown_label"] == 2
    assert report["excluded_counts"]["dropped_class"] == 1
    converted = {c["key"]: " ".join(c["notes"]) for c in report["converted"]}
    assert "grayscale" in converted["900/gray"] and "16-bit" in converted["900/deep"]
    text = open(os.path.join(out, "report.txt")).read()
    assert "unreadable_image" in text and "mesh_misses_image" in text and "corrupt.jpg" in text
    assert os.listdir(os.path.join(root, "images", "900"))  # inputs untouched: nothing written there
    assert not any(n.endswith(".tfrecord") for n in os.listdir(os.path.join(root, "images")))

    # Review sheets and the reject-list template exist; reject two faces by review id and by key.
    review_dir = os.path.join(out, "review")
    assert any(n.endswith(".png") for n in os.listdir(review_dir))
    template = open(os.path.join(review_dir, "reject_list.txt")).read().splitlines()
    entries = [line[2:] for line in template if line.startswith("# train-") or line.startswith("# test-")]
    assert len(entries) == len(train) + len(test)
    review_id, key = entries[0].split()[0], entries[1].split()[1]
    sidecars = {n: os.path.getmtime(os.path.join(out, "prepare", "shards", n))
                for n in os.listdir(os.path.join(out, "prepare", "shards"))}
    reject = tmp_path / "reject.txt"
    reject.write_text(f"# my manual pass\n{review_id}   # bad fit\n{key}\nnot_a_face_key\n")

    # Same config + reject list: a resume that rebuilds only the shards holding rejected faces.
    stats = build.run(config_like(out), out, reject_list=str(reject), log=lambda text: None)
    assert stats["reject_list"]["rejected"] == 2 and stats["reject_list"]["unmatched_entries"] == ["not_a_face_key"]
    rejected_keys = {s["key"] for s in stats["skipped"] if s["reason"] == "rejected_list"}
    assert key in rejected_keys and len(rejected_keys) == 2
    after = {ex.key for split in ("train", "test") for ex in read_split(out, split)}
    assert after == (set(train_keys) | {ex.key for ex in test}) - rejected_keys
    changed = [n for n, t in sidecars.items() if os.path.getmtime(os.path.join(out, "prepare", "shards", n)) != t]
    assert 1 <= len(changed) <= 2 < len(sidecars)

    # Resume after an interruption: a lost shard (no sidecar) is rebuilt, complete ones are skipped.
    lost = sorted(records.list_shards(out, "train"))[0]
    os.remove(lost)
    os.remove(os.path.join(out, "prepare", "shards", os.path.basename(lost).replace(".tfrecord", ".json")))
    log = []
    build.run(config_like(out), out, reject_list=str(reject), log=log.append)
    assert f"{len(sidecars) - 1} already complete, 1 to build" in log[0]
    assert {ex.key for split in ("train", "test") for ex in read_split(out, split)} == after

    # A different configuration is refused without --overwrite, accepted with it; --overwrite removes only what
    # prepare wrote: the user's own review sheet, notes folder and edited reject list stay byte-identical.
    os.makedirs(os.path.join(out, "notes"))
    with open(os.path.join(out, "notes", "todo.txt"), "w") as handle:
        handle.write("check subject 900")
    cv2.imwrite(os.path.join(review_dir, "my_sheet.png"), np.zeros((8, 8, 3), np.uint8))
    with open(os.path.join(review_dir, "reject_list.txt"), "a") as handle:
        handle.write("# edited by hand\n")
    user_files = snapshot(os.path.join(out, "notes"), os.path.join(review_dir, "my_sheet.png"),
                          os.path.join(review_dir, "reject_list.txt"))
    result = run_cli(*[a for a in args if not a.startswith("--image_size")], "--image_size=48", expect=1)
    assert "different configuration" in result.stderr and "image_size" in result.stderr
    assert not unchanged(user_files, snapshot(out))
    run_cli(*[a for a in args if not a.startswith("--image_size")], "--image_size=48", "--overwrite")
    assert not unchanged(user_files, snapshot(out))
    assert dataset_card.read_dataset_card(out)["image_size"] == 48
    assert read_split(out, "train")[0].image.shape[0] == 48
    assert os.path.exists(os.path.join(review_dir, "reject_list.new.txt"))  # the edited list kept, a fresh template


def config_like(out):
    stored = json.load(open(os.path.join(out, "prepare", "config.json")))["config"]
    return build.Config(**stored)


@pytest.mark.slow  # a subprocess CLI run, ~20 s
def test_rafd_cli_subject_disjoint_split_and_pairs(tmp_path):
    root = str(tmp_path / "rafd")
    files = fixtures.make_rafd(root, subjects=4, angles=(45, 90), gazes=("frontal",))
    with open(os.path.join(root, "images", "notes_about_rafd.jpg"), "wb") as handle:
        handle.write(b"not rafd")
    out = str(tmp_path / "out")
    run_cli("--dataset=rafd", f"--images={root}/images", "--depth_source=mesh_dir", f"--mesh_dir={root}/meshes",
            f"--output={out}", f"--image_size={SIZE}", "--crop=depth", "--rafd_angles=90", "--test_split=0.25",
            "--review=none", "--examples_per_shard=12")  # one worker: spawned workers would each import TF
    train, test = read_split(out, "train"), read_split(out, "test")
    selected = [f for f in files if "Rafd090" in f[0]]
    assert len(train) + len(test) == len(selected) == 4 * 8
    assert len(test) == 8  # one of four subjects
    labels = {stem: label for stem, label, _ in files}
    for ex in train + test:
        assert ex.expression == labels[ex.key]
    assert not {ex.identity for ex in train} & {ex.identity for ex in test}
    card = dataset_card.read_dataset_card(out)
    assert card["identity_disjoint_splits"] is True
    # One pair id per (subject, angle, gaze) shared by its 8 expressions.
    pairs = {}
    for ex in train + test:
        pairs.setdefault(ex.pair_id, set()).add(ex.expression)
    assert len(pairs) == 4 and all(len(v) == 8 for v in pairs.values())
    report = json.load(open(os.path.join(out, "report.json")))
    assert report["skip_counts"] == {"unparseable_name": 1}
    assert report["excluded_counts"] == {"not_selected": 32}


@pytest.mark.slow  # a subprocess CLI run, ~20 s
def test_folder_cli_depth_dir_and_refusals(tmp_path):
    root = str(tmp_path / "folder")
    expected = fixtures.make_folder(root, per_class=3)
    os.makedirs(os.path.join(root, "images", "bored"))
    cv2.imwrite(os.path.join(root, "images", "bored", "x.png"), np.zeros((40, 40, 3), np.uint8))
    np.save(os.path.join(root, "depth", "happy", "face1.npy"), np.full((72, 72), np.nan, np.float32))
    np.save(os.path.join(root, "depth", "sad", "face2.npy"), np.ones((10, 10), np.float32))
    out = str(tmp_path / "out")
    args = ["--dataset=folder", f"--images={root}/images", "--depth_source=depth_dir", f"--depth_dir={root}/depth",
            f"--output={out}", f"--image_size={SIZE}", "--crop=full", "--test_split=0"]
    run_cli(*args)
    train = read_split(out, "train")
    assert {ex.key: ex.expression for ex in train} == {k: v for k, v in expected
                                                       if k not in ("happy/face1", "sad/face2")}
    reasons = {s["key"]: s["reason"] for s in json.load(open(os.path.join(out, "report.json")))["skipped"]}
    assert reasons == {"happy/face1": "nan_depth", "sad/face2": "depth_size_mismatch", "bored/x": "unknown_label"}
    # Depth from the .npy (1000 - z, source pixels) is scaled with the crop (72 -> 64 px): the rim, z ~ 0, lands
    # near 1000 * 64 / 72.
    face = train[0]
    assert abs(face.depth[face.mask].max() / (SIZE / 72) - 1000) < 5
    # Refusals: output inside the input folder, and a folder holding a file of a name prepare writes but did not
    # write (refused even with --overwrite; nothing there touched).
    result = run_cli(*[a for a in args if not a.startswith("--output")], f"--output={root}/images/out", expect=1)
    assert "never writes into its inputs" in result.stderr
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "precious.txt").write_text("mine")
    (foreign / "report.txt").write_text("my own report")
    result = run_cli(*[a for a in args if not a.startswith("--output")], f"--output={foreign}", "--overwrite",
                     expect=1)
    assert "report.txt" in result.stderr and "did not write" in result.stderr
    assert sorted(os.listdir(foreign)) == ["precious.txt", "report.txt"]
    assert (foreign / "report.txt").read_text() == "my own report"
