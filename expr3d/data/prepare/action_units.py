"""Action-unit intensities from OpenFace 2.0's CSV output, matched to the faces being prepared by file name.

What OpenFace writes for still images (lib/local/Utilities/src/RecorderCSV.cpp, RecorderOpenFace.cpp and
exe/FaceLandmarkImg/FaceLandmarkImg.cpp of OpenFace 2.x; the wiki pages Output-Format and Action-Units):

* `FaceLandmarkImg -fdir IMAGES -out_dir OUT -aus` writes ONE CSV PER IMAGE, `OUT/<image stem>.csv` (next to a
  `<stem>_of_details.txt`), and none for an image in which no face was detected. Its header starts `face, confidence`
  (each name after the first behind ", "), then the requested groups, the AUs last: `AUxx_r` intensities (sorted
  names), then `AUxx_c` presences. One row per detected face (`face` = 0, 1, ...).
* Intensities `AUxx_r` are on OpenFace's 0-5 scale (0 absent, 1 minimal, 5 maximal) and FaceLandmarkImg clamps
  them to [0, 5]; they are stored here divided by 5, in [0, 1] like every `label/action_units`.
* OpenFace 2.0 estimates intensities of AU 1, 2, 4, 5, 6, 7, 9, 10, 12, 14, 15, 17, 20, 23, 25, 26 and 45. Of
  `expr3d.labels.ACTION_UNITS` it lacks AU16: that AU (and any other without a column) is stored as missing
  (`label/action_units_valid` 0, intensity 0); AU45 (blink) and other columns outside ACTION_UNITS are ignored.
* `FeatureExtraction` (sequence mode, header `frame, face_id, timestamp, confidence, success, ...`) is refused: its
  rows are frames numbered in file order, not named images, and its dynamic AU models calibrate each AU on the
  sequence's running median as if it were one person, which a set of photos of different people is not.

`--action_units_csv` takes either that FaceLandmarkImg output folder, or one CSV holding the same columns plus a
column naming each row's image (`file`, `filename`, `image`, `input` or `path`: a path relative to --images, or a
bare file name), e.g. the per-image files concatenated. A CSV is matched to an image the way depth and meshes are
(`depth_sources.find_file`): `<same sub-folders>/<stem>` first, then the bare `<stem>`; a bare stem that would serve
two images is an error (their CSVs cannot be told apart).

Bad input: a malformed file (not UTF-8, no header, a row with another number of fields than the header, a cell that
is not a number, an intensity outside 0-5, a duplicated column, no `AUxx_r` column at all, FeatureExtraction output)
is an error naming the file and line. Documented skips, counted in the report and the card, never drop a face (its
expression label stays good): an image without a CSV or row is stored without AUs (`no_au_row`); a NaN or empty
intensity cell stores that AU as missing (`nan_cells`); of several faces in one image's CSV the most confident row
is used (`several_faces`).
"""
import csv
import dataclasses
import math
import os
import re

import numpy as np

from expr3d.labels import ACTION_UNITS, NUM_ACTION_UNITS

OPENFACE_SCALE = 5.0  # AUxx_r is 0-5; stored intensities are AUxx_r / 5
NAME_COLUMNS = ("file", "filename", "image", "input", "path")
_INTENSITY = re.compile(r"^AU(\d+)_r$")
_NAN_TEXT = ("", "nan", "-nan", "nan(ind)", "-nan(ind)", "na", "n/a")
AU_INDEX = {au: index for index, au in enumerate(ACTION_UNITS)}


class ActionUnitError(ValueError):
    """An AU CSV cannot be read as OpenFace output; the message names the file and, where it applies, the line."""


@dataclasses.dataclass
class Row:
    where: str  # "<file> line <n>"
    confidence: float
    values: dict  # AU number -> intensity in [0, 1], or NaN for a NaN / empty cell


def au_name(au):
    return f"AU{au:02d}"


