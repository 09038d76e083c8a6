# Over 400 lines: one resumable preparation (plan, shard workers, sidecars, report) whose steps share its state.
"""Plan, run (in parallel, resumably) and report one preparation of a face dataset into expr3d TFRecord shards.

Plan: the reader's items are split, capped, sorted by key and chunked into shards of `examples_per_shard` items per
split, so shard membership is a pure function of the configuration and the input listing. Each shard is one task:
its worker prepares every item, writes the shard atomically, its review sheets, and last a JSON sidecar
(`prepare/shards/<shard>.json`) with a record per item. A shard is complete iff its sidecar exists and was written
under the same configuration and the same reject-list entries for its items; a rerun skips complete shards.

Output layout:
    <output>/train-00000.tfrecord ...     shards (expr3d.data.records)
    <output>/dataset_card.json            counts per split and class (Table 4 layout) + provenance
    <output>/report.json, report.txt      everything skipped or converted, with the reason
    <output>/excluded.tsv                 rows left out by design (classes 8-10, class cap, unselected angles)
    <output>/review/*.png                 contact sheets; review/reject_list.txt the editable reject list
    <output>/prepare/                     config.json (for resume), plan, shard sidecars
"""
import collections
import dataclasses
import hashlib
import json
import math
import multiprocessing
import os
import time

import numpy as np

from expr3d import outputs, storage
from expr3d.data import dataset_card, records, schema
from expr3d.data.prepare import action_units, depth_sources, quality, readers, review
from expr3d.imaging import crops, faces, photos
from expr3d.labels import EXPRESSIONS
from expr3d.progress import Progress, format_duration

STATE_DIR = "prepare"
REVIEW_DIR = "review"
REJECT_TEMPLATE = "reject_list.txt"
# Reasons that are choices of the configuration rather than problems with the data.
EXCLUDED_REASONS = ("dropped_class", "over_class_cap", "not_selected")


@dataclasses.dataclass
class Config:
    """Everything that determines the output (stored in prepare/config.json and compared on resume)."""

    dataset: str
    images: str
    annotations: str = ""
    test_annotations: str = ""
    depth_source: str = "mesh_dir"
    source: dict = dataclasses.field(default_factory=dict)  # depth_sources.SourceSettings fields
    image_size: int = 256
    crop: str = "auto"  # auto | detect | depth | full
    margin: float = 0.25
    align_eyes: bool = True
    min_image_size: int = 32
    min_face_size: int = 32
    fill_holes: bool = True
    max_hole_px: int = 0
    thresholds: dict = dataclasses.field(default_factory=dict)
    max_per_class: int = 0
    seed: int = 0
    test_split: float = 0.1
    test_subjects: list = dataclasses.field(default_factory=list)
    rafd_angles: list = dataclasses.field(default_factory=lambda: [90])
    rafd_gazes: list = dataclasses.field(default_factory=lambda: list(readers.RAFD_GAZES))
    examples_per_shard: int = 256
    image_format: str = "png"
    depth_format: str = "png16"
    review: str = "all"  # all | flagged | none
    name: str = ""
    action_units_csv: str = ""  # OpenFace 2.0 AU CSV file or folder (expr3d.data.prepare.action_units), "" = none
    # Face detector where no annotation gives the box. A stored config without the field was prepared with Haar
    # (before BlazeFace), so the dataclass default stays "haar"; the CLI's default is "blazeface".
    detector: str = "haar"

    def as_dict(self):
        """The fields; options added later are left out at their default, so a preparation made before them keeps
        its stored config and digest (and resumes)."""
        values = dataclasses.asdict(self)
        for name, default in _LATER_OPTIONS.items():
            if values.get(name) == default:
                values.pop(name)
        return values

    def digest(self):
        return hashlib.sha256(json.dumps(self.as_dict(), sort_keys=True).encode()).hexdigest()[:16]


_LATER_OPTIONS = {"action_units_csv": "", "detector": "haar"}

OutputError = outputs.OutputError  # the output folder cannot be used as asked (another configuration, an input, ...)

# What prepare writes into --output (glob patterns; "*" stays within a folder). review/reject_list.txt is not here:
# once the user has edited it, it is never replaced (a fresh template goes to reject_list.new.txt).
WRITES = ("*-[0-9][0-9][0-9][0-9][0-9].tfrecord", dataset_card.CARD_NAME, "report.json", "report.txt", "excluded.tsv",
          f"{REVIEW_DIR}/*-[0-9][0-9][0-9][0-9][0-9]_[0-9][0-9].png", f"{REVIEW_DIR}/reject_list.new.txt",
          f"{STATE_DIR}/config.json", f"{STATE_DIR}/shards/*.json", f"{STATE_DIR}/reject_template.sha256")


# --- planning ------------------------------------------------------------------------------------------------------

