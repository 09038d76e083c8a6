"""Tests of expr3d.data.prepare.action_units (OpenFace 2.0 AU CSVs matched by file name) and of
`python -m expr3d.data.prepare --action_units_csv` end to end: CSVs written with OpenFace's real header format, a real
small prepared dataset read back, and the bad inputs (missing rows, NaN cells, no AUxx_r column, malformed files)."""
import json
import os

import numpy as np
import pytest
import tensorflow as tf

from expr3d.data import dataset_card, records, schema
from expr3d.data.prepare import action_units, readers
from expr3d.labels import ACTION_UNITS
from tests.data.prepare import fixtures
from tests.data.prepare.test_main import SIZE, run_cli  # the prepare CLI as a subprocess: one helper

AU16 = ACTION_UNITS.index(16)


def _items(*rel_paths):
    return [readers.Item(key=os.path.splitext(p)[0], rel_path=p, expression=1) for p in rel_paths]


def _expected(values):
    """The stored vector and validity of OpenFace intensities: /5, AU16 and AUs without a value missing."""
    stored = np.zeros(len(ACTION_UNITS), np.float32)
    valid = np.zeros(len(ACTION_UNITS), bool)
    for index, au in enumerate(ACTION_UNITS):
        if isinstance(values.get(au), float):
            stored[index], valid[index] = values[au] / 5.0, True
    return stored, valid


def test_per_image_folder_matches_by_stem_rescales_and_records_what_is_missing(tmp_path):
    out = tmp_path / "openface"
    happy, sad, lone = fixtures.openface_au_values(1), fixtures.openface_au_values(2), fixtures.openface_au_values(3)
    fixtures.write_openface_csv(str(out / "happy" / "face0.csv"), [(0.98, happy)])
    # Two faces found in one image: the most confident row is used.
    fixtures.write_openface_csv(str(out / "sad" / "face0.csv"), [(0.40, lone), (0.93, sad)], pose=False)
    nan_row = {**happy, 12: "nan", 4: "-nan(ind)", 9: ""}
    fixtures.write_openface_csv(str(out / "face7.csv"), [(0.9, nan_row)])  # flat: matched by bare stem
    (out / "face7_of_details.txt").write_text("Input:face7.png\n")  # FaceLandmarkImg's other outputs are ignored
    items = _items("happy/face0.png", "sad/face0.jpg", "anger/face7.png", "anger/face8.png")
    summary = action_units.attach(items, str(out))

    for item, values in ((items[0], happy), (items[1], sad)):
        stored, valid = _expected(values)
        np.testing.assert_allclose(item.action_units, stored, atol=1e-6)
        np.testing.assert_array_equal(item.action_units_valid, valid)
        assert not item.action_units_valid[AU16] and item.action_units[AU16] == 0  # OpenFace has no AU16
        assert min(item.action_units) >= 0 and max(item.action_units) <= 1
    nan_stored, nan_valid = _expected({k: v for k, v in nan_row.items() if k not in (4, 9, 12)})
    np.testing.assert_array_equal(items[2].action_units_valid, nan_valid)
    np.testing.assert_allclose(items[2].action_units, nan_stored, atol=1e-6)
    assert not any(items[2].action_units_valid[ACTION_UNITS.index(au)] for au in (4, 9, 12))
    assert items[3].action_units is None and items[3].action_units_valid is None  # no CSV: stored without AUs
    assert summary["counts"] == {"matched": 3, "no_au_row": 1, "several_faces": 1, "nan_cells": 1}
    assert summary["not_provided"] == ["AU16"] and summary["columns_ignored"] == ["AU45_r"]
    assert summary["files"] == 3 and "FaceLandmarkImg" in summary["layout"]
    reasons = {d["key"]: d["reason"] for d in summary["details"]}
    assert reasons == {"sad/face0": "several_faces", "anger/face7": "nan_cells", "anger/face8": "no_au_row"}
    nan_detail = next(d["detail"] for d in summary["details"] if d["reason"] == "nan_cells")
    assert "face7.csv line 2" in nan_detail and "AU04, AU09, AU12" in nan_detail
    shares, with_any = action_units.coverage(items)
    assert with_any == 3 and shares["AU16"] == 0.0 and shares["AU01"] == 0.75 and shares["AU12"] == 0.5


