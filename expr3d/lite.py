"""Mobile prototype: a TFLite generator on a real photo, with the pre/post-processing a phone app would do.

    python -m expr3d.lite --model=saved_models/expr3d/1/tflite/generator_int8.tflite --image=me.jpg \
        --expression=happy --output=me_happy.png

Detect the face (OpenCV's bundled Haar cascades), level the eye line, crop, translate with the LiteRT interpreter
(ai_edge_litert; no TensorFlow import), paste the face back with a feathered mask. Exits 1 with a clear message when
no face is found (or the model, image or expression is invalid). --crop_output also saves the translated crop.
"""
import json
import sys
import time

import numpy as np
from absl import app, flags

from expr3d.labels import expression_id

FLAGS = flags.FLAGS


def lite_translator(generator):
    """A pipeline translator running `generator` (a LiteGenerator) at its fixed input size."""
    import cv2

    size = generator.image_size

    def translate(crop, ids):
        side = crop.shape[0]
        x = cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA if side > size else cv2.INTER_LINEAR)
        x = x.astype(np.float32) / 127.5 - 1.0
        batch = np.repeat(x[None], len(ids), axis=0)
        conditions = np.eye(8, dtype=np.float32)[ids]
        out = generator(batch, conditions)
        out = np.clip(np.round((out + 1.0) * 127.5), 0, 255).astype(np.uint8)
        return [cv2.resize(o, (side, side), interpolation=cv2.INTER_CUBIC if side > size else cv2.INTER_AREA)
                for o in out]

    return translate


def _fail(message):
    print(f"expr3d.lite: error: {message}", file=sys.stderr)
    return 1


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


def main(argv):
    del argv
    from expr3d.deploy import pipeline
    from expr3d.deploy.tflite import LiteGenerator

    for name in ("model", "image", "output"):
        if not getattr(FLAGS, name):
            return _fail(f"--{name} is required")
    try:
        target = expression_id(FLAGS.expression)
    except ValueError as e:
        return _fail(f"--expression: {e}")
    from expr3d import outputs

    try:
        inputs = {"--image": FLAGS.image, "--model": FLAGS.model}
        outputs.check_output_file(FLAGS.output, "--output", FLAGS.overwrite, inputs)
        if FLAGS.crop_output:
            outputs.check_output_file(FLAGS.crop_output, "--crop_output", FLAGS.overwrite, inputs)
            outputs.check_not_input({"--crop_output": FLAGS.crop_output}, {"--output": FLAGS.output})
    except outputs.OutputError as e:
        return _fail(str(e))
    try:
        image = pipeline.read_image(FLAGS.image)
        generator = LiteGenerator(FLAGS.model, num_threads=FLAGS.num_threads)
    except (OSError, ValueError) as e:
        return _fail(str(e))
    started = time.time()
    photos, crops, face = pipeline.translate_photo(image, lite_translator(generator), [target])
    if photos is None:
        return _fail(f"no face found in {FLAGS.image} (OpenCV Haar frontal-face cascade); use a frontal photo "
                     f"where the face is at least a tenth of the image side")
    pipeline.write_image(FLAGS.output, photos[0])
    if FLAGS.crop_output:
        pipeline.write_image(FLAGS.crop_output, crops[0])
    print(json.dumps({"image": FLAGS.image, "output": FLAGS.output, "expression": FLAGS.expression,
                      "model_input_size": generator.image_size, "face": face.to_dict(),
                      "seconds": round(time.time() - started, 3)}))
    return 0


if __name__ == "__main__":
    define_flags()
    app.run(lambda argv: sys.exit(main(argv)))
