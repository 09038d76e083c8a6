"""expr3d.lite as a subprocess: a rendered face is translated and pasted back; no face is a clear error."""
import json
import os
import shutil

import numpy as np
import pytest

from expr3d.imaging.photos import read_image, write_image
from tests.deploy import fixtures
from tests.file_snapshots import snapshot, unchanged


def cli_commands(exported, work):
    """The lite runs (launched by conftest's `clis`): a rendered face, a landscape, an unknown expression."""
    face_path, empty_path = str(work / "face.jpg"), str(work / "landscape.png")
    photo = np.pad(fixtures.rendered_face(identity=4), ((30, 30), (80, 40), (0, 0)), mode="edge")
    write_image(face_path, photo)
    write_image(empty_path, fixtures.no_face_image())
    model = f"{exported['version_dir']}/tflite/generator_int8.tflite"
    out, crop = str(work / "out" / "happy.png"), str(work / "out" / "crop.png")
    commands = {
        "lite_face": ["-m", "expr3d.lite", f"--model={model}", f"--image={face_path}", "--expression=happy",
                      f"--output={out}", f"--crop_output={crop}"],
        "lite_no_face": ["-m", "expr3d.lite", f"--model={model}", f"--image={empty_path}", "--expression=sad",
                         f"--output={work / 'none.png'}"],
        "lite_bad_name": ["-m", "expr3d.lite", f"--model={model}", f"--image={face_path}", "--expression=joyful",
                          f"--output={work / 'bad.png'}"],
        # Data loss: never over the input photo (even with --overwrite), never over an existing file without it.
        "lite_over_input": ["-m", "expr3d.lite", f"--model={model}", f"--image={face_path}", f"--output={face_path}",
                            "--overwrite"],
        "lite_existing": ["-m", "expr3d.lite", f"--model={model}", f"--image={face_path}", f"--output={empty_path}"],
        "lite_crop_over_model": ["-m", "expr3d.lite", f"--model={model}", f"--image={face_path}",
                                 f"--output={work / 'fine.png'}", f"--crop_output={model}", "--overwrite"],
    }
    # A real photo whose face the border cuts (tests/data/photos): edited, and said.
    partial = os.path.join(os.path.dirname(__file__), os.pardir, "data", "photos", "obama_partial_face.jpg")
    commands["lite_partial"] = ["-m", "expr3d.lite", f"--model={model}", f"--image={partial}", "--expression=sad",
                                f"--output={work / 'partial.png'}"]
    # The same model inside an export whose info says it was trained on procedural faces (what the synthetic flagfiles
    # make), run with the Haar detector asked for.
    procedural = work / "procedural"
    os.makedirs(procedural / "tflite")
    shutil.copyfile(model, procedural / "tflite" / "generator_int8.tflite")
    with open(procedural / "expr3d_export.json", "w") as f:
        json.dump({"trained_on": {"kind": "procedural", "dataset": "synthetic48", "image_size": 48}}, f)
    commands["lite_procedural_haar"] = ["-m", "expr3d.lite", f"--model={procedural / 'tflite' / 'generator_int8.tflite'}",
                                        f"--image={face_path}", "--expression=sad", f"--output={work / 'haar.png'}",
                                        "--detector=haar"]
    inputs_before = snapshot(face_path, empty_path, model)
    return commands, dict(work=work, face_path=face_path, out=out, crop=crop, inputs_before=inputs_before)


@pytest.mark.slow
def test_lite_on_a_face_and_on_a_photo_without_one(clis):
    results, context = clis["results"], clis["contexts"]["test_lite"]
    ok, no_face, bad_name = results["lite_face"], results["lite_no_face"], results["lite_bad_name"]
    work = context["work"]
    assert ok.returncode == 0, ok.stderr[-2000:]
    report = json.loads(ok.stdout.strip().splitlines()[-1])
    assert report["model_input_size"] == 32
    # --detector=auto: the export's data is neither procedural nor prepared photos, so BlazeFace, saying nothing.
    assert report["face"]["detector"] == "blazeface" and report["face"]["score"] > 0.5
    assert report["face"]["faces_found"] == 1 and "procedural" not in ok.stderr
    assert report["face"]["eyes"] is not None, "the rendered face's eyes are found and levelled"
    assert report["face"]["levelled_by"] == "face_mesh" and report["warnings"] == []
    partial = results["lite_partial"]
    assert partial.returncode == 0, partial.stderr[-2000:]
    [warning] = json.loads(partial.stdout.strip().splitlines()[-1])["warnings"]
    assert "cut by the photo's border" in warning and warning in partial.stderr and "obama_partial_face" in partial.stderr
    result = read_image(context["out"])
    original = read_image(context["face_path"])  # compare with what the tool read (JPEG)
    assert result.shape == original.shape
    x, y, w, h = report["face"]["box"]
    inside = np.abs(result[y + h // 4:y + 3 * h // 4, x + w // 4:x + 3 * w // 4].astype(int)
                    - original[y + h // 4:y + 3 * h // 4, x + w // 4:x + 3 * w // 4]).mean()
    assert inside > 2.0, "the face was translated"
    assert (result[:10, :10] == original[:10, :10]).all(), "far from the face the photo is untouched"
    assert read_image(context["crop"]).shape[:2] == (report["face"]["crop_size"],) * 2

    assert no_face.returncode == 1
    assert "no face found" in no_face.stderr and "landscape.png" in no_face.stderr
    assert not (work / "none.png").exists()
    # A bad flag value is a usage error (exit code 2, expr3d.cli), refused while parsing.
    assert bad_name.returncode == 2 and "--expression=joyful" in bad_name.stderr


@pytest.mark.slow
def test_lite_says_once_that_a_procedural_model_meets_a_photo_and_takes_the_detector_asked_for(clis):
    done = clis["results"]["lite_procedural_haar"]
    assert done.returncode == 0, done.stderr[-2000:]
    notes = [line for line in done.stderr.splitlines() if "procedural" in line]
    assert len(notes) == 1 and notes[0].startswith("expr3d.lite: note: ")
    assert "trained on procedural 3D faces (synthetic48, 48 px), not on photos" in notes[0]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["face"]["detector"] == "haar" and report["trained_on"]["kind"] == "procedural"


@pytest.mark.slow
def test_lite_never_writes_over_its_input_or_an_existing_file(clis):
    results, context = clis["results"], clis["contexts"]["test_lite"]
    over_input, existing, over_model = (results[k] for k in ("lite_over_input", "lite_existing",
                                                             "lite_crop_over_model"))
    assert over_input.returncode == 1 and "--output=" in over_input.stderr
    assert "same file as --image=" in over_input.stderr
    assert existing.returncode == 1 and "exists; pass --overwrite" in existing.stderr
    # Over the model: refused while parsing already, a .tflite name is no image format lite writes (exit code 2).
    assert over_model.returncode == 2 and "--crop_output=" in over_model.stderr and ".tflite" in over_model.stderr
    for result in (over_input, existing, over_model):
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr  # one line, no traceback
    assert not unchanged(context["inputs_before"], snapshot(*context["inputs_before"]))
    assert not (context["work"] / "fine.png").exists()
