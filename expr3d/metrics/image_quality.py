"""PSNR and SSIM between images in [-1, 1], and the cycle-reconstruction metrics `psnr` and `ssim`.

Both are computed per image on the [0, 1] scale ((x + 1) / 2, data range 1) and averaged over images. SSIM is
`tf.image.ssim` (Gaussian window 11, sigma 1.5, K1 0.01, K2 0.03, per channel, averaged). PSNR of identical images is
infinite; it is capped at `PSNR_CAP_DB` = 100 dB per image (the MSE is floored at 1e-10) so means stay finite and
results.json stays valid JSON.
"""
import numpy as np

from expr3d.metrics.registry import Metric, register_metric

PSNR_CAP_DB = 100.0
_MSE_FLOOR = 10.0 ** (-PSNR_CAP_DB / 10.0)


def _unit(x):
    return (np.asarray(x, np.float64) + 1.0) / 2.0


def psnr(a, b, mask=None):
    """Per-image PSNR in dB of `[B, H, W, C]` images in [-1, 1] (data range of [0, 1] after rescaling), capped at 100.

    With `mask` (`[B, H, W, 1]` in {0, 1}) the MSE is averaged over masked pixels only.
    """
    a, b = _unit(a), _unit(b)
    if a.shape != b.shape:
        raise ValueError(f"psnr: shapes differ: {a.shape} vs {b.shape}")
    squared = (a - b) ** 2
    if mask is None:
        mse = squared.reshape(len(a), -1).mean(axis=1)
    else:
        weights = np.broadcast_to(np.asarray(mask, np.float64), squared.shape).reshape(len(a), -1)
        mse = (squared.reshape(len(a), -1) * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1.0)
    return 10.0 * np.log10(1.0 / np.maximum(mse, _MSE_FLOOR))


def ssim(a, b):
    """Per-image SSIM of `[B, H, W, C]` images in [-1, 1] (`tf.image.ssim` on [0, 1], window 11, sigma 1.5).

    Images smaller than 11 pixels use a window as large as the image.
    """
    import tensorflow as tf

    a = tf.convert_to_tensor(_unit(a), tf.float32)
    b = tf.convert_to_tensor(_unit(b), tf.float32)
    if a.shape != b.shape:
        raise ValueError(f"ssim: shapes differ: {a.shape} vs {b.shape}")
    size = int(min(11, a.shape[1], a.shape[2]))
    return tf.image.ssim(a, b, max_val=1.0, filter_size=size, filter_sigma=1.5).numpy().astype(np.float64)


def l1(a, b):
    """Per-image mean absolute error on the [-1, 1] scale."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return np.abs(a - b).reshape(len(a), -1).mean(axis=1)


class _MeanOverImages(Metric):
    """Accumulates a per-image score of (original, cycle reconstruction) over every (image, target) pair."""

    key = None

    def __init__(self):
        self._values = []

    def score(self, original, reconstruction):
        raise NotImplementedError

    def update(self, step):
        self._values.append(self.score(step.batch.image, step.cycle))

    def result(self):
        values = np.concatenate(self._values) if self._values else np.zeros([0])
        return {self.key: float(values.mean()) if values.size else float("nan"),
                f"{self.key}_std": float(values.std()) if values.size else float("nan"),
                f"{self.key}_count": int(values.size)}


@register_metric("psnr", description="PSNR (dB, capped at 100) between test images and their cycle "
                                     "reconstructions G(G(x, t), c_x), over every target t")
class CyclePSNR(_MeanOverImages):
    key = "psnr"

    def score(self, original, reconstruction):
        return psnr(original, reconstruction)


@register_metric("ssim", description="SSIM between test images and their cycle reconstructions, over every target")
class CycleSSIM(_MeanOverImages):
    key = "ssim"

    def score(self, original, reconstruction):
        return ssim(original, reconstruction)
