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
"""
import contextlib
import json
import os
import sys
import time

import numpy as np

from expr3d import outputs
from expr3d.run_dir import RunDir, RunDirError

DEFAULT_METRICS = "expression_generation_rate,fid,kid,psnr,ssim,identity,geometry,paired,background,samples"
RESULTS_FORMAT_VERSION = 1
# Everything an evaluation writes into --output (the output-exists check looks at all of it, not one file).
EVALUATION_WRITES = ("results.json", "results.md", "arrays.npz", "figures/confusion_matrix.png",
                     "figures/learning_curves.png", "figures/identity_histogram.png", "figures/samples.png")


class EvaluationError(Exception):
    """Bad input to the evaluation (run directory, data, flags); the message names the file or flag."""


# --- the run directory ----------------------------------------------------------------------------------------------

@contextlib.contextmanager
def run_errors():
    """A bad run directory (`RunDirError`) raised inside the block becomes an EvaluationError with its message."""
    try:
        yield
    except RunDirError as error:
        raise EvaluationError(str(error)) from None


def open_run(model_dir):
    """(RunDir, its config.json) of a run that has an exported G_rgb; EvaluationError naming what is missing."""
    run = RunDir(model_dir)
    with run_errors():
        config = run.config()
        run.require_generator("evaluated")
    return run, config


def _rebuild_in_precision(networks, model_config, policy):
    """Copies of `networks` built under dtype `policy` (weights copied), for faster inference."""
    import keras

    from expr3d.models import ModelConfig, build_models

    previous = keras.mixed_precision.global_policy().name
    keras.mixed_precision.set_global_policy(policy)
    try:
        fresh = build_models(ModelConfig.from_dict(model_config))
    finally:
        keras.mixed_precision.set_global_policy(previous)
    out = {}
    for name, network in networks.items():
        fresh[name].set_weights(network.get_weights())
        out[name] = fresh[name]
    return out


# --- batches and steps ----------------------------------------------------------------------------------------------

class _Memo:
    def __init__(self):
        self._cache = {}

    def memo(self, key, fn):
        """`fn()` computed once per object and key (shared by every metric)."""
        if key not in self._cache:
            self._cache[key] = fn()
        return self._cache[key]


class RealBatch(_Memo):
    """A batch of real test examples as numpy arrays (the pipeline's keys as attributes), with lazy products."""

    def __init__(self, context, arrays):
        super().__init__()
        self.context = context
        for key, value in arrays.items():
            setattr(self, key, value)
        self.expression = np.asarray(self.expression, np.int64)
        self.size = len(self.image)

    @property
    def real_geometry_estimate(self):
        """G_depth's geometry map of the real faces."""
        return self.memo("real_geometry_estimate", lambda: self.context.network_call("to_geometry", self.image))


class TranslationStep(_Memo):
    """One (batch, target expression): lazy generated faces, cycle reconstructions and depth-network outputs."""

    def __init__(self, context, batch, target):
        super().__init__()
        self.context = context
        self.batch = batch
        self.target = int(target)
        self.target_ids = np.full([batch.size], self.target, np.int64)

    @property
    def fake(self):
        return self.memo("fake", lambda: self.context.network_call(
            "translate", self.batch.image, self.context.one_hot(self.target_ids)))

    @property
    def cycle(self):
        return self.memo("cycle", lambda: self.context.network_call(
            "translate", self.fake, self.context.one_hot(self.batch.expression)))

    @property
    def fake_geometry(self):
        return self.memo("fake_geometry", lambda: self.context.network_call("to_geometry", self.fake))

    @property
    def fake_geometry_logits(self):
        return self.memo("fake_geometry_logits",
                         lambda: self.context.network_call("geometry_logits", self.fake_geometry))


# --- the context ----------------------------------------------------------------------------------------------------

class EvaluationContext:
    """What metrics see: options (flag values), data access, shared resources and the networks' calls.

    Args:
        model_dir: the run directory.
        data_dir: the dataset directory (its test split is evaluated).
        options: dict of evaluation options (the CLI's flags).
    """

    def __init__(self, model_dir, data_dir, options):
        import tensorflow as tf

        from expr3d.data import dataset_card, pipeline
        from expr3d.metrics.expression_rate import protocol_classes

        self.model_dir = model_dir
        self.data_dir = data_dir
        self.options = dict(options)
        run, self.run_config = open_run(model_dir)
        self.depth_model_dir = self.options.get("depth_model_dir") or model_dir
        model_config = self.run_config.get("model_config") or {}
        self.image_size = int(model_config.get("image_size") or self.run_config.get("dataset", {}).get("image_size"))
        self.num_classes = int(model_config.get("num_classes", 8))
        with run_errors():
            self.geometry_kind = run.geometry(self.run_config)
        self.target_classes = protocol_classes(self.options.get("protocol", "all"))
        try:
            self.card = dataset_card.load_card(data_dir)
        except FileNotFoundError as error:
            raise EvaluationError(f"--data_dir: {error}") from error
        if "test" not in self.card["splits"]:
            raise EvaluationError(f"--data_dir={data_dir}: the dataset card has no test split")
        self.skipped_records, self.skipped_problems = 0, []
        if self.options.get("skip_corrupt"):
            # One decoding pass first: the count of usable records (where the evaluation stops) and what is skipped.
            check = pipeline.scan_split(data_dir, "test", card=self.card)
            self.skipped_records, self.skipped_problems = check["skipped"], check["problems"]
            if check["skipped"]:
                sys.stderr.write(f"warning: --skip_corrupt: skipping {check['skipped']} of {check['records']} test "
                                 f"records of {data_dir}: " + "; ".join(check["problems"][:5])
                                 + (f"; and {len(check['problems']) - 5} more" if len(check["problems"]) > 5 else "")
                                 + "\n")
        else:
            from expr3d.data import records, schema

            try:  # a shard the card lists but is missing: named now, before any metric is set up
                records.split_files(data_dir, "test", self.card)
            except schema.MissingShardError as error:
                raise schema.RecordError(f"{error}; pass --skip_corrupt to evaluate without its records") from None
        if int(self.card["image_size"]) != self.image_size:
            sys.stderr.write(f"note: the dataset's images are {self.card['image_size']}px; the run's model works at "
                             f"{self.image_size}px, so test images are resized\n")
        self._resources = {}
        self.timing = {}
        self._network_seconds = 0.0

        depth_run = RunDir(self.depth_model_dir, flag="--depth_model_dir")
        self.has_depth_networks = all(depth_run.has_network(n) for n in ("g_depth", "d_depth"))
        with run_errors():
            networks = {"g_rgb": run.load_network("g_rgb")}
            if self.has_depth_networks:
                for name in ("g_depth", "d_depth"):
                    networks[name] = depth_run.load_network(name)
        from expr3d.training.runtime import resolve_precision

        precision = resolve_precision(self.options.get("precision", "float32"))
        if precision != "float32":
            networks = _rebuild_in_precision(networks, model_config, precision)
        self.networks = networks
        signature = tf.TensorSpec([None, None, None, 3], tf.float32)
        condition = tf.TensorSpec([None, self.num_classes], tf.float32)
        g_rgb = networks["g_rgb"]
        self._calls = {"translate": tf.function(
            lambda x, c: tf.cast(g_rgb([x, c], training=False), tf.float32), input_signature=[signature, condition])}
        if self.has_depth_networks:
            g_depth, d_depth = networks["g_depth"], networks["d_depth"]
            self._calls["to_geometry"] = tf.function(
                lambda x: tf.cast(g_depth.to_geometry(x, training=False), tf.float32), input_signature=[signature])
            self._calls["geometry_logits"] = tf.function(
                lambda x: tf.cast(d_depth(x, training=False)[1], tf.float32), input_signature=[signature])

    def one_hot(self, ids):
        return np.eye(self.num_classes, dtype=np.float32)[np.asarray(ids)]

    def network_call(self, name, *args):
        if name not in self._calls:
            raise RuntimeError(f"the run has no network for {name!r} (depth networks missing)")
        start = time.perf_counter()
        out = self._calls[name](*[np.asarray(a, np.float32) for a in args]).numpy()
        elapsed = time.perf_counter() - start
        self._network_seconds += elapsed
        self.timing[f"network/{name}"] = self.timing.get(f"network/{name}", 0.0) + elapsed
        return out

    def resource(self, key, build):
        """A shared object (feature extractor, classifier, ...) built once per evaluation."""
        if key not in self._resources:
            self._resources[key] = build()
        return self._resources[key]

    @property
    def num_test_examples(self):
        total = int(self.card["splits"]["test"]["num_examples"]) - self.skipped_records
        limit = self.options.get("max_examples")
        return min(total, int(limit)) if limit else total

    def test_batches(self):
        """A fresh pass over the (first `max_examples`) test examples, as `RealBatch`es, in a fixed order."""
        from expr3d.data import pipeline

        from expr3d.data.schema import RecordError

        skip_corrupt = bool(self.options.get("skip_corrupt"))
        dataset = pipeline.make_dataset(self.data_dir, "test", int(self.options.get("batch_size", 32)),
                                        image_size=self.image_size, training=False, deterministic=True,
                                        augment=False, repeat=False, drop_remainder=False, skip_corrupt=skip_corrupt)
        remaining = self.num_test_examples
        if remaining <= 0:
            return
        try:
            # A bad record stops the pass with one line naming its shard and index (pipeline.checked).
            yield from self._batches(pipeline.checked(dataset.as_numpy_iterator(), self.data_dir, ["test"]),
                                     remaining)
        except RecordError as error:
            raise RecordError(f"{error}" if skip_corrupt else f"{error}; pass --skip_corrupt to skip bad records") \
                from None

    def _batches(self, arrays_iterator, remaining):
        for arrays in arrays_iterator:
            arrays = {k: v[:remaining] for k, v in arrays.items()}
            remaining -= len(arrays["image"])
            yield RealBatch(self, arrays)
            # Stop at the count the card promises instead of asking the iterator for its end-of-sequence: that
            # last `next()` now and then stalled for 10-40 s inside tf.data (benchmarks/bench_evaluate.py).
            if remaining <= 0:
                return


# --- the evaluation -------------------------------------------------------------------------------------------------

def _json_safe(value):
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating, float)):
        value = float(value)
        return value if np.isfinite(value) else None
    return value


