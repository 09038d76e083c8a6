"""Frozen VGG19 feature extractor for the perceptual loss (PAPER.md eq. 10).

ImageNet weights are never downloaded at run time: they come from a local file
(`--vgg19_weights=/path/to/file.h5`) or from the Keras cache, where
`keras.applications.VGG19(include_top=False)` leaves them on a machine with
internet access.
"""

import os

import keras
from keras import ops

from expr3d.models.blocks import serializable_dtype

VGG19_NOTOP_FILENAME = "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5"
DEFAULT_LAYERS = ("block1_conv2", "block2_conv2", "block3_conv4", "block4_conv4")
# ImageNet channel means of VGG's "caffe" preprocessing, in BGR order.
CAFFE_BGR_MEAN = (103.939, 116.779, 123.68)


def keras_cache_candidates(filename=VGG19_NOTOP_FILENAME):
    """Where the Keras cache may hold `filename` (default: the notop VGG19 weights), in search order.

    `$KERAS_HOME/models/` when KERAS_HOME is set, else `~/.keras/models/` and
    Keras' fallback `/tmp/.keras/models/` (used when the home is read-only).
    """
    if os.environ.get("KERAS_HOME"):
        homes = [os.environ["KERAS_HOME"]]
    else:
        homes = [os.path.join(os.path.expanduser("~"), ".keras"), os.path.join("/tmp", ".keras")]
    return [os.path.join(home, "models", filename) for home in homes]


def resolve_vgg19_weights(weights):
    """Path of the weights file for `weights="auto"` or a path; `None` stays `None`.

    Raises:
        FileNotFoundError: naming the `--vgg19_weights` flag, the paths looked
            at and how to obtain the file.
    """
    if weights is None:
        return None
    how_to_get = (
        "On a machine with internet access run\n"
        '  python -c "import keras; keras.applications.VGG19(include_top=False)"\n'
        f"then copy the file it leaves at ~/.keras/models/{VGG19_NOTOP_FILENAME} to $KERAS_HOME/models/ or "
        "~/.keras/models/ on this machine, or pass its path with --vgg19_weights=/path/to/file.h5. "
        "Training without the perceptual loss (--perceptual_weight=0) needs no VGG19 weights."
    )
    if weights == "auto":
        candidates = keras_cache_candidates()
        for path in candidates:
            if os.path.isfile(path):
                return path
        raise FileNotFoundError(
            "VGG19 ImageNet weights for the perceptual loss were not found (--vgg19_weights=auto looks in the "
            f"Keras cache): looked at {', '.join(candidates)}. {how_to_get}"
        )
    path = os.path.expanduser(str(weights))
    if not os.path.isfile(path):
        raise FileNotFoundError(f"--vgg19_weights={weights}: no such file ({os.path.abspath(path)}). {how_to_get}")
    if not path.endswith(".h5"):
        raise ValueError(
            f"--vgg19_weights={weights}: expected a Keras .h5 or .weights.h5 weights file of VGG19(include_top=False)"
        )
    return path


@keras.saving.register_keras_serializable(package="expr3d")
class CaffePreprocess(keras.layers.Layer):
    """[-1, 1] RGB -> VGG's caffe input: [0, 255] BGR minus the ImageNet mean.

    Example:
    >>> CaffePreprocess()(keras.ops.ones((1, 2, 2, 3))).shape
    (1, 2, 2, 3)
    """

    def call(self, inputs):
        pixels = (inputs + 1.0) * 127.5
        bgr = ops.flip(pixels, axis=-1)
        return bgr - ops.cast(ops.convert_to_tensor(CAFFE_BGR_MEAN), bgr.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape


@keras.saving.register_keras_serializable(package="expr3d")
class VGG19Features(keras.Model):
    """Frozen VGG19 ReLU activations of images in [-1, 1].

    Builds `keras.applications.VGG19(weights=None, include_top=False)`, loads
    ImageNet weights from a file, converts the input to VGG's caffe
    preprocessing inside the model and returns the list of outputs of `layers`
    (always a list, even for one layer; VGG19's
    convolutions carry their ReLU, so `block3_conv4` is relu3_4). Only the
    layers up to the deepest requested one are evaluated. Not trainable.

    Args:
        weights: `"auto"` (the Keras cache, see `keras_cache_candidates`), a path
            to a notop VGG19 `.h5` / `.weights.h5` file, or `None` for random
            weights (tests only: random features are not a perceptual loss).
        layers: VGG19 layer names whose activations are returned.
        dtype: dtype policy of the layers; `None` uses the global policy.
        **kwargs: standard `keras.Model` arguments (`name`, ...).

    Example:
    >>> vgg = VGG19Features(weights=None)
    >>> [f.shape[-1] for f in vgg(keras.ops.zeros((1, 32, 32, 3)))]
    [64, 128, 256, 512]
    """

    def __init__(self, weights="auto", layers=DEFAULT_LAYERS, dtype=None, **kwargs):
        layers = tuple(layers)
        if not layers:
            raise ValueError("VGG19Features: layers must name at least one VGG19 layer")
        weights_path = resolve_vgg19_weights(weights)

        vgg = keras.applications.VGG19(weights=None, include_top=False, input_shape=(None, None, 3))
        known = [layer.name for layer in vgg.layers]
        unknown = [name for name in layers if name not in known]
        if unknown:
            raise ValueError(f"VGG19Features: layers {unknown} are not VGG19 layers; known: {known[1:]}")
        if weights_path is not None:
            try:
                vgg.load_weights(weights_path)
            except Exception as error:  # re-raised with the flag and file named
                raise ValueError(
                    f"--vgg19_weights: could not load VGG19(include_top=False) weights from {weights_path}: {error}"
                ) from error
        extractor = keras.Model(vgg.input, [vgg.get_layer(name).output for name in layers], name="vgg19")
        extractor.trainable = False

        image_input = keras.Input(shape=(None, None, 3), name="image")
        x = CaffePreprocess(name="caffe_preprocess", dtype=dtype)(image_input)
        outputs = extractor(x)
        if not isinstance(outputs, (list, tuple)):  # a one-output functional model returns a bare tensor
            outputs = [outputs]
        super().__init__(inputs=image_input, outputs=list(outputs), **kwargs)
        self.trainable = False

        self.weights_source = weights
        self.weights_path = weights_path
        self.feature_layers = layers
        self.layer_dtype = serializable_dtype(dtype)

    def call(self, inputs, training=None, mask=None):
        outputs = super().call(inputs, training=training, mask=mask)
        # Functional models unwrap a one-element output list; keep the list.
        return list(outputs) if isinstance(outputs, (list, tuple)) else [outputs]

    def get_config(self):
        return {
            "name": self.name,
            "weights": self.weights_source,
            "layers": list(self.feature_layers),
            "dtype": self.layer_dtype,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)
