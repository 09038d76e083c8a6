"""Synthetic ablation: train and evaluate the plain StarGAN baseline (depth_weight 0) against depth-guided variants
over several seeds on procedural faces, then compare them (mean ± std over seeds) - Tables 1 and 3 on paired data.

    python -m expr3d.ablation --flagfile=experiments/synthetic_ablation.flags

Steps (each skipped when its output already exists, so an interrupted study resumes):
  1. `python -m expr3d.data.synthetic` -> --data_dir (unless it holds a dataset card)
  2. `python -m expr3d.metrics.classifier` on a real train split (--data_dir's, or the larger --classifier_data_dir
     of other identities) -> ROOT/classifier
  3. for every variant and seed: `python -m expr3d.train --model_dir=ROOT/<variant>_seed<k> --seed=k <common flags>
     <variant flags>` (the trainer resumes a run directory), run in this process (`train.run`; a run with
     --cpu_devices > 1 in a process of its own). With --shared_depth_pretraining the depth-guided runs
     first get a copy of the judge's stage-1 checkpoints and train stage 2 only (`--stage=gan`): one depth
     pre-training shared by every variant and seed, as the paper pre-trains once; with --shared_generator_warmup
     the variants that differ only in the depth terms also resume from one generator warm-up per seed
  4. `python -m expr3d.evaluate` for each run (in this process: `evaluate.run`), all judged by ONE depth network
     so geometry numbers are comparable: by default ROOT/judge_depth, a stage-1-only run (`--stage=depth`, seed 0,
     the common training flags), i.e. a G_depth/D_depth pre-trained on real RGB-depth pairs and never adapted to
     any generator (the baseline runs have no depth networks: depth_weight 0 skips stage 1); --judge=RUN names
     another run instead. With --shared_depth_pretraining that network is also where the depth-guided runs
     started; --independent_depth_judge judges with ROOT/judge_depth_independent instead (stage 1 only, seed 1),
     a network no run trained with
  5. `python -m expr3d.compare` -> ROOT/comparison/comparison.md (+ figures)

A transfer study (`--model=transfer` in --train_flags; experiments/synthetic_ablation_transfer.flags, issue #13)
renders the transfer ground truth (--transfer_pairs), trains no expression classifier, and judges every run with one
AU judge, built by the first evaluation into ROOT/judges; the comparison then tabulates the transfer's own metrics
(AU error against the exemplar, SSIM / L1 against the true transfer, depth error, the disentanglement probes).

Variants are `name:flag=value;flag=value` strings (--variants), e.g. `baseline:depth_weight=0`,
`depth:depth_weight=0.1;geometry=depth;confidence_penalty=0`,
`depth_penalty_generator:depth_weight=0.1;confidence_penalty=0.1;confidence_penalty_on=generator`. --dry_run prints
the commands without running them.
"""
import os
import shlex
import subprocess
import sys
import time

from absl import flags

from expr3d import cli
from expr3d.run_dir import RunDir


