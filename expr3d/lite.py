"""Mobile prototype: a TFLite generator on a real photo, with the pre/post-processing a phone app would do.

    python -m expr3d.lite --model=saved_models/expr3d/1/tflite/generator_int8.tflite --image=me.jpg \
        --expression=happy --output=me_happy.png

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
    for name in ("output", "crop_output"):
        cli.check(name, photos.writable_image_name, f"a file name ending in one of "
                  f"{', '.join(photos.IMAGE_EXTENSIONS)} (the format follows the extension)")


def main(argv):
    cli.no_arguments(argv)
    from expr3d import outputs
    from expr3d.deploy import pipeline, provenance
    from expr3d.deploy.tflite import LiteGenerator
    from expr3d.imaging import faces

    target = expression_id(FLAGS.expression)
    inputs = {"--image": FLAGS.image, "--model": FLAGS.model}
    outputs.check_output_file(FLAGS.output, "--output", FLAGS.overwrite, inputs)
    if FLAGS.crop_output:
        outputs.check_output_file(FLAGS.crop_output, "--crop_output", FLAGS.overwrite, inputs)
        outputs.check_not_input({"--crop_output": FLAGS.crop_output}, {"--output": FLAGS.output})
    image = photos.read_image(FLAGS.image)
    generator = LiteGenerator(FLAGS.model, num_threads=FLAGS.num_threads)
    trained = provenance.of_export(FLAGS.model)
    detector = faces.detector_for(trained) if FLAGS.detector == "auto" else FLAGS.detector
    note = provenance.procedural_note(trained, FLAGS.model)
    if note:
        print(f"{PROGRAM}: {note}", file=sys.stderr, flush=True)
    started = time.time()
    translated, crops, face = pipeline.translate_photo(image, lite_translator(generator), [target],
                                                       detector=detector)
    if translated is None:
        return _fail(f"no face found in {FLAGS.image} ({DETECTOR_NAMES[detector]}); use a frontal photo "
                     f"where the face is at least a tenth of the image side")
    warnings = faces.face_warnings(face, image.shape, generator.image_size)
    for warning in warnings:
        print(f"{PROGRAM}: {FLAGS.image}: {warning}", file=sys.stderr, flush=True)
    photos.write_image(FLAGS.output, translated[0])
    if FLAGS.crop_output:
        photos.write_image(FLAGS.crop_output, crops[0])
    print(json.dumps({"image": FLAGS.image, "output": FLAGS.output, "expression": FLAGS.expression,
                      "model_input_size": generator.image_size, "face": face.to_dict(), "warnings": warnings,
                      "trained_on": trained,
                      "seconds": round(time.time() - started, 3)}))
    return 0


def run_cli():
    """`python -m expr3d.lite` and the `expr3d-lite` console script."""
    define_flags()
    cli.run(main, PROGRAM)


if __name__ == "__main__":
    run_cli()
