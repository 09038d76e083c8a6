"""Batch expression synthesis on ordinary photos with an exported SavedModel.

    python -m expr3d.synthesize --saved_model=saved_models/expr3d --images=photos/ --expressions=all \
        --output=out/synth
    python -m expr3d.synthesize --saved_model=saved_models/transfer --images=photos/ --exemplar=smile.jpg \
        --output=out/transfer
    python -m expr3d.synthesize --saved_model=saved_models/au --images=photos/ \
        --action_units="AU12+0.5; AU4+0.6; AU26=1, AU12=0" --output=out/au

With `--exemplar=PHOTO` and the export of a `--model=transfer` run (or of an AU-conditioned run with an AU reader,
whose `transfer` reads the exemplar's AUs and draws each photo with them), every photo gets the expression of the
exemplar's face instead of named expressions (the SavedModel's `transfer` signature, the exemplar's aligned face crop
as B):
OUTPUT/<photo name>/exemplar.png and face_exemplar.png, OUTPUT/exemplar_face.png (the crop whose expression is
transferred) and the grid (input crop, result). An exemplar without a face stops the run before anything is written.

With `--action_units=EDITS` and the export of an AU-conditioned run (`--condition=action_units`, exported with an AU
reader: `expr3d.export --au_reader`), every photo gets each edit: edits are separated by `;`, each a comma list of
`AUn+x` / `AUn-x` (that AU x stronger / weaker than the face shows it) and `AUn=x` (that AU at x); the AUs an edit
does not name stay as the reader reads them on the face. The SavedModel's `read_action_units` reads the crop, and
`translate_action_unit_changes` translates it. OUTPUT/<photo name>/<edit>.png as for expressions; summary.json
records each face's reading and each edit's asked vector.

For every photo: detect the largest face, level the eye line, crop, translate into each expression with the
SavedModel's `serving_default` signature (the deployed graph, resizing included), paste back with a feathered mask.
Writes OUTPUT/<photo name>/<expression>.png (the photo) and face_<expression>.png (the crop), OUTPUT/grid.png (one row
per photo: input crop, then each expression) and OUTPUT/summary.json. Photos without a face, or unreadable or
oversized files (expr3d.imaging.photos: larger photos are downscaled, decompression bombs refused), are listed in the
summary and on stderr; they do not stop the run, but a run that translated no photo exits 1 with the counts. A file
name that is not UTF-8 is processed; its output folder shows the undecodable bytes as U+FFFD.
"""
import json
import os
import re
import sys
import time

import numpy as np
from absl import flags

from expr3d import cli, outputs, storage
from expr3d.imaging import faces, photos
from expr3d.imaging.photos import printable
from expr3d.labels import ACTION_UNITS, EXPRESSIONS, expression_id

PROGRAM = "expr3d.synthesize"
FLAGS = flags.FLAGS


def parse_expressions(text):
    """'all' -> every id; 'happy,sad' -> [1, 2]; ValueError naming the bad name."""
    names = [name.strip() for name in (text or "").split(",") if name.strip()]
    if not names:
        raise ValueError("--expressions is empty; pass 'all' or names like happy,sad")
    if names == ["all"]:
        return list(range(len(EXPRESSIONS)))
    try:
        return list(dict.fromkeys(expression_id(name) for name in names))
    except ValueError as e:
        raise ValueError(f"--expressions: {e}") from e


AU_TERM = re.compile(r"^AU(\d+)\s*([=+-])\s*(\d*\.?\d+)$", re.IGNORECASE)


