"""FID and KID between real test images and generated ones, on InceptionV3 pool3 features.

Features: `keras.applications.InceptionV3(include_top=False, pooling="avg")` (the 2048-d global average pool,
"pool3"), on images resized bilinearly to 299x299; inputs in [-1, 1] are already Inception's preprocessing. Weights
are never downloaded: `--inception_weights` names a local `.h5` file of InceptionV3(include_top=False) or `auto`
(default) looks in the Keras cache (`keras_cache_candidates()`).

FID and KID are comparable ONLY between evaluations that used the same feature extractor (same weights file, same
resizing) and similar sample counts: these Keras weights are not the TF-slim graph of the original FID code, so our
numbers are not comparable with published FIDs, and FID is biased upward at small sample counts.

`--fid_feature_model=PATH` replaces InceptionV3 by any Keras model mapping `[B, H, W, 3]` images in [-1, 1] to
`[B, D]` features (the tests use a tiny random one; the FID/KID math is the same). `--fid_feature_model=classifier`
uses the penultimate features (the input of the logits layer) of the evaluation's `--classifier`: a Frechet distance
in a face-expression feature space, for machines without InceptionV3 weights. Such numbers are labelled with the
classifier in results.json and are comparable only between evaluations that used the same classifier file.
`--inception_weights=random` builds InceptionV3 with random weights: for timing only, the numbers mean nothing.
"""
import os

import numpy as np

from expr3d.metrics.registry import Metric, MetricUnavailable, register_metric

INCEPTION_NOTOP_FILENAME = "inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5"
INCEPTION_SIZE = 299
# Below this many samples the 2048x2048 covariance is rank-deficient and FID is very noisy.
MIN_STABLE_SAMPLES = 2048
KID_SUBSETS = 100
KID_SUBSET_SIZE = 1000


def inception_cache_candidates():
    """Where the Keras cache may hold the notop InceptionV3 weights, in search order."""
    from expr3d.models.perceptual import keras_cache_candidates

    return keras_cache_candidates(INCEPTION_NOTOP_FILENAME)


def resolve_inception_weights(weights):
    """Path of the InceptionV3 notop weights for `"auto"` or a path; `"random"` stays `"random"`.

    Raises:
        FileNotFoundError: naming `--inception_weights`, the paths looked at and how to get the file.
    """
    if weights == "random":
        return "random"
    how_to_get = (
        "On a machine with internet access run\n"
        '  python -c "import keras; keras.applications.InceptionV3(include_top=False)"\n'
        f"and copy ~/.keras/models/{INCEPTION_NOTOP_FILENAME} to ~/.keras/models/ (or $KERAS_HOME/models/) here, "
        "or pass its path with --inception_weights=/path/to/file.h5. The other metrics do not need it.")
    if weights in (None, "", "auto"):
        candidates = inception_cache_candidates()
        for path in candidates:
            if os.path.isfile(path):
                return path
        raise FileNotFoundError(
            "InceptionV3 weights for FID/KID were not found (--inception_weights=auto looks in the Keras cache): "
            f"looked at {', '.join(candidates)}. {how_to_get}")
    path = os.path.expanduser(str(weights))
    if not os.path.isfile(path):
        raise FileNotFoundError(f"--inception_weights={weights}: no such file ({os.path.abspath(path)}). {how_to_get}")
    return path


class FeatureExtractor:
    """Images in [-1, 1] -> `[B, D]` float64 features, batched through one `tf.function`.

    Args:
        model: a Keras model from images to `[B, D]` features.
        resize_to: side to resize images to before the model (None = as given).
        description: what the features are, recorded in results.json.
    """

    def __init__(self, model, resize_to=None, description=""):
        import tensorflow as tf

        self.model = model
        self.resize_to = resize_to
        self.description = description

        def features(images):
            images = tf.cast(images, tf.float32)
            if resize_to is not None:
                images = tf.image.resize(images, (resize_to, resize_to), method="bilinear")
            out = model(images, training=False)
            return tf.reshape(tf.cast(out, tf.float32), [tf.shape(out)[0], -1])

        self._features = tf.function(features, reduce_retracing=True)

    def __call__(self, images):
        return self._features(np.asarray(images, np.float32)).numpy().astype(np.float64)


