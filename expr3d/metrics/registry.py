"""Metrics registered by name, so an evaluation is a list of names (as in NVlabs/stylegan3's `metric_main`).

A metric is a small accumulator class:

    @register_metric("psnr", description="PSNR of cycle reconstructions (dB)")
    class CyclePSNR(Metric):
        def update(self, step):             # one (batch of test images, target expression) step
            ...step.cycle...                # products are computed lazily and shared between metrics
        def result(self):
            return {"psnr": ...}

The evaluation loop (`expr3d.metrics.loop`) calls `setup(context)` once (`context`: an
`expr3d.metrics.context.EvaluationContext`; a metric that cannot run raises `MetricUnavailable`
with a message saying what is missing; the others still run), `update_real(batch)` once per batch of real test
images, `update(step)` once per (batch, target) and `result()` at the end. `result()` returns a flat dict of JSON
scalars; `details()` may return larger JSON data (confusion matrices) and `arrays()` numpy arrays saved to
`arrays.npz` for figures and comparisons.
"""

_REGISTRY = {}


class MetricUnavailable(Exception):
    """Raised by `Metric.setup` when a metric cannot run here (missing weights, unpaired data, ...)."""


class Metric:
    """Base class of a registered metric. Subclasses set nothing by hand: `register_metric` sets `name`."""

    name = None
    description = ""

    def setup(self, context):
        """Load what the metric needs from `context`; raise `MetricUnavailable` to be skipped with a note."""

    def update_real(self, batch):
        """Once per batch of real test images (`batch` is an `expr3d.metrics.context.RealBatch`)."""

    def update(self, step):
        """Once per (batch, target expression) (`step` is an `expr3d.metrics.context.TranslationStep`)."""

    def result(self):
        """A flat dict of JSON scalars (floats, ints, strings)."""
        raise NotImplementedError

    def details(self):
        """Larger JSON data for results.json (e.g. a confusion matrix); {} by default."""
        return {}

    def arrays(self):
        """numpy arrays saved to the output's arrays.npz under "<name>/<key>" (histograms, samples); {} by default."""
        return {}

    def warnings(self):
        """Human-readable warnings (e.g. too few samples for a stable FID)."""
        return []


def register_metric(name, description=""):
    """Class decorator registering a `Metric` subclass under `name` (unique)."""

    def wrap(cls):
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise ValueError(f"metric {name!r} is already registered (by {_REGISTRY[name].__name__})")
        if not (isinstance(cls, type) and issubclass(cls, Metric)):
            raise TypeError(f"register_metric({name!r}) decorates Metric subclasses; got {cls!r}")
        cls.name = name
        cls.description = description or (cls.__doc__ or "").strip().splitlines()[0]
        _REGISTRY[name] = cls
        return cls

    return wrap


def list_metrics():
    """Registered metric names, sorted."""
    return sorted(_REGISTRY)


def describe_metrics():
    """`{name: one-line description}` of every registered metric."""
    return {name: _REGISTRY[name].description for name in list_metrics()}


def get_metric_class(name):
    if name not in _REGISTRY:
        raise ValueError(f"unknown metric {name!r}; registered metrics: {', '.join(list_metrics())}")
    return _REGISTRY[name]


def create(name, **kwargs):
    """A fresh instance of the metric registered as `name` (ValueError listing the known names otherwise)."""
    return get_metric_class(name)(**kwargs)


def parse_metric_list(text):
    """"a,b, c" (or a list) -> ["a", "b", "c"], validated and de-duplicated in order; "all" = every metric."""
    names = [n.strip() for n in (text.split(",") if isinstance(text, str) else text) if n and n.strip()]
    if names == ["all"]:
        return list_metrics()
    if not names:
        raise ValueError(f"--metrics is empty; registered metrics: {', '.join(list_metrics())}")
    out = []
    for name in names:
        get_metric_class(name)
        if name not in out:
            out.append(name)
    return out