def parse_action_unit_edits(text):
    """'AU12+0.5; AU26=1, AU12=0' -> [(name, [(column, op, value), ...]), ...] (`synthesize`'s docstring); ValueError
    naming --action_units and the bad term."""
    edits = []
    for part in (text or "").split(";"):
        terms = [term.strip() for term in part.split(",") if term.strip()]
        if not terms:
            continue
        parsed, columns, labels = [], set(), []
        for term in terms:
            match = AU_TERM.match(term)
            if not match:
                raise ValueError(f"--action_units: {term!r} is not AUn+x, AUn-x or AUn=x (e.g. AU12+0.5)")
            unit, op, value = int(match.group(1)), match.group(2), float(match.group(3))
            if unit not in ACTION_UNITS:
                raise ValueError(f"--action_units: {term!r}: AU{unit} is not one of the 17 (AU"
                                 + ", AU".join(str(a) for a in ACTION_UNITS) + ")")
            if value > 1.0:
                raise ValueError(f"--action_units: {term!r}: intensities and changes are at most 1")
            column = ACTION_UNITS.index(unit)
            if column in columns:
                raise ValueError(f"--action_units: AU{unit} is named twice in the edit {part.strip()!r}")
            columns.add(column)
            parsed.append((column, op, value))
            labels.append(f"AU{unit}{op}{match.group(3)}")
        edits.append(("_".join(labels), parsed))  # the edit's name: its output file's
    if not edits:
        raise ValueError("--action_units is empty; pass edits like 'AU12+0.5; AU4+0.6'")
    names = [name for name, _ in edits]
    if len(set(names)) != len(names):
        raise ValueError(f"--action_units: an edit is given twice ({names})")
    return edits


def asked_action_units(read, edit):
    """The 17 intensities an edit asks of a face whose reader reads `read`: `+`/`-` moves that AU, `=` sets it,
    the rest stay as read; clipped to [0, 1]."""
    asked = np.array(read, np.float32)
    for column, op, value in edit:
        asked[column] = value if op == "=" else asked[column] + (value if op == "+" else -value)
    return np.clip(asked, 0.0, 1.0)


def saved_model_action_units(saved_model_dir, edits, readings):
    """A pipeline translator giving each crop each of `edits` (`parse_action_unit_edits`) through the SavedModel's
    `read_action_units` and `translate_action_unit_changes`; appends each crop's reading and asked vectors to
    `readings`."""
    import tensorflow as tf

    signatures = tf.saved_model.load(saved_model_dir).signatures
    read_signature, translate_signature = signatures["read_action_units"], signatures["translate_action_unit_changes"]

    def translate(crop, ids):
        images = tf.constant(crop[None])
        read = read_signature(images=images)["action_units"].numpy()[0]
        asked = np.stack([asked_action_units(read, edits[i][1]) for i in ids])
        changes = np.clip(asked - read[None], -1.0, 1.0).astype(np.float32)
        out = translate_signature(images=tf.constant(np.repeat(crop[None], len(ids), axis=0)),
                                  changes=tf.constant(changes))
        readings.append({"read": [round(float(v), 4) for v in read],
                         "asked": {edits[i][0]: [round(float(v), 4) for v in row]
                                   for i, row in zip(ids, out["action_units"].numpy())}})
        return list(out["images"].numpy())

    return translate


def resolve_saved_model(path):
    """The version directory holding saved_model.pb: `path` itself or its largest integer version."""
    if os.path.isfile(os.path.join(path, "saved_model.pb")):
        return path
    if os.path.isdir(path):
        versions = sorted(int(name) for name in os.listdir(path)
                          if name.isdigit() and os.path.isfile(os.path.join(path, name, "saved_model.pb")))
        if versions:
            return os.path.join(path, str(versions[-1]))
    raise FileNotFoundError(f"--saved_model={path!r} holds no saved_model.pb (neither directly nor in an integer "
                            f"version directory); export one with `python -m expr3d.export`")


def saved_model_translator(saved_model_dir, batch_size=8):
    """A pipeline translator calling the SavedModel's serving_default (uint8 in, uint8 out at the crop size)."""
    import tensorflow as tf

    signature = tf.saved_model.load(saved_model_dir).signatures["serving_default"]

    def translate(crop, ids):
        outputs = []
        for start in range(0, len(ids), batch_size):
            chunk = ids[start:start + batch_size]
            images = tf.constant(np.repeat(crop[None], len(chunk), axis=0))
            out = signature(images=images, expressions=tf.constant(chunk, tf.int32))["images"]
            outputs.extend(out.numpy())
        return outputs

    return translate


def _export_info(version_dir):
    path = os.path.join(version_dir, "expr3d_export.json")
    if not os.path.isfile(path):
        return {}
    with open(path) as handle:
        return json.load(handle)