def evaluate(model_dir, data_dir, metrics, output=None, overwrite=False, progress=True, **options):
    """Run `metrics` (names) on the run in `model_dir` over `data_dir`'s test split; write and return the results.

    Options (the CLI flags): classifier, inception_weights, fid_feature_model, identity_model, identity_input_range,
    identity_input_size, identity_endpoint, depth_model_dir, protocol, batch_size, max_examples, num_samples,
    precision, seed, label, background_dilation, min_judge_accuracy (default 0.80), judge_cache_dir,
    judge_identities, judge_epochs.
    """
    from expr3d import storage
    from expr3d.metrics import figures, registry, report
    from expr3d.progress import Progress

    names = registry.parse_metric_list(metrics)
    output = output or os.path.join(model_dir, "evaluation")
    results_path = os.path.join(output, "results.json")
    # Checked before the (long) evaluation, replaced only after it: a failed run keeps the earlier results.
    folder = outputs.OutputFolder(output, "--output", "expr3d.evaluate")
    legacy = EVALUATION_WRITES if os.path.isfile(results_path) and not folder.written() else ()
    replaced = folder.check(overwrite, will_write=EVALUATION_WRITES, legacy=legacy,
                            inputs={"--model_dir": model_dir, "--data_dir": data_dir})
    open_run(model_dir)  # a bad run directory is named before TensorFlow loads
    import keras

    options.setdefault("seed", 0)
    keras.utils.set_random_seed(int(options["seed"]))
    started = time.time()
    context = EvaluationContext(model_dir, data_dir, options)
    if context.num_test_examples <= 0:
        raise EvaluationError(f"--data_dir={data_dir}: its test split holds no examples; nothing to evaluate")

    active, skipped = [], {}
    for name in names:
        metric = registry.create(name)
        setup_start = time.perf_counter()
        try:
            metric.setup(context)
            active.append(metric)
        except registry.MetricUnavailable as error:
            skipped[name] = str(error)
            sys.stderr.write(f"metric {name} skipped: {error}\n")
        context.timing[f"setup/{name}"] = time.perf_counter() - setup_start

    targets = list(context.target_classes)
    total = context.num_test_examples * len(targets)
    bar = Progress(total, desc="evaluate", unit="translations") if progress else None
    metric_seconds = {m.name: 0.0 for m in active}

    def timed(metric, fn, *args):
        network_before = context._network_seconds
        start = time.perf_counter()
        fn(*args)
        elapsed = time.perf_counter() - start - (context._network_seconds - network_before)
        metric_seconds[metric.name] += elapsed

    loop_start = time.perf_counter()
    images = 0
    for batch in context.test_batches():
        images += batch.size
        for metric in active:
            timed(metric, metric.update_real, batch)
        for target in targets:
            step = TranslationStep(context, batch, target)
            for metric in active:
                timed(metric, metric.update, step)
            if bar:
                bar.update(batch.size)
    if bar:
        bar.close()
    loop_seconds = time.perf_counter() - loop_start

    results, details, arrays, warnings = {}, {}, {}, []
    for metric in active:
        start = time.perf_counter()
        try:
            results[metric.name] = metric.result()
        except Exception as error:  # one broken metric must not lose the others' results
            skipped[metric.name] = f"failed while computing the result: {type(error).__name__}: {error}"
            continue
        details[metric.name] = metric.details()
        for key, value in metric.arrays().items():
            arrays[f"{metric.name}/{key}"] = value
        warnings.extend(metric.warnings())
        metric_seconds[metric.name] += time.perf_counter() - start
    for text in warnings:
        sys.stderr.write(f"warning: {text}\n")

    timing = {"total": time.time() - started, "loop": loop_seconds,
              **{k: v for k, v in context.timing.items()}, **{f"metric/{k}": v for k, v in metric_seconds.items()}}
    run_flags = context.run_config.get("flags", {})
    document = {
        "format_version": RESULTS_FORMAT_VERSION,
        "label": options.get("label") or os.path.basename(os.path.normpath(model_dir)),
        "model_dir": os.path.abspath(model_dir),
        "data_dir": os.path.abspath(data_dir),
        "depth_model_dir": os.path.abspath(context.depth_model_dir),
        "metrics_requested": names,
        "metrics": results,
        "skipped": skipped,
        "warnings": warnings,
        "details": details,
        "counts": {"test_images": images, "targets": [int(t) for t in targets], "translations": images * len(targets),
                   "skipped_records": context.skipped_records},
        "skipped_problems": context.skipped_problems,
        "timing_seconds": timing,
        "flags": {"model_dir": model_dir, "data_dir": data_dir, "metrics": ",".join(names), "output": output,
                  **options},
        "versions": storage.library_versions("python", "numpy", "tensorflow", "keras", "matplotlib", "absl",
                                                "expr3d"),
        "run": {"flags": run_flags, "model_config": context.run_config.get("model_config"),
                "step": context.run_config.get("step"), "dataset": context.run_config.get("dataset"),
                "geometry": report.run_geometry(run_flags), "confidence_penalty": report.run_penalty(run_flags)},
        "dataset": {"name": context.card.get("name"), "image_size": context.card.get("image_size"),
                    "test_examples": int(context.card["splits"]["test"]["num_examples"])},
    }
    folder.adopt(legacy)
    folder.remove_written(replaced)
    folder.makedirs("figures")
    folder.record(*EVALUATION_WRITES)
    if arrays:
        tmp = os.path.join(output, f".arrays-{os.getpid()}.npz")
        np.savez_compressed(tmp, **arrays)
        os.replace(tmp, os.path.join(output, "arrays.npz"))
    document["figures"] = figures.evaluation_figures(document, arrays, os.path.join(output, "figures"))
    document = _json_safe(document)
    storage.atomic_write_json(results_path, document)
    storage.atomic_write_bytes(os.path.join(output, "results.md"),
                               report.evaluation_markdown(document).encode("utf-8"))
    folder.remove_written([n for n in folder.written() if not os.path.exists(os.path.join(output, n))])  # unlist
    return document