def define_flags():
    """Define the CLI's flags; called at start-up only, so importing this module never clashes with other CLIs."""
    flags.DEFINE_string("root", "runs/synthetic_ablation", "directory of the runs, the classifier and the comparison")
    flags.DEFINE_string("data_dir", "data/synthetic_ablation", "synthetic dataset (generated if it has no card)")
    flags.DEFINE_integer("num_identities", 200, "identities of the generated dataset")
    flags.DEFINE_integer("image_size", 64, "image size of the generated dataset")
    flags.DEFINE_integer("data_seed", 0, "seed of the generated dataset")
    flags.DEFINE_integer("images_per_identity", 8, "renders per train identity of the generated dataset")
    flags.DEFINE_boolean("train_pairs", False, "render each train identity in one pose and light under all eight "
                                               "expressions (the data of --target_mode=paired runs)")
    flags.DEFINE_integer("transfer_pairs", 0,
                         "pairs of test identities also rendered with each other's AUs (the transfer ground truth): "
                         "a --model=transfer study (--train_flags) needs them, its evaluation compares with them")
    flags.DEFINE_string("classifier_data_dir", None,
                        "dataset whose train split trains the judging expression classifier (default --data_dir); "
                        "generated like --data_dir, with --classifier_identities and --classifier_data_seed, when it "
                        "has no card. A larger set of other identities makes a better judge than the GAN's own data.")
    flags.DEFINE_integer("classifier_identities", 300, "identities of a generated --classifier_data_dir")
    flags.DEFINE_integer("classifier_data_seed", 1, "seed of a generated --classifier_data_dir (other identities)")
    flags.DEFINE_list("variants", ["baseline:depth_weight=0", "depth:depth_weight=0.1;confidence_penalty=0",
                                   "depth_penalty:depth_weight=0.1;confidence_penalty=0.1;confidence_penalty_on=critic",
                                   "depth_penalty_generator:depth_weight=0.1;confidence_penalty=0.1;"
                                   "confidence_penalty_on=generator"],
                      "name:flag=value;flag=value per variant (the penalty's side, --confidence_penalty_on, is "
                      "spelled out: runs from before that flag had it on the generator); the first is the baseline "
                      "of the comparison's paired per-seed differences")
    flags.DEFINE_list("seeds", ["0", "1", "2"], "training seeds (>= 3 for a spread)")
    flags.DEFINE_string("train_flags", "", "flags passed to every `python -m expr3d.train` run (steps, sizes, ...)")
    flags.DEFINE_string("classifier_flags", "--epochs=10", "flags of `python -m expr3d.metrics.classifier`")
    flags.DEFINE_string("evaluate_flags", "", "extra flags of `python -m expr3d.evaluate` (e.g. --inception_weights=...)")
    flags.DEFINE_string("metrics", "expression_generation_rate,fid,kid,psnr,ssim,geometry,paired,samples",
                        "metrics evaluated for every run")
    flags.DEFINE_string("judge", None, "run name whose G_depth/D_depth judge geometry (default: judge_depth, a "
                                       "stage-1-only run trained by the study)")
    flags.DEFINE_boolean("shared_depth_pretraining", False,
                         "depth-guided runs start stage 2 from the judge's stage-1 networks (one depth pre-training "
                         "shared by every variant and seed, as the paper pre-trains once) instead of each pre-training "
                         "its own; the judge's --num_steps_depth is then the pre-training length. Variants of another "
                         "--geometry (normals) share a stage 1 of their own, ROOT/stage1_<geometry>")
    flags.DEFINE_boolean("shared_generator_warmup", False,
                         "with --shared_depth_pretraining and --generator_warmup_steps=N: per seed, a variant that "
                         "differs from that seed's first shared-stage-1 variant only in the stage-2 depth terms "
                         "(depth_weight, confidence_penalty, confidence_penalty_on) starts stage 2 from that run's "
                         "checkpoint at iteration N (and its expression guide) instead of repeating the warm-up, which "
                         "touches no depth term: the networks it would train itself (bit for bit with "
                         "--op_determinism, tests/test_ablation.py). That run must keep the checkpoint "
                         "(--checkpoint_every dividing N, --keep_checkpoints large enough)")
    flags.DEFINE_boolean("independent_depth_judge", False,
                         "judge geometry with a second stage-1-only run (ROOT/judge_depth_independent, seed 1) that no "
                         "run starts from, instead of the judge the depth-guided runs share (--shared_depth_pretraining)")
    flags.DEFINE_boolean("reevaluate", False, "evaluate every run again (e.g. after changing --metrics or the judge)")
    flags.DEFINE_boolean("dry_run", False, "print the commands, run nothing")
    flags.DEFINE_boolean("skip_corrupt", False,
                         "pass --skip_corrupt to the classifier, every training run and every evaluation: records "
                         "that fail the reader's checks are skipped (and counted in each output's metadata) instead "
                         "of stopping the study")
    # Bounds, checked while the flags are parsed (one line and exit code 2 when broken; expr3d.cli).
    from expr3d.data.synthetic.dataset import MAX_SIZE, MIN_SIZE, SIZE_STEP

    cli.at_least("num_identities", 2, "identities are split between train and test")
    cli.at_least("classifier_identities", 2, "identities are split between train and test")
    cli.check("image_size", lambda v: MIN_SIZE <= v <= MAX_SIZE and v % SIZE_STEP == 0,
              f"a multiple of {SIZE_STEP} from {MIN_SIZE} to {MAX_SIZE} (the procedural dataset's sizes)")
    cli.seed("data_seed")
    cli.seed("classifier_data_seed")
    cli.at_least("images_per_identity", 1)
    cli.at_least("transfer_pairs", 0, "0 = none")
    cli.check("seeds", lambda seeds: bool(seeds) and all(s.strip().isdigit() for s in seeds),
              "a non-empty list of non-negative integer seeds, e.g. 0,1,2")
    flags.register_validator("variants", _variants_ok)


