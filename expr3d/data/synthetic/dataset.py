# Over 400 lines: the plan (each record's identity, scene, expression) beside the writer that follows it.
"""Generate a procedural face dataset: train/test shards, the dataset card and a preview contact sheet.

Splits:
    train  identities 0 .. n_train-1, each rendered `images_per_identity` times with random expressions (classes
           balanced overall), random pose, light and background per render; pair_id -1. With `train_pairs`, in
           groups of eight instead: each group is one pose, light and background under all eight expressions
           (pair_id = num_identities + identity * groups + group), for training with a paired target loss.
           With `train_swap_pairs` too, train identities 2k and 2k + 1 are swap partners: group g of 2k + 1 takes,
           class by class, the exact action units of group g of 2k (drawn from 2k's stream), so every paired train
           render has a render of another identity under the same AUs: a cross-identity swap with a known answer,
           for training exemplar transfer (`pairs.make_paired_dataset(exemplar="partner")`). An odd last train
           identity has no partner and keeps its own expressions.
           With `train_dial_renders=K` too, each group also holds K *dial renders* (written right after its eight):
           dial render k is the group's class-(k mod 8) render with ONE action unit (uniform over the 17, both sides)
           set to a uniform level in [0, 1], labelled with that class and keyed `..._dial`: a face's own AUs with
           one AU dialled, with its true render, for continuous AU control (`pairs.make_paired_dataset(
           dial_renders=True)` pairs any two renders of a group; other readers of pairs leave them out).
    test   identities n_train .. N-1, each rendered once under all eight expressions with identical pose, light and
           background (pair_id = identity id): ground truth for paired evaluation.
    transfer  only with `transfer_pairs=P`: ground truth for exemplar expression transfer. Test identities are paired
           in order (A, B) = (n_train, n_train + 1), (n_train + 2, n_train + 3), ... (P pairs, at most half the
           test identities). Each pair makes 8 swaps: swap j gives A's expression j and B's expression
           (j + shift) % 8 (shift in 1..7, drawn per pair) to each other, and two records, written one after the
           other: A rendered with B's exact action units (left and right sides, so contempt keeps B's side) in A's
           test pose, light and background, and B with A's. Each carries its exemplar's AU vector and label, A's (or
           B's) identity and pair_id, and `transfer/source_key` / `transfer/exemplar_key`: the test renders it was
           made from. 16 renders per pair.

The train and test splits do not depend on `train_pairs` (test) or `transfer_pairs` (either): each split's bytes are
the same with and without them.

Every render draws from its own `np.random.SeedSequence(seed, spawn_key=...)` stream, so the output depends on the
seed only, never on the number of worker processes or on the order work is done.

Example:

```python
from expr3d.data.synthetic import generate_dataset
card = generate_dataset("data/synthetic64", num_identities=200, image_size=64, seed=0)
```
"""
import dataclasses
import functools
import json
import multiprocessing
import os
import shutil
import tempfile

import cv2
import numpy as np

from expr3d import outputs, storage
from expr3d.data import dataset_card, records, schema
from expr3d.data.synthetic import action_units, face_model, render
from expr3d.imaging import grid
from expr3d.imaging.pixels import to_uint8
from expr3d.labels import EXPRESSIONS, NUM_EXPRESSIONS

GENERATOR_VERSION = "1.0"
MIN_SIZE, MAX_SIZE, SIZE_STEP = 32, 512, 16
PREVIEW_NAME = "preview.png"
_CHUNK = 16  # renders per worker task

# Stream tags of the per-render random generators (part of the seed contract: changing them changes datasets).
_IDENTITY, _TRAIN_RENDER, _PAIR_SCENE, _PAIR_EXPRESSION, _ORDER = 0, 1, 2, 3, 4
_TRAIN_PAIR_SCENE, _TRAIN_PAIR_EXPRESSION = 5, 6
_TRANSFER_SHIFT = 7
_TRAIN_DIAL = 8
DIAL_SUFFIX = "_dial"  # the key suffix of a dial render