def read_items(config):
    """Run the dataset's reader(s); return (items, skipped)."""
    if config.dataset == "affectnet":
        if not config.annotations:
            raise ValueError("--dataset=affectnet needs --annotations=<training.csv>")
        if config.test_annotations:
            items, skipped = readers.read_affectnet(config.annotations, config.images, split="train")
            test_items, test_skipped = readers.read_affectnet(config.test_annotations, config.images, split="test")
            clash = {i.key for i in items} & {i.key for i in test_items}
            if clash:
                raise ValueError(f"{len(clash)} image(s) are listed in both --annotations and --test_annotations, "
                                 f"e.g. {sorted(clash)[0]}")
            items, skipped = items + test_items, skipped + test_skipped
        else:
            items, skipped = readers.read_affectnet(config.annotations, config.images)
    elif config.dataset == "rafd":
        items, skipped = readers.read_rafd(config.images, angles=tuple(config.rafd_angles),
                                           gazes=tuple(config.rafd_gazes))
    elif config.dataset == "folder":
        items, skipped = readers.read_folder(config.images)
    else:
        raise ValueError(f"--dataset must be affectnet, rafd or folder, got {config.dataset!r}")
    return items, skipped


def make_plan(config):
    """Deterministic shard plan: {"shards": [{"split", "index", "name", "items": [Item dicts]}], "skipped": [...]}."""
    items, skipped = read_items(config)
    readers.assign_splits(items, config.test_split, config.seed, test_groups=config.test_subjects or None)
    items, capped = readers.cap_per_class(items, config.max_per_class, config.seed)
    skipped = skipped + capped
    au_summary = action_units.attach(items, config.action_units_csv, config.images) if config.action_units_csv else None
    shards = []
    for split in dataset_card.SPLITS:
        members = sorted((item for item in items if item.split == split), key=lambda it: it.key)
        for index, start in enumerate(range(0, len(members), config.examples_per_shard)):
            chunk = members[start:start + config.examples_per_shard]
            shards.append({"split": split, "index": index, "name": records.shard_name(split, index),
                           "items": [dataclasses.asdict(item) for item in chunk]})
    listing = json.dumps([[s["name"], [(i["key"], i["rel_path"], i["expression"]) for i in s["items"]]]
                          for s in shards], sort_keys=True)
    if au_summary is not None:  # AU values are input too: a changed CSV is a changed listing
        listing += json.dumps([[(i["key"], i["action_units"], i["action_units_valid"]) for i in s["items"]]
                               for s in shards])
    return {"shards": shards, "skipped": [s.as_dict() for s in skipped],
            "digest": hashlib.sha256(listing.encode()).hexdigest()[:16], "action_units": au_summary}


def resolve_rejects(entries, plan):
    """Map reject-list entries (keys or review ids) to {key: entry}; return (rejected, unmatched entries)."""
    by_review = {}
    keys = set()
    for shard in plan["shards"]:
        for position, item in enumerate(shard["items"]):
            by_review[review.review_id(shard["split"], shard["index"], position)] = item["key"]
            keys.add(item["key"])
    rejected, unmatched = {}, []
    for entry in entries:
        if entry in keys:
            rejected[entry] = entry
        elif entry in by_review:
            rejected[by_review[entry]] = entry
        else:
            unmatched.append(entry)
    return rejected, unmatched


# --- output folder safety ------------------------------------------------------------------------------------------

def _inside(path, parent):
    path, parent = os.path.realpath(path), os.path.realpath(parent)
    return path == parent or path.startswith(parent.rstrip(os.sep) + os.sep)


def output_folder(output):
    return outputs.OutputFolder(output, "--output", "expr3d.data.prepare")


def _template_is_ours(output):
    """True when review/reject_list.txt is prepare's own template, unedited since it was written."""
    template = os.path.join(output, REVIEW_DIR, REJECT_TEMPLATE)
    stored = os.path.join(output, STATE_DIR, "reject_template.sha256")
    if not (os.path.isfile(template) and os.path.isfile(stored)):
        return False
    with open(stored, encoding="utf-8") as handle:
        return handle.read().strip() == review.sha256_file(template)


def _legacy_names(folder):
    """What a prepare run from before manifests wrote into `folder` (its prepare/config.json says it was one)."""
    if folder.written() or not os.path.isfile(os.path.join(folder.path, STATE_DIR, "config.json")):
        return []
    names = folder._existing(WRITES) + [f"{STATE_DIR}/", f"{STATE_DIR}/shards/", f"{REVIEW_DIR}/"]
    return names + ([f"{REVIEW_DIR}/{REJECT_TEMPLATE}"] if _template_is_ours(folder.path) else [])


