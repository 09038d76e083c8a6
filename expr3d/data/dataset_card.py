"""The dataset card, `dataset_card.json`: what a dataset directory's shards hold (the hand-off from `prepare` /
`synthetic` to training, evaluation and export).

    card = dataset_card.load_card("data/synthetic64")      # errors say how to create a dataset
    print(dataset_card.describe("data/synthetic64"))

A card records the schema version (`expr3d.data.schema.SCHEMA_VERSION`; a card of another version is refused), the
image size, the depth conventions, per split the shards with their record counts and the per-class counts (the
paper's Table 4 columns), whether the train split's identities are disjoint from every other split's, and the
provenance. A procedural dataset rendered with `--transfer_pairs` adds its "transfer" split and a "transfer" entry
(`expr3d.data.transfer`). `write_dataset_card` scans the shards and writes it atomically; `read_dataset_card` checks
it; `load_card` adds what to do when there is none.
"""
import datetime
import json
import os

from absl import logging

from expr3d import storage
from expr3d.data import schema
from expr3d.labels import ACTION_UNITS, EXPRESSIONS

CARD_NAME = "dataset_card.json"
SPLITS = ("train", "test")
# Optional, procedural data only: each face of a pair of test identities under the other's action units
# (`expr3d.data.transfer`). Not in SPLITS: datasets without it are complete.
TRANSFER_SPLIT = "transfer"
SWAP_PARTNERS = "swap_partners"  # the card entry of a train split with swap partners (expr3d.data.synthetic)
DIAL_RENDERS = "dial_renders"  # the card entry of a train split with dial renders (expr3d.data.synthetic)

# Table 4 of the paper lists classes alphabetically; cards keep that column order for easy comparison.
TABLE4_ORDER = ("anger", "contempt", "disgust", "fear", "happy", "neutral", "sad", "surprise")

DEPTH_CONVENTION = {
    "space": "camera: x right, y up, z toward the camera; image rows go down",
    "depth": "positive distance along the optical axis (smaller = nearer); 0 / mask 0 = invalid",
    "normals": "unit camera-space vectors facing the camera (n_z > 0); a horizontal flip negates n_x",
    "pipeline_depth": "expr3d.data.pipeline maps depth per face to [-1, 1]: +1 nearest, -1 farthest valid and background",
}


def table4_row(counts):
    """A dict in the column order of the paper's Table 4, with the total."""
    row = {name: int(counts.get(name, 0)) for name in TABLE4_ORDER}
    row["total"] = sum(row.values())
    return row


def write_dataset_card(data_dir, name, image_size, provenance=None, splits=SPLITS, extra=None):
    """Scan the shards of each split and write `dataset_card.json` atomically; return the card."""
    # The card describes the shards, and records' reader reads the card: records is imported here, not at the top.
    from expr3d.data import records

    card_splits = {}
    all_identities = {}
    for split in splits:
        shards = records.list_shards(data_dir, split)
        if not shards:
            continue
        scans = [records.scan_shard(path) for path in shards]
        counts = {expression: sum(s["counts"][expression] for s in scans) for expression in EXPRESSIONS}
        identities = set().union(*(s["identities"] for s in scans))
        all_identities[split] = identities
        card_splits[split] = {
            "num_examples": sum(s["num_examples"] for s in scans),
            "num_identities": len(identities - {-1}),
            "num_pairs": len(set().union(*(s["pairs"] for s in scans))),
            "counts": table4_row(counts),
            "shards": [{"file": s["file"], "num_examples": s["num_examples"]} for s in scans],
        }
    if not card_splits:
        raise FileNotFoundError(f"no shards of any split {splits} in {data_dir}")
    known = {split: ids - {-1} for split, ids in all_identities.items()}
    if "train" in known:
        # Unseen identities at evaluation: the train split shares none with any other (the transfer ground truth
        # shares the test identities by design).
        overlap = known["train"] & set().union(*(ids for split, ids in known.items() if split != "train"))
    else:
        overlap = set.intersection(*known.values()) if len(known) > 1 else set()
    card = {
        "name": name,
        "schema_version": schema.SCHEMA_VERSION,
        "image_size": int(image_size),
        "expressions": list(EXPRESSIONS),
        "action_units": list(ACTION_UNITS),
        "conventions": DEPTH_CONVENTION,
        "splits": card_splits,
        "identity_disjoint_splits": not overlap,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "provenance": provenance or {},
    }
    if extra:
        card.update(extra)
    storage.atomic_write_json(os.path.join(data_dir, CARD_NAME), card)
    return card


