"""A judge a user cannot get wrong: which expression classifier an evaluation uses (`classifier_from_context`), its
fitness check and the cached automatic judge.

Fitness: an expression generation rate is only as good as the classifier that judges it. Before the generation pass,
`expr3d.evaluate` measures the judge's accuracy on the REAL faces of the evaluated test split (the protocol's
classes) and refuses to report a rate from a judge below `--min_judge_accuracy` (default 0.80; chance is 0.125 for
8 classes). `python -m expr3d.metrics.classifier` applies the same check to the classifier it has just trained.

The automatic judge (`--classifier=auto`, the evaluator's default): for procedural data (`expr3d.data.synthetic`) a
classifier trained on OTHER generated identities - a separate procedural dataset rendered with another seed, as the
synthetic ablation's judge (1,500 identities x 8 renders, a compact ResNet of width 32, 8 epochs, batch 64; bf16 where
the CPU has it natively, float32 otherwise). Recipe v3 (session 24): width 32, because v2's width 16 is the width of
the expression guide (`--expression_guide`) that the main recipe's G_rgb is trained against, and a judge of the
guide's network reads the target in such a generator's outputs far more often than another network does (85 %
against 68-69 % on the same translations; docs/evaluation.md, 'The judge'). `evaluate` warns when a judge has the
architecture of the evaluated run's guide (`guide_architecture_warning`). At 64 px on an AVX-512 BF16 CPU the v3
build's training took ~2.8x v2's steps' time (1,200 steps); v2 took 24 min on the 2-core AVX2 CPU (float32) with
other jobs running. Built once per image size and recipe and cached:

    <cache>/<key>/classifier/{classifier.keras,classifier.json}
    <cache> = --judge_cache_dir, else $EXPR3D_JUDGE_CACHE, else $XDG_CACHE_HOME/expr3d/judges, else
              ~/.cache/expr3d/judges
    <key>   = synthetic-r<renderer version>-<S>px-<N>ids-<E>ep-seed<judge data seed>-v<recipe version>

A second evaluation at the same size reuses it (a log line names the file). The judge's training data is deleted once
the judge is saved. Concurrent builders of one key wait for each other (a lock file). Real (non-procedural) datasets
get no automatic judge: train one with `python -m expr3d.metrics.classifier` (docs/evaluation.md, "Classifier").

Prebuild one (e.g. before timing evaluations):

    python -m expr3d.metrics.judge --image_size=64 [--judge_identities=1500 --judge_epochs=15 --judge_cache_dir=DIR]
"""
import contextlib
import fcntl
import os
import shutil
import sys
import time

import numpy as np

from expr3d import cli
from expr3d.labels import EXPRESSIONS
from expr3d.metrics.expression_classifier import METADATA_FILE, MODEL_FILE, load_classifier

AUTO = "auto"
MIN_JUDGE_ACCURACY = 0.80
JUDGE_IDENTITIES = 1500
JUDGE_EPOCHS = 8
JUDGE_IMAGES_PER_IDENTITY = 8
JUDGE_BATCH_SIZE = 64
# Channels of the compact ResNet's first stage. Never the expression guide's width (expr3d.training.guide.GUIDE_WIDTH,
# 16): a generator trained against the guide's features fools networks of its architecture (session 24, one run's
# 5,600 translations: 85.5 / 85.0 % judged by two width-16 judges, 68.2 / 69.2 % by two width-32 ones, all four
# >= 96.5 % on the real test faces).
JUDGE_WIDTH = 32
JUDGE_PRECISION = "auto"  # bf16 where the hardware has it natively (expr3d.training.runtime.auto_precision)
# Seed of the judge's procedural identities; any seed other than the evaluated dataset's gives other identities.
JUDGE_DATA_SEED = 20210105
RECIPE_VERSION = 3  # 3: width 32, 8 epochs (v2: width 16, the guide's network; v1: width 32, 15 epochs)
CACHE_ENV = "EXPR3D_JUDGE_CACHE"
PROCEDURAL_GENERATOR = "expr3d.data.synthetic"
RECIPE = ("docs/evaluation.md, 'The judge': for procedural data pass --classifier=auto (a judge trained on "
          f"{JUDGE_IDENTITIES:,} other generated identities, cached after its first build); for real data train one "
          "on more faces with `python -m expr3d.metrics.classifier --data_dir=DATA --output=DIR`")


