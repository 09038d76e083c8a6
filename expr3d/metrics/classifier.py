"""The independent expression classifier behind the expression generation rate, and its training CLI.

    python -m expr3d.metrics.classifier --data_dir=data/synthetic64 --output=runs/classifier64 --epochs=10

trains on the REAL training split only (never on generated faces), reports its own accuracy on the real test split
and saves `OUTPUT/classifier.keras` + `OUTPUT/classifier.json` (classes, image size, input range, accuracies, data,
flags, versions). The evaluator refuses a classifier whose saved class list or image size differs from the model
under evaluation.

Backbones: `compact` (default; a small ResNet: 4 stages of two residual blocks, BatchNorm, global pooling) or
`resnet50` with ImageNet weights from `--backbone_weights=FILE` (ResNet50(include_top=False) `.h5`; never downloaded).
"""
import json
import os
import sys
import time

import numpy as np

from expr3d.labels import EXPRESSIONS

MODEL_FILE = "classifier.keras"
METADATA_FILE = "classifier.json"
FORMAT_VERSION = 1


def _residual(x, filters, stride, name):
    import keras

    shortcut = x
    y = keras.layers.Conv2D(filters, 3, strides=stride, padding="same", use_bias=False, name=f"{name}_conv1")(x)
    y = keras.layers.BatchNormalization(name=f"{name}_bn1")(y)
    y = keras.layers.ReLU(name=f"{name}_relu1")(y)
    y = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_conv2")(y)
    y = keras.layers.BatchNormalization(name=f"{name}_bn2")(y)
    if stride != 1 or shortcut.shape[-1] != filters:
        shortcut = keras.layers.Conv2D(filters, 1, strides=stride, use_bias=False, name=f"{name}_proj")(shortcut)
        shortcut = keras.layers.BatchNormalization(name=f"{name}_proj_bn")(shortcut)
    return keras.layers.ReLU(name=f"{name}_out")(keras.layers.Add(name=f"{name}_add")([shortcut, y]))


def build_classifier(image_size, num_classes=len(EXPRESSIONS), width=32, backbone="compact", backbone_weights=None,
                     dropout=0.2, stem_stride=2):
    """A Keras classifier of `[B, S, S, 3]` faces in [-1, 1] -> `[B, num_classes]` logits (float32).

    Args:
        image_size: input side S.
        num_classes: output logits.
        width: channels of the first stage of the compact ResNet (doubled at each of the 4 stages).
        backbone: "compact" or "resnet50".
        backbone_weights: ResNet50(include_top=False) weights file (required for "resnet50").
        dropout: dropout before the logits.
        stem_stride: stride of the compact ResNet's 3x3 stem. 2 (default) runs the four stages at half resolution:
            4x fewer multiply-adds than 1 (docs/evaluation.md).

    Example:
        model = build_classifier(32, width=8)
        logits = model(np.zeros((2, 32, 32, 3), "float32"))   # [2, 8]
    """
    import keras

    inputs = keras.Input((image_size, image_size, 3), name="image")
    if backbone == "compact":
        x = keras.layers.Conv2D(width, 3, strides=stem_stride, padding="same", use_bias=False,
                                name="stem_conv")(inputs)
        x = keras.layers.BatchNormalization(name="stem_bn")(x)
        x = keras.layers.ReLU(name="stem_relu")(x)
        for stage in range(4):
            filters = width * 2 ** stage
            x = _residual(x, filters, 1 if stage == 0 else 2, f"stage{stage}_block0")
            x = _residual(x, filters, 1, f"stage{stage}_block1")
        features = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    elif backbone == "resnet50":
        from expr3d.models.perceptual import CaffePreprocess

        if not backbone_weights or not os.path.isfile(backbone_weights):
            raise FileNotFoundError(
                f"--backbone=resnet50 needs --backbone_weights=FILE (ResNet50(include_top=False) ImageNet weights "
                f".h5, e.g. ~/.keras/models/resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5); got "
                f"{backbone_weights!r}")
        base = keras.applications.ResNet50(include_top=False, weights=None, pooling="avg",
                                           input_shape=(image_size, image_size, 3))
        base.load_weights(backbone_weights)
        features = base(CaffePreprocess(name="caffe_preprocess")(inputs))
    else:
        raise ValueError(f"--backbone must be 'compact' or 'resnet50'; got {backbone!r}")
    if dropout:
        features = keras.layers.Dropout(dropout, name="dropout")(features)
    logits = keras.layers.Dense(num_classes, name="logits", dtype="float32")(features)
    return keras.Model(inputs, logits, name=f"expression_classifier_{backbone}")


