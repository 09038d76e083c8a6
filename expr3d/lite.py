"""Mobile prototype: a TFLite generator on a real photo, with the pre/post-processing a phone app would do.

    python -m expr3d.lite --model=saved_models/expr3d/1/tflite/generator_int8.tflite --image=me.jpg \
        --expression=happy --output=me_happy.png
    python -m expr3d.lite --model=saved_models/au/1/tflite/au_generator_int8.tflite --image=me.jpg \
        --action_units="AU12+0.5,AU4=0" --output=me_smiling.png

An AU export's generator (`au_generator_*.tflite`, an AU-conditioned run exported with an AU reader) takes
`--action_units=EDIT` instead of --expression (`AUn+x` / `AUn-x` moves that AU from where the face is, `AUn=x` sets
it, comma-separated; `expr3d.synthesize`'s syntax, one edit): the reader (`--reader`, default the
`au_reader_*.tflite` beside the model) reads the face's 17 AUs, the edit changes the named ones, the generator draws
the result; the JSON line gives both vectors.

Detect the face (BlazeFace, the most confident face, or OpenCV's Haar cascades: `--detector=auto` picks the one whose
crops match the model's training data, from the export beside the model file), level the eye line, crop, translate
with the LiteRT interpreter (ai_edge_litert; no TensorFlow import), paste the face back with a feathered mask. A model
trained on procedural faces says so once on stderr. --crop_output also saves the
translated crop. Exit codes (expr3d.cli): 2 for a bad flag (unknown expression, missing --model/--image/--output,
--num_threads < 1), 1 for a bad file (no face found, an unreadable or oversized photo, an invalid model, an output
that exists or is an input), each with one line on stderr. Photos above expr3d.imaging.photos.MAX_WORKING_PIXELS are
translated (and written) downscaled to that size.
"""
import json
import sys
import time

import cv2
import numpy as np
from absl import flags

from expr3d import cli
from expr3d.imaging import photos
from expr3d.imaging.pixels import from_uint8, to_uint8
from expr3d.labels import expression_id

FLAGS = flags.FLAGS


def lite_translator(generator):
    """A pipeline translator running `generator` (a LiteGenerator) at its fixed input size."""
    size = generator.image_size

    def translate(crop, ids):
        side = crop.shape[0]
        x = cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA if side > size else cv2.INTER_LINEAR)
        x = from_uint8(x)
        batch = np.repeat(x[None], len(ids), axis=0)
        conditions = np.eye(8, dtype=np.float32)[ids]
        out = generator(batch, conditions)
        out = to_uint8(out)
        return [cv2.resize(o, (side, side), interpolation=cv2.INTER_CUBIC if side > size else cv2.INTER_AREA)
                for o in out]

    return translate


def lite_action_unit_translator(generator, reader, edit, record):
    """A pipeline translator for an AU generator (a LiteRunner of the `au_generator` signature): the crop's AUs read
    by `reader` (`au_reader`), the `edit` applied (`expr3d.synthesize.asked_action_units`); `record` gets both."""
    from expr3d.synthesize import asked_action_units

    size = generator.image_size

    def translate(crop, ids):
        side = crop.shape[0]
        interpolation = cv2.INTER_AREA if side > size else cv2.INTER_LINEAR
        x = from_uint8(cv2.resize(crop, (size, size), interpolation=interpolation))
        read = reader.run(image=x[None])["action_units"][0]
        asked = asked_action_units(read, edit)
        out = to_uint8(generator.run(image=x[None], action_units=asked[None])["image"])[0]
        record.update(read=[round(float(v), 4) for v in read], asked=[round(float(v), 4) for v in asked])
        return [cv2.resize(out, (side, side), interpolation=cv2.INTER_CUBIC if side > size else cv2.INTER_AREA)]

    return translate


