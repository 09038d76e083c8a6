"""CLI: render the procedural face dataset.

    python -m expr3d.data.synthetic --output=data/synthetic64 --num_identities=1000 --image_size=64

Writes DIR/train-*.tfrecord, DIR/test-*.tfrecord (paired: every test identity under all eight expressions with
identical pose and light), DIR/dataset_card.json and DIR/preview.png.
"""
import os
import sys

# Quiet TensorFlow start-up chatter here and in the worker processes (they inherit the environment).
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags

FLAGS = flags.FLAGS
flags.DEFINE_string("output", None, "Output dataset directory.")
flags.DEFINE_integer("num_identities", 1000, "Identities in total (train + test).")
flags.DEFINE_integer("image_size", 64, "Square image size: a multiple of 16 from 32 to 512.")
flags.DEFINE_integer("seed", 0, "Random seed; the dataset is a pure function of the seed and the flags.")
flags.DEFINE_float("test_fraction", 0.2, "Fraction of identities in the paired test split, in (0, 1).")
flags.DEFINE_integer("images_per_identity", 8, "Renders per train identity (random expressions, pose, light).")
flags.DEFINE_integer("workers", None, "Worker processes (default: all cores).")
flags.DEFINE_integer("examples_per_shard", 512, "Examples per TFRecord shard.")
flags.DEFINE_boolean("overwrite", False, "Replace the dataset an earlier run wrote in --output (only the files it "
                     "wrote; anything else there is left alone).")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    if not FLAGS.output:
        raise app.UsageError("--output is required (the dataset directory to write)")
    from expr3d.data.synthetic import dataset
    from expr3d.outputs import OutputError

    try:
        dataset.check_arguments(FLAGS.num_identities, FLAGS.image_size, FLAGS.test_fraction,
                                FLAGS.images_per_identity, FLAGS.workers, FLAGS.examples_per_shard, FLAGS.seed)
    except ValueError as error:
        raise app.UsageError(str(error))
    try:
        card = dataset.generate_dataset(
            FLAGS.output, FLAGS.num_identities, FLAGS.image_size, seed=FLAGS.seed,
            test_fraction=FLAGS.test_fraction, images_per_identity=FLAGS.images_per_identity,
            workers=FLAGS.workers, overwrite=FLAGS.overwrite, examples_per_shard=FLAGS.examples_per_shard,
            command=" ".join(["python -m expr3d.data.synthetic"] + sys.argv[1:]))
    except (FileExistsError, OutputError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    splits = card["splits"]
    print(f"wrote {FLAGS.output}: " + ", ".join(
        f"{split} {info['num_examples']} faces / {info['num_identities']} identities" for split, info in
        splits.items()) + f"; preview {FLAGS.output}/preview.png")
    return 0


if __name__ == "__main__":
    app.run(main)