class ExpressionClassifier:
    """A loaded classifier with its metadata; `predict_logits(images in [-1, 1])` -> numpy `[B, C]`.

    Use `load_classifier`, which checks the class list and image size.
    """

    def __init__(self, model, metadata, path):
        import tensorflow as tf

        self.model = model
        self.metadata = metadata
        self.path = path
        self.classes = tuple(metadata["classes"])
        self.image_size = int(metadata["image_size"])
        self._logits = tf.function(lambda x: tf.cast(model(x, training=False), tf.float32), reduce_retracing=True)

    def predict_logits(self, images):
        return self._logits(np.asarray(images, np.float32)).numpy()


def load_classifier(path, classes=EXPRESSIONS, image_size=None):
    """Load a classifier saved by this module from its directory (or its .keras file) and check it fits.

    Raises:
        FileNotFoundError: naming the missing file and the command that creates one.
        ValueError: when the saved class list or image size differs from `classes` / `image_size`.
    """
    import keras

    directory = os.path.dirname(path) if str(path).endswith(".keras") else path
    model_path = os.path.join(directory, MODEL_FILE)
    meta_path = os.path.join(directory, METADATA_FILE)
    how = "train one with `python -m expr3d.metrics.classifier --data_dir=DATA --output=DIR`"
    for required in (model_path, meta_path):
        if not os.path.isfile(required):
            raise FileNotFoundError(f"--classifier={path}: {required} is missing; {how}")
    with open(meta_path, encoding="utf-8") as f:
        metadata = json.load(f)
    for field in ("classes", "image_size"):
        if field not in metadata:
            raise ValueError(f"{meta_path}: field {field!r} is missing (not a classifier saved by expr3d)")
    if tuple(metadata["classes"]) != tuple(classes):
        raise ValueError(f"--classifier={path}: it was trained on classes {metadata['classes']} but the evaluation "
                         f"uses {list(classes)}; {how}")
    if image_size is not None and int(metadata["image_size"]) != int(image_size):
        raise ValueError(f"--classifier={path}: it was trained on {metadata['image_size']}x{metadata['image_size']} "
                         f"images but the model under evaluation makes {image_size}x{image_size}; train a classifier "
                         f"at that size ({how} --image_size={image_size})")
    model = keras.saving.load_model(model_path, compile=False)
    return ExpressionClassifier(model, metadata, directory)


def classifier_from_context(context):
    """The evaluation's `--classifier`, loaded once and shared by every metric that needs it (expression rate,
    classifier-feature FID/KID). FileNotFoundError naming the flag when none is given or files are missing;
    ValueError when its classes or image size do not fit."""
    path = context.options.get("classifier")
    if not path:
        raise FileNotFoundError("no --classifier given; train one on the real training split with "
                                "`python -m expr3d.metrics.classifier --data_dir=DATA --output=DIR` and pass "
                                "--classifier=DIR")
    return context.resource("classifier", lambda: load_classifier(path, EXPRESSIONS, image_size=context.image_size))


def evaluate_accuracy(predict_logits, dataset, num_classes=len(EXPRESSIONS)):
    """Accuracy, per-class accuracy and confusion matrix (rows = true class) of a classifier on a dataset of batches."""
    confusion = np.zeros((num_classes, num_classes), np.int64)
    for batch in dataset:
        predicted = np.argmax(predict_logits(batch["image"]), axis=-1)
        np.add.at(confusion, (np.asarray(batch["expression"]), predicted), 1)
    total = confusion.sum()
    per_class = {EXPRESSIONS[c]: (float(confusion[c, c] / confusion[c].sum()) if confusion[c].sum() else None)
                 for c in range(num_classes)}
    return {"accuracy": float(np.trace(confusion) / total) if total else float("nan"), "count": int(total),
            "per_class": per_class, "confusion": confusion.tolist()}


def library_versions():
    import absl
    import keras
    import tensorflow as tf

    return {"python": sys.version.split()[0], "numpy": np.__version__, "tensorflow": tf.__version__,
            "keras": keras.__version__, "absl": getattr(absl, "__version__", "unknown")}