def check_output(output, config, inputs, overwrite, plan_digest):
    """Decide fresh / resume / overwrite for `output`; raise OutputError when it is not safe. Returns the mode.

    `--overwrite` removes only what an earlier prepare run listed as written there (shards, card, reports, state,
    its own review sheets, its reject-list template unless the user edited it); nothing else in the folder.
    """
    for flag, path in inputs.items():
        if path and (outputs.is_inside(output, path) or outputs.is_inside(path, output)):
            raise OutputError(f"--output {output} overlaps {flag} {path}: prepare never writes into its inputs")
    folder = output_folder(output)
    state = os.path.join(output, STATE_DIR, "config.json")
    if os.path.isfile(state):
        with open(state, encoding="utf-8") as handle:
            stored = json.load(handle)
        current = config.as_dict()
        differs = sorted(k for k in set(stored.get("config", {})) | set(current)
                         if stored.get("config", {}).get(k) != current.get(k))
        if stored.get("plan_digest") != plan_digest:
            differs.append("input listing (images/annotations changed)")
        if not differs:
            folder.adopt(_legacy_names(folder))  # a run from before manifests: its files are listed from now on
            return "resume"
        if not overwrite:
            raise OutputError(f"--output {output} holds a prepare run with a different configuration (differs in: "
                              f"{', '.join(differs)}); pass --overwrite to replace it or choose another --output")
    keep = [] if _template_is_ours(output) else [f"{REVIEW_DIR}/{REJECT_TEMPLATE}"]
    removed = folder.claim(overwrite, will_write=WRITES, legacy=_legacy_names(folder), keep=keep)
    return "overwrite" if removed else "fresh"


# --- the worker ----------------------------------------------------------------------------------------------------

_WORKER = {}


def _init_worker(config_dict, output):
    import cv2

    cv2.setNumThreads(1)  # one worker per core; OpenCV's own threads would oversubscribe
    config = Config(**config_dict)
    settings = depth_sources.SourceSettings(**config.source)
    _WORKER.update(config=config, output=output, source=depth_sources.make_source(config.depth_source, settings),
                   thresholds=quality.Thresholds(**config.thresholds))


class _Skipped(Exception):
    def __init__(self, reason, detail):
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


@dataclasses.dataclass
class _Face:
    """Where the face is, in source pixels: box (x, y, w, h), eye-line angle, whether the box is the depth's extent,
    and for BlazeFace the deployment crop ((cx, cy) index convention, side) that replaces the margin rule."""
    box: tuple
    angle: float = 0.0
    from_depth: bool = False
    crop: tuple | None = None


def _flag(record, code, detail):
    """Something about a face worth counting in the report (it is still written unless a check rejects it)."""
    record.setdefault("flags", []).append(code)
    record.setdefault("flag_details", []).append(detail)


def _detect(config, loaded, record):
    """The face found by the configured detector in the working image: (box, angle, detection or None, face mesh
    landmarks or None), working pixels; _Skipped("no_face") when there is none. BlazeFace's face is levelled by the
    face mesh's eye centres, as the photo tools level theirs (expr3d.imaging.faces.find_face). Several faces: the
    most confident (BlazeFace) or the largest (Haar) is used, flagged `several_faces` with the count."""
    min_face = max(1, round(config.min_face_size * min(loaded.scale)))
    if config.detector == "blazeface":
        from expr3d.imaging import blazeface

        found = blazeface.detect(loaded.rgb)
        if not found:
            raise _Skipped("no_face", "no face found by BlazeFace")
        if len(found) > 1:
            _flag(record, "several_faces", f"{len(found)} faces found; the most confident (score "
                                           f"{found[0].score:.2f}; next {found[1].score:.2f}) used")
        from expr3d.imaging import facemesh

        landmarks = facemesh.shared_face_mesh(_face_mesh_model(config))(loaded.rgb, found[0])
        angle = landmarks.angle if landmarks is not None else blazeface.eye_angle(found[0])
        return found[0].box, angle, found[0], landmarks
    boxes = faces.detect_faces(loaded.rgb, min_face=min_face)
    found = faces.detect_face(loaded.rgb, min_face=min_face, boxes=boxes)
    if found is None:
        raise _Skipped("no_face", "no face found by the Haar cascade")
    if len(boxes) > 1:
        _flag(record, "several_faces", f"{len(boxes)} faces found by Haar; the largest used")
    return found.box, found.angle_deg, None, None


def _face_mesh_model(config):
    return (config.source or {}).get("face_mesh_model") or None


def _locate(config, item, loaded, record):
    """Before any depth: the face in working pixels as _detect's (box, angle, detection, landmarks), or None when the
    crop comes from the whole image or the depth."""
    if config.crop in ("full", "depth"):
        return None
    if config.crop == "auto" and item.box is not None:
        eyes = faces.landmark_eyes(item.landmarks) if config.align_eyes else None
        sx, sy = loaded.scale
        box = (item.box[0] * sx, item.box[1] * sy, item.box[2] * sx, item.box[3] * sy)
        return box, faces.eye_angle(*eyes) if eyes else 0.0, None, None
    return _detect(config, loaded, record)


