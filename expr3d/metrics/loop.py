"""The evaluation loop: every registered metric over every (test batch, target expression), then results.json,
results.md, arrays.npz and the figures (`python -m expr3d.evaluate` is its command line).

    document = evaluate("runs/depth64", "data/synthetic64", "psnr,ssim,fid", output="runs/depth64/evaluation")

A metric that cannot run (`registry.MetricUnavailable`) is skipped with its reason; one that fails while computing its
result is skipped too, and the others still report. The output folder is checked before the (long) evaluation and
its files replaced only after it, so a failed evaluation keeps the earlier results.
"""
import os
import sys
import time

from expr3d import outputs, storage
from expr3d.metrics import figures, registry, report, writing
from expr3d.metrics.context import EvaluationContext, EvaluationError, TranslationStep, open_run
from expr3d.progress import Progress

DEFAULT_METRICS = "expression_generation_rate,fid,kid,psnr,ssim,identity,geometry,paired,background,samples"
RESULTS_FORMAT_VERSION = 1
# Everything an evaluation writes into --output (the output-exists check looks at all of it, not one file).
EVALUATION_WRITES = ("results.json", "results.md", "arrays.npz", "figures/confusion_matrix.png",
                     "figures/learning_curves.png", "figures/identity_histogram.png", "figures/samples.png")


def evaluate(model_dir, data_dir, metrics, output=None, overwrite=False, progress=True, **options):
    """Run `metrics` (names) on the run in `model_dir` over `data_dir`'s test split; write and return the results.

    Options (the CLI flags): classifier, inception_weights, fid_feature_model, identity_model, identity_input_range,
    identity_input_size, identity_endpoint, depth_model_dir, protocol, batch_size, max_examples, num_samples,
    precision, seed, label, background_dilation, min_judge_accuracy (default 0.80), judge_cache_dir,
    judge_identities, judge_epochs.
    """
    names = registry.parse_metric_list(metrics)
    output = output or os.path.join(model_dir, "evaluation")
    results_path = os.path.join(output, "results.json")
    # Checked before the (long) evaluation, replaced only after it: a failed run keeps the earlier results.
    folder = outputs.OutputFolder(output, "--output", "expr3d.evaluate")
    legacy = EVALUATION_WRITES if os.path.isfile(results_path) and not folder.written() else ()
    replaced = folder.check(overwrite, will_write=EVALUATION_WRITES, legacy=legacy,
                            inputs={"--model_dir": model_dir, "--data_dir": data_dir})
    open_run(model_dir)  # a bad run directory is named before TensorFlow loads
    import keras

    options.setdefault("seed", 0)
    keras.utils.set_random_seed(int(options["seed"]))
    started = time.time()
    context = EvaluationContext(model_dir, data_dir, options)
    if context.num_test_examples <= 0:
        raise EvaluationError(f"--data_dir={data_dir}: its test split holds no examples; nothing to evaluate")

    active, skipped = [], {}
    for name in names:
        metric = registry.create(name)
        setup_start = time.perf_counter()
        try:
            metric.setup(context)
            active.append(metric)
        except registry.MetricUnavailable as error:
            skipped[name] = str(error)
            sys.stderr.write(f"metric {name} skipped: {error}\n")
        context.timing[f"setup/{name}"] = time.perf_counter() - setup_start

    targets = list(context.target_classes)
    total = context.num_test_examples * len(targets)
    bar = Progress(total, desc="evaluate", unit="translations") if progress else None
    metric_seconds = {m.name: 0.0 for m in active}

    def timed(metric, fn, *args):
        network_before = context._network_seconds
        start = time.perf_counter()
        fn(*args)
        elapsed = time.perf_counter() - start - (context._network_seconds - network_before)
        metric_seconds[metric.name] += elapsed

    loop_start = time.perf_counter()
    images = 0
    for batch in context.test_batches():
        images += batch.size
        for metric in active:
            timed(metric, metric.update_real, batch)
        for target in targets:
            step = TranslationStep(context, batch, target)
            for metric in active:
                timed(metric, metric.update, step)
            if bar:
                bar.update(batch.size)
    if bar:
        bar.close()
    loop_seconds = time.perf_counter() - loop_start

    results, details, arrays, warnings = {}, {}, {}, []
    for metric in active:
        start = time.perf_counter()
        try:
            results[metric.name] = metric.result()
        except Exception as error:  # one broken metric must not lose the others' results
            skipped[metric.name] = f"failed while computing the result: {type(error).__name__}: {error}"
            continue
        details[metric.name] = metric.details()
        for key, value in metric.arrays().items():
            arrays[f"{metric.name}/{key}"] = value
        warnings.extend(metric.warnings())
        metric_seconds[metric.name] += time.perf_counter() - start
    for text in warnings:
        sys.stderr.write(f"warning: {text}\n")

    timing = {"total": time.time() - started, "loop": loop_seconds,
              **{k: v for k, v in context.timing.items()}, **{f"metric/{k}": v for k, v in metric_seconds.items()}}
    run_flags = context.run_config.get("flags", {})
    document = {
        "format_version": RESULTS_FORMAT_VERSION,
        "label": options.get("label") or os.path.basename(os.path.normpath(model_dir)),
        "model_dir": os.path.abspath(model_dir),
        "data_dir": os.path.abspath(data_dir),
        "depth_model_dir": os.path.abspath(context.depth_model_dir),
        "metrics_requested": names,
        "metrics": results,
        "skipped": skipped,
        "warnings": warnings,
        "details": details,
        "counts": {"test_images": images, "targets": [int(t) for t in targets], "translations": images * len(targets),
                   "skipped_records": context.skipped_records},
        "skipped_problems": context.skipped_problems,
        "timing_seconds": timing,
        "flags": {"model_dir": model_dir, "data_dir": data_dir, "metrics": ",".join(names), "output": output,
                  **options},
        "versions": storage.library_versions("python", "numpy", "tensorflow", "keras", "matplotlib", "absl",
                                                "expr3d"),
        "run": {"flags": run_flags, "model_config": context.run_config.get("model_config"),
                "step": context.run_config.get("step"), "dataset": context.run_config.get("dataset"),
                "geometry": report.run_geometry(run_flags), "confidence_penalty": report.run_penalty(run_flags)},
        "dataset": {"name": context.card.get("name"), "image_size": context.card.get("image_size"),
                    "test_examples": int(context.card["splits"]["test"]["num_examples"])},
    }
    folder.adopt(legacy)
    return writing.write_results(folder, replaced, EVALUATION_WRITES, document, arrays,
                                 lambda directory: figures.evaluation_figures(document, arrays, directory),
                                 report.evaluation_markdown)
