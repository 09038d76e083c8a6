"""Identity distance: L2 and cosine distance between face embeddings of each real test face and its translations.

The embedding network is pluggable (`--identity_model=PATH`): a Keras `.keras`/`.h5` model or a TensorFlow
SavedModel directory (called through its `serving_default` signature, or `--identity_endpoint`), mapping
`[B, H, W, 3]` RGB images to `[B, D]` embeddings (a dict output must have exactly one entry). Images are resized to
`--identity_input_size` (default: the model's static input size, else unchanged) and rescaled from [-1, 1] to
`--identity_input_range` ("-1,1", "0,1" or "0,255"; any further preprocessing belongs inside the model). The paper
uses VGG-Face; without `--identity_model` the metric is skipped with a note (no weights are downloaded).

Reported: mean/median L2 distance of raw embeddings, mean L2 of L2-normalised embeddings, and mean cosine distance;
the per-pair L2 distances are kept for the Fig. 4 histogram.
"""
import os

import numpy as np

from expr3d.metrics.registry import Metric, MetricUnavailable, register_metric

INPUT_RANGES = {"-1,1": (-1.0, 1.0), "0,1": (0.0, 1.0), "0,255": (0.0, 255.0)}


class EmbeddingModel:
    """Wraps a Keras model or SavedModel: `__call__(images in [-1, 1])` -> float64 `[B, D]`."""

    def __init__(self, path, input_range="-1,1", input_size=None, endpoint="serving_default"):
        import keras
        import tensorflow as tf

        if input_range not in INPUT_RANGES:
            raise ValueError(f"--identity_input_range must be one of {sorted(INPUT_RANGES)}; got {input_range!r}")
        if not os.path.exists(path):
            raise FileNotFoundError(f"--identity_model={path}: no such file or directory")
        self.path = path
        if os.path.isdir(path):
            if not os.path.isfile(os.path.join(path, "saved_model.pb")):
                raise FileNotFoundError(f"--identity_model={path}: a directory must be a SavedModel (saved_model.pb "
                                        f"missing)")
            model = keras.layers.TFSMLayer(path, call_endpoint=endpoint)
            static = None
        else:
            import expr3d.models  # noqa: F401  (registers expr3d layers)

            model = keras.saving.load_model(path, compile=False)
            shape = getattr(model, "input_shape", None)
            static = shape[1] if isinstance(shape, tuple) and len(shape) == 4 and shape[1] == shape[2] else None
        self.input_size = input_size or static
        low, high = INPUT_RANGES[input_range]
        size = self.input_size

        def embed(images):
            x = tf.cast(images, tf.float32)
            if size is not None:
                x = tf.image.resize(x, (size, size), method="bilinear")
            x = (x + 1.0) / 2.0 * (high - low) + low
            out = model(x)
            if isinstance(out, dict):
                if len(out) != 1:
                    raise ValueError(f"--identity_model={path}: the endpoint returns {sorted(out)}; expected one "
                                     f"embedding output")
                out = next(iter(out.values()))
            return tf.reshape(tf.cast(out, tf.float32), [tf.shape(out)[0], -1])

        self._embed = tf.function(embed, reduce_retracing=True)

    def __call__(self, images):
        return self._embed(np.asarray(images, np.float32)).numpy().astype(np.float64)


def embedding_distances(real, fake):
    """Per-pair L2 (raw), L2 of unit-normalised embeddings and cosine distance of `[N, D]` embeddings."""
    real, fake = np.asarray(real, np.float64), np.asarray(fake, np.float64)
    l2 = np.linalg.norm(real - fake, axis=1)
    unit_real = real / np.maximum(np.linalg.norm(real, axis=1, keepdims=True), 1e-12)
    unit_fake = fake / np.maximum(np.linalg.norm(fake, axis=1, keepdims=True), 1e-12)
    cosine = 1.0 - (unit_real * unit_fake).sum(axis=1)
    return l2, np.linalg.norm(unit_real - unit_fake, axis=1), cosine


@register_metric("identity", description="L2 / cosine distance between face embeddings of real and generated faces "
                                         "(needs --identity_model)")
class IdentityDistance(Metric):
    def __init__(self):
        self._l2, self._l2_unit, self._cos = [], [], []

    def setup(self, context):
        options = context.options
        path = options.get("identity_model")
        if not path:
            raise MetricUnavailable("identity distance skipped: no --identity_model given (a Keras model or "
                                    "SavedModel mapping faces to embeddings, e.g. VGG-Face)")
        try:
            self.model = context.resource("identity_model", lambda: EmbeddingModel(
                path, options.get("identity_input_range", "-1,1"), options.get("identity_input_size"),
                options.get("identity_endpoint", "serving_default")))
        except (FileNotFoundError, ValueError, OSError) as error:
            raise MetricUnavailable(str(error)) from error

    def update(self, step):
        real = step.batch.memo("identity_embedding", lambda: self.model(step.batch.image))
        l2, l2_unit, cos = embedding_distances(real, self.model(step.fake))
        self._l2.append(l2)
        self._l2_unit.append(l2_unit)
        self._cos.append(cos)

    def result(self):
        l2, l2_unit, cos = (np.concatenate(v) for v in (self._l2, self._l2_unit, self._cos))
        return {"identity_l2": float(l2.mean()), "identity_l2_median": float(np.median(l2)),
                "identity_l2_normalized": float(l2_unit.mean()), "identity_cosine": float(cos.mean()),
                "identity_count": int(l2.size), "identity_model": os.path.abspath(self.model.path)}

    def arrays(self):
        return {"l2": np.concatenate(self._l2).astype(np.float32),
                "cosine": np.concatenate(self._cos).astype(np.float32)}
