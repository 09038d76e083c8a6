"""What metrics see during an evaluation: the run's networks, the test data and shared resources.

    context = EvaluationContext(model_dir, data_dir, options)     # loads G_rgb (and G_depth/D_depth), the card
    for batch in context.test_batches():                          # RealBatch: the pipeline's arrays as attributes
        step = TranslationStep(context, batch, target)            # lazy step.fake, step.cycle, step.fake_geometry

Each product (generated faces, cycle reconstructions, G_depth's geometry of generated faces, D_depth's logits) is
computed at most once per batch and target, whichever metrics ask for it (`expr3d.metrics.registry`); the loop that
drives the metrics is `expr3d.metrics.loop`.
"""
import contextlib
import sys
import time

import numpy as np

from expr3d.run_dir import RunDir, RunDirError


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
        run.require_generator("evaluated", condition="expression")
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
        from expr3d.metrics import fer_judge

        if fer_judge.is_fer(self.options.get("classifier")) and self.options.get("protocol", "all") == "all":
            self.options["protocol"] = "seven"  # FER-2013 has no contempt: evaluate the other seven (in the results)
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
