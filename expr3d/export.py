"""Export a trained run for TF Serving (SavedModel, versioned layout) and phones (TFLite).

    python -m expr3d.export --model_dir=runs/rafd --output=saved_models/expr3d [--version=N] \
        [--tflite=fp32,fp16,int8,int8_full] [--data_dir=data/rafd] [--overwrite]

Writes saved_models/expr3d/<version>/ (saved_model.pb, variables/, expr3d_export.json and, with --tflite,
tflite/generator_<variant>.tflite + a parity report .json beside each). The version directory appears atomically: it
is exported into a hidden temp directory beside it and renamed, so TF Serving never sees a half-written version.
An existing version is never replaced without --overwrite; the default version is the largest existing one + 1.
Signatures: see expr3d/deploy/signatures.py and docs/deploy.md.
"""
import json
import os
import shutil
import sys
import time

from absl import app, flags

from expr3d.labels import EXPRESSIONS

EXPORT_INFO = "expr3d_export.json"
TFLITE_DIR = "tflite"


class ExportError(ValueError):
    """A bad export request (existing version, bad output path); the message names the flag."""


def existing_versions(output):
    """Integer version directories under `output` (TF Serving's model base path), sorted."""
    if not os.path.isdir(output):
        return []
    return sorted(int(name) for name in os.listdir(output)
                  if name.isdigit() and os.path.isdir(os.path.join(output, name)))


def resolve_version(output, version=None, overwrite=False):
    """The version to write: `version`, or the largest existing + 1 (1 for a new model). ExportError on conflicts."""
    if os.path.exists(output) and not os.path.isdir(output):
        raise ExportError(f"--output={output!r} exists and is not a directory")
    if version is None:
        versions = existing_versions(output)
        return versions[-1] + 1 if versions else 1
    if isinstance(version, bool) or not isinstance(version, int) or version < 0:
        raise ExportError(f"--version must be a non-negative integer (TF Serving's version directory); got {version!r}")
    target = os.path.join(output, str(version))
    if os.path.exists(target) and not overwrite:
        raise ExportError(f"{target} already exists: refusing to replace version {version}; pass --overwrite to "
                          f"replace it, or omit --version to write version {existing_versions(output)[-1] + 1}")
    return version


def _log(message):
    print(f"expr3d.export: {message}", file=sys.stderr, flush=True)


