"""The built-in reconstruction (`--depth_source=facemesh`) and the BlazeFace detector, measured.

Three parts, each printed with what it measured:

  speed      faces per second per core of the reconstruction alone (BlazeFace, two Face Mesh passes, rasterising at
             256 px, prepare's hole filling and normals: depth_sources.complete_geometry) on the shipped real photos; CPU time of this process, LiteRT and
             OpenCV on one thread. (`python benchmarks/bench_prepare.py` measures the whole prepare per face.)
  depth      facemesh depth against the exact rendered depth of procedural test faces (random pose, light and
             expression) where the landmark model finds the face: both depths relative to their median over the
             face, the render's metres turned into pixels by its camera (focal / distance); mean absolute error in
             mm and as a share of the face's relief (5th-95th percentile of the rendered depth), and after the best
             affine fit of the mesh depth (what is left once scale is allowed to differ). Writes a picture.
  detection  BlazeFace against the Haar cascades on the same photos (procedural faces of several sizes, tilted,
             two per photo, and the shipped real photos, upright and tilted): share of faces found (a detection
             whose centre lies inside the true face) and false boxes per photo; CPU ms per photo.

    python benchmarks/bench_facemesh.py [--part=all|speed|depth|detection] [--faces=40]
        [--figure=docs/facemesh_depth.png]
"""
import argparse
import glob
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from expr3d.imaging import blazeface, crops, facemesh, faces  # noqa: E402

PHOTOS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests", "data", "photos")


def real_photos():
    paths = sorted(glob.glob(os.path.join(PHOTOS, "*.jpg")))
    return [(os.path.basename(p), cv2.cvtColor(cv2.imread(p), cv2.COLOR_BGR2RGB)) for p in paths]


def cpu_ms(function, *args, repeats=1):
    start = time.process_time()
    for _ in range(repeats):
        out = function(*args)
    return out, 1000.0 * (time.process_time() - start) / repeats


def part_speed(args):
    from expr3d.data.prepare import depth_sources

    detector, mesh = blazeface.BlazeFace(num_threads=1), facemesh.FaceMesh(num_threads=1)
    photos = [p for p in real_photos() if detector(p[1])]
    times = {"detect": [], "mesh": [], "rasterise": [], "fill + normals": []}
    for _ in range(args.repeats):
        for _, rgb in photos:
            found, ms = cpu_ms(detector, rgb)
            times["detect"].append(ms)
            landmarks, ms = cpu_ms(mesh, rgb, found[0])
            times["mesh"].append(ms)
            crop = blazeface.face_crop(found[0], 256)
            (result, camera), ms = cpu_ms(facemesh.rasterize_points, landmarks.points, 256, crop.matrix)
            times["rasterise"].append(ms)

            geom = depth_sources.Geometry(depth=result.depth, mask=result.mask, normals=result.normals,
                                          camera=camera, notes=[])
            _, ms = cpu_ms(depth_sources.complete_geometry, geom)  # what prepare does next
            times["fill + normals"].append(ms)
    total = sum(statistics.median(v) for v in times.values())
    print(f"speed: {len(photos)} real photos x {args.repeats}, output 256 px, CPU ms per face (median): " +
          ", ".join(f"{k} {statistics.median(v):.1f}" for k, v in times.items()) +
          f"; total {total:.1f} ms = {1000.0 / total:.0f} faces/s per core (target >= 30)")


def _relative(depth, region):
    return depth - np.median(depth[region])