def build_inception_extractor(weights="auto"):
    """InceptionV3 pool3 features (`FeatureExtractor`); FileNotFoundError naming the flag when weights are missing."""
    import keras

    path = resolve_inception_weights(weights)
    model = keras.applications.InceptionV3(include_top=False, weights=None, pooling="avg",
                                           input_shape=(INCEPTION_SIZE, INCEPTION_SIZE, 3))
    if path != "random":
        try:
            model.load_weights(path)
        except Exception as error:  # re-raised naming the flag and file
            raise ValueError(f"--inception_weights: could not load InceptionV3(include_top=False) weights from "
                             f"{path}: {error}") from error
        description = f"InceptionV3 pool3 (2048-d) at {INCEPTION_SIZE}px, weights {os.path.basename(path)}"
    else:
        description = "InceptionV3 pool3 with RANDOM weights (timing only; FID/KID values are meaningless)"
    return FeatureExtractor(model, resize_to=INCEPTION_SIZE, description=description)


def load_feature_model(path):
    """A user-given Keras feature model (`--fid_feature_model`) as a `FeatureExtractor`."""
    import keras

    if not os.path.exists(path):
        raise FileNotFoundError(f"--fid_feature_model={path}: no such file")
    import expr3d.models  # noqa: F401  (registers expr3d layers a feature model may use)

    model = keras.saving.load_model(path, compile=False)
    return FeatureExtractor(model, resize_to=None, description=f"custom feature model {os.path.abspath(path)}")


CLASSIFIER_FEATURES = "classifier"


def classifier_feature_extractor(classifier):
    """Penultimate features of a loaded `ExpressionClassifier` (the input of its "logits" layer) as a
    `FeatureExtractor`; dropout is inactive at inference, so these are the pooled backbone features."""
    import keras

    model = getattr(classifier, "model", None)
    if model is None:
        raise ValueError(f"--fid_feature_model=classifier needs a Keras classifier; {classifier.path} has no features "
                         f"(use InceptionV3 or another --fid_feature_model)")
    features = keras.Model(model.inputs, model.get_layer("logits").input, name="classifier_features")
    return FeatureExtractor(features, resize_to=None, description=(
        f"expression-classifier penultimate features ({int(features.output.shape[-1])}-d) of "
        f"{os.path.abspath(classifier.path)} (NOT Inception: comparable only with the same classifier)"))


def feature_extractor_from_context(context):
    """The shared feature extractor of an evaluation (built once, used by both FID and KID)."""

    def build():
        flags = context.options
        if flags.get("fid_feature_model") == CLASSIFIER_FEATURES:
            from expr3d.metrics.judge import classifier_from_context

            classifier = classifier_from_context(context)
            return classifier_feature_extractor(classifier)
        if flags.get("fid_feature_model"):
            return load_feature_model(flags["fid_feature_model"])
        return build_inception_extractor(flags.get("inception_weights", "auto"))

    try:
        return context.resource("fid_features", build)
    except (FileNotFoundError, ValueError) as error:
        raise MetricUnavailable(str(error)) from error


def statistics(features):
    """Mean and covariance (unbiased, rows are samples) of `[N, D]` features."""
    features = np.asarray(features, np.float64)
    if features.ndim != 2 or len(features) < 2:
        raise ValueError(f"need at least 2 feature vectors of shape [N, D]; got shape {features.shape}")
    return features.mean(axis=0), np.cov(features, rowvar=False)


def _sqrt_psd(matrix):
    """Symmetric square root of a symmetric positive semi-definite matrix (eigenvalues clipped at 0)."""
    values, vectors = np.linalg.eigh((matrix + matrix.T) / 2.0)
    return (vectors * np.sqrt(np.clip(values, 0.0, None))) @ vectors.T


