"""The expression guide: a frozen classifier of real faces whose cross-entropy on G_rgb's translations is one more
term of G_rgb's loss (`--expression_guide`, `--lambda_guide`; NOT in the paper), and, with paired data, whose
feature maps of a translation are pulled to those of the true target render (`--lambda_guide_features`: a
perceptual loss whose network knows faces and expressions).

Why: the expression generation rate follows the accuracy of D_rgb's own classifier (measured: 55 % on real test
faces after 1,200 iterations, 78.5 % after 2,400 - and the judged rate 37 % / 62 %). D_rgb's classifier learns from
batch-size faces per step next to the adversarial and gradient-penalty terms; a separate classifier trained first,
at batch 64, is accurate before G_rgb's first update.

For `--model=transfer` and `--condition=action_units` the guide reads what those models are asked for, the 17 AU
intensities: an AU regressor of the real training faces (`expr3d.metrics.au_judge`'s network and loss, trained on
the run's own train split - the AU judge that evaluates is trained on other identities), whose squared AU error on
each output against the asked AUs is `--lambda_guide`'s term and whose stage maps give `--lambda_guide_features`'s,
as above.
"""
import os

GUIDE_FOLDER = "guide"
TRAIN = "train"
CLASSIFIER, AU_REGRESSOR = "expression classifier", "AU regressor"


def guide_kind(config):
    """What the run's guide reads: the expression class (the StarGAN of expression classes) or the AU intensities
    (the transfer family, and the StarGAN conditioned on AUs)."""
    return AU_REGRESSOR if config.model == "transfer" or config.condition == "action_units" else CLASSIFIER


def guide_directory(config):
    """Where the run's guide lives: `--expression_guide`, or MODEL_DIR/guide for 'train'."""
    return recorded_guide_directory(config.model_dir, config.expression_guide)


def recorded_guide_directory(model_dir, expression_guide):
    """The guide folder of the run in `model_dir` whose `--expression_guide` was `expression_guide` (as its config
    records it): MODEL_DIR/guide for 'train', the named folder otherwise; None without a guide."""
    if not expression_guide:
        return None
    return os.path.join(model_dir, GUIDE_FOLDER) if expression_guide == TRAIN else expression_guide


def load_guide(config):
    """The guide (a Keras model of logits, frozen) of `config`: an expression classifier, or for AU targets
    (`guide_kind`) an AU regressor (its logits through a sigmoid are the intensities)."""
    if not config.expression_guide:
        raise ValueError("--lambda_guide / --lambda_guide_features need --expression_guide (a classifier directory, "
                         "or 'train')")
    model = _load(config).model
    model.trainable = False
    return model


def _load(config):
    if guide_kind(config) == AU_REGRESSOR:
        from expr3d.metrics.au_judge import load_au_regressor

        return load_au_regressor(guide_directory(config), image_size=config.image_size)
    from expr3d.metrics.expression_classifier import load_classifier

    return load_classifier(guide_directory(config), image_size=config.image_size)


def with_features(classifier):
    """The guide as a model of `[logits, f_0, ..., f_3]`: its logits and the output maps of its four residual stages
    (the compact backbone's `stage{s}_block1_out`), what `--lambda_guide_features` compares."""
    import keras

    names = [f"stage{stage}_block1_out" for stage in range(4)]
    known = {layer.name for layer in classifier.layers}
    if not all(name in known for name in names):
        raise ValueError("--lambda_guide_features needs a guide with the compact backbone (its stage outputs "
                         f"{', '.join(names)}); this one has none")
    model = keras.Model(classifier.inputs, [classifier.outputs[0]] + [classifier.get_layer(n).output for n in names],
                        name="expression_guide_features")
    model.trainable = False
    return model


# The recipe of a guide trained by the run itself (`--expression_guide=train`): the judge's compact ResNet (width
# `--guide_width`, default 16), batch 64, Adam 1e-3 with cosine decay. Measured on the 500-identity 64 px paired data
# (4,000 training faces): 15 epochs, 2 min 10 s on the 2-core CPU, 86.9 % on the unseen test identities.
GUIDE_WIDTH = 16  # the default of --guide_width (config.TrainConfig.guide_width)
GUIDE_BATCH_SIZE = 64