def _read_csv(path):
    """(columns, [(line, cells)]) with OpenFace's ", " separators and header spaces stripped."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            rows = list(csv.reader(handle, skipinitialspace=True))
    except UnicodeDecodeError as error:
        raise ActionUnitError(f"{path}: not UTF-8 text ({error}); expected an OpenFace CSV") from None
    except csv.Error as error:
        raise ActionUnitError(f"{path}: not a readable CSV ({error})") from None
    lines = [(number, [cell.strip() for cell in cells]) for number, cells in enumerate(rows, start=1)
             if any(cell.strip() for cell in cells)]
    if not lines:
        raise ActionUnitError(f"{path}: empty file; expected an OpenFace CSV header (face, confidence, ..., AU01_r, "
                              f"...)")
    (_, columns), body = lines[0], lines[1:]
    repeated = sorted({c for c in columns if columns.count(c) > 1})
    if repeated:
        raise ActionUnitError(f"{path} line 1: column(s) {repeated} appear more than once")
    return columns, body


def _au_columns(path, columns):
    """{AU number: column index} of the AUxx_r columns in ACTION_UNITS, and the names of the other AUxx_r ones."""
    lower = [c.lower() for c in columns]
    if "frame" in lower and ("face_id" in lower or "timestamp" in lower) and not set(lower) & set(NAME_COLUMNS):
        raise ActionUnitError(
            f"{path}: this is OpenFace FeatureExtraction (sequence) output (columns frame, face_id, timestamp, ...): "
            f"its rows are frames, not named images, and its AU models calibrate on the whole sequence as one person. "
            f"Run FaceLandmarkImg -fdir <images> -out_dir <dir> -aus and pass that folder as --action_units_csv")
    used, ignored = {}, []
    for index, column in enumerate(columns):
        match = _INTENSITY.match(column)
        if match:
            au = int(match.group(1))
            if au in AU_INDEX:
                used[au] = index
            else:
                ignored.append(column)
    if not used and not ignored:
        shown = ", ".join(columns[:8]) + (", ..." if len(columns) > 8 else "")
        raise ActionUnitError(f"{path}: no AUxx_r intensity column (found {len(columns)} column(s): {shown}); "
                              f"expected OpenFace 2.0 output with AUs (FaceLandmarkImg ... -aus)")
    if not used:
        raise ActionUnitError(f"{path}: its AU intensity columns {ignored} hold none of expr3d's AUs "
                              f"{', '.join(au_name(a) for a in ACTION_UNITS)}")
    return used, ignored


def _intensity(text, where, column):
    """The stored intensity of one cell: value / 5, NaN for a NaN or empty cell; an error for anything else."""
    if text.lower() in _NAN_TEXT:
        return float("nan")
    try:
        value = float(text)
    except ValueError:
        raise ActionUnitError(f"{where}, column {column}: {text!r} is not a number") from None
    if math.isnan(value):
        return float("nan")
    if not 0.0 <= value <= OPENFACE_SCALE:
        raise ActionUnitError(f"{where}, column {column}: {text} is outside OpenFace's 0-5 intensity scale "
                              f"(FaceLandmarkImg clamps to it): is this OpenFace output?")
    return value / OPENFACE_SCALE


def _rows(path, columns, body, used):
    """Row objects of a CSV body; `confidence` ranks several faces of one image (-inf when absent or unreadable)."""
    lower = [c.lower() for c in columns]
    confidence_index = lower.index("confidence") if "confidence" in lower else None
    rows = []
    for number, cells in body:  # CSV rows; per row by nature
        where = f"{path} line {number}"
        if len(cells) != len(columns):
            raise ActionUnitError(f"{where}: {len(cells)} field(s), the header has {len(columns)}: a truncated or "
                                  f"malformed row")
        confidence = -math.inf
        if confidence_index is not None:
            try:
                confidence = float(cells[confidence_index])
            except ValueError:
                pass
            confidence = confidence if math.isfinite(confidence) else -math.inf
        values = {au: _intensity(cells[index], where, columns[index]) for au, index in used.items()}
        rows.append(Row(where, confidence, values))
    return rows


def _normalise_name(name, images_dir):
    """A row's image name as a stem key: '/'-separated, relative to --images when it is inside it, no extension."""
    name = name.strip().replace("\\", "/")
    if os.path.isabs(name) and images_dir:
        inside = os.path.relpath(name, images_dir).replace("\\", "/")
        if not inside.startswith("../"):
            name = inside
    while name.startswith("./"):
        name = name[2:]
    return os.path.splitext(os.path.normpath(name))[0].replace("\\", "/")


def read_table(path, images_dir=""):
    """Read `--action_units_csv`: {stem key: [Row, ...]} plus what was read (layout, columns, file count)."""
    path = os.path.abspath(path)
    table, columns_read, ignored = {}, set(), set()
    if os.path.isdir(path):
        layout = "per-image CSVs (OpenFace FaceLandmarkImg output folder)"
        files = []
        for directory, subdirs, names in os.walk(path):
            subdirs[:] = sorted(d for d in subdirs if not d.startswith("."))
            files.extend(os.path.join(directory, n) for n in sorted(names)
                         if n.lower().endswith(".csv") and not n.startswith("."))
        if not files:
            raise ActionUnitError(f"--action_units_csv {path}: no .csv file in this folder; expected the output "
                                  f"folder of OpenFace's FaceLandmarkImg (-out_dir) with one <image stem>.csv each")
        for file in files:
            columns, body = _read_csv(file)
            used, other = _au_columns(file, columns)
            columns_read.update(used)
            ignored.update(other)
            key = os.path.splitext(os.path.relpath(file, path))[0].replace(os.sep, "/")
            table[key] = _rows(file, columns, body, used)
    elif os.path.isfile(path):
        layout = "one CSV with a file-name column"
        files = [path]
        columns, body = _read_csv(path)
        lower = [c.lower() for c in columns]
        used, other = _au_columns(path, columns)
        names = [c for c in NAME_COLUMNS if c in lower]
        if not names:
            raise ActionUnitError(f"{path}: no column naming each row's image ({', '.join(NAME_COLUMNS)}); "
                                  f"OpenFace's FaceLandmarkImg writes one CSV per image: pass their folder as "
                                  f"--action_units_csv, or add such a column")
        name_index = lower.index(names[0])
        columns_read.update(used)
        ignored.update(other)
        for row, (number, cells) in zip(_rows(path, columns, body, used), body):
            name = cells[name_index]
            if not name:
                raise ActionUnitError(f"{row.where}: column {columns[name_index]} is empty")
            table.setdefault(_normalise_name(name, images_dir), []).append(row)
    else:
        raise FileNotFoundError(f"--action_units_csv {path}: no such file or folder")
    return table, {"source": path, "layout": layout, "files": len(files), "scale": "AUxx_r / 5 (OpenFace's 0-5 "
                   "intensity scale to [0, 1])", "columns_read": [f"{au_name(a)}_r" for a in sorted(columns_read)],
                   "columns_ignored": sorted(ignored),
                   "not_provided": [au_name(a) for a in ACTION_UNITS if a not in columns_read]}


