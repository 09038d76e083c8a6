"""The domain-conditioned depth translator G_depth / G'_depth of PAPER.md."""

import keras
from keras import ops

from expr3d.models.generator import StarGANGenerator

# Domain one-hots: the translator's two target domains.
TO_GEOMETRY = (1.0, 0.0)
TO_RGB = (0.0, 1.0)


@keras.saving.register_keras_serializable(package="expr3d")
class DepthTranslator(StarGANGenerator):
    """A StarGAN generator conditioned on the target domain (geometry or RGB).

    One network does both directions: `to_geometry(rgb)` estimates the
    3-channel geometry map (depth replicated x3, or normals) in [-1, 1], and
    `to_rgb(geometry)` maps a geometry map back to an RGB face, which gives the
    cycle reconstruction `G'_depth(G_depth(x))`. `call([x, domain])` takes the
    domain one-hot explicitly (`TO_GEOMETRY = [1, 0]`, `TO_RGB = [0, 1]`).

    Args:
        conv_dim: channels of the first convolution.
        num_res_blocks: residual blocks in the bottleneck.
        num_down: stride-2 down-sampling (and up-sampling) stages.
        **kwargs: `StarGANGenerator`'s `dtype` and `init` ("keras" or "stargan"), and standard `keras.Model`
            arguments (`name`, ...).

    Example:
    >>> g = DepthTranslator(conv_dim=8, num_res_blocks=1)
    >>> geometry = g.to_geometry(keras.ops.zeros((2, 32, 32, 3)))
    >>> g.to_rgb(geometry).shape
    (2, 32, 32, 3)
    """

    def __init__(self, conv_dim=64, num_res_blocks=6, num_down=2, **kwargs):
        kwargs.pop("cond_dim", None)  # fixed: two domains
        super().__init__(cond_dim=2, conv_dim=conv_dim, num_res_blocks=num_res_blocks, num_down=num_down, **kwargs)

    def _translate(self, x, domain, training=None):
        x = ops.convert_to_tensor(x)
        domain = ops.convert_to_tensor(domain, dtype="float32")
        batch = ops.shape(x)[0]
        condition = ops.broadcast_to(ops.reshape(domain, (1, 2)), (batch, 2))
        return self([x, condition], training=training)

    def to_geometry(self, image, training=None):
        """RGB faces `[B, H, W, 3]` in [-1, 1] -> geometry maps `[B, H, W, 3]`."""
        return self._translate(image, TO_GEOMETRY, training=training)

    def to_rgb(self, geometry, training=None):
        """Geometry maps `[B, H, W, 3]` in [-1, 1] -> RGB faces `[B, H, W, 3]`."""
        return self._translate(geometry, TO_RGB, training=training)

    def get_config(self):
        config = super().get_config()
        del config["cond_dim"]
        return config