@dataclasses.dataclass(frozen=True)
class RenderJob:
    """One face to render: which identity, which expression, and where its randomness comes from."""

    split: str
    identity: int
    index: int        # render number within the identity
    expression: int
    pair_id: int
    expression_identity: int = -1  # whose expression stream draws the AUs (train swap partners); -1: its own
    dial_group: int = -1  # a dial render: its pair group, and its number in the group (-1: not a dial render)
    dial: int = -1

    @property
    def key(self):
        suffix = DIAL_SUFFIX if self.dial >= 0 else ""
        return f"synthetic/{self.split}/id{self.identity:06d}/{self.index:02d}_{EXPRESSIONS[self.expression]}{suffix}"


def paired_test_job(identity, expression):
    """The paired test split's render of `identity` under class `expression`."""
    return RenderJob("test", identity, expression, expression, identity)


@dataclasses.dataclass(frozen=True)
class TransferJob:
    """Transfer ground truth: test identity `identity` in its test pose, light and background, under the exact
    expression of `exemplar_identity`'s test render of class `expression`."""

    identity: int             # A: face, pose, light, background
    source_expression: int    # A's test render given to a transfer as its source
    exemplar_identity: int    # B
    expression: int           # B's test render whose action units A takes (the exemplar)
    split = dataset_card.TRANSFER_SPLIT

    @property
    def source(self):
        return paired_test_job(self.identity, self.source_expression)

    @property
    def exemplar(self):
        return paired_test_job(self.exemplar_identity, self.expression)

    @property
    def key(self):
        return (f"synthetic/transfer/id{self.identity:06d}/{self.expression:02d}_{EXPRESSIONS[self.expression]}"
                f"_from_id{self.exemplar_identity:06d}")