def _face_box(config, loaded, data, source, located):
    """The _Face of an item in source pixels, or raise _Skipped("no_face")."""
    height, width = loaded.source_shape
    if config.crop == "full":
        side = min(height, width)
        return _Face(((width - side) / 2.0, (height - side) / 2.0, side, side))
    if config.crop == "depth":
        box = source.box(data)
        if box is None:
            raise _Skipped("no_face", f"--crop=depth but the {config.depth_source} source gives no face region")
        return _Face(box, from_depth=True)
    box, angle, detection, _ = located
    landmarks = data.get("landmarks") if isinstance(data, dict) else None
    if landmarks is not None:
        angle = landmarks.angle  # the mesh's eye centres level the face better than a detector's eye keypoints
    if not config.align_eyes:
        angle = 0.0
    source_box = loaded.to_source_box(box)
    if detection is None:
        return _Face(source_box, angle)
    from expr3d.imaging import blazeface

    # BlazeFace: the deployment crop convention (what lite, synthesize and the browser app cut), so a model trained
    # on these faces meets photos at inference cropped the same way; --margin does not apply.
    (cx, cy), side, _ = blazeface.crop_geometry(detection, angle)
    sx, sy = loaded.scale
    return _Face(source_box, angle, crop=(((cx + 0.5) / sx - 0.5, (cy + 0.5) / sy - 0.5), side / math.sqrt(sx * sy)))


def _load_geometry(config, item, loaded, source, located, record):
    """The depth source's data for the item; the built-in reconstruction first needs the face (found here when the
    crop mode did not look for it)."""
    if not getattr(source, "needs_face", False):
        return source.load(item, loaded.source_shape), located
    from expr3d.imaging import facemesh

    if located is None:
        located = _detect(config, loaded, record)
    box, angle, _, landmarks = located
    data = source.load(item, loaded.source_shape, loaded=loaded, roi=facemesh.roi_from_box(box, angle),
                       landmarks=landmarks)
    if abs(data["yaw"]) > facemesh.TURNED_YAW_DEGREES:
        _flag(record, "turned_face", f"yaw about {data['yaw']:.0f} degrees from the landmarks (468 points fit "
                                     f"profiles poorly)")
    return data, located


def prepare_item(item, config, source, thresholds):
    """Prepare one face. Returns (FaceExample or None, record dict, review images or None)."""
    record = {"key": item.key, "path": item.rel_path, "split": item.split, "expression": item.expression,
              "status": "skipped", "reason": "", "detail": "", "notes": [], "scores": None}
    path = os.path.join(config.images, item.rel_path)
    try:
        loaded = photos.load_image(path, min_size=config.min_image_size)
    except photos.ImageFileError as error:
        raise _Skipped(error.reason, str(error)) from None
    record["notes"].extend(loaded.notes)
    located = _locate(config, item, loaded, record)
    try:
        data, located = _load_geometry(config, item, loaded, source, located, record)
    except depth_sources.SourceError as error:
        raise _Skipped(error.reason, str(error)) from None
    face = _face_box(config, loaded, data, source, located)
    box, from_depth = face.box, face.from_depth
    if min(box[2], box[3]) < config.min_face_size:
        raise _Skipped("tiny_face", f"face box {box[2]:.0f}x{box[3]:.0f} px is below --min_face_size="
                                    f"{config.min_face_size}")
    size = config.image_size
    if face.crop is not None:
        (cx, cy), side = face.crop
        matrix = crops.crop_matrix((0.0, 0.0, side, side), size, margin=0.0, angle_deg=face.angle,
                                   center=(cx + 0.5, cy + 0.5))
    else:
        matrix = crops.crop_matrix(box, size, margin=0.0 if config.crop == "full" else config.margin,
                                   angle_deg=face.angle)
    if config.crop != "full":
        outside = crops.outside_share(matrix, size, loaded.source_shape)
        if outside > faces.BORDER_SHARE:
            _flag(record, "face_at_border", f"{outside:.0%} of the crop lies outside the photo (black there)")
    crop = crops.warp_image(loaded.rgb, loaded.to_working(matrix), size)
    try:
        geom = source.render(data, matrix, size, crop)
    except depth_sources.SourceError as error:
        raise _Skipped(error.reason, str(error)) from None
    record["notes"].extend(geom.notes)
    depth, mask, normals, hole_fraction = depth_sources.complete_geometry(
        geom, fill=config.fill_holes, max_hole_px=config.max_hole_px or None)
    if not mask.any():
        raise _Skipped("no_depth", "no valid depth inside the face crop")
    if config.crop == "full":
        # No face box is known: score coverage against the depth's own extent (box_iou is then uninformative).
        crop_box, from_depth = faces.box_from_mask(mask), True
    else:
        corners = crops.transform_points(matrix, crops.box_corners(box)) + 0.5
        lo, hi = corners.min(axis=0), corners.max(axis=0)
        crop_box = (float(lo[0]), float(lo[1]), float(hi[0] - lo[0]), float(hi[1] - lo[1]))
    scores = quality.scores(depth, mask, hole_fraction, crop_box, size, box_is_from_depth=from_depth)
    record["scores"] = {k: round(v, 4) for k, v in scores.items()}
    images = (crop, depth, mask, normals)
    failed = quality.failures(scores, thresholds)
    if failed:
        record.update(reason="rejected_quality", detail="; ".join(failed))
        return None, record, images
    aus = None if item.action_units is None else np.asarray(item.action_units, np.float32)
    valid = None if item.action_units_valid is None else np.asarray(item.action_units_valid, bool)
    example = schema.FaceExample(image=crop, depth=depth, mask=mask, normals=normals, expression=item.expression,
                                 identity=item.identity, key=item.key, pair_id=item.pair_id,
                                 image_format=config.image_format, depth_format=config.depth_format,
                                 action_units=aus, action_units_valid=valid)
    try:
        example.validate(where=f"{item.key}")
    except schema.RecordError as error:
        raise _Skipped("invalid_example", str(error)) from None
    record["status"] = "written"
    return example, record, images


