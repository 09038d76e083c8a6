# Over 400 lines: one evaluation; its set-up, its pass over the triples and its results share the networks and scores.
"""Evaluate an exemplar-transfer run (`--model=transfer`, issue #13) against the procedural transfer ground truth.

    python -m expr3d.evaluate --model_dir=runs/transfer --data_dir=data/synthetic64t \
        [--stargan_model_dir=runs/synthetic] [--au_judge=auto] [--identity_model=EMB.keras]

`expr3d.evaluate` sends a transfer run here (the run's config.json names its family). Every record of the data's
transfer split (`python -m expr3d.data.synthetic --transfer_pairs=N`) is a triple: the source A, the exemplar B and
the true render of A with B's exact 17 AU intensities in A's pose, light and background. The run makes
`Dec(free(A), code(B), A)`; each metric compares it with what it should be.

An AU-conditioned run (`--condition=action_units`) is evaluated here too with `--exemplar_reader=guide|DIR`: an AU
regressor (`guide`: the AU guide the run trained with) reads B's 17 AU intensities and G_rgb draws A with them, the
exemplar transfer of GANimation's route. Every metric below but `disentanglement` applies (the code is the reading);
the default output is MODEL_DIR/evaluation_transfer.


- `transfer_paired`: L1 (on [-1, 1]) and SSIM against the truth, beside the "do nothing" baseline (A unchanged),
  and the background change outside the dilated face mask (as the StarGAN's `background` metric).
- `action_units`: the AU mean absolute error of the result against B's true AUs, read by the **independent AU
  judge** (`expr3d.metrics.au_judge`: a regressor trained on other identities; `--au_judge=auto` builds or reuses
  the cached one). The judge's own error on the true renders is reported as its floor, A unchanged as the baseline.
  Beside them, a diagnostic: the *self-transfer*, A decoded with the code of the true render itself
  (`Dec(free(A), code(truth), A)`, the code of A's own face under B's AUs; no exemplar of another identity): what
  the decoder renders from a code that carries the right AUs. The gap between it and the result is what the
  cross-identity code loses; the gap between it and the floor is the decoder's rendering.
- `transfer_depth`: G_depth's estimate of the result against the truth's geometry inside the face mask; floor:
  G_depth's estimate of the true render (the run's G_depth, or `--depth_model_dir`'s: one fixed network for runs
  compared).
- `identity`: embedding distance of the result to A (and of the truth to A, the floor), with `--identity_model`.
- `disentanglement`: probes trained on frozen features of the TRAIN split predict the TEST split's AUs; R^2 against
  the train-mean predictor, for the AU-free map (should be ~0) and the AU-related code (should be high). Two probes,
  closed-form ridge and a small MLP; the headline per feature is the better of the two (the most a reader gets out).
  With it, a diagnostic on the transfer split: how far the result moves when the decoder gets another face's AU-free
  map instead of A's (`free_map_effect_l1`) or A's own code instead of B's (`code_effect_l1`); a map the decoder
  ignores is trivially free of AUs.
- `stargan_comparison`: an expression-label run (`--stargan_model_dir`) asked for B's expression class, scored the
  same way: what transfer by exemplar gains over transfer by label.
- `samples`: figures/transfer_samples.png: A, B, the result, its edit mask, the truth (and the StarGAN's result).

Writes `results.json`, `results.md`, `arrays.npz` and `figures/` into `--output` (default MODEL_DIR/evaluation), as
the StarGAN evaluation does, with the same `--overwrite` rules.
"""
import os
import sys
import time

import numpy as np

from expr3d import outputs, storage
from expr3d.metrics import writing
from expr3d.labels import ACTION_UNITS, EXPRESSIONS, NUM_ACTION_UNITS
from expr3d.metrics.context import EvaluationError, run_errors
from expr3d.metrics.probes import mlp_probe, ridge_probe
from expr3d.metrics.transfer_report import transfer_figures, transfer_markdown
from expr3d.run_dir import RunDir

