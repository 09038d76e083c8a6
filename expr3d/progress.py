"""A dependency-free progress line with rate and ETA, for long CLI work (data generation, training, evaluation)."""
import sys
import time


def format_duration(seconds):
    """Return `seconds` as H:MM:SS or M:SS."""
    seconds = max(0, int(round(seconds)))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class Progress:
    """Prints `desc: done/total (pct) rate unit/s, elapsed, ETA` to stderr, at most every `interval` seconds.

    Args:
        total: the number of units of work (None when unknown: no ETA).
        desc: a short label.
        unit: what one unit is called ("faces", "steps").
        interval: the shortest time between two printed lines, in seconds.
        stream: where to print; stderr by default so stdout stays machine-readable.

    Example:
        progress = Progress(1000, desc="render", unit="faces")
        for _ in range(1000):
            progress.update(1)
        progress.close()
    """

    def __init__(self, total=None, desc="", unit="it", interval=2.0, stream=None, initial=0):
        self.total = total
        self.desc = desc
        self.unit = unit
        self.interval = interval
        self.stream = stream or sys.stderr
        self.done = initial
        self._initial = initial
        self._start = time.monotonic()
        self._last_print = 0.0
        self.postfix = ""

    def update(self, n=1, postfix=None):
        self.done += n
        if postfix is not None:
            self.postfix = postfix
        now = time.monotonic()
        if now - self._last_print >= self.interval or (self.total is not None and self.done >= self.total):
            self._last_print = now
            self._print(now)

    def line(self, now=None):
        now = time.monotonic() if now is None else now
        elapsed = now - self._start
        rate = (self.done - self._initial) / elapsed if elapsed > 0 else 0.0
        text = f"{self.desc}: {self.done}"
        if self.total:
            text += f"/{self.total} ({100.0 * self.done / self.total:.0f}%)"
        text += f" {rate:.1f} {self.unit}/s, elapsed {format_duration(elapsed)}"
        if self.total and rate > 0:
            text += f", ETA {format_duration((self.total - self.done) / rate)}"
        if self.postfix:
            text += f" | {self.postfix}"
        return text

    def _print(self, now):
        print(self.line(now), file=self.stream, flush=True)

    def close(self):
        self._print(time.monotonic())