class JudgeRejected(ValueError):
    """The expression classifier scores below `--min_judge_accuracy` on the evaluated real test split."""


def check_threshold(value):
    """`--min_judge_accuracy` as a float fraction in [0, 1] (ValueError naming the flag otherwise)."""
    if value is None:
        return MIN_JUDGE_ACCURACY
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"--min_judge_accuracy must be a fraction in [0, 1]; got {value!r}") from None
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"--min_judge_accuracy is a fraction in [0, 1] (0.80 = 80 %); got {value}")
    return value


def judge_accuracy(predict_logits, batches, classes):
    """(accuracy, count) of a classifier on real faces of the protocol's `classes`, predictions restricted to them.

    `batches` yields objects (or dicts) with `image` ([-1, 1]) and `expression`.
    """
    classes = np.asarray(classes)
    correct = count = 0
    for batch in batches:
        image = batch["image"] if isinstance(batch, dict) else batch.image
        labels = np.asarray(batch["expression"] if isinstance(batch, dict) else batch.expression)
        keep = np.isin(labels, classes)
        if not keep.any():
            continue
        logits = np.asarray(predict_logits(np.asarray(image)[keep]))
        predicted = classes[np.argmax(logits[:, classes], axis=-1)]
        correct += int(np.sum(predicted == labels[keep]))
        count += int(keep.sum())
    return (correct / count if count else float("nan")), count


def check_judge(accuracy, count, threshold, classifier, data_dir, num_classes=8, auto=False):
    """Raise JudgeRejected (one line: measured accuracy, threshold, why, how to do better) when below `threshold`.

    `auto`: the classifier is the automatic judge, so the way to a better one is a larger recipe."""
    if count and np.isfinite(accuracy) and accuracy >= threshold:
        return
    measured = f"{100.0 * accuracy:.1f} %" if count else "nothing (no test faces of the protocol's classes)"
    recipe = (f"raise --judge_identities (default {JUDGE_IDENTITIES:,}) or --judge_epochs (default {JUDGE_EPOCHS}) "
              "for a new cached judge (docs/evaluation.md, 'The judge')" if auto else RECIPE)
    raise JudgeRejected(
        f"the expression classifier {classifier} scores {measured} on the {count} real test faces of {data_dir} "
        f"(chance {100.0 / num_classes:.1f} %), below --min_judge_accuracy={threshold:.2f}: an expression generation "
        f"rate judged by it would measure the judge, not the generator, so none is reported. Get a better judge - "
        f"{recipe} - or lower --min_judge_accuracy to report it anyway.")


# --- a judge the generator was not trained against -----------------------------------------------------------------

# What makes two compact classifiers "the same network" for this check (expression_classifier.build_classifier).
ARCHITECTURE_FIELDS = (("backbone", "compact"), ("width", None), ("stem_stride", 2))


def run_guide_metadata(run_config, model_dir):
    """(folder, classifier.json) of the expression guide a run's G_rgb was trained against, or None: a run without
    `--expression_guide`, with both guide weights 0, or whose guide folder is gone or is not an expression classifier
    (an AU guide)."""
    import json

    flags = (run_config or {}).get("flags") or {}
    guide = flags.get("expression_guide")
    if not guide or not (flags.get("lambda_guide") or flags.get("lambda_guide_features")):
        return None
    folder = os.path.join(model_dir, "guide") if guide == "train" else guide
    try:
        with open(os.path.join(folder, METADATA_FILE), encoding="utf-8") as f:
            metadata = json.load(f)
    except (OSError, ValueError):
        return None
    return (folder, metadata) if metadata.get("classes") else None


def same_architecture(a, b):
    """Whether two classifiers' metadata describe the same network (backbone, width, stem stride)."""
    return all(a.get(field, default) == b.get(field, default) for field, default in ARCHITECTURE_FIELDS)