def export(model_dir, output, version=None, overwrite=False, tflite=(), data_dir=None, parity_images=16,
           representative_images=64, log=_log):
    """Export the run in `model_dir` to `output/<version>/`; returns the version directory.

    Args:
        model_dir: training run directory (config.json + models/*.keras).
        output: the model base path (saved_models/NAME).
        version: integer version; None = largest existing + 1.
        overwrite: replace an existing version.
        tflite: TFLite variants to convert (subset of expr3d.deploy.tflite.VARIANTS).
        data_dir: dataset for the parity images (test split) and the int8_full representative set (train split);
            default: the run's flags.data_dir when that directory exists.
        parity_images, representative_images: how many faces each set holds.
    """
    from expr3d.deploy import run_dir, tflite as tflite_lib

    tflite = tuple(tflite or ())
    bad = [v for v in tflite if v not in tflite_lib.VARIANTS]
    if bad:
        raise ExportError(f"--tflite: unknown variant(s) {bad}; choose from {', '.join(tflite_lib.VARIANTS)}")
    # Cheap checks first: a refused version must not cost a model load.
    version = resolve_version(output, version, overwrite)
    config = run_dir.read_config(model_dir)
    if data_dir is None:
        recorded = run_dir.data_dir_of(config)
        data_dir = recorded if recorded and os.path.isdir(recorded) else None
    elif not os.path.isdir(data_dir):
        raise ExportError(f"--data_dir={data_dir!r} is not a directory")
    if "int8_full" in tflite and not data_dir:
        raise ExportError("--tflite=int8_full calibrates on training faces: pass --data_dir (the run's data directory "
                          "was not found either)")

    started = time.time()
    run = run_dir.load_run(model_dir)
    from expr3d.deploy.inference import inference_generators
    from expr3d.deploy.signatures import ServingFunctions, build_archive

    # Serve inference clones (4-D instance norm, sub-pixel up-sampling: the same function, TFLite-delegable ops),
    # each checked against the trained network before anything is written.
    g_rgb, g_depth, clone_errors = inference_generators(run.g_rgb, run.g_depth, run.image_size)
    functions = ServingFunctions(g_rgb, g_depth, run.image_size, run.geometry)
    os.makedirs(output, exist_ok=True)
    target = os.path.join(output, str(version))
    temp = os.path.join(output, f".{version}.tmp-{os.getpid()}")
    shutil.rmtree(temp, ignore_errors=True)
    try:
        log(f"writing SavedModel version {version} of {model_dir} (step {run.step}, {run.image_size} px, "
            f"geometry {run.geometry})")
        build_archive(functions).write_out(temp, verbose=False)
        signatures = sorted(functions.input_signatures())
        info = {
            "format": "expr3d export v1",
            "model_dir": os.path.abspath(model_dir),
            "step": run.step,
            "image_size": run.image_size,
            "geometry": run.geometry,
            "expressions": list(EXPRESSIONS),
            "signatures": signatures,
            "model_config": config.get("model_config"),
            "dataset": config.get("dataset"),
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "tflite": {},
            "inference_clone_max_abs_error": clone_errors,
        }
        if tflite:
            reports = tflite_lib.write_variants(temp, os.path.join(temp, TFLITE_DIR), tflite, run.image_size,
                                                data_dir=data_dir, parity_count=parity_images,
                                                representative_count=representative_images, log=log)
            info["tflite"] = {variant: {"file": f"{TFLITE_DIR}/{report['file']}", "size_bytes": report["size_bytes"],
                                        "parity": report["parity"]} for variant, report in reports.items()}
        with open(os.path.join(temp, EXPORT_INFO), "w") as f:
            json.dump(info, f, indent=2)
        # Re-check just before publishing: another export may have taken this version meanwhile.
        if os.path.exists(target):
            if not overwrite:
                raise ExportError(f"{target} appeared during the export; refusing to replace it without --overwrite")
            old = os.path.join(output, f".{version}.old.tmp-{os.getpid()}")
            os.rename(target, old)
            os.rename(temp, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(temp, target)
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise
    log(f"wrote {target} in {time.time() - started:.1f} s (signatures: {', '.join(signatures)})")
    return target


FLAGS = flags.FLAGS


def define_flags():
    """Define the CLI flags (here, not at import, so several CLIs can be imported in one process)."""
    flags.DEFINE_string("model_dir", None, "Training run directory (config.json + models/*.keras).")
    flags.DEFINE_string("output", None, "Model base path for TF Serving, e.g. saved_models/expr3d.")
    flags.DEFINE_integer("version", None, "Version directory to write (default: largest existing + 1).")
    flags.DEFINE_bool("overwrite", False, "Replace an existing version.")
    flags.DEFINE_string("tflite", "", "Comma-separated TFLite variants: fp32,fp16,int8,int8_full (or 'all').")
    flags.DEFINE_string("data_dir", None, "Dataset for TFLite parity images (test split) and the int8_full "
                        "representative set (train split). Default: the run's data_dir.")
    flags.DEFINE_integer("parity_images", 16, "Faces in the TFLite parity check.")
    flags.DEFINE_integer("representative_images", 64, "Faces in the int8_full representative set.")


def main(argv):
    del argv
    from expr3d.deploy import run_dir, tflite as tflite_lib

    for name in ("model_dir", "output"):
        if not getattr(FLAGS, name):
            _log(f"--{name} is required")
            return 2
    try:
        variants = tflite_lib.parse_variants(FLAGS.tflite)
        export(FLAGS.model_dir, FLAGS.output, version=FLAGS.version, overwrite=FLAGS.overwrite, tflite=variants,
               data_dir=FLAGS.data_dir, parity_images=FLAGS.parity_images,
               representative_images=FLAGS.representative_images)
    except (ExportError, run_dir.RunDirError, ValueError, FileNotFoundError) as e:
        _log(f"error: {e}")
        return 1
    return 0


if __name__ == "__main__":
    define_flags()
    app.run(lambda argv: sys.exit(main(argv)))