def attach(items, path, images_dir=""):
    """Give every reader Item its AU intensities from `path` (in place); return the summary for report and card.

    An item gets `action_units` (17 floats in [0, 1], 0 where missing) and `action_units_valid` (17 bools), or
    None for both when no row matches or every cell of its row is NaN.
    """
    table, summary = read_table(path, images_dir)
    bare_users = {}
    for item in items:
        rel_stem = os.path.splitext(item.rel_path)[0].replace(os.sep, "/")
        if rel_stem not in table and os.path.basename(rel_stem) in table:
            bare_users.setdefault(os.path.basename(rel_stem), []).append(item.rel_path)
    for stem, users in sorted(bare_users.items()):
        if len(users) > 1:
            raise ActionUnitError(f"--action_units_csv {path}: {stem}.csv (or rows named {stem}) would match "
                                  f"{len(users)} images ({', '.join(sorted(users)[:3])}): put each image's CSV in "
                                  f"the image's sub-folders (<dir>/<sub-folders>/<stem>.csv) or name rows by their "
                                  f"path relative to --images")
    counts = {"matched": 0, "no_au_row": 0, "several_faces": 0, "nan_cells": 0}
    details, used_keys = [], set()
    for item in items:  # faces; the table lookup is per face by nature
        rel_stem = os.path.splitext(item.rel_path)[0].replace(os.sep, "/")
        key = rel_stem if rel_stem in table else os.path.basename(rel_stem)
        rows = table.get(key)
        item.action_units = item.action_units_valid = None
        if not rows:
            counts["no_au_row"] += 1
            details.append({"key": item.key, "path": item.rel_path, "reason": "no_au_row",
                            "detail": "no OpenFace CSV or row for this image (no face found by OpenFace?): stored "
                                      "without AUs"})
            continue
        used_keys.add(key)
        row = max(rows, key=lambda r: r.confidence)  # first of equals: max keeps the earliest
        if len(rows) > 1:
            counts["several_faces"] += 1
            details.append({"key": item.key, "path": item.rel_path, "reason": "several_faces",
                            "detail": f"{len(rows)} faces in OpenFace's output: used {row.where} (highest "
                                      f"confidence {row.confidence:g})"})
        values = np.zeros(NUM_ACTION_UNITS, np.float32)
        valid = np.zeros(NUM_ACTION_UNITS, bool)
        nan_aus = []
        for au, value in sorted(row.values.items()):
            if math.isnan(value):
                nan_aus.append(au_name(au))
                continue
            values[AU_INDEX[au]] = value
            valid[AU_INDEX[au]] = True
        if nan_aus:
            counts["nan_cells"] += 1
            details.append({"key": item.key, "path": item.rel_path, "reason": "nan_cells",
                            "detail": f"{row.where}: NaN or empty intensity of {', '.join(nan_aus)}: stored as "
                                      f"missing"})
        if not valid.any():  # every cell NaN: stored without AUs (counted under nan_cells)
            continue
        counts["matched"] += 1
        item.action_units = [float(v) for v in values]
        item.action_units_valid = [bool(v) for v in valid]
    unused = sorted(set(table) - used_keys)
    summary.update(counts=counts, unused_entries=len(unused), unused_examples=unused[:5], details=details)
    return summary


def coverage(items):
    """{"AU01": share of `items` (dicts or Items) with that AU measured, ...}, and how many have any AU."""
    count = len(items)
    measured = np.zeros(NUM_ACTION_UNITS)
    with_any = 0
    for item in items:
        valid = item["action_units_valid"] if isinstance(item, dict) else item.action_units_valid
        if valid is not None:
            measured += np.asarray(valid, bool)
            with_any += 1
    shares = {au_name(au): round(float(measured[i] / count), 4) if count else 0.0 for i, au in enumerate(ACTION_UNITS)}
    return shares, with_any