def _variants_ok(variants):
    if not variants:
        raise flags.ValidationError("must name at least one variant, e.g. baseline:depth_weight=0")
    names = []
    for text in variants:
        try:
            names.append(parse_variant(text)[0])
        except ValueError as error:
            raise flags.ValidationError(str(error)) from None
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise flags.ValidationError(f"variant name(s) {duplicates} appear more than once (runs would share a folder)")
    return True


FLAGS = flags.FLAGS


def parse_variant(text):
    """"name:a=1;b=x" -> ("name", ["--a=1", "--b=x"]); ValueError naming the text when malformed."""
    name, _, spec = text.partition(":")
    if not name or not name.replace("_", "").isalnum():
        raise ValueError(f"--variants: {text!r} must look like name:flag=value;flag=value (name alphanumeric/_)")
    out = []
    for item in filter(None, (s.strip() for s in spec.split(";"))):
        if "=" not in item:
            raise ValueError(f"--variants: {item!r} in {text!r} is not flag=value")
        out.append(f"--{item.lstrip('-')}")
    return name, out


def training_complete(config_path):
    """True when the run whose config.json this is finished its last stage (models are exported at every
    checkpoint, so their presence does not mean the run ended)."""
    try:
        config = RunDir(os.path.dirname(config_path)).read_config()
        stage = config["flags"]["stage"]
        last = "depth" if stage == "depth" else "gan"
        # A transfer run records its second stage as "transfer" (--num_steps_gan counts it).
        second = "transfer" if last == "gan" and config["flags"].get("model") == "transfer" else last
        return int(config["progress"].get(second, 0)) >= int(config["flags"][f"num_steps_{last}"])
    except (OSError, ValueError, KeyError, TypeError):
        return False


def flag_value(arguments, name, default=None):
    """The value of the last `--name=value` in a list of arguments (absl: the last one wins), else `default`."""
    value = default
    for argument in arguments:
        if argument.startswith(f"--{name}="):
            value = argument.split("=", 1)[1]
    return value


class CopyStageOne:
    """A study step: copy a stage-1 run's checkpoints into a new run directory (atomically: temp dir + rename)."""

    def __init__(self, source_run, destination_run):
        self.source = RunDir(source_run).checkpoint_dir("depth")
        self.destination = RunDir(destination_run).checkpoint_dir("depth")

    def describe(self):
        return f"copy {self.source} -> {self.destination}"

    def __call__(self):
        if not os.path.isdir(self.source):
            print(f"error: {self.source} is missing: the shared stage-1 run has no checkpoints", file=sys.stderr)
            return 1
        _copy_tree(self.source, self.destination)
        return 0


