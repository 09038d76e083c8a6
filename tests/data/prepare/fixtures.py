"""Tiny datasets with exactly known geometry, for the tests of `prepare` and benchmarks/bench_prepare.py.

A "face" is an ellipsoid in image-pixel space (x = column, y = row, z toward the viewer, the 3DDFA-V2 layout):
its mesh, its analytic depth and normals, and a drawn image (shaded ellipse with eyes and a mouth whose shape follows
the expression) are all generated together, so depth rasterised from the mesh can be compared with the analytic one.
Files follow the real layouts: AffectNet CSV rows with face boxes, RaFD file names, `DIR/<expression>/` folders.
"""
import csv
import os

import cv2
import numpy as np

from expr3d.data import geometry
from expr3d.data.prepare import meshes
from expr3d.labels import EXPRESSIONS


def ellipsoid_face(width, height, center, axes, expression=0, seed=0, num_lat=48, num_lon=96):
    """An ellipsoid face in pixel space.

    Args:
        width, height: image size.
        center: (x0, y0) centre in vertex coordinates (x = i is the centre of column i).
        axes: (a, b, c) semi-axes in pixels (c = relief toward the viewer).

    Returns a dict: image uint8 [H, W, 3], vertices, faces, z (analytic vertex-space height z(col, row), NaN
    outside), mask, normals (analytic camera-space unit normals), box (x, y, w, h) of the ellipse.
    """
    rng = np.random.default_rng(seed)
    x0, y0 = center
    a, b, c = axes
    vertices, tris = geometry.uv_sphere_mesh(radius=1.0, num_lat=num_lat, num_lon=num_lon, axes_scale=(a, b, c))
    vertices = vertices + np.array([x0, y0, 0.0])
    rows, cols = np.mgrid[0:height, 0:width].astype(np.float64)
    dx, dy = (cols - x0) / a, (rows - y0) / b
    r2 = dx ** 2 + dy ** 2
    mask = r2 < 1.0
    h = np.sqrt(np.clip(1.0 - r2, 0.0, None))
    z = np.where(mask, c * h, np.nan)
    # Gradient of F = dx^2 + dy^2 + (z/c)^2 in camera space (x right, y up = -row, z toward the viewer).
    with np.errstate(divide="ignore", invalid="ignore"):
        n = np.stack([dx / a, -dy / b, h / c], axis=-1)
        n = n / np.linalg.norm(n, axis=-1, keepdims=True)
    normals = np.where(mask[..., None], n, 0.0).astype(np.float32)
    # Image: background noise, skin shaded by the normal, eyes and an expression-dependent mouth.
    image = rng.integers(0, 60, (height, width, 3)).astype(np.float64)
    skin = np.array([200.0, 150.0, 120.0]) * (0.8 + 0.2 * rng.random())
    shade = np.clip(0.35 + 0.65 * normals[..., 2], 0, 1)
    image[mask] = (skin[None] * shade[mask][:, None])
    image = np.clip(image, 0, 255).astype(np.uint8)
    eye_y = int(round(y0 - 0.25 * b))
    for side in (-1, 1):
        cv2.circle(image, (int(round(x0 + side * 0.35 * a)), eye_y), max(1, int(0.1 * a)), (30, 30, 40), -1)
    mouth_y = int(round(y0 + 0.45 * b))
    curve = [0, 1, -1, 0, 0, 0, 0, 0][expression % 8] * 0.12 * b
    openness = [0.02, 0.06, 0.03, 0.2, 0.12, 0.04, 0.05, 0.03][expression % 8] * b
    cv2.ellipse(image, (int(round(x0)), mouth_y), (max(1, int(0.3 * a)), max(1, int(openness + abs(curve)))), 0,
                0 if curve >= 0 else 180, 180 if curve >= 0 else 360, (120, 30, 40), -1)
    box = (x0 + 0.5 - a, y0 + 0.5 - b, 2 * a, 2 * b)
    return {"image": image, "vertices": vertices, "faces": tris, "z": z, "mask": mask, "normals": normals,
            "box": box}


