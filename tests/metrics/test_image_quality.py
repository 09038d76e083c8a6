import numpy as np
import pytest

from expr3d.metrics import image_quality


def _images(seed=0, shape=(3, 16, 16, 3)):
    return np.random.default_rng(seed).uniform(-1, 1, shape).astype(np.float32)


def test_psnr_of_identical_images_is_capped():
    x = _images()
    np.testing.assert_allclose(image_quality.psnr(x, x), image_quality.PSNR_CAP_DB)


def test_psnr_of_a_known_error():
    x = np.zeros((2, 8, 8, 3), np.float32)
    y = x + 0.2  # 0.1 on the [0, 1] scale -> MSE 0.01 -> 20 dB
    np.testing.assert_allclose(image_quality.psnr(x, y), 20.0, rtol=1e-6)
    mask = np.zeros((2, 8, 8, 1), np.float32)
    mask[:, :4] = 1
    y_masked = y.copy()
    y_masked[:, 4:] = 1.0  # large errors outside the mask are ignored
    np.testing.assert_allclose(image_quality.psnr(x, y_masked, mask), 20.0, rtol=1e-6)


def test_ssim_of_identical_is_one_and_lower_otherwise():
    x = _images()
    np.testing.assert_allclose(image_quality.ssim(x, x), 1.0, atol=1e-6)
    assert np.all(image_quality.ssim(x, _images(1)) < 0.5)


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="shapes differ"):
        image_quality.psnr(_images(), _images(shape=(3, 8, 8, 3)))