def guide_architecture_warning(judge_metadata, judge_path, run_config, model_dir):
    """A one-line warning when the judge has the architecture of the expression guide the run was trained against,
    else None. Such a judge reads the target in that generator's outputs more often than other networks do: the
    generator learnt what this kind of network looks for (session 24: the same translations judged 85.5 % and 85.0 %
    by two width-16 judges, the guide's width, and 69.2 % by a width-32 judge, all >= 96.5 % on the real test
    faces)."""
    guide = run_guide_metadata(run_config, model_dir)
    if guide is None or not same_architecture(judge_metadata, guide[1]):
        return None
    shape = ", ".join(f"{field} {judge_metadata.get(field, default)}" for field, default in ARCHITECTURE_FIELDS)
    return (f"the judge {judge_path} has the architecture of the expression guide G_rgb was trained against "
            f"({guide[0]}: {shape}), so its expression rate is likely inflated (measured: +16 points); judge with a "
            f"classifier of another width or backbone (the automatic judge's recipe v{RECIPE_VERSION} is width "
            f"{JUDGE_WIDTH})")


# --- the evaluation's judge -----------------------------------------------------------------------------------------

def classifier_from_context(context):
    """The evaluation's `--classifier`, loaded once and shared by every metric that needs it (expression rate,
    classifier-feature FID/KID). FileNotFoundError naming the flag when none is given or files are missing, or
    when `--classifier=auto` meets a non-procedural dataset; ValueError when its classes or image size do not fit.

    `--classifier=auto` is the cached judge of other generated identities (`auto_judge` below),
    built on first use; `--classifier=fer` (or `fer:PATH`) the FER-2013 judge of real faces (expr3d.metrics.fer_judge).
    """
    path = context.options.get("classifier")
    from expr3d.metrics import fer_judge

    if fer_judge.is_fer(path):
        return context.resource("classifier", lambda: fer_judge.FerJudge(path[len(fer_judge.NAME) + 1:] or None))
    if not path:
        raise FileNotFoundError("no --classifier given; pass --classifier=auto (procedural data: a judge trained on "
                                "other generated identities, cached) or train one on the real training split with "
                                "`python -m expr3d.metrics.classifier --data_dir=DATA --output=DIR` and pass "
                                "--classifier=DIR")
    if path == AUTO:
        if not is_procedural(context.card):
            raise FileNotFoundError(
                f"--classifier=auto needs procedural data (expr3d.data.synthetic); {context.data_dir} is not, so "
                f"train a judge on its real train split with `python -m expr3d.metrics.classifier "
                f"--data_dir={context.data_dir} --output=DIR --precision=auto` (docs/evaluation.md, "
                f"'Classifier') and pass --classifier=DIR")
        options = context.options
        path = context.resource("auto_judge", lambda: auto_judge(
            context.image_size, card=context.card, cache_dir=options.get("judge_cache_dir"),
            identities=options.get("judge_identities") or JUDGE_IDENTITIES,
            epochs=options.get("judge_epochs") or JUDGE_EPOCHS))
    return context.resource("classifier", lambda: load_classifier(path, EXPRESSIONS, image_size=context.image_size))


# --- the automatic judge --------------------------------------------------------------------------------------------

def default_cache_dir():
    """$EXPR3D_JUDGE_CACHE, else $XDG_CACHE_HOME/expr3d/judges, else ~/.cache/expr3d/judges."""
    if os.environ.get(CACHE_ENV):
        return os.environ[CACHE_ENV]
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "expr3d", "judges")


def is_procedural(card):
    return ((card or {}).get("provenance") or {}).get("generator") == PROCEDURAL_GENERATOR


def judge_seed(card=None):
    """The judge's data seed: JUDGE_DATA_SEED, or the next one if the evaluated dataset used that seed."""
    data_seed = ((card or {}).get("provenance") or {}).get("seed")
    return JUDGE_DATA_SEED + 1 if data_seed == JUDGE_DATA_SEED else JUDGE_DATA_SEED


def judge_key(image_size, identities=JUDGE_IDENTITIES, epochs=JUDGE_EPOCHS, seed=JUDGE_DATA_SEED):
    from expr3d.data.synthetic.dataset import GENERATOR_VERSION

    return (f"synthetic-r{GENERATOR_VERSION}-{int(image_size)}px-{int(identities)}ids-{int(epochs)}ep-seed{int(seed)}"
            f"-v{RECIPE_VERSION}")