class CopyWarmup:
    """A study step: copy another run's stage-2 checkpoint at the end of its generator warm-up, and the expression
    guide it trained (`--expression_guide=train`), into a new run directory (each atomically: temp dir + rename),
    which then resumes from that checkpoint with the same guide (`--shared_generator_warmup`)."""

    def __init__(self, source_run, destination_run, step):
        name = f"ckpt-{int(step):09d}"
        self.source = os.path.join(RunDir(source_run).checkpoint_dir("gan"), name)
        self.destination = os.path.join(RunDir(destination_run).checkpoint_dir("gan"), name)
        self.guide_source = os.path.join(source_run, "guide")
        self.guide_destination = os.path.join(destination_run, "guide")

    def describe(self):
        return f"copy {self.source} -> {self.destination}"

    def __call__(self):
        if not os.path.isdir(self.source):
            print(f"error: {self.source} is missing: the run that shares its generator warm-up did not keep that "
                  "checkpoint (--checkpoint_every must divide --generator_warmup_steps, and --keep_checkpoints must "
                  "keep it to the end)", file=sys.stderr)
            return 1
        if os.path.isdir(self.guide_source) and not os.path.isdir(self.guide_destination):
            _copy_tree(self.guide_source, self.guide_destination)
        _copy_tree(self.source, self.destination)  # last: its presence marks the step done
        return 0


def _copy_tree(source, destination):
    import shutil

    os.makedirs(os.path.dirname(destination), exist_ok=True)
    temporary = os.path.join(os.path.dirname(destination), f".tmp-copy-{os.getpid()}")
    shutil.rmtree(temporary, ignore_errors=True)
    shutil.copytree(source, temporary)
    os.replace(temporary, destination)


# Flags a variant may change and still share another run's generator warm-up: the warm-up trains G_rgb alone on
# the paired terms and the guide, and reads none of them.
DEPTH_TERM_FLAGS = ("depth_weight", "confidence_penalty", "confidence_penalty_on")


def flag_settings(arguments):
    """{flag name: value} of `--name=value` / `--name` / `--noname` arguments, the last occurrence winning."""
    settings = {}
    for argument in arguments:
        if not argument.startswith("--"):
            continue
        name, has_value, value = argument[2:].partition("=")
        if not has_value:
            name, value = (name[2:], "false") if name.startswith("no") else (name, "true")
        settings[name] = value
    return settings


class InProcess:
    """A study step that runs a command's logic in this process (one process for the whole study: TensorFlow and
    the data pipeline start once), described (dry run, progress, errors) as the command line it stands for.

    `command` is that command line (`python -m expr3d.train ...`); its flags are parsed as the command parses them.
    A training run that splits the CPU into logical devices (--cpu_devices > 1) needs a fresh process (the split
    must precede TensorFlow's start) and gets one.
    """

    def __init__(self, command):
        self.command = list(command)
        self.program = self.command[2]  # [python, "-m", program, flags...]
        self.args = self.command[3:]

    def describe(self):
        return " ".join(shlex.quote(c) for c in self.command)

    def __call__(self):
        """(exit code, one-line error message or "")."""
        if self.program == "expr3d.train":
            from expr3d import train

            try:
                split = int(flag_value(self.args, "cpu_devices", "0")) > 1
            except ValueError:
                split = False  # the run reports the bad flag
            if split:
                return run_child(self.command)
            return cli.call_reporting(lambda: _fresh(train.run)(train.parse_config([self.program, *self.args])),
                                      self.program, train.errors)
        from expr3d import evaluate
        from expr3d.metrics.context import EvaluationError

        return cli.call_reporting(lambda: _fresh(evaluate.run)(evaluate.parse_flags([self.program, *self.args])),
                                  self.program, [(EvaluationError, cli.EXIT_ERROR)])


def _fresh(run):
    """`run` after Keras' global state (names, the graph of the previous run's models) is cleared: every run
    of the study starts as in a new process (each seeds its own weights and data; tests/test_ablation.py checks that
    a run's numbers do not depend on the run before it)."""

    def wrapped(*args):
        import keras

        keras.backend.clear_session()
        return run(*args)

    return wrapped


