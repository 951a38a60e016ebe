"""Terminal progress: a line per finished task, and per-epoch lines inside long trials.

The running count is what the caller observes (Tune's trial states), never a counter that
callbacks increment and decrement: a worker that dies and restarts would count twice. The time
left comes from each task's own duration (start to end), spread over the slots that run at once.
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable, Mapping
from typing import Any, TextIO

from halbench.results import primary_k

# At most one epoch line per trial in this many seconds: short trials stay quiet.
EPOCH_LINE_EVERY_S = 10.0


def say(message: str, stream: TextIO | None = None) -> None:
    """One `[halbench] ...` line on stderr (or `stream`)."""
    print(f"[halbench] {message}", file=stream or sys.stderr, flush=True)


class Progress:
    """Counts finished tasks, prints epoch lines, and predicts the time left.

    `clock`: seconds (time.monotonic by default; tests pass a fake one).
    """

    def __init__(
        self,
        total: int,
        already: int,
        stream: TextIO | None = None,
        unit: str = "trials",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.total, self.done, self.failed, self.running = total, already, 0, 0
        self.clock = clock
        self.start = clock()
        self.unit = unit
        self.peak_running = 0  # tasks seen running at once: the slots of the time-left estimate
        self._starts: dict[str, float] = {}
        self._last_line: dict[str, float] = {}
        self._durations: list[float] = []
        # None: sys.stderr at print time. Tune pickles its callbacks (and so this object),
        # and only the real sys.stderr pickles (by reference).
        self.stream = stream

    def started(self, task_id: str, running: int | None = None) -> None:
        """Task `task_id` started; `running`: tasks running now, this one included.

        Without `running` (a runner that runs its own tasks), the tasks started and not
        finished are counted, by id (a restart of the same task is not a second one).
        """
        now = self.clock()
        self._starts[task_id] = now
        self._last_line[task_id] = now
        self._observe(running)

    def dropped(self, task_id: str) -> None:
        """Task `task_id` will not run in this invocation (a tuning trial refused by its
        group's epoch budget): out of the total, so "n/total done" and the time left end at
        what really runs."""
        self._starts.pop(task_id, None)
        self.total = max(self.done, self.total - 1)

    def epoch(self, task_id: str, result: Mapping[str, Any], epochs: int | None) -> None:
        """A per-epoch line for `task_id`, at most one per EPOCH_LINE_EVERY_S per task."""
        now = self.clock()
        last = self._last_line.setdefault(task_id, now)
        if now - last < EPOCH_LINE_EVERY_S:
            return
        self._last_line[task_id] = now
        self.say(f"{task_id}: {epoch_summary(result, epochs)}")

    def finished(
        self, task_id: str, status: str, error: str | None = None, running: int | None = None
    ) -> None:
        """Task `task_id` ended with `status`; `running`: tasks still running (not this one)."""
        now = self.clock()
        start = self._starts.pop(task_id, None)
        self._last_line.pop(task_id, None)
        if start is not None:
            self._durations.append(now - start)
        self._observe(running)
        self.done += 1
        self.failed += status != "ok"
        left = self.time_left(now)
        left_text = f"about {_fmt(left)} left" if left is not None else "time left unknown"
        outcome = status if status == "ok" or not error else f"{status} ({_first(error)})"
        self.say(
            f"{self.done}/{self.total} {self.unit} done ({self.failed} failed, {self.running} "
            f"running), elapsed {_fmt(now - self.start)}, {left_text}; {task_id}: {outcome}"
        )

    def time_left(self, now: float | None = None) -> float | None:
        """Seconds until the last task ends: the queued tasks and the rest of the running ones,
        at the mean task duration so far, over the slots seen running at once."""
        if not self._durations:
            return None
        now = self.clock() if now is None else now
        mean = statistics.fmean(self._durations)
        # The most recent starts are the tasks still running (older ones may have been lost).
        starts = sorted(self._starts.values())[-self.running :] if self.running else []
        in_flight = [max(0.0, mean - (now - s)) for s in starts]
        queued = max(0, self.total - self.done - self.running)
        slots = max(1, self.peak_running)
        return max((queued * mean + sum(in_flight)) / slots, max(in_flight, default=0.0))

    def say(self, message: str) -> None:
        say(message, self.stream)

    def _observe(self, running: int | None) -> None:
        self.running = len(self._starts) if running is None else max(0, running)
        # A finishing task still held its slot: it counts towards the slots seen at once.
        self.peak_running = max(self.peak_running, self.running)


def epoch_summary(result: Mapping[str, Any], epochs: int | None) -> str:
    """'epoch 3/20, loss 1.234, knn_acc_1 0.81, 42 s/epoch' from an epoch row (or Tune result)."""
    parts = [f"epoch {result.get('epoch', '?')}" + (f"/{epochs}" if epochs else "")]
    if isinstance(result.get("train_loss"), int | float):
        parts.append(f"loss {result['train_loss']:.4g}")
    ks = [int(key[8:]) for key, v in result.items() if _is_knn(key) and v is not None]
    k = primary_k(ks)
    if k is not None:
        parts.append(f"knn_acc_{k} {result[f'knn_acc_{k}']:.3f}")
    seconds = sum(
        float(result[key])
        for key in ("epoch_time_s", "eval_time_s")
        if isinstance(result.get(key), int | float)
    )
    if seconds:
        parts.append(f"{seconds:.3g} s/epoch")
    return ", ".join(parts)


def _is_knn(key: str) -> bool:
    return key.startswith("knn_acc_") and key[8:].isdigit()


def _first(error: str) -> str:
    line = error.strip().splitlines()[0] if error.strip() else error
    return line if len(line) <= 200 else line[:197] + "..."


def _fmt(seconds: float) -> str:
    m, s = divmod(int(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"
