"""Face detection (OpenCV's bundled Haar cascades), eye-line alignment and the crop's similarity matrix.

One implementation for both ends of the project: dataset preparation (expr3d.data.prepare) crops training faces
with it, and deployment (expr3d.deploy: expr3d.lite, expr3d.synthesize) crops photos with it and pastes results back
with the inverse of the same matrix, so a served face is framed the way training faces were.

Coordinates: boxes (x, y, w, h) are continuous (x = left edge of the box's first column); eye centres and the
matrices use OpenCV's index convention (pixel centres at integers), mapping source pixels to crop pixels, so
`cv2.warpAffine(src, M, (S, S))` cuts the crop and `cv2.warpAffine(crop, M, (W, H), flags=WARP_INVERSE_MAP)` puts it
back. Angles are counter-clockwise on screen (rows go down), in degrees.
"""
import dataclasses
import math
import os

import numpy as np

# Eye pairs tilted more than this are false detections (brows, nostrils): the crop stays axis-aligned.
MAX_EYE_TILT_DEGREES = 30.0
FACE_CASCADE = "haarcascade_frontalface_default.xml"
EYE_CASCADE = "haarcascade_eye.xml"


class FaceDetectionError(RuntimeError):
    """OpenCV or its cascades are unusable (not: no face found, which is a normal `None` result)."""


@dataclasses.dataclass
class FaceBox:
    """A face in an image.

    Args:
        box: (x, y, w, h) in continuous coordinates.
        angle_deg: eye-line angle, counter-clockwise on screen; 0 when unknown.
        eyes: ((x, y), (x, y)) eye centres (index convention), the left-in-image eye first, or None.
        source: where the box came from: "given", "haar", "depth", "full".
    """

    box: tuple
    angle_deg: float = 0.0
    eyes: tuple | None = None
    source: str = "given"


_CASCADES = {}


def cascade(name):
    """OpenCV's bundled cascade `name` (cached); FaceDetectionError naming the file when it cannot be loaded."""
    import cv2

    if name not in _CASCADES:
        path = os.path.join(cv2.data.haarcascades, name)
        classifier = cv2.CascadeClassifier(path)
        if classifier.empty():
            raise FaceDetectionError(f"cannot load OpenCV's Haar cascade {path} (opencv-python 4.x bundles it)")
        _CASCADES[name] = classifier
    return _CASCADES[name]


def to_gray(rgb):
    """Grey uint8 [H, W] of an RGB uint8 image; ValueError for anything else."""
    import cv2

    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"expected an RGB uint8 image [H, W, 3]; got {rgb.dtype} {rgb.shape}")
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)


def detect_faces(rgb, min_face=24, min_size_fraction=0.0):
    """Face boxes (x, y, w, h) (ints) of an RGB uint8 image, largest first.

    Runs the frontal-face cascade on the plain grey image and, when that finds nothing, on its histogram-equalised
    version (which rescues dim photos but, on its own, missed faces on flat backgrounds).

    Args:
        rgb: RGB uint8 [H, W, 3].
        min_face: smallest face side in pixels.
        min_size_fraction: smallest face side as a fraction of the image's shorter side (the larger bound wins).
    """
    import cv2

    gray = to_gray(rgb)
    min_side = max(int(min_face), int(min_size_fraction * min(gray.shape)))
    detector = cascade(FACE_CASCADE)
    boxes = ()
    for candidate in (gray, cv2.equalizeHist(gray)):
        boxes = detector.detectMultiScale(candidate, scaleFactor=1.05, minNeighbors=5, minSize=(min_side, min_side))
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


