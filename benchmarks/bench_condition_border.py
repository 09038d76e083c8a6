r"""Where does G_rgb's condition reach its features? The stem's normalised features' change, border ring vs inside.

    python benchmarks/bench_condition_border.py --model_dir=RUN --data_dir=data/synthetic64tpd [--faces=32] \
        [--ring=3]

StarGAN tiles its condition over the image, then convolves (7x7, zero padding) and instance-normalises: a condition
that is the same at every pixel gives a convolution output that is the same at every pixel except within the
padding's reach of the border, and the norm subtracts each channel's spatial mean, so inside the image the condition
survives only through the norm's statistics. For each test face, its own condition (one-hot class, or its true AUs
for an AU run) and the same with one entry changed (an AU dialled from 0 to 1, or another class) go through G_rgb;
printed: the mean |change| of the stem norm's output (`stem_norm`, and `stem_norm_condition` when the run has
`--condition_norms`) on the `--ring` pixels nearest the border and inside, and of the generator's output.

With `--condition_norms`, also what the same change does to each conditional affine's scale and offset (the same at
every pixel).

Session 30, the AU dial run of session 29 (`--lambda_mask_tv=0.41`; 32 test faces of data/synthetic64tpd, AU12
0 -> 1): the stem norm's output moves 0.60 on the 3-pixel ring and 0.12 inside, so the condition's way in is the
border. The same command with `--condition_norms` (docs/transfer_history.md) learnt scale and offset changes of 0.02-0.05 per
affine (the largest in the residual blocks): small beside the norm's own unit scale, after 3,350 iterations from
zero. Accuracy figures, not timings: nothing here depends on machine load.
"""
import argparse
import os
import sys

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)


def ring_and_inside(change, ring):
    """Mean of `[H, W]` over the `ring` pixels nearest each border, and over the rest."""
    inside = np.zeros(change.shape, bool)
    inside[ring:-ring, ring:-ring] = True
    return float(change[~inside].mean()), float(change[inside].mean())


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model_dir", required=True)
    parser.add_argument("--data_dir", required=True)
    parser.add_argument("--faces", type=int, default=32, help="test faces (the first of the split)")
    parser.add_argument("--ring", type=int, default=3, help="border width in pixels (the 7x7 stem's padding: 3)")
    parser.add_argument("--unit", type=int, default=12, help="AU runs: the AU dialled from 0 to 1 (a FACS number)")
    args = parser.parse_args()
    import keras

    from expr3d.labels import ACTION_UNITS, NUM_EXPRESSIONS
    from expr3d.metrics.action_unit_control import _load_test_faces
    from expr3d.run_dir import RunDir

    run_dir = RunDir(args.model_dir)
    run = run_dir.load_generators()
    generator = run.g_rgb
    faces = _load_test_faces(args.data_dir, run.image_size, args.faces, 32)
    images = faces["image"]
    if run_dir.condition(run.config) == "action_units":
        before = np.nan_to_num(np.clip(faces["action_units"], 0.0, 1.0)).astype(np.float32)
        column = ACTION_UNITS.index(args.unit)
        before[:, column], after = 0.0, before.copy()
        after[:, column] = 1.0
        what = f"AU{args.unit} 0 -> 1"
    else:
        classes = faces["expression"].astype(int)
        before = np.eye(NUM_EXPRESSIONS, dtype=np.float32)[classes]
        after = np.eye(NUM_EXPRESSIONS, dtype=np.float32)[(classes + 1) % NUM_EXPRESSIONS]
        what = "each face's class -> the next class"
    names = [name for name in ("stem_norm", "stem_norm_condition") if name in {layer.name for layer in
                                                                                generator.layers}]
    probe = keras.Model(generator.inputs, [generator.get_layer(name).output for name in names] + [generator.output])
    outputs_before = probe([images, before], training=False)
    outputs_after = probe([images, after], training=False)
    print(f"{args.model_dir}: {what}, {len(images)} test faces, ring {args.ring} px")
    print("| tensor | mean abs change on the ring | inside |")
    print("|---|---|---|")
    for name, a, b in zip(names + ["output"], outputs_before, outputs_after):
        change = np.abs(np.asarray(b, np.float32) - np.asarray(a, np.float32)).mean(axis=(0, 3))
        ring, inside = ring_and_inside(change, args.ring)
        print(f"| {name} | {ring:.4f} | {inside:.4f} |")
    affines = [layer for layer in generator.layers if layer.name.endswith("_condition")]
    if affines:
        # What the same change of condition does to each conditional affine's scale and offset (the same at every
        # pixel): (after - before) @ kernel, mean over faces and channels.
        print("\n| conditional affine (--condition_norms) | mean abs change of its scale | of its offset |")
        print("|---|---|---|")
        for layer in affines:
            kernel = np.asarray(layer.kernel, np.float32)
            delta = (after - before) @ kernel
            channels = kernel.shape[1] // 2
            print(f"| {layer.name} | {np.abs(delta[:, :channels]).mean():.4f} | "
                  f"{np.abs(delta[:, channels:]).mean():.4f} |")


if __name__ == "__main__":
    main()
