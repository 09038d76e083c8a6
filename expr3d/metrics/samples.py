"""The `samples` pseudo-metric: keeps the first test faces and their translations for the Fig. 5 sample grid."""
import numpy as np

from expr3d.metrics.registry import Metric, register_metric


@register_metric("samples", description="first --num_samples test faces translated to every target, with G_depth's "
                                        "estimated depth (the Fig. 5 sample grid)")
class Samples(Metric):
    def __init__(self):
        self._inputs, self._input_depth = [], []
        self._fakes, self._fake_depth = {}, {}
        self._kept = 0

    def setup(self, context):
        self.limit = int(context.options.get("num_samples", 8))
        self.targets = list(context.target_classes)
        self.with_depth = context.has_depth_networks

    def update_real(self, batch):
        take = max(0, min(self.limit - self._kept, len(batch.image)))
        self._take = take
        if take:
            self._inputs.append(batch.image[:take])
            if self.with_depth:
                self._input_depth.append(batch.real_geometry_estimate[:take].mean(axis=-1, keepdims=True))
        self._kept += take

    def update(self, step):
        if not self._take:
            return
        self._fakes.setdefault(step.target, []).append(step.fake[:self._take])
        if self.with_depth:
            self._fake_depth.setdefault(step.target, []).append(
                step.fake_geometry[:self._take].mean(axis=-1, keepdims=True))

    def result(self):
        return {"samples_count": int(self._kept)}

    def arrays(self):
        if not self._inputs:
            return {}
        out = {"inputs": np.concatenate(self._inputs).astype(np.float16),
               "targets": np.asarray(self.targets, np.int32),
               "fakes": np.stack([np.concatenate(self._fakes[t]) for t in self.targets], axis=1).astype(np.float16)}
        if self.with_depth:
            out["input_depth"] = np.concatenate(self._input_depth).astype(np.float16)
            out["fake_depth"] = np.stack([np.concatenate(self._fake_depth[t]) for t in self.targets],
                                         axis=1).astype(np.float16)
        return out
