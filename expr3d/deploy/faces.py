"""The deployment crop of a photo's face: detection and alignment from expr3d.faces (the same code that prepared the
training faces), plus the crop size and the matrix paste-back inverts.

The crop is a square of side `CROP_SCALE` x the detected face box, centred on the box and rotated so the eye line is
horizontal when both eyes are found (else axis-aligned). `FaceCrop.matrix` maps photo pixels to crop pixels (2x3,
similarity, OpenCV's index convention), so paste-back is the inverse warp of the same matrix (expr3d.deploy.paste).
"""
import dataclasses

import numpy as np

from expr3d import faces as face_lib
from expr3d.faces import FaceDetectionError  # noqa: F401  (re-exported for the CLIs)

CROP_SCALE = 1.5  # crop side / Haar face-box side: the box spans brows to mouth, the crop the whole head
MIN_FACE_FRACTION = 0.1  # faces smaller than this fraction of the photo's shorter side are ignored


@dataclasses.dataclass
class FaceCrop:
    """One detected face and how to cut it out.

    Args:
        box: (x, y, w, h) of the Haar face box in photo pixels.
        eyes: ((x, y), (x, y)) left- and right-in-image eye centres in photo pixels, or None.
        angle: eye-line angle in degrees, counter-clockwise on screen (0 when no eyes were used).
        matrix: float64 [2, 3] photo -> crop pixels.
        size: crop side in pixels.
    """

    box: tuple
    eyes: tuple
    angle: float
    matrix: np.ndarray
    size: int

    def to_dict(self):
        return {"box": [int(round(v)) for v in self.box], "eyes": None if self.eyes is None else
                [[float(c) for c in eye] for eye in self.eyes], "angle_degrees": float(self.angle),
                "crop_size": int(self.size)}


def crop_matrix(box, size, angle_degrees=0.0):
    """2x3 photo -> crop matrix: a square of side CROP_SCALE * box side around the box centre, levelled by angle."""
    return face_lib.crop_matrix(box, size, margin=CROP_SCALE - 1.0, angle_deg=angle_degrees)


def find_face(image, crop_size=None, use_eyes=True):
    """The largest face of an RGB uint8 photo as a FaceCrop, or None when no face is found.

    Args:
        image: RGB uint8 [H, W, 3].
        crop_size: crop side in pixels; default: the face's own resolution (CROP_SCALE x box side, max 1024).
        use_eyes: rotate the crop to level the eye line when both eyes are detected.
    """
    face = face_lib.detect_face(image, min_face=24, use_eyes=use_eyes, min_size_fraction=MIN_FACE_FRACTION)
    if face is None:
        return None
    box = tuple(int(v) for v in face.box)
    if crop_size is None:
        crop_size = int(min(1024, max(32, round(CROP_SCALE * max(box[2], box[3])))))
    return FaceCrop(box=box, eyes=face.eyes, angle=face.angle_deg, size=crop_size,
                    matrix=crop_matrix(box, crop_size, face.angle_deg))


def extract(image, face):
    """The aligned crop (uint8 [size, size, 3]) of `face` from `image`; outside the photo is mirrored."""
    import cv2

    return cv2.warpAffine(np.asarray(image), face.matrix, (face.size, face.size), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REFLECT101)