def process_shard(task):
    """Worker: prepare one shard's items, write shard + review sheets + sidecar. Returns the sidecar dict."""
    config, output, source = _WORKER["config"], _WORKER["output"], _WORKER["source"]
    thresholds = _WORKER["thresholds"]
    started = time.monotonic()
    rejected = task["rejected"]
    serialized, item_records, tiles = [], [], []
    for position, item_dict in enumerate(task["items"]):  # faces of this shard, in plan order
        item = readers.Item(**{k: tuple(v) if k == "box" and v is not None else v for k, v in item_dict.items()})
        rid = review.review_id(task["split"], task["index"], position)
        if item.key in rejected:
            item_records.append({"key": item.key, "path": item.rel_path, "split": item.split, "review_id": rid,
                                 "expression": item.expression, "status": "skipped", "reason": "rejected_list",
                                 "detail": f"listed as {rejected[item.key]!r} in --reject_list", "notes": [],
                                 "scores": None})
            continue
        images = None
        try:
            example, record, images = prepare_item(item, config, source, thresholds)
            if example is not None:
                serialized.append(schema.encode_example(example))
        except _Skipped as skip:
            record = {"key": item.key, "path": item.rel_path, "split": item.split, "expression": item.expression,
                      "status": "skipped", "reason": skip.reason, "detail": skip.detail, "notes": [], "scores": None}
        except Exception as error:  # never crash halfway: an unexpected failure skips this face and is reported
            record = {"key": item.key, "path": item.rel_path, "split": item.split, "expression": item.expression,
                      "status": "skipped", "reason": "error", "detail": f"{type(error).__name__}: {error}",
                      "notes": [], "scores": None}
        record["review_id"] = rid
        item_records.append(record)
        if images is not None and config.review != "none":
            flagged = record["status"] != "written"
            if config.review == "all" or flagged:
                crop, depth, mask, normals = images
                label = f"{rid} {record['scores']['score']:.2f} {EXPRESSIONS[item.expression][:4]}"
                tiles.append((record["scores"]["score"], rid,
                              review.tile(crop, depth, mask, normals, label, rejected=flagged)))
    folder = output_folder(output)
    stem = task["name"].replace(".tfrecord", "")
    # A rerun of this shard replaces what an earlier run of it wrote: an all-rejected shard must leave no stale
    # shard, and fewer review pages no stale page.
    folder.remove_written([n for n in folder.written()
                           if n == task["name"] or (n.startswith(f"{REVIEW_DIR}/{stem}_") and n.endswith(".png"))])
    if serialized:
        records.write_shard(folder.file(task["name"]), serialized)
    tiles.sort(key=lambda t: (t[0], t[1]))
    for page, sheet in enumerate(review.contact_sheets([t[2] for t in tiles])):
        review.write_png(folder.file(f"{REVIEW_DIR}/{stem}_{page:02d}.png"), sheet)
    sidecar = {"shard": task["name"], "split": task["split"], "index": task["index"],
               "config_digest": task["config_digest"], "rejected": sorted(rejected),
               "num_examples": len(serialized), "seconds": round(time.monotonic() - started, 3),
               "items": item_records}
    storage.atomic_write_json(folder.file(f"{STATE_DIR}/shards/{stem}.json"), sidecar)
    return sidecar


