"""What the imaging tests share: a small test pattern."""
import numpy as np


def pattern(height=40, width=60):
    image = np.zeros((height, width, 3), np.uint8)
    image[: height // 4, : width // 3] = 255
    image[3 * height // 4:, 5 * width // 6:, 1] = 200
    return image