def test_one_csv_with_a_file_column(tmp_path):
    images = tmp_path / "images"
    values = [fixtures.openface_au_values(seed) for seed in range(3)]
    header = "file, face, confidence, " + ", ".join(f"AU{au:02d}_r" for au in fixtures.OPENFACE_INTENSITY_AUS)
    rows = [f"{name}, 0, 0.9, " + ", ".join(str(v[au]) for au in fixtures.OPENFACE_INTENSITY_AUS)
            for name, v in ((str(images / "happy" / "a.jpg"), values[0]), ("sad/b.png", values[1]),
                            ("c.png", values[2]))]
    path = tmp_path / "aus" / "all.csv"
    path.parent.mkdir()
    path.write_text("\n".join([header] + rows) + "\n")
    items = _items("happy/a.png", "sad/b.png", "anger/c.png")
    summary = action_units.attach(items, str(path), images_dir=str(images))
    for item, v in zip(items, values):
        np.testing.assert_allclose(item.action_units, _expected(v)[0], atol=1e-6)
    assert summary["counts"]["matched"] == 3 and summary["layout"] == "one CSV with a file-name column"


def _write(path, text, encoding="utf-8"):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as handle:
        handle.write(text.encode(encoding) if isinstance(text, str) else text)
    return path


GOOD_HEADER = "face, confidence, AU01_r, AU02_r, AU12_r"


@pytest.mark.parametrize("name, text, message", [
    ("no_aus.csv", "face, confidence, pose_Tx, pose_Ty, x_0, y_0\n0, 0.9, 1, 2, 3, 4\n",
     r"no_aus\.csv: no AUxx_r intensity column \(found 6 column\(s\): face, confidence, pose_Tx"),
    ("other_aus.csv", "face, confidence, AU45_r, AU28_c\n0, 0.9, 1.0, 1\n", r"other_aus\.csv: .*AU45_r.*none of"),
    ("short_row.csv", f"{GOOD_HEADER}\n0, 0.9, 1.0, 2.0, 0.5\n0, 0.8, 1.0\n",
     r"short_row\.csv line 3: 3 field\(s\), the header has 5"),
    ("word.csv", f"{GOOD_HEADER}\n0, 0.9, 1.0, high, 0.5\n",
     r"word\.csv line 2, column AU02_r: 'high' is not a number"),
    ("range.csv", f"{GOOD_HEADER}\n0, 0.9, 1.0, 7.5, 0.5\n", r"range\.csv line 2, column AU02_r: 7\.5 is outside"),
    ("empty.csv", "", r"empty\.csv: empty file"),
    ("twice.csv", "face, confidence, AU01_r, AU01_r\n0, 0.9, 1, 1\n", r"twice\.csv line 1: column\(s\) \['AU01_r'\]"),
    ("sequence.csv", "frame, face_id, timestamp, confidence, success, AU01_r\n1, 0, 0.0, 0.98, 1, 0.5\n",
     r"sequence\.csv: this is OpenFace FeatureExtraction"),
])
def test_bad_csvs_are_errors_naming_file_and_line(tmp_path, name, text, message):
    folder = tmp_path / "openface"
    fixtures.write_openface_csv(str(folder / "good.csv"), [(0.9, fixtures.openface_au_values(0))])
    _write(str(folder / name), text)
    with pytest.raises(action_units.ActionUnitError, match=message):
        action_units.attach(_items("good.png", os.path.splitext(name)[0] + ".png"), str(folder))


def test_unreadable_or_unmatchable_sources_are_errors(tmp_path):
    latin = _write(str(tmp_path / "latin" / "x.csv"), f"{GOOD_HEADER}\n0, 0.9, 1, 1, 1 é\n", encoding="latin-1")
    with pytest.raises(action_units.ActionUnitError, match=r"x\.csv: not UTF-8"):
        action_units.attach(_items("x.png"), os.path.dirname(latin))
    single = _write(str(tmp_path / "single" / "aus.csv"), f"{GOOD_HEADER}\n0, 0.9, 1, 1, 1\n")
    with pytest.raises(action_units.ActionUnitError, match=r"aus\.csv: no column naming each row's image"):
        action_units.attach(_items("x.png"), single)
    (tmp_path / "nothing").mkdir()
    with pytest.raises(action_units.ActionUnitError, match="no .csv file"):
        action_units.attach(_items("x.png"), str(tmp_path / "nothing"))
    # Two images with the same stem in different folders and only a flat CSV: which face it describes is unknown.
    flat = tmp_path / "flat"
    fixtures.write_openface_csv(str(flat / "face0.csv"), [(0.9, fixtures.openface_au_values(0))])
    with pytest.raises(action_units.ActionUnitError, match=r"face0\.csv .*would match 2 images \(happy/face0\.png, "
                                                           r"sad/face0\.png\)"):
        action_units.attach(_items("happy/face0.png", "sad/face0.png"), str(flat))


# --- the CLI end to end --------------------------------------------------------------------------------------------