def part_depth(args):
    from expr3d.data.synthetic import dataset, render

    detector, mesh = blazeface.BlazeFace(), facemesh.FaceMesh()
    size = 256
    focal = render.camera_for(size).focal_px
    jobs = [dataset.paired_test_job(identity, expression) for identity in range(args.faces // 8 + 1)
            for expression in range(8)][:args.faces]
    rows, found_count = [], 0
    errors_mm, errors_share, fitted_share, correlations = [], [], [], []
    for job in jobs:
        face = dataset.render_job(0, job, size)
        photo = np.full((480, 640, 3), 110, np.uint8)
        photo[100:100 + size, 200:200 + size] = face.image
        found = detector(photo)
        landmarks = mesh(photo, found[0]) if found else None
        if landmarks is None:
            continue
        found_count += 1
        into_render = np.array([[1.0, 0.0, -200.0], [0.0, 1.0, -100.0]])
        result, _ = facemesh.rasterize_points(landmarks.points, size, into_render)
        region = result.mask & face.mask
        distance = float(np.median(face.depth[region]))
        truth_px = _relative(face.depth, region) * focal / distance  # metres -> pixels at the face's distance
        ours_px = _relative(result.depth, region)
        error = np.abs(ours_px - truth_px)[region]
        relief = float(np.percentile(truth_px[region], 95) - np.percentile(truth_px[region], 5))
        slope, offset = np.polyfit(ours_px[region], truth_px[region], 1)
        fitted = np.abs(slope * ours_px + offset - truth_px)[region]
        errors_mm.append(float(error.mean()) * distance / focal * 1000.0)
        errors_share.append(float(error.mean()) / relief)
        fitted_share.append(float(fitted.mean()) / relief)
        correlations.append(float(np.corrcoef(ours_px[region], truth_px[region])[0, 1]))
        if len(rows) < 4:
            rows.append((face.image, truth_px, ours_px, np.abs(ours_px - truth_px), region, relief))
    print(f"depth: {found_count}/{len(jobs)} procedural test faces meshed (256 px renders in a 640x480 photo); "
          f"mean |facemesh - rendered| depth inside the face: {statistics.median(errors_mm):.1f} mm median "
          f"(range {min(errors_mm):.1f}-{max(errors_mm):.1f}) = {100 * statistics.median(errors_share):.0f} % of the "
          f"face's relief; after the best affine fit {100 * statistics.median(fitted_share):.0f} %; correlation "
          f"{statistics.median(correlations):.2f} (range {min(correlations):.2f}-{max(correlations):.2f})")
    if args.figure and rows:
        write_figure(args.figure, rows)
        print(f"figure: {args.figure}")


def write_figure(path, rows):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(rows), 4, figsize=(10, 2.6 * len(rows)))
    axes = np.atleast_2d(axes)
    for r, (image, truth, ours, error, region, relief) in enumerate(rows):
        lo, hi = np.percentile(truth[region], [2, 98])
        for c, (title, shown) in enumerate((("render", image), ("rendered depth", truth), ("facemesh depth", ours),
                                           ("|difference|", error))):
            ax = axes[r, c]
            if c == 0:
                ax.imshow(image)
            else:
                masked = np.ma.masked_where(~region, shown)
                cmap, limits = ("magma", (0, relief / 2)) if c == 3 else ("viridis_r", (lo, hi))
                im = ax.imshow(masked, cmap=cmap, vmin=limits[0], vmax=limits[1])
                if c == 3:
                    fig.colorbar(im, ax=ax, fraction=0.046, label="pixels")
            ax.set_title(title if r == 0 else "", fontsize=9)
            ax.axis("off")
    fig.suptitle("expr3d --depth_source=facemesh against the exact depth of procedural test faces "
                 "(depths relative to their median; nearer = lighter)", fontsize=9)
    fig.tight_layout()
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    fig.savefig(path, dpi=80)


def detection_cases():
    """[(name, photo, [true face quads])]: procedural faces at several sizes, tilted, paired; the real photos."""
    from expr3d.data.synthetic import render_example

    cases = []

    def square(x, y, side):
        return np.array([[x, y], [x + side, y], [x + side, y + side], [x, y + side]], np.float64)

    for identity in range(6):
        for side in (64, 128, 256):
            photo = np.full((480, 640, 3), 100 + 20 * (identity % 3), np.uint8)
            x, y = 40 + 50 * identity, 60 + 10 * identity
            photo[y:y + side, x:x + side] = render_example(identity % 8, image_size=side, identity=identity).image
            cases.append((f"procedural {side}px", photo, [square(x, y, side)]))
        photo = np.full((480, 640, 3), 90, np.uint8)
        photo[100:340, 30:270] = render_example(1, image_size=240, identity=identity).image
        photo[120:360, 360:600] = render_example(4, image_size=240, identity=identity + 10).image
        cases.append(("procedural two faces", photo, [square(30, 100, 240), square(360, 120, 240)]))
    for name, rgb in real_photos():
        if "partial" in name:
            continue
        height, width = rgb.shape[:2]
        found = blazeface.BlazeFace()(rgb)
        if not found:
            continue
        x, y, w, h = found[0].box  # where the face is (checked by eye: docs/README of tests/data/photos)
        quad = square(x - 0.15 * w, y - 0.25 * h, 1.3 * max(w, h))
        cases.append((f"real {name}", rgb, [quad]))
    tilted = []
    for name, photo, quads in cases:
        if name.endswith("two faces") or "64px" in name:
            continue
        height, width = photo.shape[:2]
        for angle in (25, 45):
            matrix = cv2.getRotationMatrix2D((width / 2, height / 2), angle, 1.0)
            turned = cv2.warpAffine(photo, matrix, (width, height), borderMode=cv2.BORDER_REPLICATE)
            tilted.append((f"{name.split(' ')[0]} tilted {angle} deg", turned,
                           [crops.transform_points(matrix, q) for q in quads]))
    return cases + tilted


