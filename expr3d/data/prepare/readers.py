"""Dataset readers: AffectNet's CSVs, RaFD's file names and a plain `DIR/<expression>/*.jpg` folder layout.

Each reader returns (items, skipped): `Item`s to prepare and `Skip` records (with a report reason) for rows or files
that cannot become an example. Readers never open images; they only decide what should be prepared and with which
labels, so the plan (and hence the shard membership) is cheap and deterministic.
"""
import collections
import csv
import dataclasses
import os

import numpy as np

from expr3d.imaging.photos import IMAGE_EXTENSIONS, printable
from expr3d.labels import EXPRESSIONS, expression_id

AFFECTNET_REQUIRED = ("subDirectory_filePath", "expression")
AFFECTNET_BOX = ("face_x", "face_y", "face_width", "face_height")
# AffectNet ids 0-7 are ours (labels.EXPRESSIONS is AffectNet's order); 8-10 are none / uncertain / non-face.
AFFECTNET_DROPPED = {8: "none", 9: "uncertain", 10: "non-face"}
RAFD_GAZES = ("frontal", "left", "right")


@dataclasses.dataclass
class Item:
    """One face to prepare.

    Args:
        key: unique id, stored as the example's key (AffectNet: path without extension; RaFD: file stem;
            folder: "<expression>/<stem>").
        rel_path: image path relative to --images.
        expression: class id 0-7.
        identity: subject id (-1 unknown).
        pair_id: id shared by views of one subject/pose/gaze under different expressions (-1 none).
        box: (x, y, w, h) face box in source pixels, or None to detect.
        landmarks: flat [x0, y0, x1, y1, ...] source-pixel landmarks, or None.
        split: "train"/"test" when the source fixes it, else None (assigned later).
        group: what must not straddle splits (RaFD subject), "" for none.
        action_units: 17 intensities in [0, 1] (0 where missing) from --action_units_csv, or None.
        action_units_valid: 17 bools, False where an AU is missing, or None (expr3d.data.prepare.action_units).
    """

    key: str
    rel_path: str
    expression: int
    identity: int = -1
    pair_id: int = -1
    box: tuple | None = None
    landmarks: list | None = None
    split: str | None = None
    group: str = ""
    action_units: list | None = None
    action_units_valid: list | None = None


@dataclasses.dataclass
class Skip:
    key: str
    path: str
    reason: str
    detail: str
    split: str | None = None

    def as_dict(self):
        return dataclasses.asdict(self)


NON_UTF8_NAME = "non_utf8_name"


def is_utf8(path):
    """False for a name holding bytes that are not UTF-8 (a Linux file name from another locale: Python keeps such
    bytes as surrogate escapes, which cannot be stored as an example key or written to a UTF-8 report)."""
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _non_utf8_skip(rel_path, split=None):
    shown = printable(rel_path)
    return Skip(os.path.splitext(shown)[0], shown, NON_UTF8_NAME, "the file name is not valid UTF-8 (example keys "
                "and reports are UTF-8): rename the file to prepare it", split)


def _safe_rel_path(images_dir, rel):
    """Normalise a relative image path; None if it is absolute or escapes the images folder."""
    rel = rel.strip().replace("\\", "/")
    if not rel or os.path.isabs(rel) or rel.startswith("/"):
        return None
    norm = os.path.normpath(rel)
    if norm.startswith(".."):
        return None
    return norm


def read_affectnet(csv_path, images_dir, split=None):
    """Rows of an official AffectNet CSV (training.csv / validation.csv).

    Columns: subDirectory_filePath, face_x, face_y, face_width, face_height, facial_landmarks ("x;y;x;y..."),
    expression (0-10), valence, arousal. Classes 8-10 are dropped (reason "dropped_class").
    """
    if not os.path.isfile(csv_path):
        raise FileNotFoundError(f"--annotations {csv_path}: no such file")
    try:
        return _read_affectnet_rows(csv_path, images_dir, split)
    except UnicodeDecodeError as error:
        raise ValueError(f"--annotations {csv_path}: not UTF-8 text ({error})") from None


