"""expr3d.imaging.crops: the crop matrix levels the eye line."""
import numpy as np

from expr3d.imaging import crops, faces


def test_crop_matrix_levels_the_eye_line():
    left, right = (40.0, 60.0), (80.0, 45.0)
    angle = faces.eye_angle(left, right)
    matrix = crops.crop_matrix((30, 30, 60, 60), 64, angle_deg=angle)
    (lx, ly), (rx, ry) = crops.transform_points(matrix, np.array([left, right]) - 0.5) + 0.5
    assert abs(ly - ry) < 1e-9 and rx > lx