def check_arguments(num_identities, image_size, test_fraction=0.2, images_per_identity=8, workers=None,
                    examples_per_shard=512, seed=0, train_pairs=False, transfer_pairs=0, train_swap_pairs=False,
                    train_dial_renders=0, expression_strength=None):
    """Raise ValueError naming the flag when an argument is out of range."""
    def bad(flag, message):
        raise ValueError(f"--{flag} {message}")

    for flag, value in (("num_identities", num_identities), ("image_size", image_size),
                        ("images_per_identity", images_per_identity), ("examples_per_shard", examples_per_shard)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            bad(flag, f"must be an integer, got {value!r}")
        if value <= 0:
            bad(flag, f"must be positive, got {value}")
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, (int, np.integer))
                                or workers <= 0):
        bad("workers", f"must be a positive integer, got {workers!r}")
    if not (MIN_SIZE <= image_size <= MAX_SIZE and image_size % SIZE_STEP == 0):
        bad("image_size", f"must be a multiple of {SIZE_STEP} from {MIN_SIZE} to {MAX_SIZE}, got {image_size}")
    if not (isinstance(test_fraction, (float, int)) and 0.0 < test_fraction < 1.0):
        bad("test_fraction", f"must be strictly between 0 and 1, got {test_fraction!r}")
    if num_identities < 2:
        bad("num_identities", f"must be at least 2 (identities are split between train and test), got "
                              f"{num_identities}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        bad("seed", f"must be a non-negative integer, got {seed!r}")
    if train_pairs and images_per_identity % NUM_EXPRESSIONS:
        bad("images_per_identity", f"must be a multiple of {NUM_EXPRESSIONS} with paired training renders "
                                   f"(one group per pose and light under every expression), got {images_per_identity}")
    if train_swap_pairs and not train_pairs:
        bad("train_swap_pairs", "needs --train_pairs (swap partners share the AUs of their paired groups)")
    if (isinstance(train_dial_renders, bool) or not isinstance(train_dial_renders, (int, np.integer))
            or train_dial_renders < 0):
        bad("train_dial_renders", f"must be a non-negative integer, got {train_dial_renders!r}")
    if train_dial_renders and not train_pairs:
        bad("train_dial_renders", "needs --train_pairs (a dial render joins a paired group: its pose and light)")
    if expression_strength is not None:
        try:
            low, high = (float(v) for v in expression_strength)
        except (TypeError, ValueError):
            bad("expression_strength", f"must be two numbers LOW,HIGH, got {expression_strength!r}")
        if not 0.0 < low <= high <= 1.0:
            bad("expression_strength", f"must satisfy 0 < LOW <= HIGH <= 1, got {low:g},{high:g}")
    if isinstance(transfer_pairs, bool) or not isinstance(transfer_pairs, (int, np.integer)) or transfer_pairs < 0:
        bad("transfer_pairs", f"must be a non-negative integer, got {transfer_pairs!r}")
    n_test = split_counts(num_identities, test_fraction)[1]
    if transfer_pairs > n_test // 2:
        bad("transfer_pairs", f"must be at most {n_test // 2}: each pair takes two of the {n_test} test identities "
                              f"(--num_identities x --test_fraction), got {transfer_pairs}")


def split_counts(num_identities, test_fraction):
    """(train identities, test identities), each at least 1."""
    n_test = int(round(num_identities * test_fraction))
    n_test = min(max(n_test, 1), num_identities - 1)
    return num_identities - n_test, n_test


def _rng(seed, *key):
    return np.random.default_rng(np.random.SeedSequence(int(seed), spawn_key=tuple(int(k) for k in key)))


def transfer_pairs_of(seed, num_identities, test_fraction, transfer_pairs):
    """[(A, B, shift)] of the transfer ground truth: consecutive test identities, and the per-pair shift in 1..7
    between A's expression and B's in a swap (never the same class, so every swap changes the expression)."""
    n_train, _ = split_counts(num_identities, test_fraction)
    pairs = []
    for k in range(transfer_pairs):
        a, b = n_train + 2 * k, n_train + 2 * k + 1
        pairs.append((a, b, int(_rng(seed, a, _TRANSFER_SHIFT).integers(1, NUM_EXPRESSIONS))))
    return pairs


def swap_partner(identity, n_train):
    """The train swap partner of train identity `identity` (2k <-> 2k + 1), or None for an odd last one."""
    partner = identity ^ 1
    return partner if partner < n_train else None


def plan(seed, num_identities, test_fraction=0.2, images_per_identity=8, train_pairs=False, transfer_pairs=0,
         train_swap_pairs=False, train_dial_renders=0):
    """The render jobs of each split, in the order they are written: {"train": [...], "test": [...]}, and
    "transfer": [...] with `transfer_pairs`."""
    n_train, _ = split_counts(num_identities, test_fraction)
    train = []
    groups = images_per_identity // NUM_EXPRESSIONS
    for identity in range(n_train if train_pairs else 0):
        # A pair group's renders are written together, so a reader grouping by pair_id holds one group at a time.
        for group in range(groups):
            pair_id = num_identities + identity * groups + group
            # Swap partners draw from the even one's stream: the same AUs, class by class, to the last bit.
            source = identity - identity % 2 if train_swap_pairs else -1
            train += [RenderJob("train", identity, group * NUM_EXPRESSIONS + e, e, pair_id, source)
                      for e in range(NUM_EXPRESSIONS)]
            train += [RenderJob("train", identity, images_per_identity + group * train_dial_renders + k,
                                k % NUM_EXPRESSIONS, pair_id, source, dial_group=group, dial=k)
                      for k in range(train_dial_renders)]
    for identity in range(0 if train_pairs else n_train):
        # Global positions cycle through the classes, so the split is balanced up to one per class.
        expressions = [(identity * images_per_identity + j) % NUM_EXPRESSIONS for j in range(images_per_identity)]
        order = _rng(seed, identity, _ORDER).permutation(images_per_identity)
        for index, j in enumerate(order):
            train.append(RenderJob("train", identity, index, expressions[j], -1))
    test = [paired_test_job(identity, e) for identity in range(n_train, num_identities)
            for e in range(NUM_EXPRESSIONS)]
    jobs = {"train": train, "test": test}
    if transfer_pairs:
        # A swap's two records side by side: one transfer call (A, B) -> (A with B's, B with A's) meets both truths.
        transfer = []
        for a, b, shift in transfer_pairs_of(seed, num_identities, test_fraction, transfer_pairs):
            for j in range(NUM_EXPRESSIONS):
                k = (j + shift) % NUM_EXPRESSIONS
                transfer += [TransferJob(a, j, b, k), TransferJob(b, k, a, j)]
        jobs[dataset_card.TRANSFER_SPLIT] = transfer
    return jobs


@functools.lru_cache(maxsize=4)
def identity_for(seed, identity):
    """The Identity of id `identity` under `seed` (cached: consecutive renders share it)."""
    return face_model.sample_identity(_rng(seed, identity, _IDENTITY))


def scene_for(seed, job, strength=action_units.DEFAULT_STRENGTH):
    """(Expression, Pose, Light) of one job. Paired (test) jobs of an identity share pose and light. `strength`:
    the range of the prototypes' overall strength (`--expression_strength`)."""
    face = identity_for(seed, job.identity)
    if job.pair_id >= 0 and job.split == "train":
        group = job.dial_group if job.dial >= 0 else job.index // NUM_EXPRESSIONS
        scene = _rng(seed, job.identity, _TRAIN_PAIR_SCENE, group)
        pose, light = render.sample_pose(scene), render.sample_light(scene, subject=face)
        owner = job.expression_identity if job.expression_identity >= 0 else job.identity
        expr_rng = _rng(seed, owner, _TRAIN_PAIR_EXPRESSION, group, job.expression)
    elif job.pair_id >= 0:
        scene = _rng(seed, job.identity, _PAIR_SCENE)
        pose, light = render.sample_pose(scene), render.sample_light(scene, subject=face)
        expr_rng = _rng(seed, job.identity, _PAIR_EXPRESSION, job.expression)
    else:
        expr_rng = _rng(seed, job.identity, _TRAIN_RENDER, job.index)
        pose, light = render.sample_pose(expr_rng), render.sample_light(expr_rng, subject=face)
    if job.expression == 0:
        expression = action_units.neutral()
    else:
        expression = action_units.sample_expression(job.expression, expr_rng, strength=strength)
    if job.dial >= 0:
        # Drawn after the class's own AUs, from a stream of its own: the base is the group's render to the last bit.
        expression = action_units.dialled(expression, _rng(seed, job.identity, _TRAIN_DIAL, job.dial_group, job.dial))
    return expression, pose, light


def render_job(seed, job, image_size, strength=action_units.DEFAULT_STRENGTH):
    """Render one job (a RenderJob or a TransferJob) -> schema.FaceExample."""
    if isinstance(job, TransferJob):
        return render_transfer_job(seed, job, image_size, strength)
    face = identity_for(seed, job.identity)
    expression, pose, light = scene_for(seed, job, strength)
    out = render.render_face(face, expression, pose, light, image_size)
    return schema.FaceExample(image=out.image, depth=out.depth, mask=out.mask, normals=out.normals,
                              expression=job.expression, identity=job.identity, key=job.key,
                              action_units=expression.intensities.astype(np.float32), pair_id=job.pair_id)


def render_transfer_job(seed, job, image_size, strength=action_units.DEFAULT_STRENGTH):
    """Render one TransferJob -> schema.FaceExample: A's face, pose, light and background (those of A's test
    renders) under B's expression, drawn from B's own stream, so the AU vector is B's to the last bit."""
    face = identity_for(seed, job.identity)
    _, pose, light = scene_for(seed, job.source, strength)
    expression, _, _ = scene_for(seed, job.exemplar, strength)
    out = render.render_face(face, expression, pose, light, image_size)
    return schema.FaceExample(image=out.image, depth=out.depth, mask=out.mask, normals=out.normals,
                              expression=job.expression, identity=job.identity, key=job.key,
                              action_units=expression.intensities.astype(np.float32), pair_id=job.source.pair_id,
                              transfer_source_key=job.source.key, transfer_exemplar_key=job.exemplar.key)


def _render_chunk(args):
    # Workers return numpy examples and the parent serializes them: workers then never import TensorFlow, which
    # would cost each of them seconds of start-up.
    seed, jobs, image_size, strength = args
    return [render_job(seed, job, image_size, strength) for job in jobs]


def _output_folder(output_dir, overwrite, splits=dataset_card.SPLITS):
    """Check `output_dir` before rendering; return (folder, names of an earlier dataset to replace at the end)."""
    folder = outputs.OutputFolder(output_dir, "--output", "expr3d.data.synthetic")
    legacy = []
    card_path = os.path.join(output_dir, dataset_card.CARD_NAME)
    if os.path.isfile(card_path) and not folder.written():
        # A dataset written before manifests existed: its card names this generator, its shards are ours.
        try:
            with open(card_path, encoding="utf-8") as handle:
                generator = json.load(handle).get("provenance", {}).get("generator")
        except (OSError, ValueError, AttributeError):
            generator = None
        if generator == "expr3d.data.synthetic":
            legacy = [dataset_card.CARD_NAME, PREVIEW_NAME] + [
                os.path.basename(p) for split in dataset_card.SPLITS for p in records.list_shards(output_dir, split)]
    will_write = [dataset_card.CARD_NAME, PREVIEW_NAME] + [f"{split}-*.tfrecord" for split in splits]
    return folder, folder.check(overwrite, will_write=will_write, legacy=legacy)


def generate_dataset(output_dir, num_identities, image_size, seed=0, test_fraction=0.2, images_per_identity=8,
                     workers=None, overwrite=False, examples_per_shard=512, progress=True, preview=True, command=None,
                     train_pairs=False, transfer_pairs=0, train_swap_pairs=False, train_dial_renders=0,
                     expression_strength=None):
    """Render the dataset into `output_dir` and return its card (dict).

    The dataset is written into a temporary sibling directory and moved into place at the end, so an interrupted
    run never leaves a half-written (or half-old, half-new) dataset behind.

    Args:
        output_dir: destination directory (must not hold a dataset unless `overwrite`).
        num_identities: identities in total (train + test, at least 2).
        image_size: square size in pixels, a multiple of 16 from 32 to 512.
        seed: the dataset is a pure function of the seed and the other arguments.
        test_fraction: fraction of identities in the paired test split, in (0, 1).
        images_per_identity: renders per train identity.
        train_pairs: render each train identity in groups of eight (one pose, light and background under every
            expression; `images_per_identity` a multiple of 8), so the train split is paired too.
        train_swap_pairs: with `train_pairs`, train identities 2k and 2k + 1 share their paired groups' exact AUs
            class by class (swap partners; the module docstring).
        train_dial_renders: with `train_pairs`, K dial renders per group (the module docstring); 0: none.
        expression_strength: (low, high), the range of each expression's overall strength, 0 < low <= high <= 1;
            default (None) `action_units.DEFAULT_STRENGTH`, (0.7, 1.0). A wider range (e.g. (0.1, 1.0)) gives each
            class slight to full expressions, so a class says less of a face's exact AUs.
        transfer_pairs: pairs of test identities to render the transfer ground truth of (split "transfer", 16
            renders a pair, at most half the test identities; see the module docstring). 0: none.
        workers: processes (default: all cores); 1 renders in this process.
        overwrite: replace an existing dataset.
        examples_per_shard: examples per TFRecord shard.
        progress: print a progress line with ETA to stderr.
        preview: also write `preview.png` (rows = test identities, columns = the eight expressions).
        command: the command line, recorded in the card's provenance.
    """
    check_arguments(num_identities, image_size, test_fraction, images_per_identity, workers, examples_per_shard,
                    seed, train_pairs, transfer_pairs, train_swap_pairs, train_dial_renders, expression_strength)
    strength = tuple(float(v) for v in (expression_strength or action_units.DEFAULT_STRENGTH))
    output_dir = os.path.abspath(output_dir)
    jobs = plan(seed, num_identities, test_fraction, images_per_identity, train_pairs, transfer_pairs,
                train_swap_pairs, train_dial_renders)
    folder, replaced = _output_folder(output_dir, overwrite, splits=tuple(jobs))
    parent = os.path.dirname(output_dir)
    os.makedirs(parent, exist_ok=True)
    workers = workers or os.cpu_count() or 1
    tmp_dir = tempfile.mkdtemp(prefix=f".{os.path.basename(output_dir)}.tmp-", dir=parent)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp_dir, 0o777 & ~umask)  # mkdtemp makes it private; the dataset is an ordinary directory
    try:
        total = sum(len(j) for j in jobs.values())
        bar = None
        if progress:
            from expr3d.progress import Progress
            bar = Progress(total, desc=f"synthetic {image_size}px", unit="faces")
        tasks = []
        for split, split_jobs in jobs.items():
            tasks += [(split, split_jobs[i:i + _CHUNK]) for i in range(0, len(split_jobs), _CHUNK)]
        writers = {split: records.ShardedWriter(tmp_dir, split, examples_per_shard=examples_per_shard)
                   for split in jobs}
        args = [(seed, chunk, image_size, strength) for _, chunk in tasks]
        if workers == 1:
            results = map(_render_chunk, args)
            pool = None
        else:
            # spawn: never fork a parent that may already run TensorFlow threads.
            pool = multiprocessing.get_context("spawn").Pool(min(workers, len(tasks)))
            results = pool.imap(_render_chunk, args)
        try:
            for (split, _), examples in zip(tasks, results):
                for example in examples:
                    writers[split].write(example)
                if bar is not None:
                    bar.update(len(examples), postfix=split)
        finally:
            if pool is not None:
                pool.terminate()
                pool.join()
        for writer in writers.values():
            writer.close()
        if bar is not None:
            bar.close()
        n_train, n_test = split_counts(num_identities, test_fraction)
        provenance = {
            "generator": "expr3d.data.synthetic",
            "generator_version": GENERATOR_VERSION,
            "seed": int(seed),
            "num_identities": int(num_identities),
            "train_identities": n_train,
            "test_identities": n_test,
            "test_fraction": float(test_fraction),
            "images_per_identity": int(images_per_identity),
            "image_size": int(image_size),
            "train_pairs": bool(train_pairs),
            "transfer_pairs": int(transfer_pairs),
            "train_swap_pairs": bool(train_swap_pairs),
        }
        if train_dial_renders:
            # Only when used: a card without it is byte for byte that of a dataset rendered before the option.
            provenance["train_dial_renders"] = int(train_dial_renders)
        if strength != tuple(action_units.DEFAULT_STRENGTH):  # likewise
            provenance["expression_strength"] = list(strength)
        if command:
            provenance["command"] = command
        extra = {"paired_splits": ["train", "test"] if train_pairs else ["test"],
                 "description": "Procedural 3D faces: EMFACS action-unit prototypes on parametric heads, rendered "
                                "with exact depth and normals (expr3d.data.synthetic)."}
        if train_swap_pairs:
            extra[dataset_card.SWAP_PARTNERS] = {
                "split": "train", "groups_per_identity": images_per_identity // NUM_EXPRESSIONS,
                "rule": "train identities 2k and 2k + 1 are swap partners: the render of class e in group g of one "
                        "has the exact action units of the other's (pair_id = num_identities + identity * "
                        "groups_per_identity + g); an odd last train identity has none",
                "reader": "expr3d.data.pairs.make_paired_dataset(exemplar='partner')"}
        if train_dial_renders:
            extra[dataset_card.DIAL_RENDERS] = {
                "split": "train", "per_group": int(train_dial_renders), "key_suffix": DIAL_SUFFIX,
                "rule": "each paired train group is followed by its dial renders: dial render k is the group's "
                        "class-(k mod 8) render with one action unit (uniform over the 17, both sides) set to a "
                        "uniform level in [0, 1], labelled with that class",
                "reader": "expr3d.data.pairs.make_paired_dataset(dial_renders=True)"}
        if transfer_pairs:
            extra["transfer"] = transfer_card_entry(seed, num_identities, test_fraction, transfer_pairs)
        card = dataset_card.write_dataset_card(tmp_dir, name=f"synthetic{image_size}", image_size=image_size,
                                               provenance=provenance, splits=tuple(jobs), extra=extra)
        if preview:
            write_contact_sheet(os.path.join(tmp_dir, PREVIEW_NAME), seed, jobs["test"], image_size, strength=strength)
        _move_into_place(tmp_dir, folder, replaced)
    except BaseException:
        shutil.rmtree(tmp_dir, ignore_errors=True)
        raise
    return card