@contextlib.contextmanager
def _locked(path):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def auto_judge(image_size, card=None, cache_dir=None, identities=JUDGE_IDENTITIES, epochs=JUDGE_EPOCHS,
               batch_size=JUDGE_BATCH_SIZE, precision=JUDGE_PRECISION, workers=None, log=None):
    """The directory of the cached automatic judge for `image_size`, built first if missing.

    Args:
        image_size: the judge's input size (the model under evaluation's).
        card: the evaluated dataset's card: must be procedural (ValueError with the recipe otherwise); its seed is
            avoided for the judge's identities. None skips the check (prebuilding).
        cache_dir: the cache root (default `default_cache_dir()`).
        identities, epochs: the judge's generated identities (train + test, 80/20) and training epochs.
        batch_size, precision: the classifier's training batch and dtype policy.
        workers: rendering processes (default: all cores; 1 below 1,000 faces).
        log: a text stream for progress lines (default stderr).
    """
    from expr3d.metrics import classifier as classifier_module

    log = log or sys.stderr
    if card is not None and not is_procedural(card):
        raise ValueError(f"--classifier=auto: the dataset {card.get('name')!r} is not procedural "
                         f"(expr3d.data.synthetic), so no judge of other generated identities fits it; train one on "
                         f"its real train split with `python -m expr3d.metrics.classifier --data_dir=DATA "
                         f"--output=DIR --precision=auto` (more faces and epochs make a better judge; "
                         f"docs/evaluation.md, 'Classifier') and pass --classifier=DIR")
    if int(identities) < 2 or int(epochs) < 1:
        raise ValueError(f"--judge_identities must be >= 2 and --judge_epochs >= 1; got {identities}, {epochs}")
    seed = judge_seed(card)
    cache_dir = os.path.abspath(cache_dir or default_cache_dir())
    key = judge_key(image_size, identities, epochs, seed)

    def build(data, staging, resume_dir):
        metadata = classifier_module.train_classifier(
            data, staging, image_size=int(image_size), epochs=int(epochs), batch_size=int(batch_size),
            precision=precision, seed=0, width=JUDGE_WIDTH, resume_dir=resume_dir,
            flags={"auto_judge": key, "judge_identities": int(identities), "judge_epochs": int(epochs),
                   "judge_data_seed": seed, "batch_size": int(batch_size), "precision": precision,
                   "images_per_identity": JUDGE_IMAGES_PER_IDENTITY, "width": JUDGE_WIDTH})
        return f"accuracy on its own held-out identities {100.0 * metadata['test_accuracy']:.1f} %"

    return cached_procedural_build(
        cache_dir, key, "classifier", (METADATA_FILE, MODEL_FILE), build, image_size, identities, seed, workers, log,
        reusing=f"judge: reusing the cached judge {{final}} ({key})",
        building=(f"judge: building the automatic judge {{final}}: {int(identities):,} other procedural identities "
                  f"(seed {seed}) at {image_size}px, {epochs} epochs (10-25 min on 2 CPU cores at 64 px; "
                  f"cached for later evaluations; an interrupted build resumes after its last epoch)"),
        built="judge: built {final} in {seconds:.0f}s; {summary}")