def _read_affectnet_rows(csv_path, images_dir, split):
    items, skipped = [], []
    seen = set()
    with open(csv_path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        columns = reader.fieldnames or []
        missing = [c for c in AFFECTNET_REQUIRED if c not in columns]
        if missing:
            raise ValueError(f"{csv_path}: missing column(s) {missing}; found {columns}. Expected the official "
                             f"AffectNet layout: subDirectory_filePath,face_x,face_y,face_width,face_height,"
                             f"facial_landmarks,expression,valence,arousal")
        for line, row in enumerate(reader, start=2):  # CSV rows; parsing is per row by nature
            raw_path = (row.get("subDirectory_filePath") or "").strip()
            rel = _safe_rel_path(images_dir, raw_path)
            key = os.path.splitext(rel)[0] if rel else raw_path
            where = f"{os.path.basename(csv_path)} line {line}"
            if rel is None:
                skipped.append(Skip(key, raw_path, "missing_path", f"{where}: path {raw_path!r} is empty or outside "
                                                                   f"--images", split))
                continue
            try:
                label = int(float(row.get("expression", "")))
                if float(row["expression"]) != label:
                    raise ValueError
            except (TypeError, ValueError):
                skipped.append(Skip(key, rel, "unknown_label", f"{where}: expression {row.get('expression')!r} "
                                                               f"is not an integer", split))
                continue
            if label in AFFECTNET_DROPPED:
                skipped.append(Skip(key, rel, "dropped_class", f"class {label} ({AFFECTNET_DROPPED[label]})", split))
                continue
            if not 0 <= label < len(EXPRESSIONS):
                skipped.append(Skip(key, rel, "unknown_label", f"{where}: expression {label} is outside 0-10",
                                    split))
                continue
            if key in seen:
                skipped.append(Skip(key, rel, "duplicate", f"{where}: {rel} already listed", split))
                continue
            seen.add(key)
            box = None
            if all(row.get(c) not in (None, "") for c in AFFECTNET_BOX):
                try:
                    box = tuple(float(row[c]) for c in AFFECTNET_BOX)
                except ValueError:
                    box = None
                if box is not None and not (box[2] > 0 and box[3] > 0 and all(np.isfinite(box))):
                    box = None
            if box is None:
                skipped.append(Skip(key, rel, "bad_annotation", f"{where}: face box "
                                    f"{[row.get(c) for c in AFFECTNET_BOX]} is missing or not positive", split))
                continue
            landmarks = None
            text = (row.get("facial_landmarks") or "").strip()
            if text:
                try:
                    landmarks = [float(v) for v in text.split(";") if v.strip()]
                except ValueError:
                    landmarks = None
            items.append(Item(key=key, rel_path=rel, expression=label, box=box, landmarks=landmarks, split=split))
    return items, skipped


def parse_rafd_name(filename):
    """Fields of a RaFD file name, e.g. Rafd090_01_Caucasian_female_angry_frontal.jpg ->
    {"angle": 90, "subject": 1, "ethnicity": "Caucasian", "gender": "female", "expression": "angry",
     "gaze": "frontal"}; None if the name does not follow the scheme."""
    stem = os.path.splitext(os.path.basename(filename))[0]
    parts = stem.split("_")
    if len(parts) < 5 or not parts[0].lower().startswith("rafd"):
        return None
    angle_text = parts[0][4:]
    if not angle_text.isdigit() or not parts[1].isdigit() or parts[-1].lower() not in RAFD_GAZES:
        return None
    middle = parts[2:-2]
    return {"angle": int(angle_text), "subject": int(parts[1]), "ethnicity": middle[0] if middle else "",
            "gender": middle[1] if len(middle) > 1 else "", "expression": parts[-2], "gaze": parts[-1].lower()}


def _image_files(root):
    """(image paths, other files, image paths whose name is not UTF-8) under `root`, relative, sorted (recursive;
    hidden folders skipped)."""
    found, ignored, non_utf8 = [], [], []
    for directory, subdirs, files in os.walk(root):
        subdirs[:] = sorted(d for d in subdirs if not d.startswith("."))
        for name in sorted(files):
            rel = os.path.relpath(os.path.join(directory, name), root)
            if name.startswith("."):
                continue
            if not name.lower().endswith(IMAGE_EXTENSIONS):
                ignored.append(rel)
            else:
                (found if is_utf8(rel) else non_utf8).append(rel)
    return found, ignored, non_utf8


def read_rafd(images_dir, angles=(90,), gazes=RAFD_GAZES):
    """RaFD images anywhere under `images_dir`, filtered by camera angle and gaze.

    identity: one id per subject (number + ethnicity + gender, numbered in sorted order); pair_id: one per
    (subject, angle, gaze), shared by the 8 expressions. group = subject, for subject-disjoint splits.
    """
    files, _, non_utf8 = _image_files(images_dir)
    items, skipped = [], [_non_utf8_skip(rel) for rel in non_utf8]
    parsed = []
    for rel in files:  # file names; parsing is per name by nature
        fields = parse_rafd_name(rel)
        key = os.path.splitext(os.path.basename(rel))[0]
        if fields is None:
            skipped.append(Skip(key, rel, "unparseable_name", "not Rafd<angle>_<subject>_<ethnicity>_<gender>_"
                                                              "<expression>_<gaze>"))
            continue
        if fields["angle"] not in angles or fields["gaze"] not in gazes:
            skipped.append(Skip(key, rel, "not_selected", f"angle {fields['angle']:03d} / gaze {fields['gaze']} "
                                                          f"not selected by --rafd_angles/--rafd_gazes"))
            continue
        try:
            label = expression_id(fields["expression"])
        except ValueError:
            skipped.append(Skip(key, rel, "unknown_label", f"expression {fields['expression']!r} in the file name"))
            continue
        subject = f"{fields['subject']:02d}_{fields['ethnicity']}_{fields['gender']}"
        parsed.append((key, rel, label, subject, fields))
    subjects = sorted({p[3] for p in parsed})
    subject_id = {s: i for i, s in enumerate(subjects)}
    views = sorted({(p[3], p[4]["angle"], p[4]["gaze"]) for p in parsed})
    view_id = {v: i for i, v in enumerate(views)}
    seen = set()
    for key, rel, label, subject, fields in parsed:
        if key in seen:
            skipped.append(Skip(key, rel, "duplicate", f"another file has the stem {key}"))
            continue
        seen.add(key)
        items.append(Item(key=key, rel_path=rel, expression=label, identity=subject_id[subject],
                          pair_id=view_id[(subject, fields["angle"], fields["gaze"])], group=subject))
    return items, skipped


def read_folder(images_dir):
    """`DIR/<expression>/*` or `DIR/{train,test}/<expression>/*` (expression names as in labels.expression_id)."""
    items, skipped = [], []
    top = sorted(d for d in os.listdir(images_dir) if os.path.isdir(os.path.join(images_dir, d))
                 and not d.startswith("."))
    if not top:
        raise ValueError(f"--images {images_dir}: no sub-folders; expected DIR/<expression>/*.jpg")
    split_layout = set(top) & {"train", "test"}
    roots = [(d, d) for d in sorted(split_layout)] if split_layout else [("", None)]
    for prefix, split in roots:
        base = os.path.join(images_dir, prefix)
        for name in sorted(d for d in os.listdir(base) if os.path.isdir(os.path.join(base, d))
                           and not d.startswith(".")):
            files, _, non_utf8 = _image_files(os.path.join(base, name))
            if not is_utf8(name):
                files, non_utf8 = [], files + non_utf8
            skipped.extend(_non_utf8_skip(os.path.join(prefix, name, rel), split) for rel in non_utf8)
            try:
                label = expression_id(name)
            except ValueError:
                for rel in files:
                    rel_path = os.path.join(prefix, name, rel)
                    skipped.append(Skip(os.path.splitext(rel_path)[0], rel_path, "unknown_label",
                                        f"folder {name!r} is not an expression ({', '.join(EXPRESSIONS)})", split))
                continue
            for rel in files:
                rel_path = os.path.join(prefix, name, rel)
                items.append(Item(key=os.path.splitext(rel_path)[0], rel_path=rel_path, expression=label,
                                  split=split))
    return items, skipped


def assign_splits(items, test_split, seed, test_groups=None):
    """Give every item without a fixed split "train" or "test" (in place); deterministic for a seed.

    Items with a `group` are split by group (subject-disjoint): `test_groups` names them explicitly, else a seeded
    `test_split` share of the sorted groups goes to test. Items without a group are split per class.
    """
    rng = np.random.default_rng(seed)
    free = [item for item in items if item.split is None]
    grouped = [item for item in free if item.group]
    if grouped:
        groups = sorted({item.group for item in grouped})
        if test_groups:
            unknown = sorted(set(test_groups) - set(groups))
            if unknown:
                raise ValueError(f"--test_subjects names unknown subject(s) {unknown}; known: {groups}")
            test = set(test_groups)
        else:
            count = int(round(test_split * len(groups)))
            if test_split > 0 and len(groups) > 1:
                count = min(max(count, 1), len(groups) - 1)
            order = rng.permutation(len(groups))
            test = {groups[i] for i in order[:count]}
        for item in grouped:
            item.split = "test" if item.group in test else "train"
    by_class = collections.defaultdict(list)
    for item in free:
        if not item.group:
            by_class[item.expression].append(item)
    for label in sorted(by_class):
        members = sorted(by_class[label], key=lambda it: it.key)
        count = int(round(test_split * len(members)))
        chosen = set(rng.permutation(len(members))[:count].tolist())
        for index, item in enumerate(members):
            item.split = "test" if index in chosen else "train"
    return items


def cap_per_class(items, max_per_class, seed):
    """Keep at most `max_per_class` items of each class in each split (seeded choice); return (kept, dropped)."""
    if not max_per_class:
        return items, []
    rng = np.random.default_rng(seed + 1)
    groups = collections.defaultdict(list)
    for item in items:
        groups[(item.split, item.expression)].append(item)
    kept, dropped = [], []
    for split, label in sorted(groups):
        members = sorted(groups[(split, label)], key=lambda it: it.key)
        if len(members) <= max_per_class:
            kept.extend(members)
            continue
        chosen = set(rng.choice(len(members), max_per_class, replace=False).tolist())
        for index, item in enumerate(members):
            (kept if index in chosen else dropped).append(item)
    return kept, [Skip(item.key, item.rel_path, "over_class_cap", f"{EXPRESSIONS[item.expression]} capped at "
                                                                  f"{max_per_class}", item.split) for item in dropped]
