"""Terminal progress: one line per finished task (done, running, failed, elapsed, time left)."""

from __future__ import annotations

import sys
import time
from typing import TextIO


def say(message: str, stream: TextIO | None = None) -> None:
    """One `[halbench] ...` line on stderr (or `stream`)."""
    print(f"[halbench] {message}", file=stream or sys.stderr, flush=True)


class Progress:
    """Counts finished tasks and predicts the time left from the mean so far."""

    def __init__(
        self, total: int, already: int, stream: TextIO | None = None, unit: str = "trials"
    ) -> None:
        self.total, self.done, self.failed, self.running = total, already, 0, 0
        self.start = time.monotonic()
        self.new_done = 0
        self.unit = unit
        # None: sys.stderr at print time. Tune pickles its callbacks (and so this object),
        # and only the real sys.stderr pickles (by reference).
        self.stream = stream

    def started(self) -> None:
        self.running += 1

    def finished(self, task_id: str, status: str) -> None:
        self.running = max(0, self.running - 1)
        self.done += 1
        self.new_done += 1
        self.failed += status != "ok"
        elapsed = time.monotonic() - self.start
        # Tasks of one suite take similar times: the mean so far predicts the rest.
        left = (self.total - self.done) * elapsed / self.new_done
        self.say(
            f"{self.done}/{self.total} {self.unit} done ({self.failed} failed, {self.running} "
            f"running), elapsed {_fmt(elapsed)}, about {_fmt(left)} left; {task_id}: {status}"
        )

    def say(self, message: str) -> None:
        say(message, self.stream)


def _fmt(seconds: float) -> str:
    m, s = divmod(int(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"
