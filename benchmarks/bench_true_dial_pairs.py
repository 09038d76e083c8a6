r"""Does an AU run draw the dials it was trained on? The generator on the data's TRUE dial pairs, in pixels and AUs.

    python benchmarks/bench_true_dial_pairs.py --model_dir=RUN --data_dir=data/synthetic64tpd [--min_change=0.2] \
        [--max_dials=400]

For the train split's dial renders (data/README.md: a paired group's render with ONE AU set to a random level) of the
seven AUs `au_dial` dials, whose level differs from the base render's by at least `--min_change`: the generator is
given the base render and the dial render's AU vector. Printed: the mean L1 to the true dial render of the output
and of the base render left unchanged (a generator that draws just the dial is nearer the truth than the base is),
and the AU judge's read-back error of the dialled AU on the output, the truth and the base (`expr3d.evaluate`'s
`au_dial` reports the same read-back over all dials as `true_dials_generator_mae`).

Session 30, session 29's dial run (`--lambda_mask_tv=0.41`; AU judge 4; 400 dials): L1 to the truth 0.0228 for the
output against 0.0086 for the unchanged base - on its own training pairs the generator draws an expression-sized
change, not the one AU; read-back 0.463 (truth 0.151, base 0.572). Also printed: the output's change from the base
regressed on the true dial's change (slope 1 = the whole edit), and the change inside and outside the dial's region.
Session 31 (`--min_change=0.3 --max_dials=300`): the `--condition_norms` AU run draws slope 0.38 (0.140 inside the
region against 0.225 for the truth) and changes the rest of the face 12 times as much as the dial does (0.0175 /
0.0014); the `--generator=action_unit_edit` run draws slope 0.02 (0.028 inside; 0.0020 outside). Accuracy figures,
not timings: nothing here depends on machine load.
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
    parser.add_argument("--min_change", type=float, default=0.2, help="smallest |dial level - base level| kept")
    parser.add_argument("--max_dials", type=int, default=400)
    parser.add_argument("--au_judge", default="auto", help="an AU judge folder, or auto (the cached one)")
    args = parser.parse_args()
    from expr3d.data import dataset_card
    from expr3d.metrics import au_judge
    from expr3d.metrics.action_unit_control import DIAL_UNITS
    from expr3d.run_dir import RunDir

    run = RunDir(args.model_dir).load_generators()
    if RunDir.condition(run.config) != "action_units":
        sys.exit(f"bench_true_dial_pairs: {args.model_dir} is not an AU run (--condition=action_units)")
    pairs = au_judge.true_dial_pairs(args.data_dir, max_dials=100000, units=DIAL_UNITS)
    keep = np.flatnonzero(np.abs(pairs["level"] - pairs["base_level"]) >= args.min_change)[:args.max_dials]
    pairs = {key: value[keep] for key, value in pairs.items()}
    if pairs["base_image"].shape[1] != run.image_size:
        sys.exit(f"bench_true_dial_pairs: {args.data_dir} is {pairs['base_image'].shape[1]} px, the run "
                 f"{run.image_size} px")
    choice = args.au_judge
    if choice == "auto":
        choice = au_judge.auto_au_judge(run.image_size, card=dataset_card.load_card(args.data_dir))
    judge = au_judge.load_au_regressor(choice, image_size=run.image_size)
    output = np.concatenate([np.asarray(run.g_rgb([pairs["base_image"][i:i + 64], pairs["dial_units"][i:i + 64]],
                                                  training=False), np.float32)
                             for i in range(0, len(keep), 64)])
    truth, base, columns, levels = pairs["dial_image"], pairs["base_image"], pairs["column"], pairs["level"]
    print(f"{args.model_dir}: {len(keep)} true dials of AUs {list(DIAL_UNITS)} changed by >= {args.min_change}")
    print("| what | mean L1 to the true dial render | read-back error of the dialled AU |")
    print("|---|---|---|")
    for name, images in (("the generator's output", output), ("the base render unchanged", base),
                         ("the true dial render", truth)):
        read = au_judge.read_column(judge, images, columns)
        print(f"| {name} | {np.abs(images - truth).mean():.4f} | {np.abs(read - levels).mean():.3f} |")
    # Where and how much it draws: the output's change from the base regressed on the true dial's change, per dial
    # (slope 1 = the whole edit, 0 = none), and the mean change inside the dial's region (|true change| > 0.05) and
    # outside it (what a generator redraws that the dial does not ask for).
    true_change, drawn = (truth - base).reshape(len(keep), -1), (output - base).reshape(len(keep), -1)
    slope = (true_change * drawn).sum(1) / np.maximum((true_change ** 2).sum(1), 1e-12)
    correlation = [np.corrcoef(t, d)[0, 1] for t, d in zip(true_change, drawn)]
    region = np.abs(true_change) > 0.05
    print(f"\nthe output's change on the true change, per dial: slope (median) {np.median(slope):.3f}, correlation "
          f"(median) {np.median(correlation):.3f}; mean |change| inside the dial's region: output "
          f"{np.abs(drawn[region]).mean():.4f}, truth {np.abs(true_change[region]).mean():.4f}; outside: output "
          f"{np.abs(drawn[~region]).mean():.4f}, truth {np.abs(true_change[~region]).mean():.4f}")


if __name__ == "__main__":
    main()