def transfer_card_entry(seed, num_identities, test_fraction, transfer_pairs):
    """The card's "transfer" entry: what the transfer split holds and how to find a record's inputs."""
    pairs = transfer_pairs_of(seed, num_identities, test_fraction, transfer_pairs)
    return {
        "split": dataset_card.TRANSFER_SPLIT,
        "source_split": "test",
        "num_identity_pairs": len(pairs),
        "swaps_per_pair": NUM_EXPRESSIONS,
        "identity_pairs": [{"a": a, "b": b, "shift": shift} for a, b, shift in pairs],
        "rule": "swap j of a pair (A, B) gives A's test render of expression j and B's of expression (j + shift) % 8 "
                "to each other: two records, A with B's action units in A's pose, light and background, then B "
                "with A's; each names its inputs in transfer/source_key and transfer/exemplar_key",
        "reader": "expr3d.data.transfer.make_transfer_dataset",
    }


def _move_into_place(tmp_dir, folder, replaced):
    """Move the finished dataset from `tmp_dir` into `folder`, replacing only `replaced` (what we wrote before)."""
    new = sorted(os.listdir(tmp_dir))
    if not os.path.isdir(folder.path):
        outputs.OutputFolder(tmp_dir, "--output", folder.tool).record(*new)
        os.rename(tmp_dir, folder.path)
        return
    folder.record(*new)
    card = os.path.join(folder.path, dataset_card.CARD_NAME)
    if dataset_card.CARD_NAME in replaced and os.path.exists(card):
        os.remove(card)  # first: no reader may take the old card for a half-replaced dataset
    folder.remove_written([n for n in replaced if n not in new])
    # The card last: a dataset is complete when its card is there.
    for name in sorted(new, key=lambda n: n == dataset_card.CARD_NAME):
        os.replace(os.path.join(tmp_dir, name), os.path.join(folder.path, name))
    os.rmdir(tmp_dir)


