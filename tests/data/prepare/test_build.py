"""Tests of expr3d.data.prepare.build: output folders it refuses (the CLI runs are in test_main.py)."""
import pytest

from expr3d.data.prepare import build


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
