"""Evaluation metrics, registered by name (`expr3d.metrics.registry`), with the figures and reports built on them.

    from expr3d.metrics import registry
    registry.list_metrics()            # names usable in `python -m expr3d.evaluate --metrics=...`
    metric = registry.create("fid")    # a fresh accumulator

Importing this package registers every built-in metric. The evaluation runs them: `context` (what a metric sees:
the run's networks, the test batches, shared resources), `loop` (every metric over every batch and target, then
results.json and the figures; `python -m expr3d.evaluate` is its command line). The expression classifier that
judges generated faces: `expression_classifier` (the model and its files), `judge` (which one an evaluation uses, and
whether it is good enough), `classifier` (its training and `python -m expr3d.metrics.classifier`).
"""
from expr3d.metrics import registry
from expr3d.metrics.registry import MetricUnavailable, create, list_metrics, register_metric

# Importing the modules registers their metrics.
from expr3d.metrics import (background, critic_accuracy, expression_rate, fid, geometry, identity, image_quality,  # noqa: E402,F401
                            paired, samples)

__all__ = ["MetricUnavailable", "create", "list_metrics", "register_metric", "registry"]