def plan(f):
    """The list of (description, command, output that marks it done) of the whole study."""
    python = sys.executable
    root, data = f.root, f.data_dir
    steps = [("data", [python, "-m", "expr3d.data.synthetic", f"--output={data}", f"--num_identities={f.num_identities}",
                       f"--image_size={f.image_size}", f"--seed={f.data_seed}",
                       f"--images_per_identity={f.images_per_identity}",
                       *(["--train_pairs"] if getattr(f, "train_pairs", False) else []),
                       *([f"--transfer_pairs={f.transfer_pairs}"] if getattr(f, "transfer_pairs", 0) else [])],
              os.path.join(data, "dataset_card.json"))]
    # A transfer study (--model=transfer in --train_flags) is judged by the AU judge, not an expression classifier.
    transfer = flag_value(shlex.split(f.train_flags), "model", "stargan") == "transfer"
    if transfer and not getattr(f, "transfer_pairs", 0):
        raise cli.UsageError("--train_flags has --model=transfer: the study needs --transfer_pairs > 0 (its "
                             "evaluation compares every swap with the true transfer render)")
    classifier_data = f.classifier_data_dir or data
    judges = os.path.join(root, "judges")
    if classifier_data != data and not transfer:
        steps.append(("classifier data", [python, "-m", "expr3d.data.synthetic", f"--output={classifier_data}",
                                          f"--num_identities={f.classifier_identities}", f"--image_size={f.image_size}",
                                          f"--seed={f.classifier_data_seed}",
                                          f"--images_per_identity={f.images_per_identity}"],
                      os.path.join(classifier_data, "dataset_card.json")))
    classifier = os.path.join(root, "classifier")
    skip = ["--skip_corrupt"] if getattr(f, "skip_corrupt", False) else []
    # A judge of other identities is also scored on the GAN's test identities: the accuracy that bounds the metric.
    scored_too = [f"--extra_test_data_dir={data}"] if classifier_data != data else []
    if not transfer:  # a transfer study's AU judge: built by its first evaluation, in ROOT/judges, for every run
        steps.append(("classifier", [python, "-m", "expr3d.metrics.classifier", f"--data_dir={classifier_data}",
                                     f"--output={classifier}", *scored_too, *shlex.split(f.classifier_flags), *skip],
                      os.path.join(classifier, "classifier.json")))
    variants = [parse_variant(v) for v in f.variants]
    if len(f.seeds) < 3:
        sys.stderr.write(f"warning: {len(f.seeds)} seed(s): the spread over seeds needs at least 3\n")
    # Seed-major order, each run evaluated right after its training: a study stopped early still holds complete,
    # comparable (variant x seed) results for its first seeds.
    runs = [(f"{name}_seed{seed}", seed, extra) for seed in f.seeds for name, extra in variants]
    if f.judge:
        judge = os.path.join(root, f.judge)
    else:
        judge = os.path.join(root, "judge_depth")
        steps.append(("judge depth network", InProcess([python, "-m", "expr3d.train", f"--data_dir={data}",
                                                        f"--model_dir={judge}", "--seed=0",
                                                        *shlex.split(f.train_flags), *skip, "--stage=depth"]),
                      RunDir(judge).config_path))
    geometry_judge = judge
    if getattr(f, "independent_depth_judge", False):
        geometry_judge = os.path.join(root, "judge_depth_independent")
        steps.append(("independent depth judge", InProcess([python, "-m", "expr3d.train", f"--data_dir={data}",
                                                            f"--model_dir={geometry_judge}", "--seed=1",
                                                            *shlex.split(f.train_flags), *skip, "--stage=depth"]),
                      RunDir(geometry_judge).config_path))
    judge_geometry = flag_value(shlex.split(f.train_flags), "geometry", "depth")
    warmup_steps = int(flag_value(shlex.split(f.train_flags), "generator_warmup_steps", "0") or 0)
    share_warmup = getattr(f, "shared_generator_warmup", False)
    if share_warmup and transfer:
        raise cli.UsageError("--shared_generator_warmup is for StarGAN studies: a transfer run's warm-up is not "
                             "checked to be independent of the depth terms")
    if share_warmup and not (f.shared_depth_pretraining and warmup_steps > 0):
        raise cli.UsageError("--shared_generator_warmup needs --shared_depth_pretraining and "
                             "--generator_warmup_steps > 0 in --train_flags")

    def depth_weight(arguments):
        return float(flag_value(arguments, "depth_weight", 0.1))

    def shares_stage_one(arguments):
        # The judge's stage 1 suits runs of its geometry; with a shared warm-up every such run takes it, so the
        # warm-up's checkpoint holds the same depth networks whichever run trained it.
        return f.shared_depth_pretraining and flag_value(arguments, "geometry", "depth") == judge_geometry

    stage_one_of_geometry = {}  # another geometry's shared stage 1 (e.g. normals): ROOT/stage1_<geometry>, seed 0
    if f.shared_depth_pretraining:
        for _, _, extra in runs:
            geometry = flag_value([*shlex.split(f.train_flags), *extra], "geometry", "depth")
            if geometry != judge_geometry and geometry not in stage_one_of_geometry:
                stage_one_of_geometry[geometry] = os.path.join(root, f"stage1_{geometry}")
                steps.append((f"shared stage 1 ({geometry})",
                              InProcess([python, "-m", "expr3d.train", f"--data_dir={data}",
                                         f"--model_dir={stage_one_of_geometry[geometry]}", "--seed=0",
                                         *shlex.split(f.train_flags), f"--geometry={geometry}", *skip,
                                         "--stage=depth"]),
                              RunDir(stage_one_of_geometry[geometry]).config_path))

    def without_depth_terms(arguments):
        return {k: v for k, v in flag_settings(arguments).items() if k not in DEPTH_TERM_FLAGS}

    ordered, donors = [], {}  # donors: seed -> (run, its flags without the depth terms)
    for seed in dict.fromkeys(seed for _, seed, _ in runs):
        of_seed = [(run, s, extra) for run, s, extra in runs if s == seed]
        if share_warmup:
            # The donor is a depth-guided run: its checkpoint holds every optimizer a depth-guided run restores
            # (a plain run builds no G_depth/D_depth optimizer), and a plain run restores the part it has.
            for run, _, extra in of_seed:
                arguments = [*shlex.split(f.train_flags), *extra]
                if shares_stage_one(arguments) and depth_weight(arguments) > 0:
                    donors[seed] = (run, without_depth_terms(arguments))
                    break
            of_seed.sort(key=lambda item: item[0] != donors.get(seed, (None,))[0])  # the donor trains first
        ordered.extend(of_seed)
    for run, seed, extra in ordered:
        train_args = [*shlex.split(f.train_flags), *extra]
        stage_args = []
        other_geometry = stage_one_of_geometry.get(flag_value(train_args, "geometry", "depth"))
        if other_geometry and depth_weight(train_args) > 0:
            steps.append((f"stage 1 of {run}", CopyStageOne(other_geometry, os.path.join(root, run)),
                          RunDir(os.path.join(root, run)).checkpoint_dir("depth")))
            stage_args = ["--stage=gan"]
        if shares_stage_one(train_args) and (share_warmup or depth_weight(train_args) > 0):
            # Stage 2 only, from the judge's stage-1 networks (the trainer reads depth/checkpoints of --model_dir).
            steps.append((f"stage 1 of {run}", CopyStageOne(judge, os.path.join(root, run)),
                          RunDir(os.path.join(root, run)).checkpoint_dir("depth")))
            stage_args = ["--stage=gan"]
            donor = donors.get(seed)
            if donor and donor[0] != run and donor[1] == without_depth_terms(train_args):
                copy = CopyWarmup(os.path.join(root, donor[0]), os.path.join(root, run), warmup_steps)
                steps.append((f"generator warm-up of {run}", copy, copy.destination))
        steps.append((f"train {run}", InProcess([python, "-m", "expr3d.train", f"--data_dir={data}",
                                                 f"--model_dir={os.path.join(root, run)}", f"--seed={seed}",
                                                 *train_args, *skip, *stage_args]),
                      RunDir(os.path.join(root, run)).config_path))
        output = os.path.join(root, run, "evaluation")
        steps.append((f"evaluate {run}", InProcess([python, "-m", "expr3d.evaluate",
                                                    f"--model_dir={os.path.join(root, run)}", f"--data_dir={data}",
                                                    f"--metrics={f.metrics}", f"--output={output}",
                                                    *([f"--judge_cache_dir={judges}"] if transfer
                                                      else [f"--classifier={classifier}"]),
                                                    f"--depth_model_dir={geometry_judge}",
                                                    f"--label={run}", "--overwrite", *shlex.split(f.evaluate_flags),
                                                    *skip]),
                      os.path.join(output, "results.json")))
    steps.append(("compare", [python, "-m", "expr3d.compare", *[os.path.join(root, r) for r, _, _ in runs],
                              f"--output={os.path.join(root, 'comparison')}", "--title=Synthetic ablation",
                              f"--baseline={variants[0][0]}", "--overwrite"], None))
    return steps


