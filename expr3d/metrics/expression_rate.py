"""Expression generation rate: the independent classifier's accuracy on generated faces w.r.t. the requested target.

Every test image is translated to every target expression of the protocol (all 8 classes, or the 6 of the AffectNet
protocol: contempt and disgust excluded, `--protocol=affectnet`); the classifier's prediction is restricted to the
protocol's classes (argmax over their logits). Reports overall accuracy, per-target accuracy and the confusion
matrix (rows = target, columns = predicted, in protocol class order).

Before the generation pass the judge's accuracy on the REAL faces of the evaluated test split (protocol classes) is
measured (`classifier_accuracy_on_evaluated_test_split`); below `--min_judge_accuracy` (default 0.80) the evaluation
stops with `expr3d.metrics.judge.JudgeRejected` instead of reporting a rate that measures the judge.
"""
import time

import numpy as np

from expr3d.labels import EXPRESSIONS
from expr3d.metrics import judge
from expr3d.metrics.registry import Metric, MetricUnavailable, register_metric

PROTOCOLS = {
    "all": tuple(range(len(EXPRESSIONS))),
    # A judge without contempt (--classifier=fer: FER-2013 has seven classes) scores the other seven.
    "seven": tuple(i for i, name in enumerate(EXPRESSIONS) if name != "contempt"),
    "affectnet": tuple(i for i, name in enumerate(EXPRESSIONS) if name not in ("contempt", "disgust")),
}


def protocol_classes(protocol):
    if protocol not in PROTOCOLS:
        raise ValueError(f"--protocol must be one of {sorted(PROTOCOLS)}; got {protocol!r}")
    return PROTOCOLS[protocol]


def restricted_predictions(logits, classes):
    """Class ids (from `classes`) of the largest logit among `classes`."""
    classes = np.asarray(classes)
    return classes[np.argmax(np.asarray(logits)[:, classes], axis=-1)]


class ConfusionAccumulator:
    """Counts (target, predicted) pairs over a fixed class list; accuracy overall and per target."""

    def __init__(self, classes):
        self.classes = tuple(int(c) for c in classes)
        self._index = {c: i for i, c in enumerate(self.classes)}
        self.confusion = np.zeros((len(self.classes), len(self.classes)), np.int64)

    def add(self, targets, predicted):
        rows = [self._index[int(t)] for t in np.ravel(targets)]
        cols = [self._index[int(p)] for p in np.ravel(predicted)]
        np.add.at(self.confusion, (rows, cols), 1)

    def accuracy(self):
        total = self.confusion.sum()
        return float(np.trace(self.confusion) / total) if total else float("nan")

    def per_class(self):
        out = {}
        for i, c in enumerate(self.classes):
            row = self.confusion[i].sum()
            out[EXPRESSIONS[c]] = float(self.confusion[i, i] / row) if row else None
        return out


@register_metric("expression_generation_rate",
                 description="accuracy (%) of the independent classifier on generated faces w.r.t. the target")
class ExpressionGenerationRate(Metric):
    def setup(self, context):
        from expr3d.metrics.judge import classifier_from_context

        try:
            self.classifier = classifier_from_context(context)
        except FileNotFoundError as error:
            raise MetricUnavailable(str(error)) from error
        self.classes = context.target_classes
        self.protocol = context.options.get("protocol", "all")
        self.confusion = ConfusionAccumulator(self.classes)
        # The figure that bounds this metric: the judge's accuracy on the REAL faces of the evaluated test split,
        # measured here, before the generation pass; below --min_judge_accuracy the evaluation stops (JudgeRejected).
        threshold = judge.check_threshold(context.options.get("min_judge_accuracy"))
        start = time.perf_counter()
        self.accuracy_here, self.accuracy_count = judge.judge_accuracy(
            self.classifier.predict_logits, context.test_batches(), self.classes)
        context.timing["judge_check"] = time.perf_counter() - start
        judge.check_judge(self.accuracy_here, self.accuracy_count, threshold, self.classifier.path, context.data_dir,
                          len(self.classes), auto=context.options.get("classifier") == judge.AUTO)
        self.threshold = threshold
        metadata = getattr(self.classifier, "metadata", None) or {}
        self.guide_warning = judge.guide_architecture_warning(metadata, self.classifier.path, context.run_config,
                                                              context.model_dir) if metadata.get("width") else None

    def update(self, step):
        logits = step.memo("classifier_logits", lambda: self.classifier.predict_logits(step.fake))
        self.confusion.add(step.target_ids, restricted_predictions(logits, self.classes))

    def result(self):
        out = {"expression_generation_rate": 100.0 * self.confusion.accuracy(),
               "expression_generation_rate_count": int(self.confusion.confusion.sum()),
               "expression_generation_rate_protocol": self.protocol,
               "expression_generation_rate_chance": 100.0 / len(self.classes),
               "classifier_test_accuracy": 100.0 * float(self.classifier.metadata.get("test_accuracy", float("nan")))}
        out["classifier_accuracy_on_evaluated_test_split"] = 100.0 * float(self.accuracy_here)
        out["classifier_accuracy_on_evaluated_test_split_count"] = int(self.accuracy_count)
        out["min_judge_accuracy"] = 100.0 * float(self.threshold)
        out["judge_shares_guide_architecture"] = bool(self.guide_warning)
        for name, value in self.confusion.per_class().items():
            out[f"expression_generation_rate/{name}"] = None if value is None else 100.0 * value
        return out

    def warnings(self):
        return [f"expression_generation_rate: {self.guide_warning}"] if self.guide_warning else []

    def details(self):
        return {"classes": [EXPRESSIONS[c] for c in self.classes], "confusion": self.confusion.confusion.tolist(),
                "rows": "target", "columns": "predicted", "classifier": self.classifier.path}
