"""Background preservation: how much a translation changes the pixels OUTSIDE the face.

An expression edit should leave the background untouched. For every test face x and target t this metric reports
the mean |G(x, t) - x| over the pixels outside x's face region, averaged over channels and over those pixels per
image, then over every (x, t) translation (`background_l1`) and per target (`background_l1/<target>`).

- Scale: images in [-1, 1], the same scale as `paired_l1` (`expr3d.metrics.paired`), so the two can be read side by
  side; halve a value for the [0, 1] scale.
- Face region: the dataset's stored mask (schema field `mask/encoded`: where depth and normals are valid - for the
  procedural faces the whole head: face, hair, ears and neck; clothes count as background), resized to the model's
  image size by the pipeline, then dilated by a disc of radius `--background_dilation` pixels at 64 px, scaled
  with the image size (radius = round(dilation * S / 64): 2 px at 64 px, 2 at 48, 4 at 128), so the anti-aliased
  silhouette edge and small jaw and cheek movements of a true expression change do not count as background.
- `background_l1_truth` (paired synthetic splits only): the same error of the TRUE render of x's identity, pose and
  light under t, i.e. what a perfect generator scores: the floor, and a check that the dilation suffices (on the
  procedural faces at 64 px with 2 px it is below 1e-4).
- `background_fraction`: the mean share of pixels counted as background; images with no background pixel are left
  out (`background_empty`).
"""
import numpy as np

from expr3d.labels import EXPRESSIONS
from expr3d.metrics.registry import Metric, register_metric

DEFAULT_DILATION = 2.0   # pixels at REFERENCE_SIZE
REFERENCE_SIZE = 64


def dilation_radius(dilation, image_size):
    """The disc radius in pixels for `dilation` pixels at 64 px, scaled to `image_size` (round half up)."""
    if dilation is None:
        dilation = DEFAULT_DILATION
    dilation = float(dilation)
    if not np.isfinite(dilation) or dilation < 0:
        raise ValueError(f"--background_dilation must be >= 0 pixels (at 64 px); got {dilation}")
    return int(np.floor(dilation * float(image_size) / REFERENCE_SIZE + 0.5))


def background_region(mask, radius):
    """bool `[B, H, W]`: pixels outside the face mask (`[B, H, W(, 1)]`, > 0.5 inside) dilated by a disc of `radius`."""
    import cv2

    mask = np.asarray(mask)
    if mask.ndim == 4:
        mask = mask[..., 0]
    face = (mask > 0.5).astype(np.uint8)
    if radius > 0:
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
        face = np.stack([cv2.dilate(m, kernel) for m in face]) if len(face) else face
    return face == 0


def background_l1(a, b, region):
    """Per-image mean |a - b| (over channels and `region` pixels; [-1, 1] scale); NaN where `region` is empty."""
    diff = np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64)).mean(axis=-1)
    weights = np.asarray(region, np.float64)
    count = weights.reshape(len(diff), -1).sum(axis=1)
    total = (diff * weights).reshape(len(diff), -1).sum(axis=1)
    return np.where(count > 0, total / np.maximum(count, 1.0), np.nan)


@register_metric("background", description="mean |G(x, t) - x| outside the dilated face mask ([-1, 1] scale, like "
                                           "paired_l1): background kept unchanged")
class BackgroundPreservation(Metric):
    def __init__(self):
        self._values = {}          # target -> [per-image arrays]
        self._truth = []
        self._fractions = []
        self.empty = 0

    def setup(self, context):
        self.radius = dilation_radius(context.options.get("background_dilation"), context.image_size)
        from expr3d.metrics.paired import build_paired_index

        # Shared with the `paired` metric (one pass over the test split); empty for unpaired (real) data.
        index = context.resource("paired_index",
                                 lambda: build_paired_index(context.test_batches(), context.geometry_kind))
        self.index = index if len(index) else None

    def update_real(self, batch):
        batch.memo("background_region", lambda: background_region(batch.mask, self.radius))

    def update(self, step):
        batch = step.batch
        region = batch.memo("background_region", lambda: background_region(batch.mask, self.radius))
        values = background_l1(step.fake, batch.image, region)
        self._values.setdefault(step.target, []).append(values)
        if step.target == step.context.target_classes[0]:
            self._fractions.append(region.reshape(len(region), -1).mean(axis=1))
            self.empty += int(np.sum(~region.reshape(len(region), -1).any(axis=1)))
        if self.index is not None:
            rows, truth, _, _ = self.index.lookup(batch.pair_id, step.target_ids)
            if len(rows):
                self._truth.append(background_l1(truth, batch.image[rows], region[rows]))

    def result(self):
        every = [v for chunks in self._values.values() for v in chunks]
        values = np.concatenate(every) if every else np.zeros([0])
        finite = values[np.isfinite(values)]
        out = {"background_l1": float(finite.mean()) if finite.size else None,
               "background_count": int(finite.size),
               "background_empty": int(self.empty),
               "background_dilation_px": int(self.radius),
               "background_fraction": float(np.concatenate(self._fractions).mean()) if self._fractions else None}
        if self._truth:
            truth = np.concatenate(self._truth)
            truth = truth[np.isfinite(truth)]
            out["background_l1_truth"] = float(truth.mean()) if truth.size else None
        for target, chunks in sorted(self._values.items()):
            per = np.concatenate(chunks)
            per = per[np.isfinite(per)]
            out[f"background_l1/{EXPRESSIONS[target]}"] = float(per.mean()) if per.size else None
        return out

    def warnings(self):
        if self.empty:
            return [f"background: {self.empty} test image(s) have no pixel outside the dilated face mask and are "
                    "left out"]
        return []
