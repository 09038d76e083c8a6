"""Faces in photos: Haar-cascade detection (OpenCV's bundled cascades), eye-line alignment, face boxes from
annotations, and the deployment crop of a photo's face (found by BlazeFace, expr3d.imaging.blazeface, or Haar).

One implementation for both ends of the project: dataset preparation (expr3d.data.prepare) crops training faces
with it, and deployment (expr3d.lite, expr3d.synthesize) crops photos with it and pastes results back with the
inverse of the same matrix (expr3d.deploy.paste), so a served face is framed the way training faces were.

The deployment crop (`find_face`) comes from one of two detectors. BlazeFace (the default, and what the browser app
runs): faces ranked by the detector's confidence, the crop of expr3d.imaging.blazeface.face_crop (the box grown 1.65x,
shifted up; fitted to the procedural training framing), levelled by the eye centres of the face mesh
(expr3d.imaging.facemesh; BlazeFace's own eye keypoints are 2.4 degrees off on average, up to 7, on the shipped
photos turned by up to 30 degrees), as `expr3d.data.prepare` levels its training crops. The browser app levels by
BlazeFace's keypoints (it does not run the mesh). Haar (`detector="haar"`, what
`expr3d.data.prepare` crops training photos with): the largest box, a square of side `CROP_SCALE` x the box, centred
on it and rotated so the eye line is horizontal when both eyes are found (else axis-aligned). The tools pick the
detector whose crops match the model's training data (`detector_for`). `FaceCrop.matrix` maps photo pixels to crop
pixels (2x3, similarity, OpenCV's index convention; the crop maths is expr3d.imaging.crops).

Coordinates: boxes (x, y, w, h) are continuous (x = left edge of the box's first column); eye centres use OpenCV's
index convention (pixel centres at integers). Angles are counter-clockwise on screen (rows go down), in degrees.
"""
import dataclasses
import math
import os

import cv2
import numpy as np

from expr3d.imaging import crops

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
    if name not in _CASCADES:
        path = os.path.join(cv2.data.haarcascades, name)
        classifier = cv2.CascadeClassifier(path)
        if classifier.empty():
            raise FaceDetectionError(f"cannot load OpenCV's Haar cascade {path} (opencv-python 4.x bundles it)")
        _CASCADES[name] = classifier
    return _CASCADES[name]


def to_gray(rgb):
    """Grey uint8 [H, W] of an RGB uint8 image; ValueError for anything else."""
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


def detect_face(rgb, min_face=32, use_eyes=True, min_size_fraction=0.0, boxes=None):
    """The largest Haar frontal face of an RGB uint8 image as a FaceBox (source "haar"), or None.

    With `use_eyes`, both eyes found in its upper part give the eye-line angle (pairs tilted more than
    MAX_EYE_TILT_DEGREES are taken for false detections and ignored). `boxes`: what `detect_faces` already returned.
    """
    if boxes is None:
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


# --- face boxes from annotations ------------------------------------------------------------------------------

def landmark_eyes(landmarks):
    """Eye centres from 68-point landmarks (iBUG order: 36-41 and 42-47), or None if not 68 points."""
    points = np.asarray(landmarks, np.float64).reshape(-1, 2) if landmarks is not None else None
    if points is None or len(points) != 68 or not np.all(np.isfinite(points)):
        return None
    return tuple(points[36:42].mean(axis=0)), tuple(points[42:48].mean(axis=0))


def box_from_mask(mask):
    """Bounding box (x, y, w, h) of a boolean mask in continuous coordinates, or None if empty."""
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return None
    return (float(cols[0]), float(rows[0]), float(cols[-1] - cols[0] + 1), float(rows[-1] - rows[0] + 1))


def box_iou(a, b):
    """Intersection over union of two (x, y, w, h) boxes (0 when both are empty)."""
    ax0, ay0, aw, ah = a
    bx0, by0, bw, bh = b
    ix = max(0.0, min(ax0 + aw, bx0 + bw) - max(ax0, bx0))
    iy = max(0.0, min(ay0 + ah, by0 + bh) - max(ay0, by0))
    inter = ix * iy
    union = aw * ah + bw * bh - inter
    return inter / union if union > 0 else 0.0


# --- the deployment crop -----------------------------------------------------------------------------------------

CROP_SCALE = 1.5  # crop side / Haar face-box side: the box spans brows to mouth, the crop the whole head
MIN_FACE_FRACTION = 0.1  # faces smaller than this fraction of the photo's shorter side are ignored


@dataclasses.dataclass
class FaceCrop:
    """One detected face and how to cut it out.

    Args:
        box: (x, y, w, h) of the detector's face box in photo pixels.
        eyes: ((x, y), (x, y)) left- and right-in-image eye centres in photo pixels, or None.
        angle: eye-line angle in degrees, counter-clockwise on screen (0 when no eyes were used).
        matrix: float64 [2, 3] photo -> crop pixels.
        size: crop side in pixels.
        detector: "blazeface" or "haar".
        score: the detector's confidence (BlazeFace), or None.
        faces_found: how many faces the detector found (the crop is of the most confident, or the largest for Haar).
        levelled_by: what the angle comes from: "face_mesh", "detector" (BlazeFace's eye keypoints), "eyes" (Haar's
            eye cascade) or "none".
        yaw: the head's turn in degrees from the face mesh (BlazeFace), or None.
    """

    box: tuple
    eyes: tuple
    angle: float
    matrix: np.ndarray
    size: int
    detector: str = "haar"
    score: float | None = None
    faces_found: int = 1
    levelled_by: str = "none"
    yaw: float | None = None

    def to_dict(self):
        return {"box": [int(round(v)) for v in self.box], "eyes": None if self.eyes is None else
                [[float(c) for c in eye] for eye in self.eyes], "angle_degrees": float(self.angle),
                "crop_size": int(self.size), "detector": self.detector,
                "score": None if self.score is None else round(float(self.score), 4), "faces_found": self.faces_found,
                "levelled_by": self.levelled_by, "yaw_degrees": None if self.yaw is None else round(self.yaw, 1)}


