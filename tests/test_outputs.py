"""expr3d.outputs: a command removes only what it listed as written, never replaces what it did not write, and never
writes over its input."""
import json
import multiprocessing
import os

import pytest

from expr3d import outputs
from tests.file_snapshots import snapshot, unchanged


def _write(folder, name, text="ours"):
    with open(folder.file(name), "w") as handle:
        handle.write(text)


def test_overwrite_removes_only_listed_files(tmp_path):
    folder = outputs.OutputFolder(str(tmp_path / "out"), "--output", "tool")
    assert folder.claim(False, will_write=["a.txt", "figs/*.png"]) == []
    _write(folder, "a.txt")
    _write(folder, "figs/x.png")
    (tmp_path / "out" / "user.txt").write_text("theirs")
    (tmp_path / "out" / "figs" / "user.png").write_text("theirs too")
    (tmp_path / "out" / "sub").mkdir()
    (tmp_path / "out" / "sub" / "keep.bin").write_bytes(b"\0\1")
    user_files = snapshot(tmp_path / "out" / "user.txt", tmp_path / "out" / "figs" / "user.png", tmp_path / "out" / "sub")
    with pytest.raises(outputs.OutputError, match=r"--output=.* already holds a.txt, figs/x.png .*--overwrite"):
        folder.claim(False, will_write=["a.txt"])
    removed = folder.claim(True, will_write=["a.txt", "figs/x.png"])
    assert "a.txt" in removed and "figs/x.png" in removed
    assert not unchanged(user_files, snapshot(tmp_path / "out"))
    assert os.path.isdir(tmp_path / "out" / "figs")  # still holds the user's file: kept
    assert folder.written() == ["figs/"]


def test_a_file_it_did_not_write_is_never_replaced(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "report.txt").write_text("mine")
    folder = outputs.OutputFolder(str(out), "--output", "tool")
    for overwrite in (False, True):
        with pytest.raises(outputs.OutputError, match="holds report.txt, which this command writes but did not"):
            folder.claim(overwrite, will_write=["report.txt"])
    assert (out / "report.txt").read_text() == "mine"
    # Another command's listed file is not this command's either.
    other = outputs.OutputFolder(str(out), "--output", "other")
    _write(other, "shared.txt")
    with pytest.raises(outputs.OutputError, match="shared.txt"):
        folder.claim(True, will_write=["shared.txt"])
    assert json.load(open(out / outputs.MANIFEST_NAME))["written"] == {"other": ["shared.txt"]}


def test_legacy_names_are_adopted_and_inputs_refused(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "card.json").write_text("old")
    folder = outputs.OutputFolder(str(out), "--output", "tool")
    with pytest.raises(outputs.OutputError, match="already holds card.json"):
        folder.claim(False, will_write=["card.json"], legacy=["card.json"])
    with pytest.raises(outputs.OutputError, match=r"would replace --images=.*card.json.*own input"):
        folder.claim(True, will_write=["card.json"], legacy=["card.json"], inputs={"--images": str(out / "card.json")})
    assert (out / "card.json").read_text() == "old"
    assert folder.claim(True, will_write=["card.json"], legacy=["card.json"]) == ["card.json"]


def test_single_output_files(tmp_path):
    photo = tmp_path / "x.png"
    photo.write_bytes(b"photo")
    with pytest.raises(outputs.OutputError, match=r"--output=.*x.png is the same file as --image="):
        outputs.check_output_file(str(photo), "--output", True, {"--image": str(photo)})
    os.symlink(photo, tmp_path / "link.png")
    with pytest.raises(outputs.OutputError, match="same file"):
        outputs.check_output_file(str(tmp_path / "link.png"), "--output", True, {"--image": str(photo)})
    with pytest.raises(outputs.OutputError, match=r"--output=.*x.png exists; pass --overwrite"):
        outputs.check_output_file(str(photo), "--output", False)
    with pytest.raises(outputs.OutputError, match="is a folder"):
        outputs.check_output_file(str(tmp_path), "--output", True)
    outputs.check_output_file(str(tmp_path / "new.png"), "--output", False, {"--image": str(photo)})
    assert photo.read_bytes() == b"photo"


def test_a_manifest_never_reaches_outside_its_folder(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (tmp_path / "precious.txt").write_text("x")
    (out / outputs.MANIFEST_NAME).write_text(json.dumps(
        {"version": 1, "written": {"tool": ["../precious.txt", str(tmp_path / "precious.txt")]}}))
    folder = outputs.OutputFolder(str(out), "--output", "tool")
    assert folder.written() == []
    folder.claim(True)
    assert (tmp_path / "precious.txt").exists()
    (out / outputs.MANIFEST_NAME).write_text("{broken")
    with pytest.raises(outputs.OutputError, match="unreadable"):
        folder.claim(True)


def _record_many(args):
    path, worker = args
    folder = outputs.OutputFolder(path, "--output", "tool")
    for i in range(40):
        folder.record(f"w{worker}-{i}.bin")


def test_concurrent_records_from_worker_processes_are_all_kept(tmp_path):
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        pool.map(_record_many, [(str(tmp_path), w) for w in range(4)])
    assert len(outputs.OutputFolder(str(tmp_path), "--output", "tool").written()) == 160