def _hits(boxes, quads):
    """(faces found, false boxes): a box counts for a face when its centre lies inside the face's quad."""
    found, used = 0, set()
    for quad in quads:
        polygon = quad.astype(np.float32)
        for index, (x, y, w, h) in enumerate(boxes):
            if index not in used and cv2.pointPolygonTest(polygon, (x + w / 2, y + h / 2), False) >= 0:
                found += 1
                used.add(index)
                break
    return found, len(boxes) - len(used)


def part_detection(args):
    cv2.setNumThreads(1)
    short = blazeface.BlazeFace(num_threads=1)
    full = blazeface.BlazeFace(num_threads=1, full_range=True)

    def tools(photo):  # what the tools run (blazeface.detect): short range, full range when that finds nothing
        found = short(photo)
        return found if found else full(photo)

    detectors = {"BlazeFace short": lambda p: [d.box for d in short(p)],
                 "BlazeFace (tools)": lambda p: [d.box for d in tools(p)],
                 "Haar cascades": lambda p: [tuple(b) for b in faces.detect_faces(p, min_face=24)]}
    groups = {}
    for name, photo, quads in detection_cases():
        group = name.split(" ")[0] + (" tilted" if "tilted" in name else "") + (" two" if "two" in name else "")
        if "px" in name:
            group += " " + name.split(" ")[1]
        entry = groups.setdefault(group, {"faces": 0, "photos": 0, **{k: [0, 0, []] for k in detectors}})
        entry["faces"] += len(quads)
        entry["photos"] += 1
        for key, detector in detectors.items():
            boxes, ms = cpu_ms(detector, photo)
            hit, false = _hits(boxes, quads)
            entry[key][0] += hit
            entry[key][1] += false
            entry[key][2].append(ms)
    print("detection: faces found (share) / false boxes per photo / CPU ms per photo (median), one thread")
    print(f"  {'photos':24s} {'n':>3s}" + "".join(f"  {k:>24s}" for k in detectors))
    totals = {k: [0, 0, []] for k in detectors}
    n_faces = n_photos = 0
    for group, entry in list(groups.items()) + [("all", None)]:
        if entry is None:
            entry = {"faces": n_faces, "photos": n_photos, **totals}
        else:
            n_faces += entry["faces"]
            n_photos += entry["photos"]
            for key in detectors:
                for i in range(3):
                    totals[key][i] += entry[key][i]
        cells = "".join(f"  {entry[k][0] / entry['faces']:5.0%} {entry[k][1] / entry['photos']:5.2f} "
                        f"{statistics.median(entry[k][2]):7.1f} ms" for k in detectors)
        print(f"  {group:24s} {entry['photos']:3d}{cells}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", default="all", choices=["all", "speed", "depth", "detection"])
    parser.add_argument("--faces", type=int, default=40, help="procedural test faces for the depth part")
    parser.add_argument("--repeats", type=int, default=5, help="passes over the photos for the speed part")
    parser.add_argument("--figure", default="", help="write the depth part's picture here (e.g. "
                                                     "docs/facemesh_depth.png)")
    args = parser.parse_args()
    cv2.setNumThreads(1)
    if args.part in ("all", "speed"):
        part_speed(args)
    if args.part in ("all", "depth"):
        part_depth(args)
    if args.part in ("all", "detection"):
        part_detection(args)


if __name__ == "__main__":
    main()
