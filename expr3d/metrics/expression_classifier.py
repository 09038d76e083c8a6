"""The expression classifier that judges generated faces: its network and its files.

    model = build_classifier(64)                          # [B, 64, 64, 3] in [-1, 1] -> [B, 8] logits
    judge = load_classifier("runs/classifier64", image_size=64)
    logits = judge.predict_logits(images)

A saved classifier is a directory holding `classifier.keras` (float32, whatever precision it was trained in) and
`classifier.json` (format_version 1: classes, image size, input range, accuracies, data, flags, versions).
`expr3d.metrics.classifier` trains and saves one; `expr3d.metrics.judge` picks the one an evaluation uses and checks
it is good enough.
"""
import json
import os

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
