"""expr3d.synthesize as a subprocess: per-image results, a grid, photos without a face reported, not fatal."""
import json
import os
import re

import cv2
import numpy as np
import pytest

from expr3d import synthesize
from expr3d.imaging.photos import read_image, write_image
from tests.deploy import fixtures
from tests.file_snapshots import snapshot, unchanged


def cli_commands(exported, work):
    """The synthesize runs (launched by conftest's `clis`): a folder of photos, and a refused non-empty output."""
    photos = work / "photos"
    photos.mkdir()
    write_image(str(photos / "a_face.png"), fixtures.rendered_face(identity=5, size=192))
    tilted = fixtures.rendered_face(identity=0, expression=2)
    tilted = cv2.warpAffine(tilted, cv2.getRotationMatrix2D((128, 128), -10, 1.0), (256, 256),
                            borderMode=cv2.BORDER_REPLICATE)[:, 18:238]
    write_image(str(photos / "b_tilted.jpg"), tilted)
    write_image(str(photos / "c_landscape.png"), fixtures.no_face_image())
    (photos / "d_broken.jpg").write_bytes(b"\xff\xd8\xff truncated")
    (photos / "notes.txt").write_text("not an image")
    output, taken = work / "out", work / "taken"
    taken.mkdir()
    (taken / "summary.json").write_text("{}")
    # Data loss: a photo named like an output (grid.png) in the output folder is an input: refused even with
    # --overwrite; a run whose only photo has no face exits non-zero with the count.
    mixed = work / "mixed"
    mixed.mkdir()
    write_image(str(mixed / "grid.png"), fixtures.rendered_face(identity=2, size=128))
    (mixed / "my.txt").write_text("mine")
    landscape = work / "landscape_only"
    landscape.mkdir()
    write_image(str(landscape / "hills.png"), fixtures.no_face_image())
    # A face photo whose file name is not UTF-8, beside a decompression bomb: the first translated, the second
    # refused from its header (before decoding), neither stopping the run.
    odd = work / "odd_names"
    odd.mkdir()
    write_image(str(odd / "face.png"), fixtures.rendered_face(identity=3, size=160))
    os.rename(os.fsencode(odd / "face.png"), os.fsencode(odd) + b"/caf\xe9.png")
    from tests.deploy.test_export import png_bomb

    (odd / "bomb.png").write_bytes(png_bomb(100000, 100000))
    commands = {
        "synthesize_odd_names": ["-m", "expr3d.synthesize", f"--saved_model={exported['base']}", f"--images={odd}",
                                 "--expressions=happy", f"--output={work / 'odd_out'}"],
        "synthesize_into_input": ["-m", "expr3d.synthesize", f"--saved_model={exported['base']}",
                                  f"--images={mixed}", f"--output={mixed}", "--overwrite"],
        "synthesize_all_skipped": ["-m", "expr3d.synthesize", f"--saved_model={exported['base']}",
                                   f"--images={landscape}", f"--output={work / 'skipped'}"],
        "synthesize": ["-m", "expr3d.synthesize", f"--saved_model={exported['base']}", f"--images={photos}",
                       "--expressions=happy,angry", f"--output={output}"],
        "synthesize_taken": ["-m", "expr3d.synthesize", f"--saved_model={exported['base']}", f"--images={photos}",
                             f"--output={taken}"],
        # An exemplar needs a transfer export: refused naming the family, before anything is written.
        "synthesize_exemplar": ["-m", "expr3d.synthesize", f"--saved_model={exported['base']}", f"--images={photos}",
                                f"--exemplar={photos / 'a_face.png'}", f"--output={work / 'exemplar_out'}"],
    }
    return commands, dict(output=output, taken=taken, mixed=mixed, mixed_before=snapshot(mixed), odd_out=work / "odd_out",
                          exemplar_out=work / "exemplar_out")


@pytest.mark.slow
def test_an_exemplar_with_an_expression_export_is_refused_naming_the_family(clis):
    result = clis["results"]["synthesize_exemplar"]
    errors = [line for line in result.stderr.splitlines() if ": error: " in line]
    assert result.returncode == 1 and len(errors) == 1, result.stderr[-2000:]
    assert "--exemplar needs the export of a --model=transfer run" in errors[0] and "--model=stargan" in errors[0]
    assert not clis["contexts"]["test_synthesize"]["exemplar_out"].exists()


