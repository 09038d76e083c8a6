r"""Can an AU judge read a single dialled AU on its TRUE render? (the floor of `expr3d.evaluate`'s `au_dial`)

    python -m expr3d.data.synthetic --output=data/synthetic64tpd --num_identities=500 --images_per_identity=8 \
        --train_pairs --train_dial_renders=8 --seed=0 --image_size=64
    python benchmarks/bench_au_judge_dials.py --data_dir=data/synthetic64tpd [--judge=auto|DIR] [--max_dials=1600] \
        [--output=benchmarks/out/au_judge_dials.json]

For each dial render of the data's train split (data/README.md: a paired group's face with ONE AU at a random level)
and the group's render it was dialled from: the judge's reading of the dialled AU against the dialled level (mean
absolute error, overall and per AU), beside "ignoring the dial" (the base render's level). A generator asked for the
same dial cannot be scored better than the judge reads the truth. `--judge=auto` is the cached AU judge of the data's
image size (`python -m expr3d.metrics.au_judge`); its identities are of another seed than the data's.

Session 26, data/synthetic64tpd, 1,600 dials: AU judge recipe 2 (expressions only) 0.417 (ignoring the dial: 0.485;
AU26 0.18, AU4 0.26, every other AU 0.39-0.51): it read AUs through their co-occurrence in the eight expressions.
Recipe 3 (8 dial renders a group in its data) 0.385 (the seven AUs au_dial dials: 0.316), and 0.397 on its OWN
training identities' dials (`--data_dir` rendered as its data, seed 20210105, 16 dials): it underfitted them.
Session 27, recipe 4 (16 dials, width 32, 16 epochs): **0.229**, the seven AUs **0.133** (AU26 0.08, AU1 0.10, AU2
0.12, AU4 0.12, AU12 0.15, AU15 0.15, AU9 0.22); AU7, AU14, AU16, AU17 stay near unread (0.34-0.46).
Accuracy figures, not timings: nothing here depends on machine load.
"""
import argparse
import json
import os
import sys

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data_dir", required=True)
    parser.add_argument("--judge", default="auto")
    parser.add_argument("--max_dials", type=int, default=1600)
    parser.add_argument("--output", default=None)
    args = parser.parse_args()
    from expr3d.data import dataset_card
    from expr3d.labels import ACTION_UNITS
    from expr3d.metrics.au_judge import auto_au_judge, load_au_regressor, true_dial_readings

    from expr3d.metrics.action_unit_control import DIAL_UNITS

    card = dataset_card.load_card(args.data_dir)
    if not isinstance(card.get(dataset_card.DIAL_RENDERS), dict):  # before a judge may be built
        raise SystemExit(f"bench_au_judge_dials: {args.data_dir} holds no dial renders (render them with "
                         f"`python -m expr3d.data.synthetic --train_pairs --train_dial_renders=8`)")
    size = int(card["image_size"])
    judge_dir = auto_au_judge(size) if args.judge == "auto" else args.judge
    judge = load_au_regressor(judge_dir, image_size=size)
    try:
        units, levels, bases, read = true_dial_readings(args.data_dir, judge, args.max_dials)
    except ValueError as error:
        raise SystemExit(f"bench_au_judge_dials: {error}") from None
    result = {"judge": os.path.abspath(judge_dir), "data_dir": os.path.abspath(args.data_dir), "dials": len(units),
              "read_back_mae": float(np.abs(read - levels).mean()),
              "ignoring_the_dial_mae": float(np.abs(bases - levels).mean()),
              # the AUs `expr3d.evaluate`'s au_dial dials
              "dial_units_mae": float(np.abs(read - levels)[np.isin(units, [ACTION_UNITS.index(u)
                                                                            for u in DIAL_UNITS])].mean()),
              "per_au": {f"AU{ACTION_UNITS[u]}": float(np.abs(read[units == u] - levels[units == u]).mean())
                         for u in sorted(set(units.tolist()))}}
    print(json.dumps(result, indent=1))
    if args.output:
        from expr3d import storage

        os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
        storage.atomic_write_json(args.output, result)


if __name__ == "__main__":
    main()