def default_reader(model):
    """The AU reader exported beside `model` (`tflite/au_reader_<variant>.tflite`: the model's own variant first,
    then fp32, then any), or None."""
    import glob
    import os

    folder, name = os.path.split(os.path.abspath(model))
    variant = name[len("au_generator_"):] if name.startswith("au_generator_") else ""
    candidates = [os.path.join(folder, f"au_reader_{variant}")] if variant else []
    candidates += [os.path.join(folder, "au_reader_fp32.tflite")]
    candidates += sorted(glob.glob(os.path.join(folder, "au_reader_*.tflite")))
    for candidate in candidates:
        if os.path.isfile(candidate):
            return candidate
    return None


PROGRAM = "expr3d.lite"
DETECTOR_NAMES = {"blazeface": "BlazeFace", "haar": "OpenCV Haar frontal-face cascade"}


def _fail(message):
    return cli.fail(PROGRAM, message)


def define_flags():
    """Define the CLI flags (here, not at import, so several CLIs can be imported in one process)."""
    flags.DEFINE_string("model", None, "A .tflite generator written by `python -m expr3d.export --tflite=...`.")
    flags.DEFINE_string("image", None, "The photo (JPEG, PNG, ...).")
    flags.DEFINE_string("expression", "happy", "Target expression name (neutral, happy, sad, surprise, fear, disgust, "
                        "anger, contempt; RaFD spellings accepted).")
    flags.DEFINE_string("output", None, "Where to write the photo with the translated face (PNG or JPEG by extension).")
    flags.DEFINE_string("action_units", None, "An AU generator (au_generator_*.tflite): one edit, e.g. "
                        "'AU12+0.5,AU4=0' (AUn+x / AUn-x from where the face is, AUn=x sets it; the other AUs as "
                        "read); --expression is then not used.")
    flags.DEFINE_string("reader", None, "With --action_units: the AU reader .tflite (default: au_reader_*.tflite "
                        "beside --model, written by `python -m expr3d.export --au_reader=... --tflite=...`).")
    flags.DEFINE_string("crop_output", None, "Optional: also write the translated face crop here.")
    flags.DEFINE_integer("num_threads", None, "Interpreter threads (default: LiteRT's).")
    flags.DEFINE_bool("overwrite", False, "Replace an existing --output / --crop_output (never the input photo or "
                      "the model).")
    flags.DEFINE_enum("detector", "auto", ["auto", "blazeface", "haar"],
                      "Face detector: blazeface (most confident face, levelled by the face mesh's eyes; the crop "
                      "convention of procedural training faces and of photos prepared with it), haar (largest box; "
                      "how expr3d.data.prepare cropped photos before BlazeFace), or auto: the one the model's "
                      "training faces were cropped with (its export says).")
    cli.required("model", "image", "output")
    cli.at_least("num_threads", 1, "default: LiteRT's")
    cli.parses("expression", expression_id)
    cli.parses("action_units", _one_edit)
    for name in ("output", "crop_output"):
        cli.check(name, photos.writable_image_name, f"a file name ending in one of "
                  f"{', '.join(photos.IMAGE_EXTENSIONS)} (the format follows the extension)")


def _one_edit(text):
    """--action_units' value (None: not given) -> its one edit; ValueError naming the flag."""
    if text is None:
        return None
    from expr3d.synthesize import parse_action_unit_edits

    edits = parse_action_unit_edits(text)
    if len(edits) != 1:
        raise ValueError(f"--action_units takes one edit (comma-separated terms, no ';'); got {len(edits)}")
    return edits[0][1]


