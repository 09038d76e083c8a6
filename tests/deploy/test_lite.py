"""expr3d.lite as a subprocess: a drawn face is translated and pasted back; no face is a clear error."""
import json

import numpy as np

from expr3d.deploy import pipeline
from tests.deploy import fixtures
from tests.deploy.conftest import run_clis


def test_lite_on_a_face_and_on_a_photo_without_one(exported, tmp_path):
    face_path, empty_path = str(tmp_path / "face.jpg"), str(tmp_path / "landscape.png")
    photo = np.pad(fixtures.draw_face(200, seed=6, angle=8.0), ((30, 30), (80, 40), (0, 0)), mode="edge")
    pipeline.write_image(face_path, photo)
    pipeline.write_image(empty_path, fixtures.no_face_image())
    model = f"{exported['version_dir']}/tflite/generator_int8.tflite"
    out, crop = str(tmp_path / "out" / "happy.png"), str(tmp_path / "out" / "crop.png")
    ok, no_face, bad_name = run_clis([
        ["-m", "expr3d.lite", f"--model={model}", f"--image={face_path}", "--expression=happy", f"--output={out}",
         f"--crop_output={crop}"],
        ["-m", "expr3d.lite", f"--model={model}", f"--image={empty_path}", "--expression=sad",
         f"--output={tmp_path / 'none.png'}"],
        ["-m", "expr3d.lite", f"--model={model}", f"--image={face_path}", "--expression=joyful",
         f"--output={tmp_path / 'bad.png'}"],
    ])
    assert ok.returncode == 0, ok.stderr[-2000:]
    report = json.loads(ok.stdout.strip().splitlines()[-1])
    assert report["model_input_size"] == 32
    result = pipeline.read_image(out)
    original = pipeline.read_image(face_path)  # compare with what the tool read (JPEG)
    assert result.shape == original.shape
    x, y, w, h = report["face"]["box"]
    inside = np.abs(result[y + h // 4:y + 3 * h // 4, x + w // 4:x + 3 * w // 4].astype(int)
                    - original[y + h // 4:y + 3 * h // 4, x + w // 4:x + 3 * w // 4]).mean()
    assert inside > 2.0, "the face was translated"
    assert (result[:10, :10] == original[:10, :10]).all(), "far from the face the photo is untouched"
    assert pipeline.read_image(crop).shape[:2] == (report["face"]["crop_size"],) * 2

    assert no_face.returncode == 1
    assert "no face found" in no_face.stderr and "landscape.png" in no_face.stderr
    assert not (tmp_path / "none.png").exists()
    assert bad_name.returncode == 1 and "joyful" in bad_name.stderr
