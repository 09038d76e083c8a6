"""A transfer run (`expr3d.train --model=transfer`) against the procedural transfer ground truth (#13).

For every record of the dataset's transfer split (`python -m expr3d.data.synthetic --transfer_pairs=N`): the source A,
the exemplar B and the true render of A with B's exact AUs (A's pose, light, background). The run's encoder and
decoder make A with B's expression, `Dec(free(A), code(B), A)`, and this prints, over every triple:

- paired L1 (on [-1, 1]) and SSIM of the transfer against the truth (the issue's targets: SSIM >= 0.85, L1 <= 0.06);
- the same for the untouched source A (the "do nothing" baseline a transfer must beat: it has A's expression);
- the AU mean absolute error of the transfer as read by the run's OWN encoder against B's true AUs. Not the
  independent AU judge the issue asks for (not built yet): an encoder can read its own outputs generously.

    python benchmarks/bench_transfer_truth.py --model_dir=runs/transfer --data_dir=data/synthetic64t [--max_examples=N]
"""
import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model_dir", required=True)
    parser.add_argument("--data_dir", required=True, help="a procedural dataset with a transfer split")
    parser.add_argument("--max_examples", type=int, default=0, help="0 = every transfer record")
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--output", help="write the figures as JSON here too")
    args = parser.parse_args()

    from expr3d.data.transfer import make_transfer_dataset
    from expr3d.metrics import image_quality
    from expr3d.run_dir import RunDir

    run = RunDir(args.model_dir)
    config = run.config()
    run.require_family("transfer", "measured against the transfer ground truth", config)
    encoder, decoder = run.load_network("encoder"), run.load_network("decoder")
    image_size = int(run.model_config(config)["image_size"])
    scores = {"l1": [], "ssim": [], "l1_source": [], "ssim_source": [], "au_mae": [], "au_mae_source": []}
    count = 0
    for batch in make_transfer_dataset(args.data_dir, args.batch_size, image_size=image_size):
        source, exemplar, truth = (batch[role]["image"] for role in ("source", "exemplar", "truth"))
        _, free, _ = encoder(source, training=False)
        code, _, _ = encoder(exemplar, training=False)
        transfer = decoder([free, code, source], training=False).numpy()
        truth = truth.numpy()
        scores["l1"] += list(image_quality.l1(transfer, truth))
        scores["ssim"] += list(image_quality.ssim(transfer, truth))
        scores["l1_source"] += list(image_quality.l1(source.numpy(), truth))
        scores["ssim_source"] += list(image_quality.ssim(source.numpy(), truth))
        true_aus = batch["truth"]["action_units"].numpy()
        read = encoder(transfer, training=False)[2].numpy()
        read_source = encoder(source, training=False)[2].numpy()
        scores["au_mae"] += list(np.abs(read - true_aus).mean(axis=1))
        scores["au_mae_source"] += list(np.abs(read_source - true_aus).mean(axis=1))
        count += len(transfer)
        if args.max_examples and count >= args.max_examples:
            break
    figures = {name: float(np.mean(values[:args.max_examples or None])) for name, values in scores.items()}
    figures["examples"] = min(count, args.max_examples or count)
    figures["model_dir"], figures["step"] = os.path.abspath(args.model_dir), RunDir.step(config)
    print(f"transfer vs truth over {figures['examples']} triples (step {figures['step']}): "
          f"L1 {figures['l1']:.4f} (source {figures['l1_source']:.4f}), SSIM {figures['ssim']:.3f} "
          f"(source {figures['ssim_source']:.3f}), AU MAE by the run's own encoder {figures['au_mae']:.3f} "
          f"(source {figures['au_mae_source']:.3f})")
    if args.output:
        with open(args.output, "w") as handle:
            json.dump(figures, handle, indent=1)


if __name__ == "__main__":
    main()
