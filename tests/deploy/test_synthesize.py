"""expr3d.synthesize as a subprocess: per-image results, a grid, photos without a face reported, not fatal."""
import json
import os

import numpy as np
import pytest

from expr3d import synthesize
from expr3d.deploy import pipeline
from tests.deploy import fixtures
from tests.deploy.conftest import run_cli


def test_synthesize_a_folder_with_faces_a_landscape_and_a_broken_file(exported, tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    pipeline.write_image(str(photos / "a_face.png"), fixtures.draw_face(160, seed=7))
    pipeline.write_image(str(photos / "b_tilted.jpg"), fixtures.draw_face(220, seed=8, angle=-10.0))
    pipeline.write_image(str(photos / "c_landscape.png"), fixtures.no_face_image())
    (photos / "d_broken.jpg").write_bytes(b"\xff\xd8\xff truncated")
    (photos / "notes.txt").write_text("not an image")
    output = tmp_path / "out"
    result = run_cli(["-m", "expr3d.synthesize", f"--saved_model={exported['base']}", f"--images={photos}",
                      "--expressions=happy,angry", f"--output={output}"])
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((output / "summary.json").read_text())
    assert summary["expressions"] == ["happy", "anger"]
    assert summary["saved_model"].endswith(os.path.join("tiny", "1")), "the latest version of the base path"
    assert [os.path.basename(p["image"]) for p in summary["processed"]] == ["a_face.png", "b_tilted.jpg"]
    assert [os.path.basename(p) for p in summary["no_face"]] == ["c_landscape.png"]
    assert [os.path.basename(p["image"]) for p in summary["unreadable"]] == ["d_broken.jpg"]
    assert "no face found" in result.stderr and "c_landscape.png" in result.stderr
    for stem, size in (("a_face", 160), ("b_tilted", 220)):
        for name in ("happy", "anger"):
            assert pipeline.read_image(str(output / stem / f"{name}.png")).shape == (size, size, 3)
            assert (output / stem / f"face_{name}.png").exists()
    happy = pipeline.read_image(str(output / "a_face" / "happy.png")).astype(int)
    anger = pipeline.read_image(str(output / "a_face" / "anger.png")).astype(int)
    assert np.abs(happy - anger).mean() > 0.5, "different targets give different faces"
    grid = pipeline.read_image(str(output / "grid.png"))
    assert grid.shape[1] > grid.shape[0], "2 rows x 3 columns (input + 2 expressions)"

    again = run_cli(["-m", "expr3d.synthesize", f"--saved_model={exported['base']}", f"--images={photos}",
                     f"--output={output}"])
    assert again.returncode == 1 and "--overwrite" in again.stderr


def test_argument_errors(tmp_path):
    assert synthesize.parse_expressions("all") == list(range(8))
    assert synthesize.parse_expressions("sad, Happy,sad") == [2, 1]
    with pytest.raises(ValueError, match="joyful"):
        synthesize.parse_expressions("happy,joyful")
    with pytest.raises(FileNotFoundError, match="saved_model.pb"):
        synthesize.resolve_saved_model(str(tmp_path))