def prepare_guide(config, say=print):
    """Train the run's guide into MODEL_DIR/guide when `--expression_guide=train` and it is not there yet (a resumed
    run reuses it). Returns the guide's metadata (None when the run uses no guide)."""
    if not config.expression_guide or not {"gan", "transfer"} & set(config.stages()):
        return None
    directory = guide_directory(config)
    kind = guide_kind(config)
    if config.expression_guide == TRAIN and not _trained(directory, kind):
        what = "AU guide (an AU regressor)" if kind == AU_REGRESSOR else "expression guide"
        judge_width = _judge_width(kind)
        if config.guide_width == judge_width:
            judge_name = "AU judge" if kind == AU_REGRESSOR else "expression judge"
            say(f"expr3d.train: warning: --guide_width={config.guide_width} is the automatic {judge_name}'s width: "
                f"a generator trained against a network reads better to networks of its architecture "
                f"(expr3d.metrics.judge, session 24: +16 points), so judge this run with another width")
        say(f"expr3d.train: training the {what} on the real training faces of {config.data_dir} "
            f"({config.guide_epochs} epochs) into {directory}")
        if kind == AU_REGRESSOR:
            _train_au_guide(config, directory)
        else:
            from expr3d.metrics.classifier import train_classifier

            train_classifier(config.data_dir, directory, image_size=config.image_size, epochs=config.guide_epochs,
                             batch_size=GUIDE_BATCH_SIZE, width=config.guide_width, seed=config.seed,
                             precision=config.mixed_precision, skip_corrupt=config.skip_corrupt,
                             flags={"trained_by": "expr3d.train --expression_guide=train"}, overwrite=True)
    # Loaded once here so a wrong directory or size stops the run before any stage, with the file named.
    metadata = _load(config).metadata
    trained_width = metadata.get("width")
    if config.expression_guide == TRAIN and trained_width is not None and int(trained_width) != config.guide_width:
        raise ValueError(f"{directory} is this run's guide of width {trained_width}, not --guide_width="
                         f"{config.guide_width}: resume with --guide_width={trained_width}, or train into a new "
                         f"--model_dir")
    copier = ("--transfer_code=guide" if config.model == "transfer" and config.transfer_code == "guide" else
              "--generator=action_unit_edit" if config.generator == "action_unit_edit" else None)
    if copier and trained_width is not None and int(trained_width) != config.guide_width:
        raise ValueError(f"{directory} is an AU guide of width {trained_width}; {copier} copies it into a reader of "
                         f"--guide_width={config.guide_width}: pass --guide_width={trained_width}")
    if kind == AU_REGRESSOR:
        mae, baseline = metadata.get("test_mae"), metadata.get("baseline_mae")
        say(f"expr3d.train: AU guide {directory}"
            + (f": AU MAE {mae:.3f} on its real test faces (the train mean: {baseline:.3f})"
               if mae is not None and baseline is not None else ""))
        return {"path": os.path.abspath(directory), "kind": kind, "test_mae": mae}
    accuracy = metadata.get("test_accuracy")
    say(f"expr3d.train: expression guide {directory}"
        + (f": {accuracy:.1%} on its real test faces" if accuracy is not None else ""))
    return {"path": os.path.abspath(directory), "kind": kind, "test_accuracy": accuracy}


def _judge_width(kind):
    """The width of the automatic judge that reads what a guide of `kind` reads."""
    if kind == AU_REGRESSOR:
        from expr3d.metrics.au_judge import AU_JUDGE_WIDTH

        return AU_JUDGE_WIDTH
    from expr3d.metrics.judge import JUDGE_WIDTH

    return JUDGE_WIDTH


def _trained(directory, kind):
    if kind == AU_REGRESSOR:
        from expr3d.metrics.au_judge import MODEL_FILE
    else:
        from expr3d.metrics.expression_classifier import MODEL_FILE
    return os.path.isfile(os.path.join(directory, MODEL_FILE))


def _train_au_guide(config, directory):
    """The AU guide, trained into a staging folder beside `directory` and moved into place whole (an interrupted
    training leaves no half guide for the resume to load; the staging folder is this function's own), its training
    state checkpointed after every epoch into `<directory>.resume` so that an interrupted run resumes it."""
    import shutil

    from expr3d.metrics.au_judge import train_au_regressor

    if os.path.exists(directory) and not (os.path.isdir(directory) and not os.listdir(directory)):
        raise ValueError(f"{directory} holds files but no AU guide: move them away (the run writes its guide there)")
    staging = directory.rstrip(os.sep) + ".partial"
    if os.path.isdir(staging):
        # What an interrupted training of ours left there (the regressor's two files, its temporary), nothing else.
        from expr3d.metrics.au_judge import METADATA_FILE, MODEL_FILE

        for name in os.listdir(staging):
            if name in (MODEL_FILE, METADATA_FILE) or name.startswith(".tmp-"):
                path = os.path.join(staging, name)
                shutil.rmtree(path) if os.path.isdir(path) else os.remove(path)
        if os.listdir(staging):
            raise ValueError(f"{staging} holds files the AU guide's training did not write: move them away")
        os.rmdir(staging)
    # Checkpointed every epoch beside it (ours, deleted once the guide is in place): an interrupted run's rerun
    # goes on after the guide's last epoch.
    resume_dir = directory.rstrip(os.sep) + ".resume"
    train_au_regressor(config.data_dir, staging, image_size=config.image_size, epochs=config.guide_epochs,
                       batch_size=GUIDE_BATCH_SIZE, width=config.guide_width, seed=config.seed, desc="AU guide",
                       resume_dir=resume_dir)
    if os.path.isdir(directory):
        os.rmdir(directory)
    os.replace(staging, directory)
    shutil.rmtree(resume_dir, ignore_errors=True)
