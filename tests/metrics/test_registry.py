import pytest

import expr3d.metrics  # noqa: F401  (registers the metrics)
from expr3d.metrics import registry


def test_builtin_metrics_are_registered():
    assert {"expression_generation_rate", "fid", "kid", "psnr", "ssim", "identity", "geometry", "paired",
            "samples"} <= set(registry.list_metrics())


def test_parse_metric_list():
    assert registry.parse_metric_list("fid, psnr,fid") == ["fid", "psnr"]
    assert registry.parse_metric_list("all") == registry.list_metrics()
    with pytest.raises(ValueError, match="unknown metric 'fidd'.*registered metrics"):
        registry.parse_metric_list("fidd")
    with pytest.raises(ValueError, match="empty"):
        registry.parse_metric_list("")


def test_register_rejects_duplicates():
    class Other(registry.Metric):
        def result(self):
            return {}

    with pytest.raises(ValueError, match="already registered"):
        registry.register_metric("fid")(Other)