def export_family(version_dir):
    """The model family of an export ("stargan" or "transfer"), from its expr3d_export.json ("stargan" without it)."""
    return _export_info(version_dir).get("family", "stargan")


def export_condition(version_dir):
    """What an expression export's generator is asked for: "expression" or "action_units" (expr3d_export.json)."""
    return _export_info(version_dir).get("condition", "expression")


def saved_model_transfer(saved_model_dir, exemplar_crop):
    """A pipeline translator giving each crop the expression of `exemplar_crop` (uint8) through the SavedModel's
    `transfer` signature; `ids` are ignored (one result per crop)."""
    import tensorflow as tf

    signature = tf.saved_model.load(saved_model_dir).signatures["transfer"]
    exemplar = tf.constant(exemplar_crop[None])

    def translate(crop, ids):
        return [signature(images_a=tf.constant(crop[None]), images_b=exemplar)["a_with_b"].numpy()[0]]

    return translate


def exemplar_face(path, detector="blazeface"):
    """The aligned face crop (uint8) of the exemplar photo; ValueError naming --exemplar when it cannot be read or
    holds no face."""
    try:
        image = photos.read_image(path)
    except (OSError, ValueError) as error:
        raise ValueError(f"--exemplar={printable(path)!r} cannot be read: {printable(str(error))}") from None
    face = faces.find_face(image, detector=detector)
    if face is None:
        raise ValueError(f"--exemplar={printable(path)!r}: no face found in the exemplar photo; give a photo with "
                         f"one clearly visible, roughly frontal face")
    return faces.extract(image, face)


def output_stems(paths):
    """One output folder name per photo: its file name without extension, made unique (photo.jpg, photo.png)."""
    stems, used = [], set()
    for path in paths:
        # A name that is not UTF-8 (bytes kept as surrogate escapes) gets a UTF-8 folder name: U+FFFD for those bytes.
        stem = os.fsencode(os.path.splitext(os.path.basename(path))[0]).decode("utf-8", "replace")
        while stem in used:
            stem += "_"
        used.add(stem)
        stems.append(stem)
    return stems


def _log(message):
    print(f"{PROGRAM}: {message}", file=sys.stderr, flush=True)


