"""Automatic quality scores of one prepared face, and the thresholds that reject bad fits before the manual pass.

All scores are unit-free so the same thresholds serve depth in pixels, metres or pseudo-depth:
    coverage       share of the face ellipse (inscribed in the face box, in the crop) with valid depth after filling
    hole_fraction  share of the filled face region that was missing before filling
    outliers       share of valid pixels outside [q25 - 3 IQR, q75 + 3 IQR] of the face's depth
    discontinuity  share of neighbouring valid pixel pairs whose depth jumps by more than 25% of the face's depth
                   range (q98 - q2): spikes, folded meshes, a background fused to the face
    box_iou        IoU of the face box and the bounding box of the valid depth (a mesh fitted to another face, a
                   depth map of another image, a detection on the wrong face); 1 when the box came from depth itself
The summary `score` in [0, 1] multiplies the pass margins; review sheets sort by it, worst first.
"""
import dataclasses

import numpy as np


@dataclasses.dataclass
class Thresholds:
    """Rejection thresholds (flags --min_coverage, --max_hole_fraction, --max_outliers, --max_discontinuity,
    --min_box_iou)."""

    min_coverage: float = 0.6
    max_hole_fraction: float = 0.25
    max_outliers: float = 0.02
    max_discontinuity: float = 0.01
    min_box_iou: float = 0.3


def face_ellipse(box, size, shrink=0.9):
    """Boolean [S, S] ellipse inscribed in `box` (x, y, w, h; crop coordinates), shrunk by `shrink`."""
    x, y, w, h = box
    rows, cols = np.mgrid[0:size, 0:size].astype(np.float64) + 0.5
    cx, cy = x + w / 2.0, y + h / 2.0
    rx, ry = max(w * shrink / 2.0, 0.5), max(h * shrink / 2.0, 0.5)
    return ((cols - cx) / rx) ** 2 + ((rows - cy) / ry) ** 2 <= 1.0


def scores(depth, mask, hole_fraction, face_box, size, box_is_from_depth=False):
    """Quality scores of one crop (depth after filling, its mask, the face box in crop coordinates)."""
    from expr3d.imaging.faces import box_from_mask, box_iou

    result = {"hole_fraction": float(hole_fraction)}
    ellipse = face_ellipse(face_box, size)
    result["coverage"] = float((mask & ellipse).sum() / max(ellipse.sum(), 1))
    values = depth[mask].astype(np.float64)
    if values.size < 16:
        result.update(outliers=1.0, discontinuity=1.0, box_iou=0.0)
    else:
        q2, q25, q75, q98 = np.percentile(values, [2, 25, 75, 98])
        iqr = max(q75 - q25, 1e-12)
        result["outliers"] = float(np.mean((values < q25 - 3 * iqr) | (values > q75 + 3 * iqr)))
        jump = 0.25 * max(q98 - q2, 1e-12)
        pairs = 0
        jumps = 0
        for a, b, ma, mb in ((depth[:, 1:], depth[:, :-1], mask[:, 1:], mask[:, :-1]),
                             (depth[1:], depth[:-1], mask[1:], mask[:-1])):  # horizontal, vertical neighbours
            both = ma & mb
            pairs += int(both.sum())
            jumps += int((both & (np.abs(a.astype(np.float64) - b) > jump)).sum())
        result["discontinuity"] = jumps / max(pairs, 1)
        depth_box = box_from_mask(mask)
        result["box_iou"] = 1.0 if box_is_from_depth else float(box_iou(face_box, depth_box))
    result["score"] = float(
        min(1.0, result["coverage"]) * (1.0 - result["hole_fraction"]) * (1.0 - min(1.0, 10 * result["outliers"]))
        * (1.0 - min(1.0, 10 * result["discontinuity"])) * min(1.0, result["box_iou"] / 0.5))
    return result


def failures(result, thresholds):
    """Human-readable list of violated thresholds (empty when the face passes)."""
    out = []
    if result["coverage"] < thresholds.min_coverage:
        out.append(f"coverage {result['coverage']:.2f} < {thresholds.min_coverage}")
    if result["hole_fraction"] > thresholds.max_hole_fraction:
        out.append(f"hole_fraction {result['hole_fraction']:.2f} > {thresholds.max_hole_fraction}")
    if result["outliers"] > thresholds.max_outliers:
        out.append(f"outliers {result['outliers']:.3f} > {thresholds.max_outliers}")
    if result["discontinuity"] > thresholds.max_discontinuity:
        out.append(f"discontinuity {result['discontinuity']:.3f} > {thresholds.max_discontinuity}")
    if result["box_iou"] < thresholds.min_box_iou:
        out.append(f"box_iou {result['box_iou']:.2f} < {thresholds.min_box_iou}")
    return out
