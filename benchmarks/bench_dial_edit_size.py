r"""How large is a single dialled AU's edit, and what does the paired term pay for drawing it? (issue #13, AU control)

    python -m expr3d.data.synthetic --output=data/synthetic64tpd --num_identities=500 --images_per_identity=8 \
        --train_pairs --train_dial_renders=8 --seed=0 --image_size=64
    python benchmarks/bench_dial_edit_size.py --data_dir=data/synthetic64tpd [--expressions] [--max_records=4000] \
        [--lambda_pair=10] [--lambda_mask_tv=4.1] [--output=benchmarks/out/dial_edit_size.json]

For each dial render of the train split and the group's render it was dialled from (the same AUs but one;
data/README.md), by dialled AU: the share of pixels that change (by more than 0.05 on [-1, 1]), the mean absolute
difference (what a perfect edit gains in the paired term `lambda_pair * E|G(x, c) - y|`), and what the attention
generator's mask smoothness term charges for opening a mask over those pixels (`lambda_mask_tv * TV(region)`,
`expr3d.losses.total_variation_loss`, the changed pixels filled by a 5x5 closing; a soft mask of height h pays h
times this and draws its edit h times as strongly). Every mask is one translation's: no edit finds its region open.
An edit charged more than the paired term pays for it is drawn only if the other terms (the guide, the critic's
AU or class head) pay the difference.

Session 29, data/synthetic64tpd (4,000 records, about 1,550 dials), lambda_pair 10 and lambda_mask_tv 4.1 (the
recipe's): only the jaw drop AU26 (5.3 % of the pixels) gains clearly more than the mask's charge (0.183 vs 0.092) -
and AU26 is the one AU the AU-conditioned generator follows; brows AU1 / AU2 / AU4 (3.4 / 4.2 / 5.8 %) gain 0.096 /
0.109 / 0.147 against charges of 0.095 / 0.151 / 0.171, and 12 of the other 13 AUs are charged more than they gain.
`--expressions` (each expression render against its group's neutral render): surprise and fear (16 % of the pixels)
gain about twice their charge; happy, sad and contempt are charged more than they gain, contempt the most (1.9 % of
the pixels, 0.039 vs 0.061) - the main command's weakest class (72 %), where the expression guide, which pays for
happy and sad (100 %), pays least. 4.1 is GANimation's 1e-5 sum-TV converted at ITS 128 px
(`expr3d.losses.total_variation_loss`); the mean TV of a mask of one shape doubles when the image halves, so
GANimation's trade-off between an edit and its mask is 2.05 at 64 px: the recipe charges twice GANimation's price.
Accuracy figures, not timings: nothing here depends on machine load.
"""
import argparse
import collections
import json
import os
import sys

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)


def total_variation(binary_map):
    """Mean anisotropic TV of one [H, W] map, as `expr3d.losses.total_variation_loss` computes it."""
    return float(np.abs(np.diff(binary_map, axis=0)).mean() + np.abs(np.diff(binary_map, axis=1)).mean())


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data_dir", required=True)
    parser.add_argument("--max_records", type=int, default=4000, help="train records read (in shard order)")
    parser.add_argument("--threshold", type=float, default=0.05, help="a pixel 'changes' above this (on [-1, 1])")
    parser.add_argument("--lambda_pair", type=float, default=10.0)
    parser.add_argument("--lambda_mask_tv", type=float, default=4.1)
    parser.add_argument("--expressions", action="store_true",
                        help="measure each expression render against its group's neutral render instead of the dials "
                             "(any paired data: --train_pairs)")
    parser.add_argument("--output", default=None)
    args = parser.parse_args()
    import cv2

    from expr3d.data import dataset_card
    from expr3d.data.records import iterate_examples
    from expr3d.labels import ACTION_UNITS, EXPRESSIONS

    card = dataset_card.read_dataset_card(args.data_dir)
    if not args.expressions and not card.get("dial_renders"):
        sys.exit(f"bench_dial_edit_size: {args.data_dir} has no dial renders (render it with --train_pairs "
                 "--train_dial_renders=K, or pass --expressions)")
    groups = collections.defaultdict(list)
    for index, example in enumerate(iterate_examples(args.data_dir, "train")):
        if index >= args.max_records:
            break
        if example.pair_id >= 0:
            groups[example.pair_id].append(example)

    def edit(source, target):
        """(changed share, mean |difference|, TV of the filled changed region) of source -> target."""
        difference = np.abs(target.image.astype(np.float32) - source.image.astype(np.float32)).max(-1) / 127.5
        changed = (difference > args.threshold).astype(np.float32)
        # The cheapest mask that covers the edit is a filled region, not the speckled changed-pixel map.
        region = cv2.morphologyEx(changed, cv2.MORPH_CLOSE, np.ones((5, 5), np.uint8))
        return changed.mean(), difference.mean(), total_variation(region)

    rows = collections.defaultdict(list)
    for examples in groups.values():
        plain = {e.expression: e for e in examples if not e.key.endswith("_dial")}
        if args.expressions:  # every expression render against the group's neutral render
            for expression, target in plain.items():
                if expression != 0 and 0 in plain:
                    rows[EXPRESSIONS[expression]].append((1.0, *edit(plain[0], target)))
            continue
        for dial in (e for e in examples if e.key.endswith("_dial")):
            base = plain.get(dial.expression)
            if base is None:
                continue
            change = np.abs(np.asarray(dial.action_units) - np.asarray(base.action_units))
            unit = int(np.argmax(change))
            if change[unit] < 0.2:  # a dial to about the level the face already had: no edit to measure
                continue
            rows[ACTION_UNITS[unit]].append((change[unit], *edit(base, dial)))
    report = {}
    what = "expression (from neutral)" if args.expressions else "AU"
    print(f"| {what} | edits | mean AU change | changed pixels | gain of a perfect edit (x{args.lambda_pair:g}) | "
          f"mask TV charge (x{args.lambda_mask_tv:g}) |")
    print("|---|---|---|---|---|---|")
    for label in (EXPRESSIONS if args.expressions else ACTION_UNITS):
        if label not in rows:
            continue
        values = np.array(rows[label])
        entry = {"edits": len(values), "mean_change": float(values[:, 0].mean()),
                 "changed_share": float(values[:, 1].mean()),
                 "paired_gain": float(args.lambda_pair * values[:, 2].mean()),
                 "tv_charge": float(args.lambda_mask_tv * values[:, 3].mean())}
        report[label] = entry
        change = "–" if args.expressions else f"{entry['mean_change']:.2f}"
        print(f"| {label} | {entry['edits']} | {change} | {100 * entry['changed_share']:.1f} % | "
              f"{entry['paired_gain']:.3f} | {entry['tv_charge']:.3f} |")
    if args.output:
        os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
        with open(args.output, "w", encoding="utf-8") as handle:
            json.dump({"data_dir": os.path.abspath(args.data_dir), "flags": vars(args), "per_edit": report}, handle,
                      indent=1)


if __name__ == "__main__":
    main()
