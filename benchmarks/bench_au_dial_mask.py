r"""Does an AU run's generator draw a single dialled AU? Its edit mask and its change to the face, per dialled AU.

    python benchmarks/bench_au_dial_mask.py --model_dir=RUN --data_dir=data/synthetic64tpd [--faces=96]

For an AU-conditioned run (`--condition=action_units`) with the attention generator: each of the `au_dial` metric's
seven AUs is set, in each test face's own AU vector, to 0 and to 1 (`expr3d.metrics.action_unit_control`'s dial);
printed per AU are the mean of G_rgb's edit mask and the mean |output - source| at both levels. A generator that
follows the dial opens its mask and moves the face more at the level that differs from the face's own.

Session 29, the plain AU run's command with `--lambda_mask_tv=0.41` (docs/transfer_history.md): the mask covers about 16 % of the
image at level 0 for every AU and opens between -0.4 and +1.8 points more at level 1 (AU26: 7.2); the face moves by
0.018-0.021 at both levels (AU26: 0.020 -> 0.032). Accuracy figures, not timings: nothing here depends on machine
load.
"""
import argparse
import os
import sys

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model_dir", required=True)
    parser.add_argument("--data_dir", required=True)
    parser.add_argument("--faces", type=int, default=96, help="test faces (the first of the split)")
    args = parser.parse_args()
    from expr3d.metrics.action_unit_control import DIAL_UNITS, _load_test_faces, dialled_conditions
    from expr3d.run_dir import RunDir

    run = RunDir(args.model_dir).load_generators()
    generator = run.g_rgb
    if not hasattr(generator, "with_attention"):
        sys.exit(f"bench_au_dial_mask: {args.model_dir}'s G_rgb has no edit mask (--generator=attention runs only)")
    faces = _load_test_faces(args.data_dir, run.image_size, args.faces, 32)
    images = faces["image"]
    print("| AU | mask mean, level 0 | level 1 | opened | mean abs(output - source), level 0 | level 1 |")
    print("|---|---|---|---|---|---|")
    for unit in DIAL_UNITS:
        conditions = dialled_conditions(faces["action_units"], unit, levels=(0.0, 1.0))
        output, mask, _ = generator.with_attention([np.concatenate([images, images]), conditions], training=False)
        output, mask, n = np.asarray(output), np.asarray(mask), len(images)
        print(f"| AU{unit} | {mask[:n].mean():.4f} | {mask[n:].mean():.4f} | {mask[n:].mean() - mask[:n].mean():+.4f} "
              f"| {np.abs(output[:n] - images).mean():.4f} | {np.abs(output[n:] - images).mean():.4f} |")


if __name__ == "__main__":
    main()