def synthesize(saved_model, images, expressions, output, overwrite=False, batch_size=8, log=_log, exemplar=None,
               detector="auto", action_units=None):
    """Run the batch tool; returns the summary dict (also written to OUTPUT/summary.json). `exemplar`: a photo whose
    expression every photo gets (a transfer export); then `expressions` is not used. `action_units`: AU edits (an
    AU export with a reader; the module docstring), instead of `expressions`. `detector`: "blazeface", "haar" or
    "auto" (expr3d.imaging.faces.detector_for the export's training data)."""
    from expr3d.deploy import pipeline
    from expr3d.progress import Progress

    paths = photos.list_images(images)
    if not paths:
        raise FileNotFoundError(f"--images={images!r} holds no image files ({', '.join(photos.IMAGE_EXTENSIONS)})")
    version_dir = resolve_saved_model(saved_model)
    family = export_family(version_dir)
    by_action_units = export_condition(version_dir) == "action_units"
    exported = _export_info(version_dir).get("signatures", [])
    if exemplar is not None and family != "transfer":
        if not by_action_units:
            raise ValueError(f"--exemplar needs the export of a --model=transfer run or of an AU-conditioned run "
                             f"with an AU reader; --saved_model={version_dir!r} is a --model={family} export (it "
                             f"translates into named --expressions)")
        if "transfer" not in exported:
            raise ValueError(f"--exemplar: --saved_model={version_dir!r} is the export of an AU-conditioned run "
                             f"without an AU reader, so the exemplar's AUs cannot be read; re-export with `python -m "
                             f"expr3d.export --au_reader=DIR` (an AU regressor: python -m expr3d.metrics.au_judge)")
        if action_units is not None:
            raise ValueError("--exemplar and --action_units: give one (the exemplar's AUs, or edits of each photo's)")
        by_action_units = False  # the export's `transfer` signature: read the exemplar's AUs, draw each photo
    if by_action_units and action_units is None:
        raise ValueError(f"--saved_model={version_dir!r} is the export of an AU-conditioned run "
                         f"(--condition=action_units): it takes AU intensities, not named --expressions; pass "
                         f"--action_units=EDITS (e.g. 'AU12+0.5; AU4+0.6') or call its translate_action_units "
                         f"signature (docs/deploy.md)")
    if action_units is not None and not by_action_units:
        raise ValueError(f"--action_units needs the export of a --condition=action_units run; "
                         f"--saved_model={version_dir!r} is not one")
    if by_action_units and "read_action_units" not in exported:
        raise ValueError(f"--action_units: --saved_model={version_dir!r} has no AU reader (read_action_units), so "
                         f"a face's own AUs are unknown; re-export with `python -m expr3d.export --au_reader=DIR` "
                         f"(an AU regressor: python -m expr3d.metrics.au_judge), or call translate_action_units "
                         f"with whole vectors (docs/deploy.md)")
    if exemplar is None and family == "transfer":
        raise ValueError(f"--saved_model={version_dir!r} is the export of a --model=transfer run: pass "
                         f"--exemplar=PHOTO (the face whose expression every photo gets)")
    from expr3d.deploy import provenance

    trained = provenance.of_export(version_dir)
    if detector == "auto":
        detector = faces.detector_for(trained)
    note = provenance.procedural_note(trained, version_dir)
    if note:
        log(note)
    if by_action_units:
        edits = parse_action_unit_edits(action_units) if isinstance(action_units, str) else list(action_units)
        ids, names = list(range(len(edits))), [name for name, _ in edits]
    elif exemplar is None:
        ids = parse_expressions(expressions) if isinstance(expressions, str) else list(expressions)
        names = [EXPRESSIONS[i] for i in ids]
    else:
        ids, names = [0], ["exemplar"]
        exemplar_crop = exemplar_face(exemplar, detector)  # before anything is written: no face, no output
    stems = output_stems(paths)
    folder = outputs.OutputFolder(output, "--output", "expr3d.synthesize")
    will_write = ["grid.png", "summary.json"] + [f"{stem}/{prefix}{name}.png" for stem in stems
                                                 for name in names for prefix in ("", "face_")]
    inputs = [("--saved_model", version_dir)] + [("--images", p) for p in paths]
    if exemplar is not None:
        will_write.append("exemplar_face.png")
        inputs.append(("--exemplar", exemplar))
    folder.claim(overwrite, will_write=will_write, inputs=inputs)
    readings = []
    if by_action_units:
        translate = saved_model_action_units(version_dir, edits, readings)
    elif exemplar is None:
        translate = saved_model_translator(version_dir, batch_size=batch_size)
    else:
        translate = saved_model_transfer(version_dir, exemplar_crop)
        photos.write_image(folder.file("exemplar_face.png"), exemplar_crop)

    summary = {"saved_model": os.path.abspath(version_dir),
               ("action_units" if by_action_units else "expressions"): names, "detector": detector,
               "trained_on": trained, "processed": [], "no_face": [], "unreadable": []}
    if exemplar is not None:
        summary.update(exemplar=printable(exemplar), exemplar_face="exemplar_face.png")
    rows = []
    progress = Progress(len(paths), desc="synthesize", unit="photos")
    started = time.time()
    for path, stem in zip(paths, stems):
        try:
            image = photos.read_image(path)
        except (OSError, ValueError) as e:
            log(f"skipping {printable(path)}: {printable(str(e))}")
            summary["unreadable"].append({"image": printable(path), "error": printable(str(e))})
            progress.update(1)
            continue
        translated, crops, face = pipeline.translate_photo(image, translate, ids, detector=detector)
        if translated is None:
            log(f"no face found in {printable(path)}")
            summary["no_face"].append(printable(path))
            progress.update(1)
            continue
        written = {}
        for name, photo, crop in zip(names, translated, crops):
            photos.write_image(folder.file(f"{stem}/{name}.png"), photo)
            photos.write_image(folder.file(f"{stem}/face_{name}.png"), crop)
            written[name] = os.path.join(stem, f"{name}.png")
        rows.append([faces.extract(image, face)] + list(crops))
        warnings = faces.face_warnings(face, image.shape, (trained or {}).get("image_size"))
        for warning in warnings:
            log(f"{printable(path)}: {warning}")
        entry = {"image": printable(path), "outputs": written, "face": face.to_dict(), "warnings": warnings}
        if by_action_units:
            entry["action_units"] = readings[-1]  # the face's reading and what each edit asked
        summary["processed"].append(entry)
        progress.update(1)
    progress.close()
    if rows:
        labels = ["input"] + (names if exemplar is None else ["exemplar's expression"])
        photos.write_image(folder.file("grid.png"), pipeline.grid(rows, labels=labels))
        summary["grid"] = "grid.png"
    summary["seconds"] = round(time.time() - started, 2)
    storage.write_bytes_atomically(folder.file("summary.json"), json.dumps(summary, indent=2).encode())
    log(f"{len(summary['processed'])} photo(s) translated, {len(summary['no_face'])} without a face, "
        f"{len(summary['unreadable'])} unreadable; see {os.path.join(output, 'summary.json')}")
    return summary


