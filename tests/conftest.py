"""Shared test setup: quiet TensorFlow, small fixtures; how pytest-xdist shares the tests between its workers."""
import os

import pytest

# Session fixtures shared across test folders (one instance per test process).
pytest_plugins = ["tests.deploy.export_fixtures"]

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
# One intra-op thread in every test process and the processes they start (inherited): the test networks are tiny,
# so a second thread per op mostly waits, while two xdist workers and their subprocesses already share the 2 cores
# (measured: tests/training/test_ema.py 36 s of CPU -> 27 s, and shorter too).
os.environ.setdefault("TF_NUM_INTRAOP_THREADS", "1")

# Modules that share session fixtures (tests/deploy/export_fixtures.py: one trained run, exported once through the CLI, and
# the CLI runs on that export): one xdist group, so the export and its CLIs run once, on one worker.
SESSION_GROUPS = {f"tests/deploy/{name}.py": "deploy-export"
                  for name in ("test_export", "test_lite", "test_synthesize", "test_tflite", "test_web")}
# The browser app's tests serve that export's web/ folder.
SESSION_GROUPS["tests/mobile/test_browser.py"] = "deploy-export"
# The transfer and AU-control evaluations share tests/metrics/conftest.py's data and AU judge.
SESSION_GROUPS.update({f"tests/metrics/{name}.py": "au-evaluations"
                       for name in ("test_transfer_evaluation", "test_action_unit_control")})
# Scheduling hint: the longest units of work (minutes each, mostly subprocess CLIs) start first, then the other
# modules with slow tests, then the rest, so both workers finish at about the same time. Only the order changes.
LONGEST_FIRST = ("tests/training/test_multi_worker.py", "tests/training/test_transfer_training.py",
                 "tests/training/test_train.py", "tests/test_ablation.py", "tests/data/test_corrupt_data.py",
                 "deploy-export")


def _group(item):
    module = item.nodeid.split("::", 1)[0]
    return SESSION_GROUPS.get(module, module)


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook, which reads the groups
def pytest_collection_modifyitems(config, items):
    """Under pytest-xdist (pytest.ini: -n 2 --dist loadgroup) each module is one unit of work, so its module fixtures
    (datasets, trained runs, CLI runs) are built once, on one worker."""
    if not hasattr(config, "workerinput"):  # not an xdist worker: nothing to share or schedule
        return
    slow_groups = {_group(item) for item in items if item.get_closest_marker("slow")}
    for item in items:
        item.add_marker(pytest.mark.xdist_group(_group(item)))

    def rank(item):
        group = _group(item)
        if group in LONGEST_FIRST:
            return LONGEST_FIRST.index(group)
        return len(LONGEST_FIRST) + (group not in slow_groups)

    items.sort(key=rank)  # stable: each module's tests keep their order