# --- the run -------------------------------------------------------------------------------------------------------

def _sidecar_path(output, shard_name):
    return os.path.join(output, STATE_DIR, "shards", shard_name.replace(".tfrecord", ".json"))


def _load_sidecar(output, shard):
    path = _sidecar_path(output, shard["name"])
    if not os.path.isfile(path):
        return None
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except (OSError, json.JSONDecodeError):
        return None


def run(config, output, workers=1, overwrite=False, reject_list="", log=print):
    """Prepare the dataset; return the report dict. Raises OutputError / ValueError on bad configuration."""
    config.images = os.path.abspath(config.images)
    output = os.path.abspath(output)
    # Fail on bad source flags before any planning or writing.
    depth_sources.make_source(config.depth_source, depth_sources.SourceSettings(**config.source))
    plan = make_plan(config)
    inputs = {"--images": config.images, "--annotations": config.annotations,
              "--test_annotations": config.test_annotations, "--depth_dir": config.source.get("depth_dir", ""),
              "--mesh_dir": config.source.get("mesh_dir", ""), "--action_units_csv": config.action_units_csv}
    inputs = {k: (os.path.dirname(os.path.abspath(v)) if os.path.isfile(v) else v) for k, v in inputs.items() if v}
    mode = check_output(output, config, inputs, overwrite, plan["digest"])
    entries = review.read_reject_list(reject_list) if reject_list else []
    rejected, unmatched = resolve_rejects(entries, plan)
    folder = output_folder(output)
    folder.makedirs(f"{STATE_DIR}/shards")
    folder.makedirs(REVIEW_DIR)
    digest = config.digest()
    storage.atomic_write_json(folder.file(f"{STATE_DIR}/config.json"),
                              {"config": config.as_dict(), "plan_digest": plan["digest"], "config_digest": digest})

    tasks, done = [], 0
    for shard in plan["shards"]:
        shard_rejected = {item["key"]: rejected[item["key"]] for item in shard["items"] if item["key"] in rejected}
        sidecar = _load_sidecar(output, shard)
        complete = (sidecar is not None and sidecar.get("config_digest") == digest
                    and sidecar.get("rejected") == sorted(shard_rejected)
                    and (sidecar.get("num_examples", 0) == 0 or os.path.exists(os.path.join(output, shard["name"]))))
        if complete:
            done += 1
            continue
        tasks.append({**shard, "rejected": shard_rejected, "config_digest": digest})
    total_items = sum(len(t["items"]) for t in tasks)
    log(f"prepare: {mode} run into {output}: {len(plan['shards'])} shards planned, {done} already complete, "
        f"{len(tasks)} to build ({total_items} faces) with {workers} worker(s)")
    progress = Progress(total_items, desc="prepare", unit="faces")
    written = skipped = 0

    def account(result):
        nonlocal written, skipped
        written += result["num_examples"]
        skipped += len(result["items"]) - result["num_examples"]
        progress.update(len(result["items"]), postfix=f"{written} written, {skipped} skipped")

    if tasks:
        if workers <= 1:
            _init_worker(config.as_dict(), output)
            for task in tasks:  # shards in order, in this process
                account(process_shard(task))
        else:
            # spawn: workers import TensorFlow themselves; forking a process that may hold TF state is unsafe.
            context = multiprocessing.get_context("spawn")
            with context.Pool(workers, initializer=_init_worker, initargs=(config.as_dict(), output)) as pool:
                for result in pool.imap_unordered(process_shard, tasks):
                    account(result)
        progress.close()
    return finish(config, output, plan, unmatched, reject_list, log)