# --- CLI ------------------------------------------------------------------------------------------------------------

OPTION_FLAGS = ("classifier", "inception_weights", "fid_feature_model", "identity_model", "identity_input_range",
                "identity_input_size", "identity_endpoint", "depth_model_dir", "protocol", "batch_size",
                "max_examples", "num_samples", "precision", "seed", "label", "background_dilation",
                "min_judge_accuracy", "judge_cache_dir", "judge_identities", "judge_epochs", "skip_corrupt")


def _define_flags():
    from absl import flags

    flags.DEFINE_string("model_dir", None, "run directory written by `python -m expr3d.train`")
    flags.DEFINE_string("data_dir", None, "dataset directory; its test split is evaluated")
    flags.DEFINE_string("metrics", DEFAULT_METRICS, "comma-separated metric names (or 'all'); see --list_metrics")
    flags.DEFINE_string("output", None, "output directory (default MODEL_DIR/evaluation)")
    flags.DEFINE_boolean("overwrite", False, "replace what an earlier evaluation wrote in --output (only its files)")
    flags.DEFINE_boolean("list_metrics", False, "print the registered metrics and exit")
    from expr3d.metrics import background, judge

    flags.DEFINE_string("classifier", judge.AUTO,
                        "directory of a classifier from `python -m expr3d.metrics.classifier`; 'auto' (procedural "
                        "data) = a judge trained on other generated identities, built on first use and cached "
                        "(expr3d.metrics.judge)")
    flags.DEFINE_float("min_judge_accuracy", judge.MIN_JUDGE_ACCURACY,
                       "refuse to report an expression generation rate when the classifier's accuracy on the real "
                       "faces of the evaluated test split is below this fraction")
    judge.define_judge_flags(flags)
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
    flags.DEFINE_enum("protocol", "all", ["all", "affectnet"], "target classes: all 8, or AffectNet's 6 (no contempt, "
                                                               "disgust)")
    flags.DEFINE_integer("batch_size", 32, "test images per batch")
    flags.DEFINE_integer("max_examples", None, "evaluate only the first N test images")
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
    # Bounds, checked while the flags are parsed (one line and exit code 2 when broken; expr3d.cli).
    from expr3d import cli
    from expr3d.metrics import registry

    cli.parses("metrics", registry.parse_metric_list)
    cli.at_least("batch_size", 1)
    cli.at_least("max_examples", 1, "default: the whole test split")
    cli.at_least("num_samples", 1)
    cli.at_least("identity_input_size", 1, "default: the model's own size")
    cli.seed("seed")
    cli.at_least("background_dilation", 0.0)
    cli.in_range("min_judge_accuracy", 0.0, 1.0)
    cli.at_least("judge_identities", 2, "identities are split between train and test")
    cli.at_least("judge_epochs", 1)


