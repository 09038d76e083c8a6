"""Tests of expr3d.data.prepare.readers: AffectNet rows, RaFD names, splits, class caps, undecodable file names."""
import csv
import os

import cv2
import numpy as np
import pytest

from expr3d.data.prepare import readers
from expr3d.labels import expression_id


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