def run_child(command):
    """Run `command` with its stderr passed through as it comes; return (exit code, its one-line error message: the
    text after "<program>: error: " in its last stderr line, or that whole line when it failed without one)."""
    process = subprocess.Popen(command, stderr=subprocess.PIPE)
    tail = b""
    while True:
        chunk = os.read(process.stderr.fileno(), 1 << 16)
        if not chunk:
            break
        sys.stderr.buffer.write(chunk)
        sys.stderr.buffer.flush()
        tail = (tail + chunk)[-16384:]
    process.stderr.close()
    returncode = process.wait()
    if returncode == 0:
        return 0, ""
    lines = [line.strip() for line in tail.decode("utf-8", "replace").replace("\r", "\n").splitlines() if line.strip()]
    last = lines[-1] if lines else ""
    marker = ": error: "
    return returncode, (last.split(marker, 1)[1] if marker in last else last)


def main(argv):
    cli.no_arguments(argv)
    steps = plan(FLAGS)
    started = time.time()
    trained_now = set()
    train_seconds, trains_left = [], sum(1 for what, _, _ in steps if what.startswith("train "))
    for index, (what, command, done_marker) in enumerate(steps):
        line = command.describe() if callable(command) else " ".join(shlex.quote(c) for c in command)
        if FLAGS.dry_run:
            print(line)
            continue
        # An evaluation is redone when its run's training ran in this invocation (it may have resumed and changed).
        retrain = what.startswith("evaluate ") and (FLAGS.reevaluate or what[len("evaluate "):] in trained_now)
        done = done_marker and os.path.exists(done_marker) and not retrain
        if what.startswith("train ") or what in ("judge depth network", "independent depth judge") or \
                what.startswith("shared stage 1"):
            done = training_complete(done_marker)
        if done:
            print(f"[{index + 1}/{len(steps)}] {what}: done already ({done_marker})", file=sys.stderr)
            trains_left -= what.startswith("train ")
            continue
        # The training runs dominate the study: its ETA is their mean duration so far times those left.
        eta = (f", ETA of the training runs {sum(train_seconds) / len(train_seconds) * trains_left / 60:.0f} min"
               if train_seconds and trains_left else "")
        print(f"[{index + 1}/{len(steps)}] {what} (elapsed {time.time() - started:.0f}s{eta}): {line}",
              file=sys.stderr, flush=True)
        step_started = time.time()
        child_error = ""
        if callable(command):
            result = command()
            returncode, child_error = result if isinstance(result, tuple) else (result, "")
        else:
            returncode, child_error = run_child(command)
        if what.startswith("train "):
            train_seconds.append(time.time() - step_started)
            trained_now.add(what[len("train "):])
            trains_left -= 1
        if returncode != 0:
            why = f": {child_error}" if child_error else ""
            return cli.fail("expr3d.ablation",
                            f"step '{what}' failed with exit code {returncode}{why} (command: {line})")
    if not FLAGS.dry_run:
        print(f"comparison: {os.path.join(FLAGS.root, 'comparison', 'comparison.md')}", file=sys.stderr)
    return 0


def run_cli():
    """`python -m expr3d.ablation` and the `expr3d-ablation` console script."""
    define_flags()
    cli.run(main, "expr3d.ablation")


if __name__ == "__main__":
    run_cli()