def main(argv):
    from absl import flags

    from expr3d import cli
    from expr3d.metrics import registry

    cli.no_arguments(argv)
    f = flags.FLAGS
    if f.list_metrics:
        for name, text in registry.describe_metrics().items():
            print(f"{name:28s} {text}")
        return 0
    for required in ("model_dir", "data_dir"):
        if not f[required].value:
            raise cli.UsageError(f"--{required} is required")
    options = {name: f[name].value for name in OPTION_FLAGS}
    document = evaluate(f.model_dir, f.data_dir, f.metrics, output=f.output, overwrite=f.overwrite,
                        progress=f.progress, **options)
    if not document["metrics"]:  # results.json records why; the exit code says nothing was measured
        raise cli.NothingDone(f"no metric computed: all {len(document['skipped'])} requested were skipped ("
                              + "; ".join(f"{k}: {v}" for k, v in document["skipped"].items()) + ")")
    print(json.dumps({"metrics": document["metrics"], "skipped": document["skipped"],
                      "output": os.path.abspath(f.output or os.path.join(f.model_dir, "evaluation"))}, indent=1))
    return 0


if __name__ == "__main__":
    from expr3d import cli

    _define_flags()
    cli.run(main, "expr3d.evaluate", errors=[(EvaluationError, cli.EXIT_ERROR)])
