"""What an exported generator was trained on, so the tools can say so and crop photos the way its training faces were
cropped: {"kind": "procedural" | "photos" | "unknown", "dataset", "image_size", "description"} and, for
prepared photos, "detector" ("blazeface" | "haar").

Written by `expr3d.export` into expr3d_export.json ("trained_on") and the web manifest; read back here from any file
of an export (a .tflite in tflite/ or web/, a version directory). Exports from before the field carry the run's
"dataset" entry, from which it is derived the same way.
"""
import json
import os


def trained_on(config):
    """From a run's config.json: its dataset card says whether the faces were rendered (expr3d.data.synthetic) or
    prepared from photos (expr3d.data.prepare)."""
    dataset = (config or {}).get("dataset") or {}
    card = {}
    data_dir = dataset.get("data_dir")
    if data_dir and os.path.isfile(os.path.join(data_dir, "dataset_card.json")):
        try:
            with open(os.path.join(data_dir, "dataset_card.json")) as f:
                card = json.load(f)
        except (OSError, ValueError):
            card = {}
    provenance = card.get("provenance") or {}
    if provenance.get("generator") == "expr3d.data.synthetic":
        kind = "procedural"
    elif provenance.get("tool") == "python -m expr3d.data.prepare":
        kind = "photos"
    else:
        kind = "unknown"
    out = {"kind": kind, "dataset": card.get("name") or dataset.get("name"),
           "image_size": card.get("image_size") or dataset.get("image_size"),
           "description": card.get("description")}
    if kind == "photos":  # how prepare found the faces: the photo tools crop the same way (faces.detector_for)
        out["detector"] = provenance.get("detector", "haar")
    return out


def of_export(path):
    """`trained_on` of the export holding `path` (a model file or a folder), or None when no export info is found."""
    folder = path if os.path.isdir(path) else os.path.dirname(os.path.abspath(path))
    for candidate in (folder, os.path.dirname(folder)):
        for name in ("manifest.json", "expr3d_export.json"):
            info_path = os.path.join(candidate, name)
            if os.path.isfile(info_path):
                try:
                    with open(info_path) as f:
                        info = json.load(f)
                except (OSError, ValueError):
                    continue
                if isinstance(info, dict) and ("trained_on" in info or "dataset" in info):
                    return info.get("trained_on") or trained_on({"dataset": info.get("dataset")})
    return None


def procedural_note(trained, model):
    """The one line the photo tools print when a model trained on procedural faces meets a photo, else None."""
    if not trained or trained.get("kind") != "procedural":
        return None
    what = ", ".join(str(v) for v in (trained.get("dataset"), trained.get("image_size") and
                                      f"{trained['image_size']} px") if v)
    return (f"note: {model} was trained on procedural 3D faces{f' ({what})' if what else ''}, not on photos: on a "
            f"real photo expect a blurred, low-resolution face")
