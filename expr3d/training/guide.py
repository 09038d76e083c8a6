"""The expression guide: a frozen classifier of real faces whose cross-entropy on G_rgb's translations is one more
term of G_rgb's loss (`--expression_guide`, `--lambda_guide`; NOT in the paper), and, with paired data, whose
feature maps of a translation are pulled to those of the true target render (`--lambda_guide_features`: a
perceptual loss whose network knows faces and expressions).

Why: the expression generation rate follows the accuracy of D_rgb's own classifier (measured: 55 % on real test
faces after 1,200 iterations, 78.5 % after 2,400 - and the judged rate 37 % / 62 %). D_rgb's classifier learns from
batch-size faces per step next to the adversarial and gradient-penalty terms; a separate classifier trained first,
at batch 64, is accurate before G_rgb's first update.
"""
import os

GUIDE_FOLDER = "guide"
TRAIN = "train"


def guide_directory(config):
    """Where the run's guide lives: `--expression_guide`, or MODEL_DIR/guide for 'train'."""
    if config.expression_guide == TRAIN:
        return os.path.join(config.model_dir, GUIDE_FOLDER)
    return config.expression_guide


def load_guide(config):
    """The guide classifier (a float32 Keras model, frozen) of `config`."""
    from expr3d.metrics.expression_classifier import load_classifier

    if not config.expression_guide:
        raise ValueError("--lambda_guide / --lambda_guide_features need --expression_guide (a classifier directory, "
                         "or 'train')")
    classifier = load_classifier(guide_directory(config), image_size=config.image_size)
    model = classifier.model
    model.trainable = False
    return model


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
# 16), batch 64, Adam 1e-3 with cosine decay. Measured on the 500-identity 64 px paired data (4,000 training faces):
# 15 epochs, 2 min 10 s on the 2-core CPU, 86.9 % on the unseen test identities.
GUIDE_WIDTH = 16
GUIDE_BATCH_SIZE = 64


def prepare_guide(config, say=print):
    """Train the run's guide into MODEL_DIR/guide when `--expression_guide=train` and it is not there yet (a resumed
    run reuses it). Returns the guide's metadata (None when the run uses no guide)."""
    from expr3d.metrics.expression_classifier import MODEL_FILE, load_classifier

    if not config.expression_guide or "gan" not in config.stages():
        return None
    directory = guide_directory(config)
    if config.expression_guide == TRAIN and not os.path.isfile(os.path.join(directory, MODEL_FILE)):
        from expr3d.metrics.classifier import train_classifier

        say(f"expr3d.train: training the expression guide on the real training faces of {config.data_dir} "
            f"({config.guide_epochs} epochs) into {directory}")
        train_classifier(config.data_dir, directory, image_size=config.image_size, epochs=config.guide_epochs,
                         batch_size=GUIDE_BATCH_SIZE, width=GUIDE_WIDTH, seed=config.seed,
                         precision=config.mixed_precision, skip_corrupt=config.skip_corrupt,
                         flags={"trained_by": "expr3d.train --expression_guide=train"}, overwrite=True)
    # Loaded once here so a wrong directory or size stops the run before any stage, with the file named.
    metadata = load_classifier(directory, image_size=config.image_size).metadata
    accuracy = metadata.get("test_accuracy")
    say(f"expr3d.train: expression guide {directory}"
        + (f": {accuracy:.1%} on its real test faces" if accuracy is not None else ""))
    return {"path": os.path.abspath(directory), "test_accuracy": accuracy}
