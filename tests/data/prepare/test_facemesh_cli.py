"""A folder of real labelled photos, prepared with the built-in reconstruction (`--depth_source=facemesh`, BlazeFace)
by the CLI as a subprocess, then trained on: no tool but expr3d. The photos are the shipped ones
(tests/data/photos/README.md), some changed into the bad inputs a user's folder holds."""
import json
import os

import cv2
import numpy as np
import pytest

from expr3d.data import records
from expr3d.imaging import blazeface, crops, facemesh
from tests import forked_cli

PHOTOS = os.path.join(os.path.dirname(__file__), os.pardir, "photos")
SIZE = 64
ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")


def _read(name):
    return cv2.imread(os.path.join(PHOTOS, name))


def write_folder(root):
    """The photo folder: {rel path: expected outcome}."""
    obama, biden, talking = _read("obama.jpg"), _read("biden.jpg"), _read("obama2.jpg")
    pair = np.full((max(obama.shape[0], biden.shape[0]), obama.shape[1] + biden.shape[1], 3), 200, np.uint8)
    pair[:obama.shape[0], :obama.shape[1]] = obama
    pair[:biden.shape[0], obama.shape[1]:] = biden
    turned = cv2.warpAffine(biden, cv2.getRotationMatrix2D((biden.shape[1] / 2, biden.shape[0] / 2), 20, 1.0),
                            (biden.shape[1], biden.shape[0]), borderMode=cv2.BORDER_REPLICATE)
    files = {
        "happy/obama.jpg": (obama, "written"),
        "happy/pair.jpg": (pair, "written"),  # two faces: the most confident kept, flagged
        "happy/gray.png": (cv2.cvtColor(obama, cv2.COLOR_BGR2GRAY), "written"),
        "neutral/biden.jpg": (biden, "written"),
        "neutral/partial.jpg": (_read("obama_partial_face.jpg"), "written"),  # cut by the border: flagged
        "surprise/talking.jpg": (talking, "written"),
        "sad/deep.png": (talking.astype(np.uint16) * 257, "written"),  # 16-bit
        "fear/tilted.jpg": (turned, "written"),
        "anger/mirrored.jpg": (obama[:, ::-1], "written"),
        "disgust/wall.png": (np.full((300, 300, 3), 128, np.uint8), "no_face"),
        "contempt/tiny.jpg": (cv2.resize(obama, (36, 45), interpolation=cv2.INTER_AREA), "tiny_face"),
    }
    for rel, (image, _) in files.items():
        os.makedirs(os.path.join(root, os.path.dirname(rel)), exist_ok=True)
        cv2.imwrite(os.path.join(root, rel), image)
    return {os.path.splitext(rel)[0]: outcome for rel, (_, outcome) in files.items()}


def run_prepare(*args, expect=0):
    result = forked_cli.run(["-m", "expr3d.data.prepare", *args], capture_output=True, text=True, env=ENV,
                            timeout=300)
    assert result.returncode == expect, result.stdout + result.stderr
    return result


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    root = tmp_path_factory.mktemp("facemesh")
    images = str(root / "photos")
    expected = write_folder(images)
    out = str(root / "prepared")
    # --max_discontinuity: at 64 px a turned face's steep side is a larger share of the neighbour pairs than at
    # 256 px (the tilted photo measures 0.0104 against the default 0.01): a margin keeps the test off the threshold.
    result = run_prepare("--dataset=folder", f"--images={images}", "--depth_source=facemesh", f"--output={out}",
                         f"--image_size={SIZE}", "--test_split=0.25", "--min_face_size=24", "--max_discontinuity=0.03")
    return {"root": root, "images": images, "out": out, "expected": expected, "stdout": result.stdout}


def _examples(out):
    return {ex.key: ex for split in ("train", "test") for ex in records.iterate_examples(out, split)}


