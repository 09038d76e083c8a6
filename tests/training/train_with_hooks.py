"""`python -m expr3d.train` with test hooks, as a real separate process (it receives real signals):

    python tests/training/train_with_hooks.py --nan_at_step=3 --step_delay=0.3 <expr3d.train flags>

Same flags, messages and exit codes as `expr3d.train`, plus --nan_at_step (NaN images at that 0-based iteration of
each stage) and --step_delay (seconds of sleep after each iteration, so a tiny run lives long enough to be signalled).
"""
import os
import sys
import time

# The repository on the path: run as a script, this file's directory would be sys.path[0] instead.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from absl import flags  # noqa: E402

from expr3d import cli, train  # noqa: E402
from expr3d.training.config import TrainConfig  # noqa: E402


class Hooks:
    """`expr3d.training.loop.StepHooks` from the two flags (duck-typed: importing loop would import TensorFlow
    before the flags are parsed, and before the quiet start-up)."""

    def __init__(self, nan_at_step, step_delay):
        self.nan_at_step, self.step_delay = nan_at_step, step_delay

    def poison_batch(self, step):
        return step == self.nan_at_step

    def after_step(self, step):
        if self.step_delay:
            time.sleep(self.step_delay)


def main(argv):
    cli.no_arguments(argv)
    hooks = Hooks(flags.FLAGS.nan_at_step, flags.FLAGS.step_delay)
    return train.run(TrainConfig.from_flags(flags.FLAGS), hooks=hooks)


if __name__ == "__main__":
    train.define_flags()
    flags.DEFINE_integer("nan_at_step", -1, "feed NaN images at this iteration of each stage (-1 = never)")
    flags.DEFINE_float("step_delay", 0.0, "sleep this many seconds after each iteration")
    cli.run(main, "expr3d.train", errors=train.errors)
