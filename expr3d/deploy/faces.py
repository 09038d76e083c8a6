"""Face detection (OpenCV's bundled Haar cascades), eye-line alignment and the crop's affine matrix.

The crop is a square of side `CROP_SCALE` x the detected face box, centred on the box and rotated so the eye line is
horizontal when both eyes are found (else axis-aligned). `FaceCrop.matrix` maps photo pixels to crop pixels (2x3,
similarity), so paste-back is the inverse warp of the same matrix (expr3d.deploy.paste).
"""
import dataclasses
import math
import os

import numpy as np

CROP_SCALE = 1.5  # crop side / Haar face-box side: the box spans brows to mouth, the crop the whole head
MAX_EYE_TILT_DEGREES = 30.0  # eye pairs tilted more than this are false detections: keep the crop axis-aligned


class FaceDetectionError(RuntimeError):
    """OpenCV or its cascades are unusable (not: no face found, which is a normal `None` result)."""


@dataclasses.dataclass
class FaceCrop:
    """One detected face and how to cut it out.

    Args:
        box: (x, y, w, h) of the Haar face box in photo pixels.
        eyes: ((x, y), (x, y)) left- and right-most eye centres in photo pixels, or None.
        angle: eye-line tilt in degrees (0 when no eyes were used).
        matrix: float64 [2, 3] photo -> crop pixels.
        size: crop side in pixels.
    """

    box: tuple
    eyes: tuple
    angle: float
    matrix: np.ndarray
    size: int

    def to_dict(self):
        return {"box": [int(v) for v in self.box], "eyes": None if self.eyes is None else
                [[float(c) for c in eye] for eye in self.eyes], "angle_degrees": float(self.angle),
                "crop_size": int(self.size)}


_CASCADES = {}


def _cascade(name):
    import cv2

    if name not in _CASCADES:
        path = os.path.join(cv2.data.haarcascades, name)
        classifier = cv2.CascadeClassifier(path)
        if classifier.empty():
            raise FaceDetectionError(f"cannot load OpenCV's Haar cascade {path} (opencv-python 4.x bundles it)")
        _CASCADES[name] = classifier
    return _CASCADES[name]


def _gray(image):
    import cv2

    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an RGB uint8 image [H, W, 3]; got {image.dtype} {image.shape}")
    return cv2.equalizeHist(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY))


def detect_faces(image, min_size_fraction=0.1):
    """Face boxes (x, y, w, h) of an RGB uint8 photo, largest first.

    Runs the frontal-face cascade on the plain grey image and, when that finds nothing, on its histogram-equalised
    version (which rescues dim photos but, on its own, missed faces on flat backgrounds in our tests).
    """
    import cv2

    equalised = _gray(image)
    gray = cv2.cvtColor(np.asarray(image), cv2.COLOR_RGB2GRAY)
    min_side = max(24, int(min_size_fraction * min(gray.shape)))
    cascade = _cascade("haarcascade_frontalface_default.xml")
    boxes = []
    for candidate in (gray, equalised):
        boxes = cascade.detectMultiScale(candidate, scaleFactor=1.05, minNeighbors=5, minSize=(min_side, min_side))
        if len(boxes):
            break
    boxes = [tuple(int(v) for v in box) for box in (boxes if len(boxes) else [])]
    return sorted(boxes, key=lambda b: b[2] * b[3], reverse=True)


def _eye_pair(centres, box):
    """The most plausible (left, right) eye centres among cascade hits, or None."""
    x, y, w, h = box
    left = [c for c in centres if c[0] < x + w / 2.0]
    right = [c for c in centres if c[0] >= x + w / 2.0]
    if not left or not right:
        return None
    # The hit nearest each side's expected eye position (the cascade also fires on brows and nostrils).
    left_eye = min(left, key=lambda c: abs(c[0] - (x + 0.3 * w)) + abs(c[1] - (y + 0.4 * h)))
    right_eye = min(right, key=lambda c: abs(c[0] - (x + 0.7 * w)) + abs(c[1] - (y + 0.4 * h)))
    if abs(right_eye[0] - left_eye[0]) < 0.2 * w:
        return None
    return left_eye, right_eye


def detect_eyes(image, box):
    """((x, y), (x, y)) eye centres (left, right in the image) inside the upper part of `box`, or None.

    Tries a locally contrast-equalised (CLAHE) window first, then the plain one: global histogram equalisation of the
    small window washed the eyes out in our tests.
    """
    import cv2

    x, y, w, h = box
    _gray(image)  # validates the image
    gray = cv2.cvtColor(np.asarray(image), cv2.COLOR_RGB2GRAY)[y:y + int(0.6 * h), x:x + w]
    if gray.size == 0:
        return None
    min_side = max(8, w // 10)
    cascade = _cascade("haarcascade_eye.xml")
    for window in (cv2.createCLAHE(clipLimit=2.0, tileGridSize=(4, 4)).apply(gray), gray):
        eyes = cascade.detectMultiScale(window, scaleFactor=1.05, minNeighbors=2, minSize=(min_side, min_side),
                                        maxSize=(w // 2, w // 2))
        centres = [(x + ex + ew / 2.0, y + ey + eh / 2.0) for ex, ey, ew, eh in (eyes if len(eyes) else [])]
        pair = _eye_pair(centres, box)
        if pair is not None:
            return pair
    return None


def crop_matrix(box, size, angle_degrees=0.0):
    """2x3 photo -> crop matrix: a square of side CROP_SCALE * box side around the box centre, rotated by angle."""
    x, y, w, h = box
    centre = (x + w / 2.0, y + h / 2.0)
    side = CROP_SCALE * max(w, h)
    scale = size / side
    theta = math.radians(angle_degrees)
    cos, sin = math.cos(theta) * scale, math.sin(theta) * scale
    # crop = scale * R(-angle) (p - centre) + size / 2: undoes the tilt so the eye line becomes horizontal.
    matrix = np.array([[cos, sin, 0.0], [-sin, cos, 0.0]])
    matrix[:, 2] = np.array([size / 2.0, size / 2.0]) - matrix[:, :2] @ np.array(centre)
    return matrix


def find_face(image, crop_size=None, use_eyes=True):
    """The largest face of an RGB uint8 photo as a FaceCrop, or None when no face is found.

    Args:
        image: RGB uint8 [H, W, 3].
        crop_size: crop side in pixels; default: the face's own resolution (CROP_SCALE x box side, max 1024).
        use_eyes: rotate the crop to level the eye line when both eyes are detected.
    """
    boxes = detect_faces(image)
    if not boxes:
        return None
    box = boxes[0]
    eyes = detect_eyes(image, box) if use_eyes else None
    angle = 0.0
    if eyes is not None:
        (lx, ly), (rx, ry) = eyes
        angle = math.degrees(math.atan2(ry - ly, rx - lx))
        if abs(angle) > MAX_EYE_TILT_DEGREES:
            eyes, angle = None, 0.0
    if crop_size is None:
        crop_size = int(min(1024, max(32, round(CROP_SCALE * max(box[2], box[3])))))
    return FaceCrop(box=box, eyes=eyes, angle=angle, matrix=crop_matrix(box, crop_size, angle), size=crop_size)


def extract(image, face):
    """The aligned crop (uint8 [size, size, 3]) of `face` from `image`; outside the photo is mirrored."""
    import cv2

    return cv2.warpAffine(np.asarray(image), face.matrix, (face.size, face.size), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REFLECT101)