def finish(config, output, plan, unmatched, reject_list, log):
    """Card, report, excluded list and reject-list template from all sidecars."""
    sidecars = [_load_sidecar(output, shard) for shard in plan["shards"]]
    missing = [shard["name"] for shard, car in zip(plan["shards"], sidecars) if car is None]
    if missing:
        raise RuntimeError(f"shards {missing[:5]} did not complete; rerun the same command to resume")
    item_records = [record for car in sidecars for record in car["items"]]
    written = [r for r in item_records if r["status"] == "written"]
    problems = [r for r in item_records if r["status"] != "written"]
    plan_skips = plan["skipped"]
    excluded = [s for s in plan_skips if s["reason"] in EXCLUDED_REASONS]
    reader_problems = [s for s in plan_skips if s["reason"] not in EXCLUDED_REASONS]
    skipped = [{k: r.get(k) for k in ("key", "path", "split", "reason", "detail")} for r in problems]
    skipped = reader_problems + skipped
    counts = collections.Counter(s["reason"] for s in skipped)
    flag_counts = collections.Counter(code for r in item_records for code in r.get("flags", []))
    per_split = {}
    for record in written:
        split_counts = per_split.setdefault(record["split"], {name: 0 for name in EXPRESSIONS})
        split_counts[EXPRESSIONS[record["expression"]]] += 1
    scores = [r["scores"]["score"] for r in written]
    report = {
        "output": output,
        "config": config.as_dict(),
        "totals": {"listed": len(item_records) + len(plan_skips), "excluded_by_design": len(excluded),
                   "planned": len(item_records), "written": len(written), "skipped": len(skipped),
                   "converted": sum(1 for r in written if r["notes"])},
        "written": {split: dataset_card.table4_row(c) for split, c in sorted(per_split.items())},
        "skip_counts": dict(sorted(counts.items())),
        "flag_counts": dict(sorted(flag_counts.items())),
        "flagged": [{"key": r["key"], "path": r["path"], "status": r["status"], "flags": r["flags"],
                     "details": r.get("flag_details", [])} for r in item_records if r.get("flags")],
        "excluded_counts": dict(sorted(collections.Counter(s["reason"] for s in excluded).items())),
        "skipped": skipped,
        "converted": [{"key": r["key"], "path": r["path"], "notes": r["notes"]} for r in written if r["notes"]],
        "quality": ({"score_min": min(scores), "score_median": float(np.median(scores)), "score_max": max(scores)}
                    if scores else {}),
        "reject_list": {"file": os.path.abspath(reject_list) if reject_list else "",
                        "rejected": counts.get("rejected_list", 0), "unmatched_entries": unmatched},
        "seconds_per_shard": float(np.mean([c["seconds"] for c in sidecars])) if sidecars else 0.0,
    }
    if plan.get("action_units") is not None:
        report["action_units"] = _action_unit_report(plan, {r["key"] for r in written})
    folder = output_folder(output)
    storage.atomic_write_json(folder.file("report.json"), report)
    storage.atomic_write_bytes(folder.file("report.txt"), report_text(report).encode())
    lines = ["key\tpath\tsplit\treason\tdetail"] + [
        "\t".join(str(s.get(k) or "") for k in ("key", "path", "split", "reason", "detail")) for s in excluded]
    storage.atomic_write_bytes(folder.file("excluded.tsv"), ("\n".join(lines) + "\n").encode())
    _write_reject_template(output, written, [r for r in problems if r["reason"] == "rejected_quality"], reject_list,
                           log)
    if written:
        provenance = {"tool": "python -m expr3d.data.prepare", "dataset": config.dataset, "images": config.images,
                      "annotations": config.annotations, "test_annotations": config.test_annotations,
                      "depth_source": config.depth_source, "source": config.source, "crop": config.crop,
                      "detector": config.detector, "flagged": report["flag_counts"],
                      "reject_list": report["reject_list"]["file"], "skipped": report["skip_counts"],
                      "excluded": report["excluded_counts"]}
        source = depth_sources.make_source(config.depth_source, depth_sources.SourceSettings(**config.source))
        if hasattr(source, "provenance"):
            provenance["reconstruction"] = source.provenance()
        if "action_units" in report:
            provenance["action_units"] = {k: v for k, v in report["action_units"].items() if k != "details"}
        folder.record(dataset_card.CARD_NAME)
        dataset_card.write_dataset_card(output, name=config.name or f"{config.dataset}-d", image_size=config.image_size,
                                   provenance=provenance, extra={"prepare_report": "report.json"})
    else:
        folder.remove_written([dataset_card.CARD_NAME])  # no face written: no card may describe an empty dataset
    log(f"prepare: {len(written)} faces written, {len(skipped)} skipped ({', '.join(f'{k} {v}' for k, v in sorted(counts.items())) or 'none'}); "
        f"report: {os.path.join(output, 'report.txt')}")
    if flag_counts:
        log(f"prepare: flagged (written unless a check rejected them; listed in report.txt): "
            f"{', '.join(f'{k} {v}' for k, v in sorted(flag_counts.items()))}")
    if counts.get("error"):
        log(f"prepare: WARNING {counts['error']} face(s) failed with an unexpected error; see report.txt")
    return report


def _action_unit_report(plan, written_keys):
    """The AU source, its counts over the planned faces and per-AU coverage over the written ones."""
    summary = dict(plan["action_units"])
    written_items = [item for shard in plan["shards"] for item in shard["items"] if item["key"] in written_keys]
    shares, with_any = action_units.coverage(written_items)
    summary.update(written_faces=len(written_items), written_with_action_units=with_any, coverage=shares)
    return summary


