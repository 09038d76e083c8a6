"""D_rgb's own expression head, read on the real test faces and on the translations: the signal G_rgb trains against.

G_rgb learns a target expression only as well as D_rgb's classification head tells expressions apart: a critic that
reads 50 % of the real test faces right cannot teach a generator to reach 85 % with an independent judge. This metric
reports that head's accuracy on the REAL faces of the test split (`critic_accuracy`, per class and as a confusion
matrix) and how often it reads the requested target in the translations (`critic_generation_rate`: how far G_rgb
satisfies its own critic). Read with `expression_generation_rate`:
- low `critic_accuracy`: the critic is the bottleneck (too little or too hard classification training, e.g. an input
  augmentation that hides the cues; session 18 measured 48.9 % with DiffAugment's cutout, 79.1 % without);
- high `critic_generation_rate`, low judged rate: G_rgb satisfies its critic with something the judge does not
  read as the expression (a texture the critic's head has learnt as a class cue).
D_rgb is read as exported (`models/d_rgb.keras`), on un-augmented images, in float32, over the protocol's classes.
"""
import numpy as np

from expr3d.labels import EXPRESSIONS
from expr3d.metrics.expression_rate import ConfusionAccumulator, restricted_predictions
from expr3d.metrics.registry import Metric, MetricUnavailable, register_metric


@register_metric("critic_accuracy",
                 description="D_rgb's expression head: accuracy (%) on the real test faces, and how often it reads "
                             "the target in the translations")
class CriticAccuracy(Metric):
    def setup(self, context):
        import tensorflow as tf

        from expr3d.run_dir import RunDir

        d_rgb = RunDir(context.model_dir).load_network("d_rgb", required=False)
        if d_rgb is None:
            raise MetricUnavailable(f"{context.model_dir} has no exported D_rgb (models/d_rgb.keras)")
        self._logits = tf.function(lambda x: tf.cast(d_rgb(x, training=False)[1], tf.float32),
                                   input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32)])
        self.classes = context.target_classes
        self.real = ConfusionAccumulator(self.classes)
        self.generated = ConfusionAccumulator(self.classes)

    def _predict(self, images):
        return restricted_predictions(self._logits(np.asarray(images, np.float32)).numpy(), self.classes)

    def update_real(self, batch):
        keep = np.isin(batch.expression, self.classes)
        if keep.any():
            self.real.add(batch.expression[keep], self._predict(batch.image[keep]))

    def update(self, step):
        self.generated.add(step.target_ids, self._predict(step.fake))

    def result(self):
        out = {"critic_accuracy": 100.0 * self.real.accuracy(),
               "critic_accuracy_count": int(self.real.confusion.sum()),
               "critic_generation_rate": 100.0 * self.generated.accuracy()}
        for name, value in self.real.per_class().items():
            out[f"critic_accuracy/{name}"] = None if value is None else 100.0 * value
        for name, value in self.generated.per_class().items():
            out[f"critic_generation_rate/{name}"] = None if value is None else 100.0 * value
        return out

    def details(self):
        return {"classes": [EXPRESSIONS[c] for c in self.classes], "rows": "true (real) / target (generated)",
                "columns": "predicted by D_rgb", "real": self.real.confusion.tolist(),
                "generated": self.generated.confusion.tolist()}