def write_face_files(face, stem, image_dir, mesh_dir=None, depth_dir=None, mesh_format="obj", depth_format="npy"):
    """mesh_format: "obj", "ply" (binary) or "ascii.ply"; depth_format: "npy" or "png" (16-bit height map).

    Write a face's image (PNG unless the stem ends in .jpg), mesh and depth (z_depth = 1000 - z, 0 outside)."""
    os.makedirs(image_dir, exist_ok=True)
    ext = os.path.splitext(stem)[1] or ".png"
    stem = os.path.splitext(stem)[0]
    cv2.imwrite(os.path.join(image_dir, stem + ext), cv2.cvtColor(face["image"], cv2.COLOR_RGB2BGR))
    if mesh_dir:
        os.makedirs(mesh_dir, exist_ok=True)
        path = os.path.join(mesh_dir, stem + (".obj" if mesh_format == "obj" else ".ply"))
        if mesh_format == "obj":
            meshes.write_obj(path, face["vertices"], face["faces"])
        else:
            meshes.write_ply(path, face["vertices"], face["faces"], binary=mesh_format != "ascii.ply")
    if depth_dir:
        os.makedirs(depth_dir, exist_ok=True)
        depth = np.where(face["mask"], 1000.0 - np.nan_to_num(face["z"]), 0.0)
        if depth_format == "npy":
            np.save(os.path.join(depth_dir, stem + ".npy"), depth.astype(np.float32))
        else:  # 16-bit PNG height map: larger = nearer, 0 = background
            height = np.where(face["mask"], 1 + np.nan_to_num(face["z"]) * 100, 0)
            cv2.imwrite(os.path.join(depth_dir, stem + ".png"), np.clip(height, 0, 65535).astype(np.uint16))


def _face_for(index, expression, width, height, seed):
    rng = np.random.default_rng(seed * 1000 + index)
    a = min(width, height) * rng.uniform(0.22, 0.28)
    b = a * rng.uniform(1.15, 1.3)
    center = (width / 2 + rng.uniform(-3, 3), height / 2 + rng.uniform(-3, 3))
    return ellipsoid_face(width, height, center, (a, b, 0.8 * a), expression=expression, seed=seed * 1000 + index)