TRANSFER_METRICS = ("transfer_paired", "action_units", "transfer_depth", "identity", "disentanglement",
                    "stargan_comparison", "samples")
DESCRIPTIONS = {
    "transfer_paired": "L1 / SSIM of A-with-B's-expression against the true render; background change outside the "
                       "face (transfer runs)",
    "action_units": "AU mean absolute error of the result against the exemplar's true AUs, read by the independent AU "
                    "judge (transfer runs)",
    "transfer_depth": "G_depth's estimate of the result against the true geometry inside the face (transfer runs)",
    "identity": "embedding distance of the result to its source face (needs --identity_model)",
    "disentanglement": "R^2 of probes (ridge, MLP) reading AUs from frozen AU-free / AU-related features (transfer "
                       "runs)",
    "stargan_comparison": "the expression-label StarGAN (--stargan_model_dir) asked for the exemplar's class, scored "
                          "the same way (transfer runs)",
    "samples": "figure of sources, exemplars, results, masks and truths (transfer runs)",
}
# What an AU-conditioned run evaluated as an exemplar transfer (`--exemplar_reader`) reports: no AU-free features.
EXEMPLAR_METRICS = tuple(name for name in TRANSFER_METRICS if name != "disentanglement")
RESULTS_FORMAT_VERSION = 1
WRITES = ("results.json", "results.md", "arrays.npz", "figures/transfer_samples.png", "figures/action_unit_errors.png")
PROBE_POOL = 4          # the AU-free map is average-pooled to PROBE_POOL x PROBE_POOL before the probes


def parse_transfer_metrics(text):
    """"a,b" (or "all") -> the transfer metric names in order; ValueError naming an unknown one."""
    return writing.parse_names(text, TRANSFER_METRICS, "--model=transfer")


class _Skip(Exception):
    """A metric that cannot run here, with the reason (recorded in results.json's `skipped`)."""


def _features(encoder_call, data_dir, split, image_size, limit, batch_size):
    """(pooled AU-free features, codes, true AUs) of the first `limit` faces of `split` with all AUs known."""
    from expr3d.data import pipeline

    frees, codes, aus = [], [], []
    count = 0
    dataset = pipeline.make_dataset(data_dir, split, batch_size, image_size=image_size, training=False)
    for batch in dataset:
        code, free = encoder_call(batch["image"])
        known = np.asarray(batch["has_action_units"]).reshape(len(code), -1).all(axis=1)
        frees.append(np.asarray(free)[known])
        codes.append(np.asarray(code)[known])
        aus.append(np.asarray(batch["action_units"])[known])
        count += int(known.sum())
        if count >= limit:
            break
    if not count:
        raise _Skip(f"{data_dir}: its {split} split has no faces with all action units known")
    return (np.concatenate(frees)[:limit].astype(np.float64), np.concatenate(codes)[:limit].astype(np.float64),
            np.concatenate(aus)[:limit].astype(np.float64))


