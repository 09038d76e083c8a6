"""CLI: render the procedural face dataset.

    python -m expr3d.data.synthetic --output=data/synthetic64 --num_identities=1000 --image_size=64

Writes DIR/train-*.tfrecord, DIR/test-*.tfrecord (paired: every test identity under all eight expressions with
identical pose and light), DIR/dataset_card.json and DIR/preview.png; with --transfer_pairs=N also
DIR/transfer-*.tfrecord, the ground truth of exemplar expression transfer (expr3d.data.transfer).
"""
import sys

from absl import flags

from expr3d import cli

PROGRAM = "expr3d.data.synthetic"
FLAGS = flags.FLAGS


def define_flags():
    """Define the CLI flags (here, not at import, so several CLIs can be imported in one process)."""
    from expr3d.data.synthetic.dataset import MAX_SIZE, MIN_SIZE, SIZE_STEP

    flags.DEFINE_string("output", None, "Output dataset directory.")
    flags.DEFINE_integer("num_identities", 1000, "Identities in total (train + test).")
    flags.DEFINE_integer("image_size", 64, "Square image size: a multiple of 16 from 32 to 512.")
    flags.DEFINE_integer("seed", 0, "Random seed; the dataset is a pure function of the seed and the flags.")
    flags.DEFINE_float("test_fraction", 0.2, "Fraction of identities in the paired test split, in (0, 1).")
    flags.DEFINE_integer("images_per_identity", 8, "Renders per train identity (random expressions, pose, light).")
    flags.DEFINE_boolean("train_pairs", False, "Render the train identities in groups of eight, one pose and light "
                         "under every expression (a paired train split, for --target_mode=paired; "
                         "--images_per_identity a multiple of 8).")
    flags.DEFINE_boolean("train_swap_pairs", False, "With --train_pairs: train identities 2k and 2k+1 are swap "
                         "partners whose paired groups share their exact action units class by class, so each "
                         "train render has another identity's render under the same AUs (a cross-identity swap with "
                         "a known answer, for --model=transfer --pair_exemplar=partner).")
    flags.DEFINE_integer("train_dial_renders", 0, "With --train_pairs: K dial renders per paired group, each one of "
                         "the group's renders with ONE action unit set to a random level (the face's own AUs with "
                         "one AU dialled, with its true render: for --condition=action_units). 0: none.")
    flags.DEFINE_integer("transfer_pairs", 0, "Also render the transfer ground truth of N pairs of test identities "
                         "(A, B): A under each of B's eight test expressions' exact action units in A's test pose, "
                         "light and background, and B under A's, in a 'transfer' split (16 renders a pair; at most "
                         "half the test identities; read with expr3d.data.transfer). 0: none.")
    flags.DEFINE_string("expression_strength", None, "LOW,HIGH: the range of each expression's overall strength, "
                        "0 < LOW <= HIGH <= 1 (default 0.7,1.0: strong, readable at 64 px); e.g. 0.1,1.0 renders "
                        "slight to full expressions, so a class says less of a face's exact action units.")
    flags.DEFINE_integer("workers", None, "Worker processes (default: all cores).")
    flags.DEFINE_integer("examples_per_shard", 512, "Examples per TFRecord shard.")
    flags.DEFINE_boolean("overwrite", False, "Replace the dataset an earlier run wrote in --output (only the files "
                         "it wrote; anything else there is left alone).")
    # Bounds, checked while the flags are parsed (one line and exit code 2 when broken; expr3d.cli).
    cli.required("output")
    cli.at_least("num_identities", 2, "identities are split between train and test")
    cli.check("image_size", lambda v: MIN_SIZE <= v <= MAX_SIZE and v % SIZE_STEP == 0,
              f"a multiple of {SIZE_STEP} from {MIN_SIZE} to {MAX_SIZE}")
    cli.seed("seed")
    cli.in_range("test_fraction", 0.0, 1.0, low_open=True, high_open=True)
    cli.at_least("images_per_identity", 1)
    cli.at_least("transfer_pairs", 0, "0: no transfer ground truth")
    cli.at_least("train_dial_renders", 0, "0: no dial renders")
    cli.at_least("workers", 1, "default: all cores")
    cli.at_least("examples_per_shard", 1)


def main(argv):
    cli.no_arguments(argv)
    from expr3d.data.synthetic import dataset

    strength = None if FLAGS.expression_strength is None else FLAGS.expression_strength.split(",")
    try:
        dataset.check_arguments(FLAGS.num_identities, FLAGS.image_size, FLAGS.test_fraction,
                                FLAGS.images_per_identity, FLAGS.workers, FLAGS.examples_per_shard, FLAGS.seed,
                                FLAGS.train_pairs, FLAGS.transfer_pairs, FLAGS.train_swap_pairs,
                                FLAGS.train_dial_renders, strength)
    except ValueError as error:
        raise cli.UsageError(str(error)) from None
    card = dataset.generate_dataset(
        FLAGS.output, FLAGS.num_identities, FLAGS.image_size, seed=FLAGS.seed,
        test_fraction=FLAGS.test_fraction, images_per_identity=FLAGS.images_per_identity,
        workers=FLAGS.workers, overwrite=FLAGS.overwrite, examples_per_shard=FLAGS.examples_per_shard,
        command=" ".join(["python -m expr3d.data.synthetic"] + sys.argv[1:]), train_pairs=FLAGS.train_pairs,
        transfer_pairs=FLAGS.transfer_pairs, train_swap_pairs=FLAGS.train_swap_pairs,
        train_dial_renders=FLAGS.train_dial_renders, expression_strength=strength)
    splits = card["splits"]
    print(f"wrote {FLAGS.output}: " + ", ".join(
        f"{split} {info['num_examples']} faces / {info['num_identities']} identities" for split, info in
        splits.items()) + f"; preview {FLAGS.output}/preview.png")
    return 0


def run_cli():
    """`python -m expr3d.data.synthetic` and the `expr3d-synthetic` console script."""
    define_flags()
    cli.run(main, PROGRAM)


if __name__ == "__main__":
    run_cli()
