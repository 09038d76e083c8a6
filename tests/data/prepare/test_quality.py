"""Tests of expr3d.data.prepare.quality: depth spikes and holes flagged."""
import numpy as np

from expr3d.data.prepare import quality
from tests.data.prepare import fixtures


def test_quality_flags_spikes_and_holes():
    face = fixtures.ellipsoid_face(64, 64, (32, 32), (20, 24, 14))
    depth = np.where(face["mask"], 100.0 - np.nan_to_num(face["z"]), 0.0).astype(np.float32)
    box = face["box"]
    good = quality.scores(depth, face["mask"], 0.0, box, 64)
    assert not quality.failures(good, quality.Thresholds()) and good["score"] > 0.8
    spiky = depth.copy()
    spiky[20:40:2, 20:40:2] += 60.0
    bad = quality.scores(spiky, face["mask"], 0.0, box, 64)
    assert any("discontinuity" in f or "outliers" in f for f in quality.failures(bad, quality.Thresholds()))
    shifted = quality.scores(depth, face["mask"], 0.4, (40, 40, 20, 20), 64)
    failed = " ".join(quality.failures(shifted, quality.Thresholds()))
    assert "hole_fraction" in failed and "box_iou" in failed