@pytest.mark.slow
def test_synthesize_a_folder_with_faces_a_landscape_and_a_broken_file(clis):
    results, context = clis["results"], clis["contexts"]["test_synthesize"]
    result, output = results["synthesize"], context["output"]
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((output / "summary.json").read_text())
    assert summary["expressions"] == ["happy", "anger"]
    assert summary["detector"] == "blazeface" and summary["processed"][0]["face"]["detector"] == "blazeface"
    assert summary["saved_model"].endswith(os.path.join("tiny", "1")), "the latest version of the base path"
    assert [os.path.basename(p["image"]) for p in summary["processed"]] == ["a_face.png", "b_tilted.jpg"]
    assert [os.path.basename(p) for p in summary["no_face"]] == ["c_landscape.png"]
    assert [os.path.basename(p["image"]) for p in summary["unreadable"]] == ["d_broken.jpg"]
    assert "no face found" in result.stderr and "c_landscape.png" in result.stderr
    for stem, shape in (("a_face", (192, 192, 3)), ("b_tilted", (256, 220, 3))):
        for name in ("happy", "anger"):
            assert read_image(str(output / stem / f"{name}.png")).shape == shape
            assert (output / stem / f"face_{name}.png").exists()
    happy = read_image(str(output / "a_face" / "happy.png")).astype(int)
    anger = read_image(str(output / "a_face" / "anger.png")).astype(int)
    assert np.abs(happy - anger).mean() > 0.5, "different targets give different faces"
    grid = read_image(str(output / "grid.png"))
    assert grid.shape[1] > grid.shape[0], "2 rows x 3 columns (input + 2 expressions)"

    again = results["synthesize_taken"]
    assert again.returncode == 1 and "--overwrite" in again.stderr
    assert (context["taken"] / "summary.json").read_text() == "{}", "nothing in a non-empty output is replaced"


@pytest.mark.slow
def test_synthesize_never_replaces_an_input_and_fails_when_nothing_was_translated(clis):
    results, context = clis["results"], clis["contexts"]["test_synthesize"]
    into_input = results["synthesize_into_input"]
    assert into_input.returncode == 1 and "would replace --images" in into_input.stderr
    assert "grid.png" in into_input.stderr
    assert not unchanged(context["mixed_before"], snapshot(context["mixed"]))
    assert sorted(os.listdir(context["mixed"])) == ["grid.png", "my.txt"]
    skipped = results["synthesize_all_skipped"]
    assert skipped.returncode == 1 and "no photo translated: 1 without a face, 0 unreadable" in skipped.stderr


@pytest.mark.slow
def test_a_non_utf8_name_is_translated_and_a_bomb_skipped_by_name(clis):
    results, context = clis["results"], clis["contexts"]["test_synthesize"]
    result, output = results["synthesize_odd_names"], context["odd_out"]
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((output / "summary.json").read_text(encoding="utf-8"))
    assert [os.path.basename(p["image"]) for p in summary["processed"]] == ["caf\\xe9.png"]
    assert summary["processed"][0]["outputs"]["happy"] == os.path.join("caf\ufffd", "happy.png")
    assert (output / "caf\ufffd" / "happy.png").exists()
    [refused] = summary["unreadable"]
    assert refused["image"].endswith("bomb.png") and "declares 100000x100000 pixels" in refused["error"]
    assert "Traceback" not in result.stderr


def test_output_stems_are_utf8_and_unique():
    assert synthesize.output_stems(["/p/caf\udce9.jpg", "/p/caf\udce9.png", "/p/x.jpg"]) == [
        "caf\ufffd", "caf\ufffd_", "x"]


def test_argument_errors(tmp_path):
    assert synthesize.parse_expressions("all") == list(range(8))
    assert synthesize.parse_expressions("sad, Happy,sad") == [2, 1]
    with pytest.raises(ValueError, match="joyful"):
        synthesize.parse_expressions("happy,joyful")
    with pytest.raises(FileNotFoundError, match="saved_model.pb"):
        synthesize.resolve_saved_model(str(tmp_path))


def test_action_unit_edits_parse_into_named_moves_and_settings():
    from expr3d.labels import ACTION_UNITS

    edits = synthesize.parse_action_unit_edits(" AU12+0.5 ; au4 - .25, AU26=1 ;")
    assert edits == [("AU12+0.5", [(ACTION_UNITS.index(12), "+", 0.5)]),
                     ("AU4-.25_AU26=1", [(ACTION_UNITS.index(4), "-", 0.25), (ACTION_UNITS.index(26), "=", 1.0)])]
    read = np.full(17, 0.3, np.float32)
    asked = synthesize.asked_action_units(read, edits[1][1])
    assert asked[ACTION_UNITS.index(4)] == pytest.approx(0.05) and asked[ACTION_UNITS.index(26)] == 1.0
    assert np.allclose(np.delete(asked, [ACTION_UNITS.index(4), ACTION_UNITS.index(26)]), 0.3)  # the rest as read
    moved = synthesize.asked_action_units(read, [(0, "+", 1.0), (1, "-", 0.5)])
    assert moved[0] == 1.0 and moved[1] == 0.0  # clipped to [0, 1]
    for text, message in (("", "--action_units is empty"), ("AU12*2", "'AU12*2' is not AUn+x"),
                          ("AU3+0.5", "AU3 is not one of the 17"), ("AU12=1.5", "at most 1"),
                          ("AU12+0.5,AU12=0", "AU12 is named twice"), ("AU12+0.5;AU12+0.5", "given twice")):
        with pytest.raises(ValueError, match=re.escape(message)):
            synthesize.parse_action_unit_edits(text)