@pytest.mark.slow  # a subprocess CLI run on 11 photos, ~15 s
def test_a_folder_of_photos_becomes_rgb_depth_normals_with_no_other_tool(prepared):
    report = json.load(open(os.path.join(prepared["out"], "report.json")))
    outcome = {s["key"]: s["reason"] for s in report["skipped"]}
    examples = _examples(prepared["out"])
    outcome.update({key: "written" for key in examples})
    assert outcome == prepared["expected"]
    # The bad inputs are named in the report with a count: several faces, a face cut by the border.
    assert report["flag_counts"]["several_faces"] == 1 and report["flag_counts"]["face_at_border"] >= 1
    flagged = {entry["key"]: entry["flags"] for entry in report["flagged"]}
    assert "several_faces" in flagged["happy/pair"] and "face_at_border" in flagged["neutral/partial"]
    assert "flagged" in prepared["stdout"] and "several_faces 1" in prepared["stdout"]
    text = open(os.path.join(prepared["out"], "report.txt")).read()
    assert "[flagged: several_faces]" in text and "happy/pair.jpg" in text
    # The dataset card names the reconstruction and its model file by hash, and the detector.
    card = json.load(open(os.path.join(prepared["out"], "dataset_card.json")))
    provenance = card["provenance"]
    assert provenance["depth_source"] == "facemesh" and provenance["detector"] == "blazeface"
    model = provenance["reconstruction"]
    assert model["model"] == "face_landmark.tflite"
    assert model["model_sha256"] == blazeface.file_sha256(facemesh.default_model_path())
    assert os.listdir(os.path.join(prepared["out"], "review"))
    # Geometry: the nose tip is nearer than the cheeks, normals face the camera inside the face.
    face = examples["happy/obama"]
    assert face.mask.mean() > 0.25
    rows, cols = np.nonzero(face.mask)
    centre = face.depth[int(rows.mean()) - 2:int(rows.mean()) + 3, int(cols.mean()) - 2:int(cols.mean()) + 3]
    sides = [face.depth[int(rows.mean()), int(np.percentile(cols, q))] for q in (15, 85)]
    assert centre.min() < min(sides)
    assert (face.normals[face.mask][:, 2] > 0.2).mean() > 0.95


@pytest.mark.slow
def test_the_training_crop_is_the_crop_the_photo_tools_cut(prepared):
    # One convention for training data and inference: prepare's BlazeFace crop of a photo, levelled by the face
    # mesh's eye centres, is the crop `lite` and `synthesize` cut from it (expr3d.imaging.faces.find_face).
    examples = _examples(prepared["out"])
    from expr3d.imaging import faces, photos

    photo = photos.read_image(os.path.join(prepared["images"], "happy", "obama.jpg"))  # the file prepare read

    tool_crop = faces.find_face(photo, crop_size=SIZE, detector="blazeface")
    assert tool_crop.levelled_by == "face_mesh"
    ours = examples["happy/obama"].image.astype(np.float32)
    theirs = crops.warp_image(photo, tool_crop.matrix, SIZE).astype(np.float32)
    assert np.abs(ours - theirs).mean() < 0.5
    assert np.abs(ours - crops.warp_image(photo[:, ::-1], tool_crop.matrix, SIZE)).mean() > 15.0  # not trivially


@pytest.mark.slow  # trains two tiny stages
@pytest.mark.timeout(600)
def test_train_runs_on_the_prepared_photos(prepared):
    from tests.training.test_train import TINY_FLAGS

    model_dir = str(prepared["root"] / "run")
    result = forked_cli.run(["-m", "expr3d.train", f"--data_dir={prepared['out']}", f"--model_dir={model_dir}",
                             *TINY_FLAGS, "--num_steps_depth=2", "--num_steps_gan=2", "--checkpoint_every=0",
                             "--sample_every=0", "--num_samples=2", "--progress=false"],
                            capture_output=True, text=True, env=ENV, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    config = json.load(open(os.path.join(model_dir, "config.json")))
    from expr3d.deploy import provenance

    trained = provenance.trained_on(config)
    assert trained["kind"] == "photos" and trained["detector"] == "blazeface" and trained["image_size"] == SIZE


@pytest.mark.slow  # CLI runs
def test_a_missing_or_broken_landmark_model_stops_prepare_naming_the_file(tmp_path):
    images = tmp_path / "photos" / "happy"
    images.mkdir(parents=True)
    cv2.imwrite(str(images / "obama.jpg"), _read("obama.jpg"))
    common = ["--dataset=folder", f"--images={tmp_path / 'photos'}", "--depth_source=facemesh", "--test_split=0"]
    result = run_prepare(*common, f"--output={tmp_path / 'a'}", f"--face_mesh_model={tmp_path / 'nope.tflite'}",
                         expect=1)
    assert "face_mesh_model" in result.stderr and "nope.tflite" in result.stderr
    broken = tmp_path / "broken.tflite"
    broken.write_bytes(b"\0" * 4096)
    result = run_prepare(*common, f"--output={tmp_path / 'b'}", f"--face_mesh_model={broken}", expect=1)
    assert str(broken) in result.stderr and "TFLite" in result.stderr
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