def define_flags():
    """Define the CLI flags (here, not at import, so several CLIs can be imported in one process)."""
    flags.DEFINE_string("saved_model", None, "A SavedModel version directory (saved_models/NAME/1) or a model base path "
                        "(saved_models/NAME: the largest version is used).")
    flags.DEFINE_string("images", None, "A photo or a directory of photos.")
    flags.DEFINE_string("expressions", "all", "'all' or comma-separated names, e.g. happy,sad.")
    flags.DEFINE_string("output", None, "Output directory.")
    flags.DEFINE_bool("overwrite", False, "Replace what an earlier run wrote in --output (only its files; others "
                      "are never touched, and a file of a name this run writes but that it did not write is refused).")
    flags.DEFINE_integer("batch_size", 8, "Crops per SavedModel call.")
    flags.DEFINE_string("exemplar", None, "A photo whose face's expression every photo gets (needs the export of a "
                        "--model=transfer run, or of an AU-conditioned run with an AU reader; --expressions is then "
                        "not used).")
    flags.DEFINE_string("action_units", None, "The export of an AU-conditioned run (with an AU reader): edits "
                        "separated by ';', each a comma list of AUn+x, AUn-x (stronger / weaker than the face shows "
                        "it) or AUn=x, e.g. 'AU12+0.5; AU4+0.6; AU26=1,AU12=0'; the AUs an edit does not name stay "
                        "as the face shows them. --expressions is then not used.")
    flags.DEFINE_enum("detector", "auto", ["auto", "blazeface", "haar"],
                      "Face detector: blazeface (most confident face, levelled by the face mesh's eyes; the crop "
                      "convention of procedural training faces and of photos prepared with it), haar (largest box; "
                      "how expr3d.data.prepare cropped photos before BlazeFace), or auto: the one the model's "
                      "training faces were cropped with (its export says).")
    cli.required("saved_model", "images", "output")
    cli.at_least("batch_size", 1)
    cli.parses("expressions", parse_expressions)
    cli.parses("action_units", lambda text: text is None or parse_action_unit_edits(text))


def main(argv):
    cli.no_arguments(argv)
    summary = synthesize(FLAGS.saved_model, FLAGS.images, FLAGS.expressions, FLAGS.output,
                         overwrite=FLAGS.overwrite, batch_size=FLAGS.batch_size, exemplar=FLAGS.exemplar,
                         detector=FLAGS.detector, action_units=FLAGS.action_units)
    if not summary["processed"]:
        raise cli.NothingDone(
            f"no photo translated: {len(summary['no_face'])} without a face, {len(summary['unreadable'])} unreadable "
            f"(of {len(summary['no_face']) + len(summary['unreadable'])} in --images={FLAGS.images})")
    return 0


def run_cli():
    """`python -m expr3d.synthesize` and the `expr3d-synthesize` console script."""
    define_flags()
    cli.run(main, PROGRAM)


if __name__ == "__main__":
    run_cli()