def _action_unit_text(summary):
    counts = summary["counts"]
    lines = ["", f"action units from {summary['source']} ({summary['layout']}, {summary['files']} file(s); "
                 f"stored as {summary['scale']}):",
             f"  planned faces: {counts['matched']} with AUs, {counts['no_au_row']} without a CSV row (stored "
             f"without AUs), {counts['several_faces']} with several faces (most confident row used), "
             f"{counts['nan_cells']} with NaN cells (those AUs stored as missing)",
             f"  written faces with AUs: {summary['written_with_action_units']} of {summary['written_faces']}; "
             f"not provided by the source (missing everywhere): {', '.join(summary['not_provided']) or 'none'}; "
             f"columns ignored: {', '.join(summary['columns_ignored']) or 'none'}",
             "  coverage over written faces: " + ", ".join(f"{k} {v:.0%}" for k, v in summary["coverage"].items())]
    if summary["unused_entries"]:
        lines.append(f"  CSV entries matching no planned face: {summary['unused_entries']} (e.g. "
                     f"{', '.join(summary['unused_examples'])})")
    for reason in ("no_au_row", "several_faces", "nan_cells"):
        listed = [d for d in summary["details"] if d["reason"] == reason]
        if listed:
            lines.append(f"[action units: {reason}]")
            lines.extend(f"  {d['path']}\t{d['detail']}" for d in listed)
    return lines


def _write_reject_template(output, written, auto_rejected, reject_list, log):
    folder = output_folder(output)
    path = os.path.join(output, REVIEW_DIR, REJECT_TEMPLATE)
    state_path = folder.file(f"{STATE_DIR}/reject_template.sha256")
    text = review.reject_template(path, written, auto_rejected)
    if os.path.exists(path):
        stored = open(state_path, encoding="utf-8").read().strip() if os.path.exists(state_path) else ""
        user_edited = review.sha256_file(path) != stored
        if user_edited or (reject_list and os.path.realpath(reject_list) == os.path.realpath(path)):
            alt = folder.file(f"{REVIEW_DIR}/reject_list.new.txt")
            storage.atomic_write_bytes(alt, text.encode())
            log(f"prepare: kept your edited {path}; the fresh template is {alt}")
            return
    storage.atomic_write_bytes(folder.file(f"{REVIEW_DIR}/{REJECT_TEMPLATE}"), text.encode())
    storage.atomic_write_bytes(state_path, hashlib.sha256(text.encode()).hexdigest().encode())


def report_text(report):
    totals = report["totals"]
    lines = [f"expr3d prepare report: {report['output']}",
             f"listed {totals['listed']}, excluded by design {totals['excluded_by_design']}, planned "
             f"{totals['planned']}, written {totals['written']}, skipped {totals['skipped']}, converted "
             f"{totals['converted']}", ""]
    lines.append("written per split (Table 4 order):")
    header = list(dataset_card.TABLE4_ORDER) + ["total"]
    lines.append("  split  " + " ".join(f"{h:>8}" for h in header))
    for split, row in report["written"].items():
        lines.append(f"  {split:<6} " + " ".join(f"{row[h]:>8}" for h in header))
    lines.append("")
    lines.append("skipped, by reason: " + (", ".join(f"{k} {v}" for k, v in report["skip_counts"].items()) or "none"))
    lines.append("excluded by design: " + (", ".join(f"{k} {v}" for k, v in report["excluded_counts"].items())
                                           or "none") + " (listed in excluded.tsv)")
    if report.get("flag_counts"):
        lines.append("flagged, by kind: " + ", ".join(f"{k} {v}" for k, v in report["flag_counts"].items()))
    if report["reject_list"]["unmatched_entries"]:
        lines.append(f"reject list entries matching no face: {report['reject_list']['unmatched_entries']}")
    lines.append("")
    for reason in sorted(report["skip_counts"]):
        lines.append(f"[{reason}]")
        for skip in report["skipped"]:
            if skip["reason"] == reason:
                lines.append(f"  {skip['path']}\t{skip['detail']}")
    for code in sorted(report.get("flag_counts") or {}):
        lines.append(f"[flagged: {code}]")
        for entry in report["flagged"]:
            for flag, detail in zip(entry["flags"], entry["details"]):
                if flag == code:
                    lines.append(f"  {entry['path']}\t{entry['status']}\t{detail}")
    if report["converted"]:
        lines.append("")
        lines.append("[converted]")
        for item in report["converted"]:
            lines.append(f"  {item['path']}\t{'; '.join(item['notes'])}")
    if report["quality"]:
        q = report["quality"]
        lines.append("")
        lines.append(f"quality score of written faces: min {q['score_min']:.3f}, median {q['score_median']:.3f}, "
                     f"max {q['score_max']:.3f}")
    if "action_units" in report:
        lines.extend(_action_unit_text(report["action_units"]))
    lines.append(f"mean time per shard {format_duration(report['seconds_per_shard'])}")
    return "\n".join(lines) + "\n"