class TransferEvaluation:
    """One evaluation of a transfer run: the networks, the judges, and accumulated per-face scores."""

    def __init__(self, model_dir, data_dir, names, options):
        from expr3d.data import dataset_card
        from expr3d.data.transfer import require_transfer_split, transfer_count

        self.model_dir, self.data_dir, self.names, self.options = model_dir, data_dir, names, options
        self.run_dir = RunDir(model_dir)
        self.reader = None
        with run_errors():
            if options.get("exemplar_reader"):  # an AU run as an exemplar transfer: read B's AUs, draw A with them
                self.run_dir.require_generator("evaluated as an exemplar transfer", condition="action_units")
                self.run = self.run_dir.load_generators()
            else:
                self.run = self.run_dir.load_transfer()
        try:
            self.card = dataset_card.load_card(data_dir)
            require_transfer_split(data_dir, self.card)
        except (OSError, ValueError) as error:
            raise EvaluationError(f"--data_dir={data_dir}: {error}" if data_dir not in str(error) else str(error))
        if int(self.card["image_size"]) != self.run.image_size:
            raise EvaluationError(f"--data_dir={data_dir} holds {self.card['image_size']} px faces; the run "
                                  f"{model_dir} was trained at {self.run.image_size} px")
        self.total = transfer_count(self.card)
        if options.get("max_examples"):
            self.total = min(self.total, int(options["max_examples"]))
        self.skipped, self.timing = {}, {}
        self.scores = {}
        self.arrays = {}
        self._build_calls()
        self._setup_metrics()

    # --- set-up -------------------------------------------------------------------------------------------------

    def _build_calls(self):
        if self.options.get("exemplar_reader"):
            return self._build_reader_calls()
        import tensorflow as tf

        encoder, decoder = self.run.encoder, self.run.decoder
        size = self.run.image_size
        spec = tf.TensorSpec([None, size, size, 3], tf.float32)

        @tf.function(input_signature=[spec, spec], autograph=False)
        def transfer(source, exemplar):
            code, _, _ = encoder(exemplar, training=False)
            _, free, _ = encoder(source, training=False)
            image, mask, _ = decoder.with_attention([free, code, source], training=False)
            return tf.cast(image, tf.float32), tf.cast(mask, tf.float32)

        @tf.function(input_signature=[spec, spec, spec], autograph=False)
        def transfer_with_free_map_of(source, exemplar, other):
            code, _, _ = encoder(exemplar, training=False)
            _, free, _ = encoder(other, training=False)
            image, _, _ = decoder.with_attention([free, code, source], training=False)
            return tf.cast(image, tf.float32)

        @tf.function(input_signature=[spec], autograph=False)
        def encode(images):
            code, free, _ = encoder(images, training=False)
            pooled = tf.image.resize(tf.cast(free, tf.float32), (PROBE_POOL, PROBE_POOL), method="area")
            return tf.cast(code, tf.float32), tf.reshape(pooled, [tf.shape(images)[0], -1])

        self.transfer, self.encode, self.transfer_with_free_map_of = transfer, encode, transfer_with_free_map_of
        # A code that IS the AU estimate (--transfer_code=action_units or guide) can be read and replaced: the code's
        # own AU error on B, and the decoder given B's TRUE AUs, split the transfer's AU error between the networks.
        self.transfer_with_code = None
        if encoder.get_config().get("code") in ("action_units", "guide"):
            @tf.function(input_signature=[spec, tf.TensorSpec([None, encoder.output[0].shape[-1]], tf.float32)],
                         autograph=False)
            def transfer_with_code(source, code):
                _, free, _ = encoder(source, training=False)
                image, _, _ = decoder.with_attention([free, code, source], training=False)
                return tf.cast(image, tf.float32)

            self.transfer_with_code = transfer_with_code
            self.read_code = lambda images: np.asarray(encode(images)[0])

    def _build_reader_calls(self):
        """An AU-conditioned run (`--condition=action_units`) as an exemplar transfer: B's 17 AU intensities read by
        `--exemplar_reader` (an AU regressor; 'guide' = the AU guide the run trained with), A drawn by G_rgb with
        them. The code IS the reading, so the code diagnostics apply; there are no AU-free features to probe."""
        import tensorflow as tf

        from expr3d.metrics import au_judge
        from expr3d.training.guide import recorded_guide_directory

        choice = self.options["exemplar_reader"]
        if choice == "guide":
            guide = self.run.config.get("flags", {}).get("expression_guide")
            if not guide:
                raise EvaluationError(f"--exemplar_reader=guide: {self.model_dir} trained without an AU guide "
                                      f"(--expression_guide); name an AU regressor's folder instead")
            choice = recorded_guide_directory(self.model_dir, guide)
        try:
            self.reader = au_judge.load_au_regressor(choice, image_size=self.run.image_size)
        except (OSError, ValueError) as error:
            raise EvaluationError(f"--exemplar_reader={self.options['exemplar_reader']}: {error}") from None
        g_rgb, size = self.run.g_rgb, self.run.image_size
        spec = [tf.TensorSpec([None, size, size, 3], tf.float32), tf.TensorSpec([None, NUM_ACTION_UNITS], tf.float32)]
        attention = hasattr(g_rgb, "with_attention")

        @tf.function(input_signature=spec, autograph=False)
        def draw(source, code):
            if attention:
                image, mask, _ = g_rgb.with_attention([source, code], training=False)
            else:  # a generator without an attention mask redraws the whole face
                image = g_rgb([source, code], training=False)
                mask = tf.ones_like(image[..., :1])
            return tf.cast(image, tf.float32), tf.cast(mask, tf.float32)

        self.read_code = lambda images: np.clip(self.reader.predict(images), 0.0, 1.0).astype(np.float32)
        self.transfer = lambda source, exemplar: draw(np.asarray(source, np.float32), self.read_code(exemplar))
        self.transfer_with_code = lambda source, code: draw(np.asarray(source, np.float32),
                                                            np.asarray(code, np.float32))[0]
        self.encode = self.transfer_with_free_map_of = None

    def _setup_metrics(self):
        from expr3d.metrics import background

        self.active = []
        for name in self.names:
            start = time.perf_counter()
            try:
                getattr(self, f"_setup_{name}", lambda: None)()
                self.active.append(name)
            except _Skip as reason:
                self.skipped[name] = str(reason)
                sys.stderr.write(f"metric {name} skipped: {reason}\n")
            self.timing[f"setup/{name}"] = time.perf_counter() - start
        self.radius = background.dilation_radius(self.options.get("background_dilation"), self.run.image_size)

    def _setup_action_units(self):
        from expr3d.metrics import au_judge

        choice = self.options.get("au_judge") or "auto"
        try:
            if choice == "auto":
                choice = au_judge.auto_au_judge(self.run.image_size, card=self.card,
                                                cache_dir=self.options.get("judge_cache_dir"))
            self.au_judge = au_judge.load_au_regressor(choice, image_size=self.run.image_size)
        except (OSError, ValueError) as error:
            raise EvaluationError(f"--au_judge={self.options.get('au_judge') or 'auto'}: {error}") from None
        if self.reader is not None and os.path.realpath(self.reader.path) == os.path.realpath(self.au_judge.path):
            raise EvaluationError(f"--exemplar_reader={self.options['exemplar_reader']} is the AU judge itself: the "
                                  f"judge scores the transfer, so it must not also read the exemplars")
        # What the exemplar's expression LABEL says about its AUs at best: its class's mean AU vector over the
        # train split. Where that is near the truth, exact AUs add little over the label (procedural data: 0.026).
        self.class_means = None
        if "train" in self.card.get("splits", {}):
            from expr3d.data import records, schema

            try:
                means, _ = records.class_mean_action_units(self.data_dir, "train")
            except (schema.RecordError, OSError) as error:
                raise EvaluationError(f"--data_dir={self.data_dir}: {error}") from None
            if np.isfinite(means).any():
                self.class_means = means

    def _setup_transfer_depth(self):
        import tensorflow as tf

        judge_dir = self.options.get("depth_model_dir")
        if judge_dir:  # one fixed depth network judges every run compared (as the StarGAN evaluation's flag)
            judge = RunDir(judge_dir, flag="--depth_model_dir")
            with run_errors():
                g_depth, self.geometry_kind = judge.load_network("g_depth"), judge.geometry(judge.config())
        elif self.run.g_depth is None:
            raise _Skip(f"{self.model_dir} has no models/g_depth.keras (a run trained with depth networks has one; "
                        f"or pass --depth_model_dir=RUN)")
        else:
            g_depth, self.geometry_kind = self.run.g_depth, self.run.geometry
        self.to_geometry = tf.function(lambda x: tf.cast(g_depth.to_geometry(x, training=False), tf.float32),
                                       autograph=False, reduce_retracing=True)

    def _setup_identity(self):
        path = self.options.get("identity_model")
        if not path:
            raise _Skip("no --identity_model (a Keras model or SavedModel of faces -> identity embeddings); on "
                        "procedural data transfer_paired measures identity against the true render instead")
        from expr3d.metrics.identity import EmbeddingModel

        try:
            self.embed = EmbeddingModel(path, self.options.get("identity_input_range") or "-1,1",
                                        self.options.get("identity_input_size"),
                                        self.options.get("identity_endpoint") or "serving_default")
        except (OSError, ValueError) as error:
            raise EvaluationError(str(error)) from None

    def _setup_stargan_comparison(self):
        path = self.options.get("stargan_model_dir")
        if not path:
            raise _Skip("no --stargan_model_dir (an expression-label run at the same image size to compare with)")
        if not hasattr(self, "au_judge"):
            self._setup_action_units()
        import tensorflow as tf

        with run_errors():
            stargan = RunDir(path, flag="--stargan_model_dir")
            stargan.require_generator("compared by expression class", condition="expression")
            run = stargan.load_generators()
        if run.image_size != self.run.image_size:
            raise EvaluationError(f"--stargan_model_dir={path} was trained at {run.image_size} px; the transfer run "
                                  f"at {self.run.image_size} px")
        g_rgb = run.g_rgb
        self.stargan = tf.function(lambda x, c: tf.cast(g_rgb([x, c], training=False), tf.float32),
                                   autograph=False, reduce_retracing=True)

    # --- the pass over the transfer split -------------------------------------------------------------------------

    def _add(self, key, values):
        self.scores.setdefault(key, []).append(np.asarray(values, np.float64))

    def run_pass(self, progress=True):
        from expr3d.data.transfer import make_transfer_dataset
        from expr3d.metrics import background, image_quality
        from expr3d.metrics.geometry import comparable_geometry, masked_l1
        from expr3d.progress import Progress

        batch_size = int(self.options.get("batch_size") or 32)
        wanted = set(self.active)
        bar = Progress(self.total, desc="evaluate transfer", unit="faces") if progress else None
        samples = {k: [] for k in ("source", "exemplar", "result", "mask", "truth", "stargan")}
        num_samples = int(self.options.get("num_samples") or 8)
        done = 0
        start = time.perf_counter()
        for batch in make_transfer_dataset(self.data_dir, batch_size, image_size=self.run.image_size,
                                           allow_resize=False):
            take = min(len(batch["truth"]["image"]), self.total - done)
            if take <= 0:
                break
            source, exemplar, truth = (np.asarray(batch[r]["image"])[:take] for r in ("source", "exemplar", "truth"))
            result, mask = (np.asarray(t) for t in self.transfer(source, exemplar))
            self_transfer = None
            region = background.background_region(np.asarray(batch["source"]["mask"])[:take], self.radius)
            true_aus = np.asarray(batch["truth"]["action_units"])[:take].astype(np.float64)
            stargan = None
            if "transfer_paired" in wanted:
                self._add("l1", image_quality.l1(result, truth))
                self._add("ssim", image_quality.ssim(result, truth))
                self._add("l1_source", image_quality.l1(source, truth))
                self._add("ssim_source", image_quality.ssim(source, truth))
                self._add("background", background.background_l1(result, source, region))
                self._add("background_truth", background.background_l1(truth, source, region))
                self._add("mask_mean", mask.reshape(take, -1).mean(axis=1))
            if "action_units" in wanted or "stargan_comparison" in wanted:
                self._add("au_error_result", np.abs(self.au_judge.predict(result) - true_aus))
                self._add("au_error_truth", np.abs(self.au_judge.predict(truth) - true_aus))
                self._add("au_error_source", np.abs(self.au_judge.predict(source) - true_aus))
                self_transfer = np.asarray(self.transfer(source, truth)[0])
                self._add("au_error_self_transfer", np.abs(self.au_judge.predict(self_transfer) - true_aus))
                self._add("ssim_self_transfer", image_quality.ssim(self_transfer, truth))
                if self.class_means is not None:
                    classes = np.asarray(batch["exemplar"]["expression"])[:take]
                    self._add("class_mean_error", np.abs(self.class_means[classes] - true_aus))
                if self.transfer_with_code is not None:
                    self._add("code_error", np.abs(self.read_code(exemplar) - true_aus))
                    given_truth = np.asarray(self.transfer_with_code(source, true_aus.astype(np.float32)))
                    self._add("au_error_true_code", np.abs(self.au_judge.predict(given_truth) - true_aus))
            if "disentanglement" in wanted and take > 1:
                # What each feature does to the result: the AU-free map of another face of the batch in place of
                # A's, and A's own code in place of B's. A map the decoder ignores (effect ~0) is "AU-free" at no
                # cost, so its R^2 says little about disentanglement.
                other = np.roll(source, 1, axis=0)
                self._add("free_map_effect", image_quality.l1(
                    np.asarray(self.transfer_with_free_map_of(source, exemplar, other)), result))
                self._add("code_effect", image_quality.l1(np.asarray(self.transfer(source, source)[0]), result))
            if "stargan_comparison" in wanted:
                classes = np.asarray(batch["exemplar"]["expression"])[:take]
                stargan = np.asarray(self.stargan(source, np.eye(len(EXPRESSIONS), dtype=np.float32)[classes]))
                self._add("stargan_l1", image_quality.l1(stargan, truth))
                self._add("stargan_ssim", image_quality.ssim(stargan, truth))
                self._add("stargan_background", background.background_l1(stargan, source, region))
                self._add("au_error_stargan", np.abs(self.au_judge.predict(stargan) - true_aus))
            if "transfer_depth" in wanted:
                key = "depth" if self.geometry_kind == "depth" else "normals"
                real = np.asarray(batch["truth"][key])[:take]
                face = np.asarray(batch["truth"]["mask"])[:take].reshape(take, *result.shape[1:3], 1) > 0.5
                kind = self.geometry_kind
                estimate = comparable_geometry(np.asarray(self.to_geometry(result)), kind)
                self._add("depth_error", masked_l1(estimate, real, face))
                self._add("depth_error_truth", masked_l1(
                    comparable_geometry(np.asarray(self.to_geometry(truth)), kind), real, face))
                self._add("depth_error_source", masked_l1(
                    comparable_geometry(np.asarray(self.to_geometry(source)), kind), real, face))
            if "identity" in wanted:
                from expr3d.metrics.identity import embedding_distances

                anchor = self.embed(source)
                self._add("identity_cosine", embedding_distances(anchor, self.embed(result))[2])
                self._add("identity_cosine_truth", embedding_distances(anchor, self.embed(truth))[2])
            if "samples" in wanted and len(samples["source"]) < num_samples:
                room = num_samples - len(samples["source"])
                for name, values in (("source", source), ("exemplar", exemplar), ("result", result),
                                     ("mask", mask), ("truth", truth), ("stargan", stargan)):
                    if values is not None:
                        samples[name].extend(values[:room])
            done += take
            if bar:
                bar.update(take)
        if bar:
            bar.close()
        self.count = done
        self.timing["loop"] = time.perf_counter() - start
        if "samples" in wanted and samples["source"]:
            self.arrays.update({f"samples/{k}": np.stack(v) for k, v in samples.items() if v})

    def _mean(self, key):
        return float(np.nanmean(np.concatenate(self.scores[key])))

    def _au_means(self, key):
        errors = np.concatenate(self.scores[key])  # [N, 17]
        return float(errors.mean()), errors.mean(axis=0)

    # --- results ------------------------------------------------------------------------------------------------

    def results(self):
        out = {}
        if "transfer_paired" in self.active:
            out["transfer_paired"] = {
                "transfer_l1": self._mean("l1"), "transfer_ssim": self._mean("ssim"),
                "source_l1": self._mean("l1_source"), "source_ssim": self._mean("ssim_source"),
                "background_l1": self._mean("background"), "background_l1_truth": self._mean("background_truth"),
                "mask_mean": self._mean("mask_mean"), "count": int(self.count)}
        if "action_units" in self.active or "stargan_comparison" in self.active:
            summary, per_au = {}, {}
            compared = ("stargan",) if "stargan_comparison" in self.active else ()
            for who in ("result", "truth", "source", "self_transfer") + compared:
                summary[who], per_au[who] = self._au_means(f"au_error_{who}")
                self.arrays[f"action_units/per_au_error_{who}"] = per_au[who]
            if "action_units" in self.active:
                out["action_units"] = {"au_mae": summary["result"], "au_mae_truth": summary["truth"],
                                       "au_mae_source": summary["source"],
                                       "au_mae_self_transfer": summary["self_transfer"],
                                       "self_transfer_ssim": self._mean("ssim_self_transfer"),
                                       "au_judge": os.path.abspath(self.au_judge.path),
                                       "au_judge_test_mae": float(self.au_judge.metadata.get("test_mae", np.nan))}
                if "class_mean_error" in self.scores:
                    out["action_units"]["au_mae_class_mean"] = float(np.nanmean(
                        np.concatenate(self.scores["class_mean_error"])))
                if "code_error" in self.scores:
                    out["action_units"].update(code_au_mae=self._au_means("code_error")[0],
                                               au_mae_true_code=self._au_means("au_error_true_code")[0])
            self.per_au = per_au
            if "stargan_comparison" in self.active:
                out["stargan_comparison"] = {
                    "stargan_au_mae": summary["stargan"], "stargan_l1": self._mean("stargan_l1"),
                    "stargan_ssim": self._mean("stargan_ssim"),
                    "stargan_background_l1": self._mean("stargan_background"),
                    "au_mae_reduction_percent": 100.0 * (1.0 - summary["result"] / summary["stargan"]),
                    "stargan_model_dir": os.path.abspath(self.options["stargan_model_dir"])}
        if "transfer_depth" in self.active:
            out["transfer_depth"] = {"depth_model_dir": os.path.abspath(self.options.get("depth_model_dir")
                                                                        or self.model_dir),
                                     "depth_l1": self._mean("depth_error"),
                                     "depth_l1_truth": self._mean("depth_error_truth"),
                                     "depth_l1_source": self._mean("depth_error_source"),
                                     "geometry_kind": self.geometry_kind}
        if "identity" in self.active:
            out["identity"] = {"identity_cosine": self._mean("identity_cosine"),
                               "identity_cosine_truth": self._mean("identity_cosine_truth")}
        if "disentanglement" in self.active:
            start = time.perf_counter()
            out["disentanglement"] = self.disentanglement()
            self.timing["disentanglement"] = time.perf_counter() - start
        return out

    def disentanglement(self):
        limit = int(self.options.get("probe_examples") or 2000)
        batch_size = int(self.options.get("batch_size") or 32)
        size = self.run.image_size
        train = _features(self.encode, self.data_dir, "train", size, limit, batch_size)
        test = _features(self.encode, self.data_dir, "test", size, limit, batch_size)
        seed = int(self.options.get("seed") or 0)
        report = {"train_faces": len(train[2]), "test_faces": len(test[2]), "pooled_free_grid": PROBE_POOL}
        if "free_map_effect" in self.scores:
            report.update({"free_map_effect_l1": self._mean("free_map_effect"),
                           "code_effect_l1": self._mean("code_effect")})
        for index, feature in ((0, "free"), (1, "code")):
            ridge, ridge_per_au, penalty = ridge_probe(train[index], train[2], test[index], test[2], seed)
            mlp, mlp_per_au = mlp_probe(train[index], train[2], test[index], test[2], seed)
            report.update({f"{feature}_r2": max(ridge, mlp), f"{feature}_r2_ridge": ridge, f"{feature}_r2_mlp": mlp,
                           f"{feature}_ridge_penalty": penalty, f"{feature}_dims": int(train[index].shape[1])})
            self.arrays[f"disentanglement/{feature}_r2_per_au"] = np.array(
                [max(ridge_per_au.get(a, np.nan), mlp_per_au.get(a, np.nan)) for a in ACTION_UNITS])
        return report


