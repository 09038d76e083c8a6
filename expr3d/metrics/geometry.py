"""Geometry consistency of translations, judged by the depth network.

For every test face x (expression c) and target t, G_depth estimates the geometry of the generated face G(x, t).
Outside the regions an expression moves, that geometry should stay the source's: we compare it with x's REAL
geometry on a rigid-region mask, and report D_depth's classification of the estimated geometry as the target.

Rigid region (documented approximation; no landmarks needed): inside the face mask, minus two horizontal bands of the
mask's bounding box measured from its top, as a fraction of its height: the brows and eyes band
`EYE_BAND = (0.20, 0.50)` and the mouth band `MOUTH_BAND = (0.62, 0.92)`. What remains is the forehead top, the nose /
upper cheeks band and the chin. For depth geometry the error is |estimated depth - real depth| with depth the mean of
the 3 channels, in the pipeline's normalised units ([-1, 1] per face); for normals it is the mean absolute difference
over the 3 channels.

Reported: `geometry_rigid_l1` (generated faces), `geometry_rigid_l1_real` (G_depth on the real source: the
estimator's own error floor), `geometry_expression_l1` (inside the bands, for contrast) and
`geometry_target_accuracy` (% of estimated geometries D_depth classifies as the target, restricted to the protocol's
classes). Its ceilings, measured on the real test faces (source expression, protocol classes only):
`geometry_real_accuracy` (D_depth on the REAL geometry) and `geometry_real_estimate_accuracy` (D_depth on G_depth's
estimate of the real face). Near chance, they say the depth network cannot tell expressions apart, so it cannot
guide the generator towards them either. `--depth_model_dir` judges every run with the same G_depth/D_depth (fair
comparisons across runs).
"""
import numpy as np

from expr3d.data.pipeline import geometry_map
from expr3d.metrics.expression_rate import ConfusionAccumulator, restricted_predictions
from expr3d.metrics.registry import Metric, MetricUnavailable, register_metric

EYE_BAND = (0.20, 0.50)
MOUTH_BAND = (0.62, 0.92)


def expression_region_mask(mask, bands=(EYE_BAND, MOUTH_BAND)):
    """`[B, H, W, 1]` {0,1} masks -> bool `[B, H, W, 1]`: mask pixels inside the expression bands of its bounding box."""
    mask = np.asarray(mask) > 0.5
    out = np.zeros_like(mask)
    rows = np.arange(mask.shape[1])
    for i in range(len(mask)):
        occupied = np.flatnonzero(mask[i, :, :, 0].any(axis=1))
        if occupied.size == 0:
            continue
        top, bottom = occupied[0], occupied[-1] + 1
        fraction = (rows + 0.5 - top) / max(bottom - top, 1)
        in_band = np.zeros(mask.shape[1], bool)
        for low, high in bands:
            in_band |= (fraction >= low) & (fraction < high)
        out[i] = mask[i] & in_band[:, None, None]
    return out


def rigid_region_mask(mask):
    """Face-mask pixels outside the expression bands (`[B, H, W, 1]` bool)."""
    return (np.asarray(mask) > 0.5) & ~expression_region_mask(mask)


def masked_l1(a, b, region):
    """Per-image mean |a - b| (averaged over channels) over `region` pixels; NaN where the region is empty."""
    diff = np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64)).mean(axis=-1, keepdims=True)
    weights = np.asarray(region, np.float64)
    count = weights.reshape(len(diff), -1).sum(axis=1)
    total = (diff * weights).reshape(len(diff), -1).sum(axis=1)
    return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def comparable_geometry(geometry, kind):
    """Depth `[B, H, W, 1]` (channel mean) for depth maps; the 3 channels for normals."""
    geometry = np.asarray(geometry)
    return geometry.mean(axis=-1, keepdims=True) if kind == "depth" else geometry


@register_metric("geometry", description="G_depth estimate of generated faces vs the source's real geometry outside "
                                         "expression regions, and D_depth's target accuracy on it")
class GeometryConsistency(Metric):
    def __init__(self):
        self._rigid, self._expr, self._real = [], [], []

    def setup(self, context):
        if not context.has_depth_networks:
            raise MetricUnavailable(f"geometry consistency skipped: {context.depth_model_dir} has no "
                                    "models/g_depth.keras and models/d_depth.keras (pass --depth_model_dir=RUN with a "
                                    "depth network)")
        self.kind = context.geometry_kind
        self.confusion = ConfusionAccumulator(context.target_classes)
        self.classes = context.target_classes
        self.real_confusion = ConfusionAccumulator(context.target_classes)
        self.estimate_confusion = ConfusionAccumulator(context.target_classes)
        self.context = context

    def _real_geometry(self, batch):
        return batch.depth if self.kind == "depth" else batch.normals

    def update_real(self, batch):
        region = batch.memo("rigid_region", lambda: rigid_region_mask(batch.mask))
        estimate = comparable_geometry(batch.real_geometry_estimate, self.kind)
        self._real.append(masked_l1(estimate, self._real_geometry(batch), region))
        keep = np.isin(batch.expression, self.classes)
        if keep.any():
            real_map = np.asarray(geometry_map({"depth": batch.depth[keep], "normals": batch.normals[keep]},
                                               self.kind))
            labels = batch.expression[keep]
            self.real_confusion.add(labels, restricted_predictions(
                self.context.network_call("geometry_logits", real_map), self.classes))
            self.estimate_confusion.add(labels, restricted_predictions(
                self.context.network_call("geometry_logits", batch.real_geometry_estimate[keep]), self.classes))

    def update(self, step):
        batch = step.batch
        rigid = batch.memo("rigid_region", lambda: rigid_region_mask(batch.mask))
        bands = batch.memo("expression_region", lambda: expression_region_mask(batch.mask))
        estimate = comparable_geometry(step.fake_geometry, self.kind)
        real = self._real_geometry(batch)
        self._rigid.append(masked_l1(estimate, real, rigid))
        self._expr.append(masked_l1(estimate, real, bands))
        self.confusion.add(step.target_ids, restricted_predictions(step.fake_geometry_logits, self.classes))

    def result(self):
        rigid, expr, real = (np.concatenate(v) for v in (self._rigid, self._expr, self._real))
        return {"geometry_rigid_l1": float(np.nanmean(rigid)), "geometry_rigid_l1_real": float(np.nanmean(real)),
                "geometry_expression_l1": float(np.nanmean(expr)),
                "geometry_target_accuracy": 100.0 * self.confusion.accuracy(),
                "geometry_real_accuracy": 100.0 * self.real_confusion.accuracy(),
                "geometry_real_estimate_accuracy": 100.0 * self.estimate_confusion.accuracy(),
                "geometry_real_count": int(self.real_confusion.confusion.sum()),
                "geometry_count": int(np.isfinite(rigid).sum()), "geometry_kind": self.kind}

    def details(self):
        return {"d_depth_confusion": self.confusion.confusion.tolist(), "rows": "target", "columns": "predicted"}