def read_dataset_card(data_dir):
    """Read and check `dataset_card.json`; errors name the directory and the problem."""
    path = os.path.join(data_dir, CARD_NAME)
    if not os.path.isdir(data_dir):
        raise FileNotFoundError(f"data directory {data_dir} does not exist")
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path} is missing: is {data_dir} a dataset written by expr3d "
                                f"(python -m expr3d.data.synthetic or python -m expr3d.data.prepare)?")
    try:
        with open(path, encoding="utf-8") as handle:
            card = json.load(handle)
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not valid JSON: {error}") from None
    for field in ("schema_version", "image_size", "splits"):
        if field not in card:
            raise ValueError(f"{path}: field '{field}' is missing")
    if card["schema_version"] != schema.SCHEMA_VERSION:
        raise ValueError(f"{path}: schema_version {card['schema_version']} is not supported "
                         f"(this expr3d reads version {schema.SCHEMA_VERSION})")
    return card


def _how_to_create(data_dir):
    return (f"create one with `python -m expr3d.data.synthetic --output={data_dir} --num_identities=N "
            f"--image_size=S` (procedural faces) or prepare a real dataset with `python -m expr3d.data.prepare`")


def load_card(data_dir):
    """Read the dataset card of `data_dir`; FileNotFoundError naming the directory and how to create data."""
    if not data_dir or not os.path.isdir(data_dir):
        raise FileNotFoundError(f"data directory {data_dir!r} does not exist; {_how_to_create(data_dir)}")
    entries = [name for name in os.listdir(data_dir) if not name.startswith(".")]
    if not entries:
        raise FileNotFoundError(f"data directory {data_dir!r} is empty; {_how_to_create(data_dir)}")
    if not os.path.exists(os.path.join(data_dir, CARD_NAME)):
        shards = [name for name in entries if name.endswith(".tfrecord")]
        if shards:
            raise FileNotFoundError(
                f"{os.path.join(data_dir, CARD_NAME)} is missing although {data_dir!r} holds {len(shards)} "
                f"shard(s); write it with expr3d.data.dataset_card.write_dataset_card({data_dir!r}, name=..., "
                f"image_size=...)")
        raise FileNotFoundError(f"{os.path.join(data_dir, CARD_NAME)} is missing: {data_dir!r} is not an "
                                f"expr3d dataset; {_how_to_create(data_dir)}")
    return read_dataset_card(data_dir)


def resolve_image_size(card, image_size, data_dir="", allow_resize=True):
    """The output size: the card's by default; another size resizes (logged), or is an error if not `allow_resize`."""
    stored = int(card["image_size"])
    if image_size is None:
        return stored
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 1:
        raise ValueError(f"image_size must be a positive int or None (the dataset card's size), got {image_size!r}")
    if image_size != stored:
        if not allow_resize:
            raise ValueError(f"image_size={image_size} does not match the dataset card of {data_dir!r} "
                             f"(image_size {stored}); pass image_size={stored}, or allow resizing")
        logging.info("expr3d.data.pipeline: resizing %s from the card's %d px to %d px", data_dir, stored, image_size)
    return image_size


def describe(data_dir):
    """A human-readable summary of a dataset directory (checks the card; same errors as `load_card`)."""
    card = load_card(data_dir)
    lines = [f"{data_dir}: {card.get('name', '?')} (schema v{card['schema_version']}, {card['image_size']} px)"]
    header = "  split   " + " ".join(f"{name:>8}" for name in TABLE4_ORDER) + f" {'total':>8} shards"
    lines.append(header)
    for split, info in card["splits"].items():
        counts = info.get("counts", {})
        row = " ".join(f"{int(counts.get(name, 0)):>8}" for name in TABLE4_ORDER)
        lines.append(f"  {split:<7} {row} {int(info['num_examples']):>8} {len(info.get('shards', [])):>6}")
    if "identity_disjoint_splits" in card:
        lines.append(f"  identity-disjoint splits: {card['identity_disjoint_splits']}")
    return "\n".join(lines)


def class_counts(card, split):
    """Per-class example counts of `split` in `EXPRESSIONS` order (from the card)."""
    counts = card["splits"][split].get("counts", {})
    return [int(counts.get(name, 0)) for name in EXPRESSIONS]
