"""Faces per second per core of `python -m expr3d.data.prepare`, from meshes, from depth maps and with the built-in
reconstruction (`--depth_source=facemesh`: BlazeFace + Face Mesh on the shipped real photos, tests/data/photos).

One process (= one core) prepares the same faces the CLI would: read the image, read the mesh file (a ~50k-vertex
OBJ) or depth map (.npy), crop and align, rasterise / warp to 256x256, fill holes, normals, quality scores, review
tile and TFRecord serialisation. The rate is faces per CPU-second of the process (OpenCV limited to one thread, as
in the CLI's workers), so it is a per-core figure even when other jobs share the machine. The AffectNet-D arithmetic uses the measured rate:
time = 87,106 faces / (16 cores x rate).

    python benchmarks/bench_prepare.py [--faces=6] [--image_size=256]
"""
import argparse
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repository: tests' fixtures

from expr3d.data import schema  # noqa: E402
from expr3d.data.prepare import build, readers  # noqa: E402
from expr3d.data.prepare import review as review_lib  # noqa: E402
from tests.data.prepare import fixtures  # noqa: E402

AFFECTNET_D = 87106
CORES = 16


def make_inputs(root, faces, width=480, height=520):
    """`faces` ellipsoid faces with ~50k-vertex meshes (OBJ) and float32 depth maps (.npy)."""
    items = []
    for index in range(faces):  # a handful of distinct fixture faces
        face = fixtures.ellipsoid_face(width, height, (width / 2 + index, height / 2), (150, 185, 120),
                                       expression=index % 8, seed=index, num_lat=158, num_lon=316)
        stem = f"face{index:03d}.jpg"
        fixtures.write_face_files(face, stem, os.path.join(root, "images"), mesh_dir=os.path.join(root, "meshes"),
                                  depth_dir=os.path.join(root, "depth"))
        x, y, w, h = face["box"]
        items.append(readers.Item(key=f"face{index:03d}", rel_path=stem, expression=index % 8,
                                  box=(x, y, w, h), split="train"))
    return items, len(face["vertices"])


def rate(config, items, repeats):
    build._init_worker(config.as_dict(), "")  # also limits OpenCV to one thread
    source, thresholds = build._WORKER["source"], build._WORKER["thresholds"]
    # Warm-up (imports, cascade and TF protobuf initialisation) outside the timing.
    example, record, images = build.prepare_item(items[0], config, source, thresholds)
    schema.encode_example(example)
    start, start_cpu = time.perf_counter(), time.process_time()
    count = 0
    for _ in range(repeats):  # repeat the set of faces for a stable timing
        for item in items:
            example, record, images = build.prepare_item(item, config, source, thresholds)
            assert example is not None, record
            schema.encode_example(example)
            crop, depth, mask, normals = images
            review_lib.tile(crop, depth, mask, normals, record["key"])
            count += 1
    # CPU seconds of this process (all its threads) measure one core even on a shared machine; wall time is shown too.
    return count / (time.process_time() - start_cpu), count / (time.perf_counter() - start)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--faces", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--image_size", type=int, default=256)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as root:
        items, vertices = make_inputs(root, args.faces)
        common = dict(dataset="affectnet", images=os.path.join(root, "images"), image_size=args.image_size,
                      crop="auto", review="all")
        mesh_config = build.Config(depth_source="mesh_dir", source=dict(mesh_dir=os.path.join(root, "meshes")),
                                   **common)
        depth_config = build.Config(depth_source="depth_dir", source=dict(depth_dir=os.path.join(root, "depth")),
                                    **common)
        mesh_size = os.path.getsize(os.path.join(root, "meshes", "face000.obj")) / 1e6
        mesh_rate, mesh_wall = rate(mesh_config, items, args.repeats)
        depth_rate, depth_wall = rate(depth_config, items, args.repeats)
        photos = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests", "data", "photos")
        photo_items = [readers.Item(key=name, rel_path=name, expression=1, split="train")
                       for name in sorted(os.listdir(photos)) if name.endswith(".jpg")]
        facemesh_config = build.Config(dataset="folder", images=photos, image_size=args.image_size, crop="detect",
                                       review="all", depth_source="facemesh", detector="blazeface",
                                       source=dict(face_mesh_model=""))
        facemesh_rate, facemesh_wall = rate(facemesh_config, photo_items, args.repeats)
    print(f"input: 480x520 images, {vertices}-vertex OBJ meshes ({mesh_size:.1f} MB each), float32 .npy depth maps; "
          f"output {args.image_size}x{args.image_size} RGB + depth + normals + mask, review tile, serialised")
    print(f"facemesh: the {len(photo_items)} shipped real photos (448x560 and smaller), detection and landmarks "
          f"included")
    for name, value, wall in (("mesh_dir", mesh_rate, mesh_wall), ("depth_dir", depth_rate, depth_wall),
                              ("facemesh", facemesh_rate, facemesh_wall)):
        hours = AFFECTNET_D / (CORES * value) / 3600
        print(f"{name:9s}: {value:6.2f} faces/s per core ({1000 / value:6.1f} CPU ms/face; wall {wall:.2f} faces/s "
              f"on this shared machine); AffectNet-D: "
              f"{AFFECTNET_D} / ({CORES} x {value:.2f}) = {AFFECTNET_D / (CORES * value):7.0f} s = {hours:.2f} h "
              f"on {CORES} cores ({'under' if hours < 1 else 'OVER'} the 1 h target)")
    print(f"mesh_dir / depth_dir time per face: {depth_rate / mesh_rate:.2f}x")


if __name__ == "__main__":
    main()