def cached_procedural_build(cache_dir, key, folder, files, build, image_size, identities, seed, workers, log, reusing,
                            building, built, data_options=None):
    """`<cache_dir>/<key>/<folder>`, built first when it lacks any of `files`: under a lock file (concurrent builders
    of one key wait for each other), `identities` procedural identities of `seed` are rendered into
    `<key>/data`, `build(data, staging)` writes the model into a staging folder and returns a one-line summary,
    the staging folder replaces `<folder>` and the rendered data is deleted (only the model is reused). Everything
    deleted lies inside `<cache_dir>/<key>`, which only this function writes. `reusing`, `building`, `built`: the
    log lines (`{final}`, and in `built` `{seconds}` and `{summary}`, filled in). Shared by the expression judge
    and the AU judge (`expr3d.metrics.au_judge`). An interrupted build keeps its rendered data, and `build(data,
    staging, resume_dir)` checkpoints its training into `<key>/.<folder>.resume` (`expr3d.metrics.resumable`), so
    the next build goes on from there (deleted once the model is in place)."""
    home = os.path.join(cache_dir, key)
    final = os.path.join(home, folder)
    with _locked(os.path.join(cache_dir, f".{key}.lock")):
        if all(os.path.isfile(os.path.join(final, name)) for name in files):
            log.write(reusing.format(final=final) + "\n")
            return final
        log.write(building.format(final=final) + "\n")
        log.flush()
        from expr3d.data.dataset_card import CARD_NAME
        from expr3d.data.synthetic.dataset import generate_dataset

        started = time.time()
        data = os.path.join(home, "data")
        if not os.path.isfile(os.path.join(data, CARD_NAME)):
            shutil.rmtree(data, ignore_errors=True)
            if workers is None and int(identities) * JUDGE_IMAGES_PER_IDENTITY < 1000:
                workers = 1  # a few hundred faces render faster than worker processes start
            generate_dataset(data, num_identities=int(identities), image_size=int(image_size), seed=seed,
                             images_per_identity=JUDGE_IMAGES_PER_IDENTITY, workers=workers, preview=False,
                             **(data_options or {}))
        for name in os.listdir(home):  # what killed builders left (the lock is ours: none is running)
            if name.startswith(f".{folder}.tmp-"):
                shutil.rmtree(os.path.join(home, name), ignore_errors=True)
        staging = os.path.join(home, f".{folder}.tmp-{os.getpid()}")
        resume_dir = os.path.join(home, f".{folder}.resume")
        summary = build(data, staging, resume_dir)
        shutil.rmtree(final, ignore_errors=True)
        os.replace(staging, final)
        shutil.rmtree(data, ignore_errors=True)  # only the model is reused
        shutil.rmtree(resume_dir, ignore_errors=True)
        log.write(built.format(final=final, seconds=time.time() - started, summary=summary) + "\n")
        return final


def define_flags():
    """Define the CLI flags (here, not at import, so several CLIs can be imported in one process)."""
    from absl import flags

    from expr3d.data.synthetic.dataset import MAX_SIZE, MIN_SIZE, SIZE_STEP

    flags.DEFINE_integer("image_size", None, "the judge's image size (the model under evaluation's)")
    define_judge_flags(flags)
    cli.required("image_size")
    cli.check("image_size", lambda v: MIN_SIZE <= v <= MAX_SIZE and v % SIZE_STEP == 0,
              f"a multiple of {SIZE_STEP} from {MIN_SIZE} to {MAX_SIZE} (the procedural faces' sizes)")


def define_judge_flags(flags, flag_values=None):
    """The automatic judge's flags and their bounds (shared by `expr3d.evaluate`); `flags`: absl's module, or
    `cli.defining_on(flag_values)` with the `flag_values` it defines on."""
    flags.DEFINE_string("judge_cache_dir", None, f"cache of automatic judges (default ${CACHE_ENV}, else "
                                                 "$XDG_CACHE_HOME/expr3d/judges or ~/.cache/expr3d/judges)")
    flags.DEFINE_integer("judge_identities", JUDGE_IDENTITIES, "generated identities of the automatic judge's data")
    flags.DEFINE_integer("judge_epochs", JUDGE_EPOCHS, "training epochs of the automatic judge")
    cli.at_least("judge_identities", 2, "identities are split between train and test", flag_values=flag_values)
    cli.at_least("judge_epochs", 1, flag_values=flag_values)


def main(argv):
    from absl import flags

    cli.no_arguments(argv)
    f = flags.FLAGS
    print(auto_judge(f.image_size, cache_dir=f.judge_cache_dir, identities=f.judge_identities, epochs=f.judge_epochs))
    return 0


def run_cli():
    """`python -m expr3d.metrics.judge` and the `expr3d-judge` console script."""
    define_flags()
    cli.run(main, "expr3d.metrics.judge")


if __name__ == "__main__":
    run_cli()
