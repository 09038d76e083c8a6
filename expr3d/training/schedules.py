"""Learning-rate schedule of the paper: constant, then linear decay to 0 over the second half, in steps."""

import math


class LinearDecaySchedule:
    """Constant `base_lr` until `decay_start`, then linear decay to 0 at `num_steps`, updated every `decay_every`.

    StarGAN decays its learning rate every 1000 iterations over the last part of training; PAPER.md fixes the
    second half. The value is a pure function of the iteration, so a resumed run sees the same rates.

    Args:
        base_lr: the learning rate of the constant phase.
        num_steps: total iterations of the stage.
        decay_start: first iteration of the decay (default: `num_steps // 2`).
        decay_every: the rate changes every this many iterations (1000 in the paper; small for tiny runs).

    Example:
    >>> schedule = LinearDecaySchedule(1e-4, num_steps=100, decay_every=10)
    >>> schedule(0), schedule(49), schedule(50), schedule(60), schedule(99)
    (0.0001, 0.0001, 0.0001, 8e-05, 2e-05)
    """

    def __init__(self, base_lr, num_steps, decay_start=None, decay_every=1000):
        if num_steps < 1:
            raise ValueError(f"LinearDecaySchedule: num_steps must be >= 1; got {num_steps}")
        if decay_every < 1:
            raise ValueError(f"LinearDecaySchedule: decay_every must be >= 1; got {decay_every}")
        self.base_lr = float(base_lr)
        self.num_steps = int(num_steps)
        self.decay_start = self.num_steps // 2 if decay_start is None else int(decay_start)
        self.decay_every = int(decay_every)

    def __call__(self, step):
        if step < self.decay_start:
            return self.base_lr
        decay_length = self.num_steps - self.decay_start
        if decay_length <= 0:
            return self.base_lr
        # The rate stays constant within each block of `decay_every` iterations.
        elapsed = math.floor((step - self.decay_start) / self.decay_every) * self.decay_every
        remaining = max(0.0, 1.0 - elapsed / decay_length)
        return round(self.base_lr * remaining, 12)

    def get_config(self):
        return {
            "base_lr": self.base_lr,
            "num_steps": self.num_steps,
            "decay_start": self.decay_start,
            "decay_every": self.decay_every,
        }
