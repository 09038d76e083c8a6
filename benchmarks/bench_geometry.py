"""Throughput of expr3d.data.geometry on one core.

Run: python benchmarks/bench_geometry.py [--repeats=N]

Cases:
* a ~50k-vertex closed head-like mesh (a bumpy ellipsoid) rasterized to 256x256
  depth + normals under a perspective camera, with and without back-face
  culling, then depth_to_normals and fill_holes on the result (the mesh_dir
  path of real-data preparation);
* a ~5k-triangle mesh at 64, 128 and 256 px (the synthetic renderer's case),
  with a colour attribute.

Prints milliseconds per call (best of N), triangles per second and calls per
second, plus ratios to the 64 px case, all from one run.
"""

import os
import sys

# One core: pin BLAS/OpenMP pools before numpy loads.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ[_var] = "1"
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # this checkout's expr3d first

import time  # noqa: E402

import cv2  # noqa: E402
import numpy as np  # noqa: E402
from absl import app, flags  # noqa: E402

from expr3d.data import geometry  # noqa: E402

cv2.setNumThreads(1)

FLAGS = flags.FLAGS
flags.DEFINE_integer("repeats", 7, "Timed repetitions per case (the best is reported).")


def _head_mesh(num_lat, num_lon, seed=0):
    """Bumpy ellipsoid (a crude head) 4 units in front of the camera."""
    vertices, faces = geometry.uv_sphere_mesh(1.0, num_lat=num_lat, num_lon=num_lon, axes_scale=(0.8, 1.0, 0.9))
    rng = np.random.default_rng(seed)
    direction = vertices / np.linalg.norm(vertices, axis=1, keepdims=True)
    bumps = sum(
        0.03 * np.sin(rng.uniform(2, 6) * direction @ rng.normal(size=3) + rng.uniform(0, 6.3)) for _ in range(6)
    )
    return vertices * (1.0 + bumps)[:, None] + [0.0, 0.0, -4.0], faces


def _best_ms(fn, repeats):
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1000.0 * min(times)


def main(argv):
    del argv
    repeats = FLAGS.repeats
    rows = []

    vertices, faces = _head_mesh(160, 320)
    size = 256
    cam = geometry.PerspectiveCamera(focal_px=2.2 * size, cx=size / 2, cy=size / 2)
    result = geometry.rasterize(vertices, faces, cam, size, size)
    coverage = result.mask.mean()
    holed = result.mask.copy()
    holed[100:120, 110:140] = False  # a 600 px hole, like a missing mouth interior
    big_hole = result.mask.copy()
    big_hole[70:190, 60:200] = False  # 16.8k px: half the face missing
    cases = [
        ("50k-vertex mesh, rasterize", len(faces), lambda: geometry.rasterize(vertices, faces, cam, size, size)),
        (
            "50k-vertex mesh, rasterize cull_backfaces",
            len(faces),
            lambda: geometry.rasterize(vertices, faces, cam, size, size, cull_backfaces=True),
        ),
        ("depth_to_normals 256", 0, lambda: geometry.depth_to_normals(result.depth, result.mask, cam)),
        ("fill_holes 256 (600 px hole)", 0, lambda: geometry.fill_holes(result.depth, holed, camera=cam)),
        ("fill_holes 256 (16.8k px hole)", 0, lambda: geometry.fill_holes(result.depth, big_hole, camera=cam)),
        (
            "mesh_dir path: rasterize+fill+d2n",
            len(faces),
            lambda: geometry.depth_to_normals(
                *geometry.fill_holes(geometry.rasterize(vertices, faces, cam, size, size).depth, holed, camera=cam),
                cam,
            ),
        ),
    ]
    print(f"50k mesh: {len(vertices)} vertices, {len(faces)} triangles, {100 * coverage:.0f}% of 256x256 covered")
    for name, num_faces, fn in cases:
        rows.append((name, num_faces, _best_ms(fn, repeats)))

    small_v, small_f = _head_mesh(40, 64, seed=1)
    colours = np.random.default_rng(2).uniform(0, 1, (len(small_v), 3))
    print(f"small mesh: {len(small_v)} vertices, {len(small_f)} triangles")
    small_ms = {}
    for s in (64, 128, 256):
        c = geometry.PerspectiveCamera(focal_px=2.2 * s, cx=s / 2, cy=s / 2)
        ms = _best_ms(lambda: geometry.rasterize(small_v, small_f, c, s, s, attributes=colours), repeats)
        small_ms[s] = ms
        rows.append((f"5k-tri mesh + colour, {s}px", len(small_f), ms))

    print()
    print(f"{'case':45s} {'ms/call':>9s} {'calls/s':>9s} {'Mtri/s':>8s}")
    for name, num_faces, ms in rows:
        tri = f"{num_faces / ms / 1000:8.2f}" if num_faces else f"{'-':>8s}"
        print(f"{name:45s} {ms:9.2f} {1000 / ms:9.1f} {tri}")
    print()
    print(
        "5k-tri cost relative to 64 px: "
        + ", ".join(f"{s}px x{small_ms[s] / small_ms[64]:.1f}" for s in (64, 128, 256))
    )
    full = rows[5][2]
    print(
        f"mesh_dir per core: {1000 / full:.1f} faces/s; 87k faces on 16 cores: "
        f"{87000 / (16 * 1000 / full) / 60:.1f} min (geometry only)"
    )


if __name__ == "__main__":
    app.run(main)
