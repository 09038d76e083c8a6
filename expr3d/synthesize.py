"""Batch expression synthesis on ordinary photos with an exported SavedModel.

    python -m expr3d.synthesize --saved_model=saved_models/expr3d --images=photos/ --expressions=all \
        --output=out/synth

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
import sys
import time

import numpy as np
from absl import flags

from expr3d import cli, outputs, storage
from expr3d.imaging import faces, photos
from expr3d.imaging.photos import printable
from expr3d.labels import EXPRESSIONS, expression_id

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


def synthesize(saved_model, images, expressions, output, overwrite=False, batch_size=8, log=_log):
    """Run the batch tool; returns the summary dict (also written to OUTPUT/summary.json)."""
    from expr3d.deploy import pipeline
    from expr3d.progress import Progress

    ids = parse_expressions(expressions) if isinstance(expressions, str) else list(expressions)
    paths = photos.list_images(images)
    if not paths:
        raise FileNotFoundError(f"--images={images!r} holds no image files ({', '.join(photos.IMAGE_EXTENSIONS)})")
    names = [EXPRESSIONS[i] for i in ids]
    stems = output_stems(paths)
    folder = outputs.OutputFolder(output, "--output", "expr3d.synthesize")
    will_write = ["grid.png", "summary.json"] + [f"{stem}/{prefix}{name}.png" for stem in stems
                                                 for name in names for prefix in ("", "face_")]
    version_dir = resolve_saved_model(saved_model)
    folder.claim(overwrite, will_write=will_write,
                 inputs=[("--saved_model", version_dir)] + [("--images", p) for p in paths])
    translate = saved_model_translator(version_dir, batch_size=batch_size)

    summary = {"saved_model": os.path.abspath(version_dir), "expressions": names, "processed": [], "no_face": [],
               "unreadable": []}
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
        translated, crops, face = pipeline.translate_photo(image, translate, ids)
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
        summary["processed"].append({"image": printable(path), "outputs": written, "face": face.to_dict()})
        progress.update(1)
    progress.close()
    if rows:
        photos.write_image(folder.file("grid.png"), pipeline.grid(rows, labels=["input"] + names))
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
    cli.required("saved_model", "images", "output")
    cli.at_least("batch_size", 1)
    cli.parses("expressions", parse_expressions)


def main(argv):
    cli.no_arguments(argv)
    summary = synthesize(FLAGS.saved_model, FLAGS.images, FLAGS.expressions, FLAGS.output,
                         overwrite=FLAGS.overwrite, batch_size=FLAGS.batch_size)
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
