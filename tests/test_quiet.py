"""expr3d.quiet: TensorFlow's C++ start-up lines dropped, the environment a quiet command sets and --verbosity undoes.
The end-to-end check (commands' stderr) is tests/test_cli_conventions.py::test_commands_are_quiet_by_default."""
import os
import sys

from expr3d import cli, quiet

START_UP = """\
WARNING: All log messages before absl::InitializeLog() is called are written to STDERR
I0000 00:00:1796180651.444624    3156 cudart_stub.cc:31] Could not find cuda drivers on your machine, GPU will not be used.
I0000 00:00:1796180651.542200    3156 cpu_feature_guard.cc:227] This TensorFlow binary is optimized to use available \
CPU instructions in performance-critical operations.
To enable the following instructions: AVX2 FMA, in other operations, rebuild TensorFlow with the appropriate compiler \
flags.
a line of our own
E0000 00:00:1796180658.577176    3156 cuda_platform.cc:52] failed call to cuInit: INTERNAL: CUDA error: Failed call \
to cuInit: UNKNOWN ERROR (303)
/x/y.py:3: UserWarning: a Python warning
  warnings.warn("a Python warning")
"""


def test_tensorflow_start_up_lines_are_dropped_and_the_rest_kept():
    kept = quiet.drop_start_up_lines(START_UP)
    assert kept == ("a line of our own\n/x/y.py:3: UserWarning: a Python warning\n"
                    "  warnings.warn(\"a Python warning\")\n")


def test_quiet_unless_verbosity_asks(monkeypatch):
    monkeypatch.setattr(sys, "meta_path", list(sys.meta_path))
    for name in ("TF_CPP_MIN_LOG_LEVEL", quiet.QUIET_ENV):  # (setenv first: monkeypatch then restores them afterwards)
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)
    quiet.quiet_start_up(None)
    assert os.environ["TF_CPP_MIN_LOG_LEVEL"] == "3" and os.environ[quiet.QUIET_ENV] == "set"
    quiet.quiet_start_up(quiet.VERBOSE)  # e.g. a worker whose own command line says --verbosity=1
    assert "TF_CPP_MIN_LOG_LEVEL" not in os.environ and quiet.QUIET_ENV not in os.environ
    assert not any(isinstance(finder, quiet._QuietTensorFlowImport) for finder in sys.meta_path)
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "1")  # the user's own setting is kept, quiet or verbose
    quiet.quiet_start_up(0)
    assert os.environ["TF_CPP_MIN_LOG_LEVEL"] == "1" and os.environ[quiet.QUIET_ENV] == "kept"
    quiet.quiet_start_up(quiet.VERBOSE)
    assert os.environ["TF_CPP_MIN_LOG_LEVEL"] == "1"


def test_cli_still_offers_the_quiet_names():
    # The quiet start-up moved out of expr3d/cli.py; `cli.quiet_start_up` and its companions are the same objects.
    assert cli.quiet_start_up is quiet.quiet_start_up and cli.drop_start_up_lines is quiet.drop_start_up_lines
    assert (cli.QUIET_ENV, cli.VERBOSE) == (quiet.QUIET_ENV, quiet.VERBOSE)