@pytest.mark.slow  # three subprocess CLI runs: 16 s idle, ~50 s beside a training run
def test_cli_stores_openface_action_units_with_their_mask(tmp_path):
    root = str(tmp_path / "folder")
    expected = fixtures.make_folder(root, per_class=2, classes=("happy", "sad"))
    folder_aus = str(tmp_path / "openface")
    values = {}
    for index, (key, _) in enumerate(expected):
        if key == "sad/face1":
            continue  # OpenFace found no face here: FaceLandmarkImg writes no CSV
        values[key] = fixtures.openface_au_values(index)
        if key == "happy/face1":
            values[key][12] = "nan"
        fixtures.write_openface_csv(os.path.join(folder_aus, key + ".csv"), [(0.95, values[key])])
    out = str(tmp_path / "out")
    args = ["--dataset=folder", f"--images={root}/images", "--depth_source=depth_dir", f"--depth_dir={root}/depth",
            f"--output={out}", f"--image_size={SIZE}", "--crop=full", "--test_split=0", "--review=none"]
    run_cli(*args, f"--action_units_csv={folder_aus}")

    examples = {ex.key: ex for ex in records.iterate_examples(out, "train")}
    assert set(examples) == {key for key, _ in expected}
    for key, ex in examples.items():
        if key == "sad/face1":
            assert ex.action_units is None and np.all(ex.action_units_mask() == 0)
            continue
        stored, valid = _expected(values[key])
        np.testing.assert_allclose(ex.action_units, stored, atol=1e-6)
        np.testing.assert_array_equal(ex.action_units_mask(), valid.astype(np.float32))
    # The tf.data parser gives the same mask, and the masked loss ignores what is missing.
    from expr3d import losses
    shard = records.list_shards(out, "train")[0]
    parsed = [schema.parse_example(tf.constant(r)) for r in tf.data.TFRecordDataset(shard).as_numpy_iterator()]
    by_key = {p["key"].numpy().decode(): p for p in parsed}
    happy1 = by_key["happy/face1"]
    assert happy1["action_units_mask"].numpy()[ACTION_UNITS.index(12)] == 0
    assert happy1["action_units_mask"].numpy()[AU16] == 0 and happy1["action_units_mask"].numpy().sum() == 15
    loss = losses.action_unit_regression_loss(happy1["action_units"][None] + 0.1, happy1["action_units"][None],
                                              mask=happy1["action_units_mask"][None])
    assert float(loss) == pytest.approx(0.1, rel=1e-4)

    report = json.load(open(os.path.join(out, "report.json")))
    assert report["action_units"]["counts"] == {"matched": 3, "no_au_row": 1, "several_faces": 0, "nan_cells": 1}
    assert report["skip_counts"] == {}  # a face without AUs is still written: its expression label is good
    provenance = dataset_card.read_dataset_card(out)["provenance"]["action_units"]
    assert provenance["source"] == folder_aus and provenance["not_provided"] == ["AU16"]
    assert provenance["coverage"]["AU16"] == 0.0 and provenance["coverage"]["AU01"] == 0.75
    assert provenance["coverage"]["AU12"] == 0.5 and provenance["written_with_action_units"] == 3
    text = open(os.path.join(out, "report.txt")).read()
    assert "action units from" in text and "sad/face1" in text and "AU16 0%" in text

    # Bad input: a truncated CSV is one line naming the file and the row; nothing is written.
    with open(os.path.join(folder_aus, "happy", "face0.csv"), "a") as handle:
        handle.write("1, 0.5, 3.0\n")
    bad_out = str(tmp_path / "bad_out")
    result = run_cli(*[a for a in args if not a.startswith("--output")], f"--output={bad_out}",
                     f"--action_units_csv={folder_aus}", expect=1)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "happy/face0.csv line 3: 3 field(s), the header has 43" in lines[0], result.stderr
    assert not os.path.exists(os.path.join(bad_out, dataset_card.CARD_NAME))
    # Another column set: OpenFace run without -aus (pose and landmarks only) names the file and what it found.
    no_aus = tmp_path / "openface_no_aus" / "happy"
    no_aus.mkdir(parents=True)
    (no_aus / "face0.csv").write_text("face, confidence, pose_Tx, pose_Ty, x_0, y_0\n0, 0.98, 1.5, 2.5, 30.1, 40.2\n")
    result = run_cli(*[a for a in args if not a.startswith("--output")], f"--output={bad_out}",
                     f"--action_units_csv={no_aus.parent}", expect=1)
    assert "happy/face0.csv: no AUxx_r intensity column" in result.stderr and "-aus" in result.stderr
    assert not os.path.exists(bad_out) or not os.listdir(bad_out)


def test_config_without_action_units_keeps_its_stored_form_and_digest():
    from expr3d.data.prepare import build

    plain = build.Config(dataset="folder", images="/data/x")
    assert "action_units_csv" not in plain.as_dict()  # a preparation from before the flag resumes unchanged
    assert build.Config(**plain.as_dict()).digest() == plain.digest()
    with_aus = build.Config(dataset="folder", images="/data/x", action_units_csv="/data/aus")
    assert with_aus.as_dict()["action_units_csv"] == "/data/aus" and with_aus.digest() != plain.digest()