def make_affectnet(root, per_class=2, width=96, height=88, seed=0):
    """AffectNet layout: root/images/<sub>/<hash>.jpg, root/meshes, root/train.csv (train) + root/val.csv (test).

    Returns {"train": [(key, label)], "test": [...]} of the faces that should be written.
    """
    images = os.path.join(root, "images")
    expected = {"train": [], "test": []}
    header = ["subDirectory_filePath", "face_x", "face_y", "face_width", "face_height", "facial_landmarks",
              "expression", "valence", "arousal"]
    rows = {"train": [], "test": []}
    index = 0
    for split, count in (("train", per_class), ("test", 1)):
        for label in range(8):
            for _ in range(count):  # a few faces per class
                face = _face_for(index, label, width, height, seed)
                sub = str(100 + index % 3)
                stem = f"{index:04d}af{label}"
                write_face_files(face, stem + ".jpg", os.path.join(images, sub), mesh_dir=os.path.join(root, "meshes",
                                                                                                      sub))
                x, y, w, h = face["box"]
                rows[split].append([f"{sub}/{stem}.jpg", round(x), round(y), round(w), round(h), "", label,
                                    0.1, 0.2])
                expected[split].append((f"{sub}/{stem}", label))
                index += 1
    for split in rows:
        with open(os.path.join(root, {"train": "train.csv", "test": "val.csv"}[split]), "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(header)
            writer.writerows(rows[split])
    return expected


def make_rafd(root, subjects=4, angles=(90,), expressions=EXPRESSIONS, gazes=("frontal",), width=80, height=96,
              seed=0, mesh_format="ply"):
    """RaFD naming: root/images/Rafd090_01_Caucasian_female_angry_frontal.jpg ..., meshes in root/meshes."""
    rafd_names = {"neutral": "neutral", "happy": "happy", "sad": "sad", "surprise": "surprised",
                  "fear": "fearful", "disgust": "disgusted", "anger": "angry", "contempt": "contemptuous"}
    files = []
    index = 0
    for subject in range(1, subjects + 1):
        gender = "female" if subject % 2 else "male"
        for angle in angles:
            for expression in expressions:
                for gaze in gazes:  # the RaFD grid: subject x angle x expression x gaze
                    label = EXPRESSIONS.index(expression)
                    face = _face_for(index, label, width, height, seed)
                    stem = f"Rafd{angle:03d}_{subject:02d}_Caucasian_{gender}_{rafd_names[expression]}_{gaze}.jpg"
                    write_face_files(face, stem, os.path.join(root, "images"),
                                     mesh_dir=os.path.join(root, "meshes"), mesh_format=mesh_format)
                    files.append((os.path.splitext(stem)[0], label, f"{subject:02d}_Caucasian_{gender}"))
                    index += 1
    return files


def make_folder(root, per_class=2, classes=("happy", "sad", "anger"), width=72, height=72, seed=0):
    """Folder layout root/images/<expression>/*.png with depth maps in root/depth/<expression>/*.npy."""
    expected = []
    index = 0
    for name in classes:
        for k in range(per_class):  # a few faces per class
            label = EXPRESSIONS.index(name)
            face = _face_for(index, label, width, height, seed)
            write_face_files(face, f"face{k}", os.path.join(root, "images", name),
                             depth_dir=os.path.join(root, "depth", name))
            expected.append((f"{name}/face{k}", label))
            index += 1
    return expected


# OpenFace 2.0's AUs (FaceAnalyser's models): intensities (AUxx_r) and presences (AUxx_c, which add AU28).
OPENFACE_INTENSITY_AUS = (1, 2, 4, 5, 6, 7, 9, 10, 12, 14, 15, 17, 20, 23, 25, 26, 45)
OPENFACE_PRESENCE_AUS = (1, 2, 4, 5, 6, 7, 9, 10, 12, 14, 15, 17, 20, 23, 25, 26, 28, 45)


def openface_au_values(seed):
    """Intensities on OpenFace's 0-5 scale with two decimals (as FaceLandmarkImg prints them), per AU number."""
    rng = np.random.default_rng(seed)
    return {au: round(float(rng.uniform(0, 5)), 2) for au in OPENFACE_INTENSITY_AUS}


def write_openface_csv(path, faces, pose=True):
    """One image's CSV as OpenFace's FaceLandmarkImg writes it (RecorderCSV, image mode): the header
    `face, confidence[, pose_Tx, ...], AU01_r, ..., AU45_r, AU01_c, ..., AU45_c` with ", " between names, then one
    row per detected face. `faces`: [(confidence, {AU number: intensity or a cell text})]."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    header = ["face", "confidence"] + (["pose_Tx", "pose_Ty", "pose_Tz", "pose_Rx", "pose_Ry", "pose_Rz"] if pose
                                       else [])
    header += [f"AU{au:02d}_r" for au in OPENFACE_INTENSITY_AUS] + [f"AU{au:02d}_c" for au in OPENFACE_PRESENCE_AUS]
    lines = [", ".join(header)]
    for index, (confidence, values) in enumerate(faces):
        cells = [str(index), f"{confidence:.3f}"] + (["12.5", "-3.1", "402.7", "0.105", "-0.020", "0.013"] if pose
                                                      else [])
        cells += [str(values.get(au, 0)) for au in OPENFACE_INTENSITY_AUS]
        cells += ["1.0" if isinstance(values.get(au), float) and values[au] >= 1 else "0.0"
                  for au in OPENFACE_PRESENCE_AUS]
        lines.append(", ".join(cells))
    with open(path, "w", newline="") as handle:
        handle.write("\n".join(lines) + "\n")