def _load_generator(by_action_units):
    """The --model's runner: a LiteGenerator, or for --action_units a LiteRunner of `au_generator` with its reader;
    ValueError naming the flag that does not fit the model."""
    from expr3d.deploy import tflite

    if not by_action_units:
        try:
            return tflite.LiteGenerator(FLAGS.model, num_threads=FLAGS.num_threads), None
        except ValueError as error:
            if f"'{tflite.ACTION_UNITS.key}'" in str(error):
                raise ValueError(f"--model={FLAGS.model} is an AU generator: pass --action_units=EDIT (e.g. "
                                 f"'AU12+0.5'), not --expression") from None
            raise
    try:
        generator = tflite.LiteRunner(FLAGS.model, tflite.ACTION_UNITS, num_threads=FLAGS.num_threads)
    except ValueError as error:
        raise ValueError(f"--action_units needs an AU generator (au_generator_*.tflite): {error}") from None
    reader_path = FLAGS.reader or default_reader(FLAGS.model)
    if reader_path is None:
        raise ValueError(f"--action_units: no au_reader_*.tflite beside --model={FLAGS.model}; export the run with "
                         f"an AU reader (`python -m expr3d.export --au_reader=auto --tflite=...`) or pass --reader")
    try:
        reader = tflite.LiteRunner(reader_path, tflite.AU_READER, num_threads=FLAGS.num_threads)
    except (OSError, ValueError) as error:
        raise ValueError(f"--reader={reader_path}: {error}") from None
    if reader.image_size != generator.image_size:
        raise ValueError(f"--reader={reader_path} reads {reader.image_size} px faces; --model={FLAGS.model} takes "
                         f"{generator.image_size} px")
    return generator, reader


def main(argv):
    cli.no_arguments(argv)
    from expr3d import outputs
    from expr3d.deploy import pipeline, provenance
    from expr3d.imaging import faces

    edit = _one_edit(FLAGS.action_units)
    target = expression_id(FLAGS.expression)
    inputs = {"--image": FLAGS.image, "--model": FLAGS.model}
    outputs.check_output_file(FLAGS.output, "--output", FLAGS.overwrite, inputs)
    if FLAGS.crop_output:
        outputs.check_output_file(FLAGS.crop_output, "--crop_output", FLAGS.overwrite, inputs)
        outputs.check_not_input({"--crop_output": FLAGS.crop_output}, {"--output": FLAGS.output})
    image = photos.read_image(FLAGS.image)
    try:
        generator, reader = _load_generator(edit is not None)
    except ValueError as error:
        return _fail(str(error))
    trained = provenance.of_export(FLAGS.model)
    detector = faces.detector_for(trained) if FLAGS.detector == "auto" else FLAGS.detector
    note = provenance.procedural_note(trained, FLAGS.model)
    if note:
        print(f"{PROGRAM}: {note}", file=sys.stderr, flush=True)
    started = time.time()
    record = {}
    translate = (lite_translator(generator) if edit is None
                 else lite_action_unit_translator(generator, reader, edit, record))
    translated, crops, face = pipeline.translate_photo(image, translate, [target], detector=detector)
    if translated is None:
        return _fail(f"no face found in {FLAGS.image} ({DETECTOR_NAMES[detector]}); use a frontal photo "
                     f"where the face is at least a tenth of the image side")
    warnings = faces.face_warnings(face, image.shape, generator.image_size)
    for warning in warnings:
        print(f"{PROGRAM}: {FLAGS.image}: {warning}", file=sys.stderr, flush=True)
    photos.write_image(FLAGS.output, translated[0])
    if FLAGS.crop_output:
        photos.write_image(FLAGS.crop_output, crops[0])
    result = {"image": FLAGS.image, "output": FLAGS.output, "expression": FLAGS.expression,
              "model_input_size": generator.image_size, "face": face.to_dict(), "warnings": warnings,
              "trained_on": trained, "seconds": round(time.time() - started, 3)}
    if edit is not None:
        del result["expression"]
        result["action_units"] = {"edit": FLAGS.action_units, **record}
    print(json.dumps(result))
    return 0


def run_cli():
    """`python -m expr3d.lite` and the `expr3d-lite` console script."""
    define_flags()
    cli.run(main, PROGRAM)


if __name__ == "__main__":
    run_cli()