def frechet_distance(mu1, sigma1, mu2, sigma2):
    """||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2)) (Heusel et al. 2017).

    Tr((S1 S2)^(1/2)) is computed as Tr((S1^(1/2) S2 S1^(1/2))^(1/2)): the two matrices are similar, and the second
    is symmetric PSD, so its square root comes from an eigendecomposition without the complex round-off of a general
    `sqrtm`.
    """
    mu1, mu2 = np.atleast_1d(mu1), np.atleast_1d(mu2)
    sigma1, sigma2 = np.atleast_2d(sigma1), np.atleast_2d(sigma2)
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape:
        raise ValueError(f"frechet_distance: shapes differ: {mu1.shape}/{sigma1.shape} vs {mu2.shape}/{sigma2.shape}")
    root1 = _sqrt_psd(sigma1)
    middle = root1 @ sigma2 @ root1
    trace_sqrt = np.sqrt(np.clip(np.linalg.eigvalsh((middle + middle.T) / 2.0), 0.0, None)).sum()
    diff = mu1 - mu2
    return float(max(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * trace_sqrt, 0.0))


def fid_from_features(real, fake):
    """FID between two `[N, D]` feature sets."""
    return frechet_distance(*statistics(real), *statistics(fake))


def kernel_inception_distance(real, fake, num_subsets=KID_SUBSETS, subset_size=KID_SUBSET_SIZE, seed=0):
    """KID (Binkowski et al. 2018): unbiased MMD^2 with the cubic polynomial kernel, averaged over random subsets.

    Same estimator as NVlabs/stylegan3's `kernel_inception_distance.py`. Returns `(mean, std)` over subsets.
    """
    real, fake = np.asarray(real, np.float64), np.asarray(fake, np.float64)
    n = real.shape[1]
    m = min(len(real), len(fake), subset_size)
    if m < 2:
        raise ValueError(f"KID needs at least 2 samples per set; got {len(real)} real, {len(fake)} generated")
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(num_subsets):
        x = fake[rng.choice(len(fake), m, replace=False)]
        y = real[rng.choice(len(real), m, replace=False)]
        a = (x @ x.T / n + 1) ** 3 + (y @ y.T / n + 1) ** 3
        b = (x @ y.T / n + 1) ** 3
        values.append(((a.sum() - np.diag(a).sum()) / (m - 1) - b.sum() * 2 / m) / m)
    values = np.asarray(values)
    return float(values.mean()), float(values.std())


class _FeatureMetric(Metric):
    def __init__(self):
        self._real, self._fake = [], []
        self.extractor = None

    def setup(self, context):
        self.extractor = feature_extractor_from_context(context)
        self.seed = int(context.options.get("seed", 0))

    def update_real(self, batch):
        self._real.append(batch.memo("fid_features", lambda: self.extractor(batch.image)))

    def update(self, step):
        self._fake.append(step.memo("fid_features", lambda: self.extractor(step.fake)))

    def _features(self):
        return np.concatenate(self._real), np.concatenate(self._fake)

    def _counts(self, real, fake):
        return {"real_count": int(len(real)), "generated_count": int(len(fake)),
                "feature_dim": int(real.shape[1]), "feature_extractor": self.extractor.description}

    def warnings(self):
        if not self._real:
            return []
        real, fake = len(np.concatenate(self._real)), sum(len(f) for f in self._fake)
        dim = self._real[0].shape[1]
        threshold = max(MIN_STABLE_SAMPLES, dim)
        if min(real, fake) < threshold:
            return [f"{self.name}: only {real} real and {fake} generated samples (< {threshold}); FID/KID are noisy "
                    f"and biased upward at this size - compare only evaluations with the same counts"]
        return []


@register_metric("fid", description="Frechet Inception distance, real test images vs every generated image")
class FID(_FeatureMetric):
    def result(self):
        real, fake = self._features()
        return {"fid": fid_from_features(real, fake),
                **{f"fid_{k}": v for k, v in self._counts(real, fake).items()}}


@register_metric("kid", description="Kernel Inception distance (unbiased, cubic kernel, 100 subsets)")
class KID(_FeatureMetric):
    def result(self):
        real, fake = self._features()
        mean, std = kernel_inception_distance(real, fake, seed=self.seed)
        return {"kid": mean, "kid_std": std, **{f"kid_{k}": v for k, v in self._counts(real, fake).items()}}
