r"""Why the paired term supervises an attention G_rgb's mask with a cross-entropy (docs/training.md, issue #12).

    python benchmarks/bench_paired_mask.py --data_dir=DATA [--steps=400] [--variants=output,l1_mask,cross_entropy]

DATA: a dataset with a paired train split (`python -m expr3d.data.synthetic --train_pairs --image_size=64 ...`).
Trains G_rgb (`--generator=attention`, 32 channels, 3 residual blocks) ALONE on paired batches (no critics, no
cycle: only what the variant adds, plus the mask regularisers of stage 2), from the same initial weights and the same
batches, and prints every 50 steps the edit mask's mean inside and outside R (the region where the pair differs,
`losses.paired_edit_region`) and the output's L1 to the true target against copying the source:

    output         lambda_pair |y - out|_1                                   (the paired term of a StarGAN G_rgb)
    l1_mask        + |R - M|_1 + |y - C|_1 inside R
    cross_entropy  + BCE(M, R) + |y - C|_1 inside R                          (what the trainer does)

A mask that is ~0 inside R copies the source where the expression should change.
"""
import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

VARIANTS = ("output", "l1_mask", "cross_entropy")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data_dir", required=True)
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    args = parser.parse_args()
    variants = args.variants.split(",")
    unknown = sorted(set(variants) - set(VARIANTS))
    if unknown:
        sys.exit(f"--variants: unknown {unknown}; choose from {VARIANTS}")

    import keras
    import tensorflow as tf

    from expr3d import losses
    from expr3d.data import dataset_card, pairs
    from expr3d.models import ModelConfig, build_models

    size = int(dataset_card.load_card(args.data_dir)["image_size"])
    config = ModelConfig(image_size=size, g_conv_dim=32, g_num_res_blocks=3, generator="attention")
    for variant in variants:
        keras.utils.set_random_seed(0)
        generator = build_models(config)["g_rgb"]
        optimizer = keras.optimizers.Adam(5e-4, 0.5, 0.999)
        batches = iter(pairs.make_paired_dataset(args.data_dir, "train", args.batch_size, seed=0))

        @tf.function(jit_compile=True)
        def step(source, target, condition, variant=variant, generator=generator, optimizer=optimizer):
            with tf.GradientTape() as tape:
                output, mask, colour = generator.with_attention([source, condition], training=True)
                region = losses.paired_edit_region(source, target)
                paired = losses.l1_loss(target, output)
                if variant != "output":
                    mask_term = (losses.l1_loss(region, mask) if variant == "l1_mask"
                                 else losses.mask_cross_entropy(region, mask))
                    paired += mask_term + losses.l1_loss(target, colour, mask=region)
                loss = (10.0 * paired + 0.1 * losses.attention_sparsity_loss(mask, "edits")
                        + 4.1 * losses.total_variation_loss(mask))
            optimizer.apply(tape.gradient(loss, generator.trainable_variables), generator.trainable_variables)
            inside = tf.reduce_sum(mask * region) / tf.maximum(tf.reduce_sum(region), 1.0)
            outside = tf.reduce_sum(mask * (1 - region)) / tf.maximum(tf.reduce_sum(1 - region), 1.0)
            return inside, outside, losses.l1_loss(target, output), losses.l1_loss(target, source)

        started = time.time()
        print(f"{variant}: step  mask in R  mask outside R  L1(out, y)  L1(source, y)", flush=True)
        for index in range(args.steps):
            batch = next(batches)
            figures = step(batch["image"], batch["target_image"], tf.one_hot(batch["target_expression"], 8))
            if index % 50 == 0 or index == args.steps - 1:
                print(f"{variant}: {index:4d}  " + "  ".join(f"{float(v):.3f}" for v in figures)
                      + f"  ({time.time() - started:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