def train_classifier(data_dir, output, image_size=None, epochs=10, batch_size=32, learning_rate=1e-3, width=32,
                     backbone="compact", backbone_weights=None, seed=0, overwrite=False, max_steps_per_epoch=None,
                     flags=None, stem_stride=2, precision="float32", lr_schedule="cosine", extra_test_dirs=()):
    """Train on `data_dir`'s train split, measure accuracy on its test split, save model + metadata. Returns metadata.

    `precision` is the Keras dtype policy for training ("mixed_bfloat16" is about 2x faster on bf16 CPUs); the saved
    model is always float32, so judging does not depend on how the judge was trained. `lr_schedule` "cosine" decays
    the learning rate to 0 over the run, "constant" keeps it. `extra_test_dirs` are further datasets whose test split
    is scored too (e.g. the GAN's own test identities when the judge trains on other identities); their accuracies are
    saved under "extra_test".
    """
    if precision not in ("float32", "mixed_bfloat16", "mixed_float16"):
        raise ValueError(f"--precision must be float32, mixed_bfloat16 or mixed_float16; got {precision!r}")
    if lr_schedule not in ("cosine", "constant"):
        raise ValueError(f"--lr_schedule must be 'cosine' or 'constant'; got {lr_schedule!r}")
    model_path = os.path.join(output, MODEL_FILE)
    if os.path.exists(model_path) and not overwrite:
        raise FileExistsError(f"--output={output} already holds {MODEL_FILE}; pass --overwrite to replace it")
    import keras
    import tensorflow as tf

    from expr3d.data import pipeline
    from expr3d.progress import Progress

    card = pipeline.load_card(data_dir)
    image_size = int(image_size or card["image_size"])
    train_count = int(card["splits"]["train"]["num_examples"])
    steps = max(1, train_count // batch_size)
    if max_steps_per_epoch:
        steps = min(steps, int(max_steps_per_epoch))
    keras.utils.set_random_seed(seed)
    previous_policy = keras.config.dtype_policy()
    keras.config.set_dtype_policy(precision)
    try:
        model = build_classifier(image_size, width=width, backbone=backbone, backbone_weights=backbone_weights,
                                 stem_stride=stem_stride)
    finally:
        keras.config.set_dtype_policy(previous_policy)
    if lr_schedule == "cosine":
        learning_rate = keras.optimizers.schedules.CosineDecay(learning_rate, epochs * steps)
    optimizer = keras.optimizers.Adam(learning_rate)
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    train = pipeline.make_dataset(data_dir, "train", batch_size, image_size=image_size, training=True, seed=seed,
                                  balanced=True)

    @tf.function
    def train_step(images, labels):
        with tf.GradientTape() as tape:
            logits = model(images, training=True)
            loss = loss_fn(labels, logits)
        optimizer.apply_gradients(zip(tape.gradient(loss, model.trainable_variables), model.trainable_variables))
        return loss, tf.reduce_mean(tf.cast(tf.equal(tf.argmax(logits, -1, output_type=tf.int32), labels),
                                            tf.float32))

    progress = Progress(epochs * steps, desc="classifier", unit="steps")
    iterator = iter(train)
    started = time.time()
    history = []
    for epoch in range(epochs):
        losses, accs = [], []
        for _ in range(steps):
            batch = next(iterator)
            loss, acc = train_step(batch["image"], tf.cast(batch["expression"], tf.int32))
            losses.append(float(loss))
            accs.append(float(acc))
            progress.update(1, postfix=f"epoch {epoch + 1} loss {np.mean(losses):.3f} acc {np.mean(accs):.3f}")
        history.append({"epoch": epoch + 1, "loss": float(np.mean(losses)), "train_accuracy": float(np.mean(accs))})
    progress.close()

    if precision != "float32":
        # Saved (and judged) in float32: a float32 twin of the same architecture takes the trained weights.
        trained = model
        model = build_classifier(image_size, width=width, backbone=backbone, backbone_weights=backbone_weights,
                                 stem_stride=stem_stride)
        model.set_weights(trained.get_weights())
    predict = tf.function(lambda x: model(x, training=False), reduce_retracing=True)

    def test_accuracy(directory):
        test = pipeline.make_dataset(directory, "test", batch_size, image_size=image_size, training=False,
                                     deterministic=True).as_numpy_iterator()
        return evaluate_accuracy(lambda x: predict(x).numpy(), test)

    test_result = test_accuracy(data_dir)
    extra_test = {}
    for directory in extra_test_dirs or ():
        result = test_accuracy(directory)
        extra_test[os.path.abspath(directory)] = {"accuracy": result["accuracy"], "count": result["count"],
                                                  "per_class": result["per_class"]}
    metadata = {
        "format_version": FORMAT_VERSION, "classes": list(EXPRESSIONS), "image_size": image_size,
        "input_range": [-1.0, 1.0], "backbone": backbone, "width": width, "stem_stride": stem_stride,
        "train_precision": precision, "lr_schedule": lr_schedule, "extra_test": extra_test,
        "test_accuracy": test_result["accuracy"], "test_count": test_result["count"],
        "test_per_class": test_result["per_class"], "test_confusion": test_result["confusion"],
        "train_history": history, "steps_per_epoch": steps, "epochs": epochs,
        "data_dir": os.path.abspath(data_dir), "dataset_name": card.get("name"),
        "trained_on": "real train split only", "train_seconds": round(time.time() - started, 1),
        "flags": flags or {}, "versions": library_versions(),
    }
    save_classifier(model, metadata, output)
    return metadata


def save_classifier(model, metadata, output):
    """Write `classifier.keras` and `classifier.json` atomically into `output`."""
    from expr3d.data import records

    os.makedirs(output, exist_ok=True)
    tmp = os.path.join(output, f".tmp-{os.getpid()}-{MODEL_FILE}")
    model.save(tmp)
    os.replace(tmp, os.path.join(output, MODEL_FILE))
    records.atomic_write_json(os.path.join(output, METADATA_FILE), metadata)


def main(argv):
    del argv
    from absl import flags

    f = flags.FLAGS
    try:
        metadata = train_classifier(
            f.data_dir, f.output, image_size=f.image_size, epochs=f.epochs, batch_size=f.batch_size,
            learning_rate=f.learning_rate, width=f.width, backbone=f.backbone, backbone_weights=f.backbone_weights,
            seed=f.seed, overwrite=f.overwrite, max_steps_per_epoch=f.max_steps_per_epoch,
            flags={name: f[name].value for name in _FLAG_NAMES}, stem_stride=f.stem_stride, precision=f.precision,
            lr_schedule=f.lr_schedule, extra_test_dirs=f.extra_test_data_dir)
    except (FileExistsError, FileNotFoundError, ValueError) as error:
        sys.stderr.write(f"error: {error}\n")
        sys.exit(1)
    print(json.dumps({"test_accuracy": metadata["test_accuracy"], "test_count": metadata["test_count"],
                      "per_class": metadata["test_per_class"], "extra_test": metadata["extra_test"],
                      "train_seconds": metadata["train_seconds"], "output": os.path.abspath(f.output)}, indent=1))


_FLAG_NAMES = ("data_dir", "output", "image_size", "epochs", "batch_size", "learning_rate", "width", "backbone",
               "backbone_weights", "seed", "overwrite", "max_steps_per_epoch", "stem_stride", "precision",
               "lr_schedule", "extra_test_data_dir")


def _define_flags():
    from absl import flags

    flags.DEFINE_string("data_dir", None, "dataset directory (train split used for training, test for accuracy)")
    flags.DEFINE_string("output", None, "directory for classifier.keras and classifier.json")
    flags.DEFINE_integer("image_size", None, "input size (default: the dataset card's)")
    flags.DEFINE_integer("epochs", 10, "training epochs")
    flags.DEFINE_integer("batch_size", 32, "batch size")
    flags.DEFINE_float("learning_rate", 1e-3, "Adam learning rate")
    flags.DEFINE_integer("width", 32, "channels of the first stage of the compact ResNet")
    flags.DEFINE_enum("backbone", "compact", ["compact", "resnet50"], "classifier backbone")
    flags.DEFINE_string("backbone_weights", None, "ResNet50(include_top=False) ImageNet .h5 weights (resnet50 only)")
    flags.DEFINE_integer("seed", 0, "random seed")
    flags.DEFINE_boolean("overwrite", False, "replace an existing classifier in --output")
    flags.DEFINE_integer("max_steps_per_epoch", None, "cap on steps per epoch (default: train examples / batch)")
    flags.DEFINE_integer("stem_stride", 2, "stride of the compact ResNet's stem (1 = full-resolution first stage)")
    flags.DEFINE_enum("precision", "float32", ["float32", "mixed_bfloat16", "mixed_float16"],
                      "dtype policy for training; the saved classifier is float32 either way")
    flags.DEFINE_enum("lr_schedule", "cosine", ["cosine", "constant"], "learning rate: cosine decay to 0, or constant")
    flags.DEFINE_list("extra_test_data_dir", [], "further datasets whose test split is scored too (e.g. the GAN's "
                      "test identities when --data_dir holds other identities)")
    flags.mark_flags_as_required(["data_dir", "output"])


if __name__ == "__main__":
    from absl import app

    _define_flags()
    app.run(main)
