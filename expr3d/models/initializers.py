"""Weight initialisation schemes of the networks: Keras' defaults, or PyTorch's as the official StarGAN code gets them.

`init="keras"` (the default, and what every run before this option used): Keras' layer defaults, glorot-uniform
kernels and zero biases. `init="stargan"`: the official StarGAN code (yunjey/stargan, `model.py`/`solver.py`) calls no
initialiser of its own, so its networks start from PyTorch's layer defaults, which `TorchDefaultUniform` reproduces:

- `nn.Conv2d`, `nn.ConvTranspose2d`, `nn.Linear` (PyTorch >= 1.0, `_ConvNd.reset_parameters`):
  `kaiming_uniform_(weight, a=sqrt(5))`, i.e. U(-b, b) with `b = gain * sqrt(3 / fan_in)`,
  `gain = sqrt(2 / (1 + a^2)) = sqrt(1/3)`, so `b = 1 / sqrt(fan_in)`; the bias, where the layer has one, is
  U(-1/sqrt(fan_in), 1/sqrt(fan_in)) with the same `fan_in` (the weight's).
- `fan_in` is `_calculate_fan_in_and_fan_out(weight)`: `weight.size(1) * kh * kw`. For a convolution the weight is
  `[out, in, kh, kw]`, so `fan_in = in * kh * kw`. For a TRANSPOSED convolution PyTorch stores `[in, out, kh, kw]`,
  so the same formula gives `fan_in = out * kh * kw` (the layer's output channels, not its inputs).
- Keras stores a `Conv2D` kernel as `[kh, kw, in, out]` and a `Conv2DTranspose` kernel as `[kh, kw, out, in]`, so
  `prod(shape[:-1])` is `in * kh * kw` and `out * kh * kw` respectively: exactly PyTorch's `fan_in` in both cases
  (and `in` for a `Dense` kernel `[in, out]`). That is what `TorchDefaultUniform()` uses when it is given no `fan_in`.
  A bias is 1-D, so its initialiser is given the weight's `fan_in` explicitly.
- PyTorch 0.4.x (which StarGAN's README allows, "0.4.0+") drew conv weights and biases from
  U(+-1/sqrt(in_channels * kh * kw)) with the layer's real input channels, also for transposed convolutions. Only
  the transposed convolutions differ from >= 1.0: StarGAN's up-sampling layers halve the channels, so 0.4's bound is
  1/sqrt(2) of the one used here. We follow PyTorch >= 1.0, the version anyone running the official code today gets.
- Instance norm (`nn.InstanceNorm2d(affine=True)`): weight 1, bias 0 — Keras' `GroupNormalization` defaults already.
- In StarGAN the generator's convolutions have no bias and the critic's stride-2 convolutions do; the critic's two
  heads have none. Both schemes keep those layouts; only the initial values differ.
"""

import math

import keras

INITS = ("keras", "stargan")


def check_init(init, owner="init"):
    """Raise `ValueError` naming `owner` unless `init` is one of `INITS`."""
    if init not in INITS:
        raise ValueError(f"{owner}: init must be one of {INITS}; got {init!r}")
    return init


@keras.saving.register_keras_serializable(package="expr3d")
class TorchDefaultUniform(keras.initializers.RandomUniform):
    """U(-1/sqrt(fan_in), 1/sqrt(fan_in)): PyTorch's default init of conv/linear weights and biases.

    Args:
        fan_in: the fan-in of the layer's weight. `None` (for kernels) derives it from the Keras kernel shape as
            `prod(shape[:-1])`, which equals PyTorch's fan-in for `Conv2D`, `Conv2DTranspose` and `Dense` kernels
            (module docstring); required for 1-D shapes (biases).
        seed: as for `keras.initializers.RandomUniform` (`None`: drawn from the global Keras seed when the
            initialiser is created, so `keras.utils.set_random_seed` makes the weights reproducible).

    Example:
    >>> init = TorchDefaultUniform(seed=0)
    >>> values = keras.ops.convert_to_numpy(init((4, 4, 16, 32)))  # conv4x4, 16 -> 32 channels: fan_in 256
    >>> bool(abs(values).max() <= 1 / 16)
    True
    """

    def __init__(self, fan_in=None, seed=None):
        if fan_in is not None and (not isinstance(fan_in, int) or isinstance(fan_in, bool) or fan_in < 1):
            raise ValueError(f"TorchDefaultUniform: fan_in must be a positive integer or None; got {fan_in!r}")
        self.fan_in = fan_in
        super().__init__(minval=-1.0, maxval=1.0, seed=seed)

    def bound(self, shape):
        """`1 / sqrt(fan_in)` for a weight of `shape`."""
        fan_in = self.fan_in
        if fan_in is None:
            if len(shape) < 2:
                raise ValueError(f"TorchDefaultUniform: a {len(shape)}-D shape {tuple(shape)} (a bias?) needs an "
                                 f"explicit fan_in (the weight's)")
            fan_in = math.prod(int(d) for d in shape[:-1])
        return 1.0 / math.sqrt(fan_in)

    def __call__(self, shape, dtype=None):
        bound = self.bound(shape)
        return keras.random.uniform(shape=shape, minval=-bound, maxval=bound, seed=self.seed, dtype=dtype)

    def get_config(self):
        return {"fan_in": self.fan_in, "seed": super().get_config()["seed"]}


def layer_initializers(init, fan_in=None, use_bias=False):
    """Initializer keyword arguments of one `Conv2D` / `Conv2DTranspose` / `Dense` layer under scheme `init`.

    `"keras"` gives `{}` (the layer keeps Keras' defaults, so weights are drawn exactly as before this option
    existed); `"stargan"` gives a fresh `TorchDefaultUniform` per layer for the kernel and, with `use_bias`, one with
    the weight's `fan_in` (required then) for the bias.
    """
    check_init(init)
    if init == "keras":
        return {}
    kwargs = {"kernel_initializer": TorchDefaultUniform()}
    if use_bias:
        if fan_in is None:
            raise ValueError("layer_initializers: a layer with a bias needs its weight's fan_in under init='stargan'")
        kwargs["bias_initializer"] = TorchDefaultUniform(fan_in=int(fan_in))
    return kwargs