def detect_eyes(rgb, box):
    """((x, y), (x, y)) eye centres (left, right in the image) inside the upper part of `box`, or None.

    Tries a locally contrast-equalised (CLAHE) window first, then the plain one: global histogram equalisation of the
    small window washed the eyes out.
    """
    import cv2

    x, y, w, h = (int(round(v)) for v in box)
    gray = to_gray(rgb)[max(0, y):max(0, y) + int(0.6 * h), max(0, x):max(0, x) + w]
    if gray.size == 0 or w < 16:
        return None
    x, y = max(0, x), max(0, y)
    min_side = max(8, w // 10)
    detector = cascade(EYE_CASCADE)
    for window in (cv2.createCLAHE(clipLimit=2.0, tileGridSize=(4, 4)).apply(gray), gray):
        eyes = detector.detectMultiScale(window, scaleFactor=1.05, minNeighbors=2, minSize=(min_side, min_side),
                                         maxSize=(w // 2, w // 2))
        # Index convention: the centre of a hit spanning columns [ex, ex + ew) is ex + (ew - 1) / 2.
        centres = [(x + ex + (ew - 1) / 2.0, y + ey + (eh - 1) / 2.0)
                   for ex, ey, ew, eh in (eyes if len(eyes) else [])]
        pair = _eye_pair(centres, (x, y, w, h))
        if pair is not None:
            return pair
    return None


def eye_angle(left, right):
    """Counter-clockwise on-screen angle (degrees) of the line from the left-in-image eye to the right one."""
    dx, dy = right[0] - left[0], right[1] - left[1]
    return math.degrees(math.atan2(-dy, dx))


def detect_face(rgb, min_face=32, use_eyes=True, min_size_fraction=0.0):
    """The largest Haar frontal face of an RGB uint8 image as a FaceBox (source "haar"), or None.

    With `use_eyes`, both eyes found in its upper part give the eye-line angle (pairs tilted more than
    MAX_EYE_TILT_DEGREES are taken for false detections and ignored).
    """
    boxes = detect_faces(rgb, min_face=min_face, min_size_fraction=min_size_fraction)
    if not boxes:
        return None
    box = boxes[0]
    face = FaceBox(box=tuple(float(v) for v in box), source="haar")
    eyes = detect_eyes(rgb, box) if use_eyes else None
    if eyes is not None:
        angle = eye_angle(*eyes)
        if abs(angle) <= MAX_EYE_TILT_DEGREES:
            face.eyes, face.angle_deg = eyes, angle
    return face


# --- crops -------------------------------------------------------------------------------------------------------

def crop_matrix(box, output_size, margin=0.25, angle_deg=0.0, center=None):
    """Similarity from source pixels to an `output_size` square around `box` = (x, y, w, h) (continuous coordinates).

    The square side in the source is max(w, h) * (1 + margin); `angle_deg` rotates the source counter-clockwise
    about the box centre before cropping (pass the eye-line angle to level the eyes).
    """
    x, y, w, h = (float(v) for v in box)
    if not (w > 0 and h > 0):
        raise ValueError(f"face box must have positive width and height, got {box}")
    cx, cy = center if center is not None else (x + w / 2.0, y + h / 2.0)
    side = max(w, h) * (1.0 + margin)
    scale = output_size / side
    theta = math.radians(angle_deg)
    cos, sin = scale * math.cos(theta), scale * math.sin(theta)
    # Continuous coordinates: p' = L (p - c) + (S/2, S/2), L turning clockwise on screen by `angle_deg` (rows go
    # down), which levels an eye line that rises counter-clockwise by that angle.
    linear = np.array([[cos, -sin], [sin, cos]])
    offset = np.array([output_size / 2.0, output_size / 2.0]) - linear @ np.array([cx, cy])
    # Index convention: i' + 0.5 = L (i + 0.5) + t  ->  i' = L i + (L 0.5 + t - 0.5).
    offset_index = offset + linear @ np.array([0.5, 0.5]) - 0.5
    return np.concatenate([linear, offset_index[:, None]], axis=1)


def crop_scale(matrix):
    """Uniform scale factor of a similarity 2x3 matrix."""
    return float(math.sqrt(abs(np.linalg.det(np.asarray(matrix)[:, :2]))))


def transform_points(matrix, points):
    """Apply a 2x3 matrix (index convention) to [N, 2] index-convention points."""
    points = np.asarray(points, np.float64)
    return points @ np.asarray(matrix)[:, :2].T + np.asarray(matrix)[:, 2]


def box_corners(box):
    """Corner points (index convention) of a continuous-coordinate box (x, y, w, h)."""
    x, y, w, h = box
    return np.array([[x, y], [x + w, y], [x + w, y + h], [x, y + h]], np.float64) - 0.5