def deployment_crop_matrix(box, size, angle_degrees=0.0):
    """2x3 photo -> crop matrix: a square of side CROP_SCALE * box side around the box centre, levelled by angle."""
    return crops.crop_matrix(box, size, margin=CROP_SCALE - 1.0, angle_deg=angle_degrees)


DETECTORS = ("blazeface", "haar")


def detector_for(trained_on):
    """The detector whose crops match a model's training data: for a model trained on photos prepared by
    expr3d.data.prepare, the detector prepare used (its dataset card says; "haar" for preparations from before
    BlazeFace); else "blazeface" (its crop convention is fitted to the procedural renders; also the browser app's)."""
    trained_on = trained_on or {}
    if trained_on.get("kind") == "photos":
        return trained_on.get("detector") or "haar"
    return "blazeface"


def blazeface_angle(image, detection):
    """(eye-line angle, "face_mesh" | "detector", yaw or None) of a BlazeFace detection: the angle from the face
    mesh's eye centres, or the detector's eye keypoints when the landmark model sees no face in the box; the yaw
    (degrees, the head's turn) from the mesh."""
    from expr3d.imaging import blazeface, facemesh

    landmarks = facemesh.shared_face_mesh()(image, detection)
    if landmarks is None:
        return blazeface.eye_angle(detection), "detector", None
    return landmarks.angle, "face_mesh", landmarks.yaw()


BORDER_SHARE = 0.10  # more of the crop than this outside the photo: said (by the tools and prepare's report)


def face_warnings(face, image_shape, model_size=None):
    """What a user should know about the face a tool edited, one short sentence each: several faces, a turned face,
    a face cut by the photo's border, a face smaller than the model's input (upscaled)."""
    notes = []
    if face.faces_found > 1:
        notes.append(f"{face.faces_found} faces found; the most confident one was edited"
                     if face.detector == "blazeface" else f"{face.faces_found} faces found; the largest was edited")
    from expr3d.imaging import facemesh

    if face.yaw is not None and abs(face.yaw) > facemesh.TURNED_YAW_DEGREES:
        notes.append(f"the face is turned about {abs(face.yaw):.0f} degrees from frontal: expect a poor edit")
    outside = crops.outside_share(face.matrix, face.size, image_shape)
    if outside > BORDER_SHARE:
        notes.append(f"the face is cut by the photo's border ({outside:.0%} of the crop lies outside)")
    side = face.size / crops.crop_scale(face.matrix)  # the crop's side in photo pixels
    if model_size and side < model_size / 2:
        notes.append(f"the face is small ({side:.0f} px across in the photo, the model works at {model_size} px): "
                     f"the edit is upscaled")
    return notes


def find_face(image, crop_size=None, use_eyes=True, detector="blazeface"):
    """The best face of an RGB uint8 photo as a FaceCrop, or None when no face is found.

    Args:
        image: RGB uint8 [H, W, 3].
        crop_size: crop side in pixels; default: the face's own resolution (the crop's side in the photo, max 1024).
        use_eyes: level the crop by the eye line (BlazeFace: the face mesh's eye centres; Haar: when both eyes are
            detected).
        detector: "blazeface" (faces ranked by confidence) or "haar" (the largest box).
    """
    if detector == "blazeface":
        from expr3d.imaging import blazeface

        image = np.asarray(image)
        to_gray(image)  # the same check (and error) for every detector
        found = blazeface.detect(image)
        if not found:
            return None
        angle, levelled_by, yaw = blazeface_angle(image, found[0]) if use_eyes else (0.0, "none", None)
        crop = blazeface.face_crop(found[0], crop_size, angle=angle)
        crop.detector, crop.score, crop.faces_found = "blazeface", float(found[0].score), len(found)
        crop.levelled_by, crop.yaw = levelled_by, yaw
        return crop
    if detector != "haar":
        raise ValueError(f"unknown face detector {detector!r}; choose from {DETECTORS}")
    boxes = detect_faces(image, min_face=24, min_size_fraction=MIN_FACE_FRACTION)
    face = detect_face(image, use_eyes=use_eyes, boxes=boxes)
    if face is None:
        return None
    box = tuple(int(v) for v in face.box)
    if crop_size is None:
        crop_size = int(min(1024, max(32, round(CROP_SCALE * max(box[2], box[3])))))
    return FaceCrop(box=box, eyes=face.eyes, angle=face.angle_deg, size=crop_size,
                    matrix=deployment_crop_matrix(box, crop_size, face.angle_deg), detector="haar",
                    faces_found=len(boxes), levelled_by="eyes" if face.eyes else "none")


def extract(image, face):
    """The aligned crop (uint8 [size, size, 3]) of `face` from `image`; outside the photo is mirrored."""
    return cv2.warpAffine(np.asarray(image), face.matrix, (face.size, face.size), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REFLECT101)