# --- contact sheet ------------------------------------------------------------------------------------------------

def depth_preview(depth, mask, span=None):
    """uint8 [H, W, 3] RGB: depth [H, W] (smaller = nearer) through a colour map (near = bright), background (mask
    False) black. The colours span the face's own min-max depth, or the fixed (near, far) `span` when given (values
    beyond it clipped; `expr3d.figure` uses the pipeline's [-1, 1] so that one colour is one depth in every tile)."""
    out = np.zeros(depth.shape, np.uint8)
    if mask.any():
        z = depth[mask]
        lo, hi = (float(z.min()), float(z.max())) if span is None else (float(span[0]), float(span[1]))
        out[mask] = np.clip(255.0 * (0.1 + 0.9 * (hi - z) / max(hi - lo, 1e-9)), 0, 255).astype(np.uint8)
    colored = cv2.cvtColor(cv2.applyColorMap(out, cv2.COLORMAP_INFERNO), cv2.COLOR_BGR2RGB)
    colored[~mask] = 0
    return colored


def normals_preview(normals, mask):
    out = to_uint8(normals, rounding="truncate")
    out[~mask] = 0
    return out


def contact_sheet(rows):
    """Tile `rows` (a list of lists of 8 RenderedFace-like objects) into one labelled uint8 RGB image.

    Each cell shows the RGB render on top and its depth and normals side by side at half size below.
    """
    size = rows[0][0].image.shape[0]
    half = size // 2
    cells = []
    for faces in rows:
        row_cells = []
        for face in faces:
            geom = np.concatenate([cv2.resize(depth_preview(face.depth, face.mask), (half, half),
                                              interpolation=cv2.INTER_AREA),
                                   cv2.resize(normals_preview(face.normals, face.mask), (half, half),
                                              interpolation=cv2.INTER_AREA)], axis=1)
            row_cells.append(np.concatenate([face.image, geom], axis=0))
        cells.append(row_cells)
    body = grid.tile_grid(cells, gutter=0, margin=0)
    return grid.with_column_labels(body, EXPRESSIONS, size, gutter=0, margin=0, style="each")


def write_contact_sheet(path, seed, test_jobs, image_size, max_identities=4, strength=action_units.DEFAULT_STRENGTH):
    """Render the first paired test identities under all eight expressions and save the sheet as PNG."""
    identities = sorted({job.identity for job in test_jobs})[:max_identities]
    rows = []
    for identity in identities:
        jobs = sorted((j for j in test_jobs if j.identity == identity), key=lambda j: j.expression)
        row = []
        for job in jobs:
            face = identity_for(seed, job.identity)
            row.append(render.render_face(face, *scene_for(seed, job, strength), image_size))
        rows.append(row)
    sheet = contact_sheet(rows)
    ok, data = cv2.imencode(".png", cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_PNG_COMPRESSION, 9])
    if not ok:
        raise RuntimeError(f"could not encode {path}")
    storage.atomic_write_bytes(path, data.tobytes())
    return sheet
