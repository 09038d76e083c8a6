"""Training of the independent expression classifier behind the expression generation rate, and its CLI.

    python -m expr3d.metrics.classifier --data_dir=data/synthetic64 --output=runs/classifier64 --epochs=10

trains on the REAL training split only (never on generated faces), reports its own accuracy on the real test split
and saves `OUTPUT/classifier.keras` + `OUTPUT/classifier.json` (classes, image size, input range, accuracies, data,
flags, versions). The evaluator refuses a classifier whose saved class list or image size differs from the model
under evaluation. A classifier below `--min_judge_accuracy` (default 0.80) on the real test split it will judge
(each `--extra_test_data_dir`, else its own) is saved but the CLI exits with an error (code 1) naming the accuracy,
the threshold and how to get a better judge; `expr3d.evaluate` refuses it too (`expr3d.metrics.judge`).

Backbones: `compact` (default; a small ResNet: 4 stages of two residual blocks, BatchNorm, global pooling) or
`resnet50` with ImageNet weights from `--backbone_weights=FILE` (ResNet50(include_top=False) `.h5`; never downloaded).
The network, the saved files and their loading are `expr3d.metrics.expression_classifier`.
"""
import json
import os
import sys
import time

import numpy as np

from expr3d import storage
from expr3d.metrics import resumable
from expr3d.labels import EXPRESSIONS
from expr3d.metrics.expression_classifier import FORMAT_VERSION, METADATA_FILE, MODEL_FILE, build_classifier

CLASSIFIER_WRITES = (MODEL_FILE, METADATA_FILE)


def evaluate_accuracy(predict_logits, dataset, num_classes=len(EXPRESSIONS)):
    """Accuracy, per-class accuracy and confusion matrix (rows = true class) of a classifier on a dataset of batches."""
    confusion = np.zeros((num_classes, num_classes), np.int64)
    for batch in dataset:
        predicted = np.argmax(predict_logits(batch["image"]), axis=-1)
        np.add.at(confusion, (np.asarray(batch["expression"]), predicted), 1)
    total = confusion.sum()
    per_class = {EXPRESSIONS[c]: (float(confusion[c, c] / confusion[c].sum()) if confusion[c].sum() else None)
                 for c in range(num_classes)}
    return {"accuracy": float(np.trace(confusion) / total) if total else float("nan"), "count": int(total),
            "per_class": per_class, "confusion": confusion.tolist()}


