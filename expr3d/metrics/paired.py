"""Paired ground truth (synthetic data): generated faces vs the true renders of the same face under the target.

In a paired test split (expr3d.data.synthetic), every `pair_id` holds one identity rendered with identical pose and
light under every expression, so the ground truth of (source x, target t) is the test example with x's `pair_id` and
expression t. Reported over every (x, t) whose ground truth exists:

- `paired_l1` (on [-1, 1]), `paired_psnr` (dB, capped at 100) and `paired_ssim` of G(x, t) vs the true render;
- `paired_l1_input`: the same L1 for the untouched input x (the "do nothing" baseline a model must beat);
- `paired_edit_share` (median) and `paired_edit_share_mean`: how much of the true edit the output carries,
  <G(x, t) - x, truth - x> / |truth - x|^2 per pair whose target is not x's own expression (0 = a copy of x,
  1 = the true render's change, in its direction; 0.5 = half of it; `paired_edit_share/<target>`: the median per
  target). A blurred edit scores low too: the true change blurred by a 1-pixel Gaussian carries 0.5 at 64 px;
- `paired_depth_l1`: |G_depth's estimate of G(x, t) - true target geometry| inside the true target's face mask
  (normalised depth units, or normals channels), when the run has a depth network.

Unavailable (skipped with a note) when the test split has no pair ids (real datasets).
"""
import numpy as np

from expr3d.labels import EXPRESSIONS
from expr3d.imaging.pixels import from_uint8, to_uint8
from expr3d.metrics import image_quality
from expr3d.metrics.geometry import comparable_geometry, masked_l1
from expr3d.metrics.registry import Metric, MetricUnavailable, register_metric


class PairedIndex:
    """(pair_id, expression) -> true image (uint8), geometry (float16) and mask (bool) of the test split."""

    def __init__(self, kind):
        self.kind = kind
        self._entries = {}

    def add_batch(self, batch):
        geometry = batch.depth if self.kind == "depth" else batch.normals
        for i, (pair, expression) in enumerate(zip(batch.pair_id, batch.expression)):
            if int(pair) < 0:
                continue
            image = to_uint8(batch.image[i])
            self._entries[(int(pair), int(expression))] = (image, geometry[i].astype(np.float16), batch.mask[i] > 0.5)

    def __len__(self):
        return len(self._entries)

    def lookup(self, pair_ids, targets):
        """Indices of rows with a ground truth, and their stacked images ([-1, 1]), geometries and masks."""
        rows, images, geometries, masks = [], [], [], []
        for i, (pair, target) in enumerate(zip(pair_ids, targets)):
            entry = self._entries.get((int(pair), int(target)))
            if entry is None:
                continue
            rows.append(i)
            images.append(from_uint8(entry[0]))
            geometries.append(entry[1].astype(np.float32))
            masks.append(entry[2])
        if not rows:
            return np.zeros([0], np.int64), None, None, None
        return np.asarray(rows), np.stack(images), np.stack(geometries), np.stack(masks)


def edit_share(source, output, truth, min_change=1e-6):
    """Per-pair share of the true edit that `output` carries: <output - source, truth - source> / |truth - source|^2
    over all pixels and channels (`[B, H, W, C]` in [-1, 1]); NaN where truth and source (nearly) agree."""
    if not len(source):
        return np.zeros([0])
    source = np.asarray(source, np.float64).reshape(len(source), -1)
    change = np.asarray(truth, np.float64).reshape(len(source), -1) - source
    edit = np.asarray(output, np.float64).reshape(len(source), -1) - source
    norm = np.sum(change * change, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(norm > min_change * change.shape[1], np.sum(edit * change, axis=1) / norm, np.nan)


def build_paired_index(batches, kind="depth"):
    index = PairedIndex(kind)
    for batch in batches:
        index.add_batch(batch)
    return index


@register_metric("paired", description="synthetic data: L1/PSNR/SSIM of generated vs true target renders, and depth "
                                       "error of the estimate vs the true target depth")
class PairedGroundTruth(Metric):
    def __init__(self):
        self._values = {k: [] for k in ("l1", "psnr", "ssim", "l1_input", "depth_l1")}
        self._edit_share = {}  # target expression -> per-pair shares
        self.missing = 0

    def setup(self, context):
        self.kind = context.geometry_kind
        self.index = context.resource("paired_index",
                                      lambda: build_paired_index(context.test_batches(), self.kind))
        if len(self.index) == 0:
            raise MetricUnavailable(f"paired ground truth skipped: the test split of {context.data_dir} has no pair "
                                    "ids (only synthetic datasets from expr3d.data.synthetic are paired)")
        self.with_depth = context.has_depth_networks

    def update(self, step):
        rows, truth, truth_geometry, truth_mask = self.index.lookup(step.batch.pair_id, step.target_ids)
        self.missing += len(step.target_ids) - len(rows)
        if not len(rows):
            return
        fake = step.fake[rows]
        self._values["l1"].append(image_quality.l1(fake, truth))
        self._values["psnr"].append(image_quality.psnr(fake, truth))
        self._values["ssim"].append(image_quality.ssim(fake, truth))
        self._values["l1_input"].append(image_quality.l1(step.batch.image[rows], truth))
        edited = step.batch.expression[rows] != step.target  # the source's own expression has no edit to carry
        self._edit_share.setdefault(step.target, []).append(
            edit_share(step.batch.image[rows][edited], fake[edited], truth[edited]))
        if self.with_depth:
            estimate = comparable_geometry(step.fake_geometry[rows], self.kind)
            self._values["depth_l1"].append(masked_l1(estimate, truth_geometry, truth_mask))

    def result(self):
        out = {}
        for key, chunks in self._values.items():
            if chunks:
                values = np.concatenate(chunks)
                out[f"paired_{key}"] = float(np.nanmean(values))
        shares = {t: np.concatenate(v) for t, v in sorted(self._edit_share.items())}
        every = np.concatenate(list(shares.values())) if shares else np.zeros([0])
        every = every[np.isfinite(every)]
        if len(every):
            out["paired_edit_share"] = float(np.median(every))
            out["paired_edit_share_mean"] = float(np.mean(every))
            for t, v in shares.items():
                if np.isfinite(v).any():
                    name = EXPRESSIONS[t] if t < len(EXPRESSIONS) else str(t)
                    out[f"paired_edit_share/{name}"] = float(np.median(v[np.isfinite(v)]))
        out["paired_count"] = int(sum(len(c) for c in self._values["l1"]))
        out["paired_missing"] = int(self.missing)
        return out

    def warnings(self):
        if self.missing:
            return [f"paired: {self.missing} (image, target) pairs had no ground truth in the test split"]
        return []