def evaluate_transfer(model_dir, data_dir, metrics, output=None, overwrite=False, progress=True, **options):
    """Evaluate the transfer run in `model_dir` on `data_dir`'s transfer split (module docstring); write and return
    the results document. Options: au_judge, stargan_model_dir, identity_model (+ _input_range, _input_size,
    _endpoint), judge_cache_dir, batch_size, max_examples, num_samples, probe_examples, background_dilation, seed,
    label."""
    import keras

    names = parse_transfer_metrics(metrics)
    if options.get("exemplar_reader"):
        if metrics == "all":
            names = list(EXEMPLAR_METRICS)
        elif "disentanglement" in names:
            raise EvaluationError(f"--metrics=disentanglement: {model_dir} is evaluated as an exemplar transfer "
                                  f"(--exemplar_reader): an AU-conditioned run has no AU-free features to probe")
    output = output or os.path.join(model_dir, "evaluation_transfer" if options.get("exemplar_reader")
                                    else "evaluation")
    folder = outputs.OutputFolder(output, "--output", "expr3d.evaluate")
    replaced = folder.check(overwrite, will_write=WRITES, inputs={"--model_dir": model_dir, "--data_dir": data_dir})
    keras.utils.set_random_seed(int(options.get("seed") or 0))
    started = time.time()
    evaluation = TransferEvaluation(model_dir, data_dir, names, options)
    if not evaluation.active:
        return {"metrics": {}, "skipped": evaluation.skipped}
    evaluation.run_pass(progress)
    results = evaluation.results()
    evaluation.timing["total"] = time.time() - started
    document = {
        "format_version": RESULTS_FORMAT_VERSION, "family": "transfer",
        "label": options.get("label") or os.path.basename(os.path.normpath(model_dir)),
        "model_dir": os.path.abspath(model_dir), "data_dir": os.path.abspath(data_dir),
        "metrics_requested": names, "metrics": results, "skipped": evaluation.skipped,
        "counts": {"transfers": int(evaluation.count)}, "timing_seconds": evaluation.timing,
        "flags": {"model_dir": model_dir, "data_dir": data_dir, "metrics": ",".join(names), "output": output,
                  **{k: v for k, v in options.items() if v is not None}},
        "versions": storage.library_versions("python", "numpy", "tensorflow", "keras", "matplotlib", "absl",
                                                "expr3d"),
        "run": {"flags": evaluation.run.config.get("flags", {}), "step": evaluation.run.step,
                "model_config": evaluation.run.config.get("model_config")},
        "dataset": {"name": evaluation.card.get("name"), "image_size": evaluation.card.get("image_size"),
                    "transfer_records": int(evaluation.total)},
    }
    if evaluation.reader is not None:  # an AU run as an exemplar transfer: say so, and which network read B
        document["route"] = {"condition": "action_units", "exemplar_reader": os.path.abspath(evaluation.reader.path),
                             "reader_test_mae": evaluation.reader.metadata.get("test_mae")}
    return writing.write_results(
        folder, replaced, WRITES, document, evaluation.arrays,
        lambda directory: transfer_figures(document, evaluation.arrays, directory, getattr(evaluation, "per_au", None)),
        transfer_markdown)


__all__ = ["DESCRIPTIONS", "EXEMPLAR_METRICS", "TRANSFER_METRICS", "evaluate_transfer", "parse_transfer_metrics"]