def train_classifier(data_dir, output, image_size=None, epochs=10, batch_size=32, learning_rate=1e-3, width=32,
                     backbone="compact", backbone_weights=None, seed=0, overwrite=False, max_steps_per_epoch=None,
                     flags=None, stem_stride=2, precision="float32", lr_schedule="cosine", extra_test_dirs=(),
                     skip_corrupt=False, resume_dir=None, stop_after_epochs=None):
    """Train on `data_dir`'s train split, measure accuracy on its test split, save model + metadata. Returns metadata.

    A bad record stops the run with a one-line `RecordError` naming its shard and index; with `skip_corrupt` the
    splits are scanned first and bad records skipped, their count saved under "skipped_records" (and logged).

    `precision` is the Keras dtype policy for training ("mixed_bfloat16" is about 2x faster on bf16 CPUs); the saved
    model is always float32, so judging does not depend on how the judge was trained. `lr_schedule` "cosine" decays
    the learning rate to 0 over the run, "constant" keeps it. `extra_test_dirs` are further datasets whose test split
    is scored too (e.g. the GAN's own test identities when the judge trains on other identities); their accuracies are
    saved under "extra_test".

    `resume_dir`: a folder of this function's own where the whole training state (network, optimizer, data
    position, the epochs' figures) is checkpointed after every epoch, and from which a call of the same recipe goes
    on after the last finished epoch (`expr3d.metrics.resumable`; the automatic judge's build passes one). Its data
    stream is then deterministic, so a resumed training is the uninterrupted one (bit for bit under op determinism).
    `stop_after_epochs` (tests): return None after that many epochs of this call, as an interruption would.
    """
    from expr3d.training.runtime import resolve_precision

    precision = resolve_precision(precision)
    if precision not in ("float32", "mixed_bfloat16", "mixed_float16"):
        raise ValueError(f"--precision must be float32, mixed_bfloat16, mixed_float16 or auto; got {precision!r}")
    if lr_schedule not in ("cosine", "constant"):
        raise ValueError(f"--lr_schedule must be 'cosine' or 'constant'; got {lr_schedule!r}")
    # Both files are checked up front (not only the model); an earlier classifier is replaced only once training
    # has finished, so a failed run keeps it.
    _output_folder(output).check(overwrite, will_write=CLASSIFIER_WRITES, legacy=_legacy(output),
                                 inputs=[("--data_dir", data_dir)] + [("--extra_test_data_dir", d)
                                                                      for d in extra_test_dirs or ()])
    import keras
    import tensorflow as tf

    from expr3d.data import dataset_card, pipeline
    from expr3d.progress import Progress

    card = dataset_card.load_card(data_dir)
    skipped_records = _check_data(data_dir, card, list(extra_test_dirs or ()), skip_corrupt)
    image_size = int(image_size or card["image_size"])
    train_count = int(card["splits"]["train"]["num_examples"])
    steps = max(1, train_count // batch_size)
    if max_steps_per_epoch:
        steps = min(steps, int(max_steps_per_epoch))
    keras.utils.set_random_seed(seed)
    previous_policy = keras.config.dtype_policy()
    keras.config.set_dtype_policy(precision)
    try:
        model = build_classifier(image_size, width=width, backbone=backbone, backbone_weights=backbone_weights,
                                 stem_stride=stem_stride)
    finally:
        keras.config.set_dtype_policy(previous_policy)
    if lr_schedule == "cosine":
        learning_rate = keras.optimizers.schedules.CosineDecay(learning_rate, epochs * steps)
    optimizer = keras.optimizers.Adam(learning_rate)
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    train = pipeline.make_dataset(data_dir, "train", batch_size, image_size=image_size, training=True, seed=seed,
                                  balanced=True, skip_corrupt=skip_corrupt, deterministic=resume_dir is not None)

    @tf.function
    def train_step(images, labels):
        with tf.GradientTape() as tape:
            logits = model(images, training=True)
            loss = loss_fn(labels, logits)
        optimizer.apply_gradients(zip(tape.gradient(loss, model.trainable_variables), model.trainable_variables))
        return loss, tf.reduce_mean(tf.cast(tf.equal(tf.argmax(logits, -1, output_type=tf.int32), labels),
                                            tf.float32))

    data_position = iter(train)  # a plain iterator: its position checkpoints
    iterator = _read(pipeline.checked(data_position, data_dir, ["train"]), skip_corrupt)
    epochs_done = tf.Variable(0, dtype=tf.int64, trainable=False)
    epoch_figures = tf.Variable(tf.zeros((epochs, 2), tf.float64), trainable=False)  # loss, train accuracy
    checkpointer = None
    if resume_dir is not None:
        state = tf.train.Checkpoint(model=model, optimizer=optimizer, data_position=data_position,
                                    epochs_done=epochs_done, epoch_figures=epoch_figures,
                                    dropout_seeds=resumable.seed_states(model))
        recipe = {"data_dir": os.path.abspath(data_dir), "image_size": image_size, "epochs": epochs,
                  "batch_size": batch_size, "learning_rate": float(getattr(learning_rate, "initial_learning_rate",
                                                                              learning_rate)),
                  "lr_schedule": lr_schedule, "width": width, "backbone": backbone, "stem_stride": stem_stride,
                  "seed": seed, "steps_per_epoch": steps, "precision": precision, "skip_corrupt": bool(skip_corrupt)}
        checkpointer = resumable.epoch_checkpointer(resume_dir, state, recipe, model, optimizer, sys.stderr,
                                                    "classifier")
    first = int(epochs_done.numpy())
    progress = Progress(epochs * steps, desc="classifier", unit="steps", initial=first * steps)
    started = time.time()
    for epoch in range(first, epochs):
        if stop_after_epochs is not None and epoch - first >= stop_after_epochs:
            progress.close()
            return None
        losses, accs = [], []
        for _ in range(steps):
            batch = next(iterator)
            loss, acc = train_step(batch["image"], tf.cast(batch["expression"], tf.int32))
            losses.append(float(loss))
            accs.append(float(acc))
            progress.update(1, postfix=f"epoch {epoch + 1} loss {np.mean(losses):.3f} acc {np.mean(accs):.3f}")
        epoch_figures[epoch].assign([float(np.mean(losses)), float(np.mean(accs))])
        epochs_done.assign(epoch + 1)
        if checkpointer is not None:
            checkpointer.save(epoch + 1)
    progress.close()
    history = [{"epoch": e + 1, "loss": float(loss), "train_accuracy": float(acc)}
               for e, (loss, acc) in enumerate(epoch_figures.numpy())]

    if precision != "float32":
        # Saved (and judged) in float32: a float32 twin of the same architecture takes the trained weights.
        trained = model
        # Under float32 explicitly: the caller's global policy may be mixed (expr3d.train's --expression_guide=train).
        keras.config.set_dtype_policy("float32")
        try:
            model = build_classifier(image_size, width=width, backbone=backbone, backbone_weights=backbone_weights,
                                     stem_stride=stem_stride)
        finally:
            keras.config.set_dtype_policy(previous_policy)
        model.set_weights(trained.get_weights())
    predict = tf.function(lambda x: model(x, training=False), reduce_retracing=True)

    def test_accuracy(directory):
        test = pipeline.make_dataset(directory, "test", batch_size, image_size=image_size, training=False,
                                     deterministic=True, skip_corrupt=skip_corrupt).as_numpy_iterator()
        return evaluate_accuracy(lambda x: predict(x).numpy(),
                                 _read(pipeline.checked(test, directory, ["test"]), skip_corrupt))

    test_result = test_accuracy(data_dir)
    extra_test = {}
    for directory in extra_test_dirs or ():
        result = test_accuracy(directory)
        extra_test[os.path.abspath(directory)] = {"accuracy": result["accuracy"], "count": result["count"],
                                                  "per_class": result["per_class"]}
    metadata = {
        "format_version": FORMAT_VERSION, "classes": list(EXPRESSIONS), "image_size": image_size,
        "input_range": [-1.0, 1.0], "backbone": backbone, "width": width, "stem_stride": stem_stride,
        "train_precision": precision, "lr_schedule": lr_schedule, "extra_test": extra_test,
        "test_accuracy": test_result["accuracy"], "test_count": test_result["count"],
        "test_per_class": test_result["per_class"], "test_confusion": test_result["confusion"],
        "train_history": history, "steps_per_epoch": steps, "epochs": epochs,
        "data_dir": os.path.abspath(data_dir), "dataset_name": card.get("name"),
        "trained_on": "real train split only", "train_seconds": round(time.time() - started, 1),
        "flags": flags or {}, "versions": storage.library_versions("python", "numpy", "tensorflow", "keras", "absl"),
        "skipped_records": skipped_records, **({"resumed_after_epoch": first} if first else {}),
    }
    save_classifier(model, metadata, output)
    return metadata


def _read(iterator, skip_corrupt):
    """Batches of `iterator` (`pipeline.checked`), a bad record's one-line error extended by the way past it."""
    from expr3d.data.schema import RecordError

    try:
        yield from iterator
    except RecordError as error:
        raise (error if skip_corrupt else RecordError(f"{error}; pass --skip_corrupt to skip bad records")) from None


def _check_data(data_dir, card, extra_test_dirs, skip_corrupt):
    """Before training: the shards the cards list exist (RecordError naming a missing one); with `skip_corrupt`,
    every split read is scanned, what will be skipped logged, and {"<data_dir> <split>": count} returned."""
    from expr3d.data import dataset_card, pipeline, records, schema

    reads = [(data_dir, "train", card), (data_dir, "test", card)]
    reads += [(directory, "test", None) for directory in extra_test_dirs]
    skipped = {}
    for directory, split, split_card in reads:
        split_card = split_card or dataset_card.load_card(directory)
        if not skip_corrupt:
            try:
                records.split_files(directory, split, split_card)
            except schema.MissingShardError as error:
                raise schema.RecordError(f"{error}; pass --skip_corrupt to go on without its records") from None
            continue
        report = pipeline.scan_split(directory, split, card=split_card)
        skipped[f"{os.path.abspath(directory)} {split}"] = report["skipped"]
        if report["skipped"]:
            sys.stderr.write(f"warning: --skip_corrupt: skipping {report['skipped']} of {report['records']} "
                             f"'{split}' records of {directory}: " + "; ".join(report["problems"][:5])
                             + (f"; and {len(report['problems']) - 5} more" if len(report["problems"]) > 5 else "")
                             + "\n")
        if report["problems"] and report["skipped"] >= report["records"]:
            raise schema.RecordError(f"--skip_corrupt: none of the {report['records']} '{split}' records of "
                                     f"{directory} is usable (first: {report['problems'][0]})")
    return skipped


def save_classifier(model, metadata, output):
    """Write `classifier.keras` and `classifier.json` atomically into `output`."""
    folder = _output_folder(output)
    folder.adopt(_legacy(output))
    os.makedirs(output, exist_ok=True)
    tmp = os.path.join(output, f".tmp-{os.getpid()}-{MODEL_FILE}")
    model.save(tmp)
    os.replace(tmp, folder.file(MODEL_FILE))
    storage.atomic_write_json(folder.file(METADATA_FILE), metadata)


def _output_folder(output):
    from expr3d import outputs

    return outputs.OutputFolder(output, "--output", "expr3d.metrics.classifier")


def _legacy(output):
    """A classifier saved before manifests existed: its two files are ours."""
    present = [n for n in CLASSIFIER_WRITES if os.path.isfile(os.path.join(output, n))]
    return present if present and not _output_folder(output).written() else []


def main(argv):
    from absl import flags

    from expr3d.metrics import judge

    from expr3d import cli

    cli.no_arguments(argv)
    f = flags.FLAGS
    threshold = judge.check_threshold(f.min_judge_accuracy)
    metadata = train_classifier(
        f.data_dir, f.output, image_size=f.image_size, epochs=f.epochs, batch_size=f.batch_size,
        learning_rate=f.learning_rate, width=f.width, backbone=f.backbone, backbone_weights=f.backbone_weights,
        seed=f.seed, overwrite=f.overwrite, max_steps_per_epoch=f.max_steps_per_epoch,
        flags={name: f[name].value for name in _FLAG_NAMES}, stem_stride=f.stem_stride, precision=f.precision,
        lr_schedule=f.lr_schedule, extra_test_dirs=f.extra_test_data_dir, skip_corrupt=f.skip_corrupt)
    print(json.dumps({"test_accuracy": metadata["test_accuracy"], "test_count": metadata["test_count"],
                      "per_class": metadata["test_per_class"], "extra_test": metadata["extra_test"],
                      "train_seconds": metadata["train_seconds"], "output": os.path.abspath(f.output)}, indent=1))
    # The split it will judge: the extra test splits (the GAN's test identities) when given, else its own.
    judged = ([(d, r["accuracy"], r["count"]) for d, r in metadata["extra_test"].items()] if metadata["extra_test"]
              else [(f.data_dir, metadata["test_accuracy"], metadata["test_count"])])
    for directory, accuracy, count in judged:
        try:
            judge.check_judge(accuracy, count, threshold, f.output, directory)
        except judge.JudgeRejected as error:
            return cli.fail(PROGRAM, f"{error} (It is saved in {f.output} for inspection; expr3d.evaluate refuses it "
                                     "at this threshold.)")
    return 0


PROGRAM = "expr3d.metrics.classifier"


_FLAG_NAMES = ("data_dir", "output", "image_size", "epochs", "batch_size", "learning_rate", "width", "backbone",
               "backbone_weights", "seed", "overwrite", "max_steps_per_epoch", "stem_stride", "precision",
               "lr_schedule", "extra_test_data_dir", "min_judge_accuracy", "skip_corrupt")


def define_flags():
    """Define the CLI flags (here, not at import, so several CLIs can be imported in one process)."""
    from absl import flags

    flags.DEFINE_string("data_dir", None, "dataset directory (train split used for training, test for accuracy)")
    flags.DEFINE_string("output", None, "directory for classifier.keras and classifier.json")
    flags.DEFINE_integer("image_size", None, "input size (default: the dataset card's)")
    flags.DEFINE_integer("epochs", 10, "training epochs")
    flags.DEFINE_integer("batch_size", 32, "batch size")
    flags.DEFINE_float("learning_rate", 1e-3, "Adam learning rate")
    flags.DEFINE_integer("width", 32, "channels of the first stage of the compact ResNet")
    flags.DEFINE_enum("backbone", "compact", ["compact", "resnet50"], "classifier backbone")
    flags.DEFINE_string("backbone_weights", None, "ResNet50(include_top=False) ImageNet .h5 weights (resnet50 only)")
    flags.DEFINE_integer("seed", 0, "random seed")
    flags.DEFINE_boolean("overwrite", False, "replace an existing classifier in --output")
    flags.DEFINE_integer("max_steps_per_epoch", None, "cap on steps per epoch (default: train examples / batch)")
    flags.DEFINE_boolean("skip_corrupt", False,
                         "skip records that fail the reader's checks (corrupt or truncated shards, missing shards, "
                         "missing or mistyped fields, non-finite depth, empty masks, sizes other than the card's) "
                         "instead of stopping on the first; the splits are scanned first and the skipped records "
                         "are counted in the log and in classifier.json (skipped_records)")
    flags.DEFINE_integer("stem_stride", 2, "stride of the compact ResNet's stem (1 = full-resolution first stage)")
    flags.DEFINE_enum("precision", "float32", ["float32", "mixed_bfloat16", "mixed_float16", "auto"],
                      "dtype policy for training; the saved classifier is float32 either way")
    flags.DEFINE_enum("lr_schedule", "cosine", ["cosine", "constant"], "learning rate: cosine decay to 0, or constant")
    flags.DEFINE_list("extra_test_data_dir", [], "further datasets whose test split is scored too (e.g. the GAN's "
                      "test identities when --data_dir holds other identities)")
    from expr3d.metrics.judge import MIN_JUDGE_ACCURACY

    flags.DEFINE_float("min_judge_accuracy", MIN_JUDGE_ACCURACY, "exit with an error (code 1) when the trained classifier's "
                       "accuracy on the real test split it will judge (each --extra_test_data_dir, else its own) is "
                       "below this fraction: such a judge cannot measure an expression generation rate")
    # Bounds, checked while the flags are parsed (one line and exit code 2 when broken; expr3d.cli).
    from expr3d import cli

    cli.required("data_dir", "output")
    cli.at_least("image_size", 16, "default: the dataset card's")
    cli.at_least("epochs", 1)
    cli.at_least("batch_size", 1)
    cli.positive("learning_rate")
    cli.at_least("width", 1)
    cli.seed("seed")
    cli.at_least("max_steps_per_epoch", 1, "default: train examples / batch")
    cli.at_least("stem_stride", 1)
    cli.in_range("min_judge_accuracy", 0.0, 1.0)


def run_cli():
    """`python -m expr3d.metrics.classifier` and the `expr3d-classifier` console script."""
    from expr3d import cli

    define_flags()
    cli.run(main, PROGRAM)


if __name__ == "__main__":
    run_cli()
