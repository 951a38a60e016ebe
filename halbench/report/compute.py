"""What a run cost in time: each configuration's trial times, the tuning each loss got, and the
run's device time in all.

A trial's wall time is ended_at − started_at (what it held its device for: data, warm-up,
training, evaluation); train_time_s is the training alone. Device time sums the trials' wall
times (train_time_s where a trial recorded no start and end) and the tuning trials' time_s:
trials that shared a device each count their own time.
"""

from __future__ import annotations

import statistics
from datetime import datetime

from halbench.report.model import Cell, Table
from halbench.report.rows import Row, finite, group_by
from halbench.report.views import ReportView

TRIAL_KEY = ["dataset", "loss", "batch_size", "embedding_dim"]


def wall_s(row: Row) -> float | None:
    """ended_at − started_at in seconds; None when either is missing or unreadable."""
    try:
        start = datetime.fromisoformat(str(row["started_at"]))
        end = datetime.fromisoformat(str(row["ended_at"]))
    except (KeyError, TypeError, ValueError):
        return None
    seconds = (end - start).total_seconds()
    return seconds if seconds >= 0 else None


def trial_seconds(row: Row) -> float | None:
    """A trial's time on its device: its wall time, else its training time."""
    wall = wall_s(row) if row.get("started_at") and row.get("ended_at") else None
    if wall is not None:
        return wall
    return float(row["train_time_s"]) if finite(row.get("train_time_s")) else None


def fmt_s(seconds: float | None) -> str:
    """'42.1 s', '12.5 min', '3.2 h'."""
    if seconds is None:
        return "—"
    if seconds < 120:
        return f"{seconds:.3g} s"
    if seconds < 7200:
        return f"{seconds / 60:.3g} min"
    return f"{seconds / 3600:.3g} h"


def _spread(values: list[float]) -> str:
    """'12.3 s' for one value, else the median with the range: '12.3 s (11.8–13.0)'."""
    if not values:
        return "—"
    mid = statistics.median(values)
    if len(values) == 1:
        return fmt_s(mid)
    return f"{fmt_s(mid)} ({min(values):.3g}–{max(values):.3g} s)"


def device_time(view: ReportView) -> tuple[float, str] | None:
    """(seconds, how they add up) of the group's trials (the final ones of a tuned run) and its
    tuning trials."""
    trials = view.ok + view.failed
    tuning = view.tuning
    times = [t for t in (trial_seconds(r) for r in trials) if t is not None]
    tune_times = [float(r["time_s"]) for r in tuning if finite(r.get("time_s"))]
    if not times and not tune_times:
        return None
    total = sum(times) + sum(tune_times)
    parts = [f"{len(times)} trial(s)" + (f" {fmt_s(sum(times))}" if tuning else "")]
    if tuning:
        parts.append(f"{len(tune_times)} tuning trial(s) {fmt_s(sum(tune_times))}")
    missing = len(trials) - len(times) + len(tuning) - len(tune_times)
    if missing:
        parts.append(f"{missing} without a recorded time")
    return total, "; ".join(parts)


def trial_time_table(view: ReportView, prefix: str) -> Table | None:
    """Per configuration: seeds, training time and wall time per trial (median and range)."""
    ok: list[Row] = view.ok
    cells = group_by(ok, TRIAL_KEY)
    if not any(finite(r.get("train_time_s")) or wall_s(r) is not None for r in ok):
        return None
    body = []
    order = {label: i for i, label in enumerate(view.losses)}
    for key in sorted(cells, key=lambda k: (str(k[0]), order.get(k[1], len(order)), k[2], k[3])):
        rows = cells[key]
        train = [float(r["train_time_s"]) for r in rows if finite(r.get("train_time_s"))]
        walls = [w for w in (wall_s(r) for r in rows) if w is not None]
        total = [t for t in (trial_seconds(r) for r in rows) if t is not None]
        body.append(
            [
                Cell(str(key[0])),
                Cell(str(key[1])),
                Cell(str(key[2]), key[2]),
                Cell(str(key[3]), key[3]),
            ]
            + [Cell(str(len(rows)), len(rows))]
            + [
                Cell(_spread(train), statistics.median(train) if train else None),
                Cell(_spread(walls), statistics.median(walls) if walls else None),
                Cell(fmt_s(sum(total)) if total else "—", sum(total) if total else None),
            ]
        )
    return Table(
        id=f"{prefix}-trial-time",
        title="Time per trial",
        columns=["dataset", "loss", "B", "d", "trials", "training", "wall", "all seeds"],
        rows=body,
        notes=[
            "Median over the configuration's ok trials, with the range. Training: train_time_s "
            "(the optimizer steps); wall: from the trial's start to its end (data, warm-up, "
            "training, evaluation; — where the rows record no start and end); all seeds: the "
            "configuration's device time (wall, else training)."
        ],
    )


def tuning_cost_table(view: ReportView, prefix: str) -> Table | None:
    """Per loss: tuning trials, epochs they ran, and their device time (tuning.parquet)."""
    tuning: list[Row] = view.tuning
    if not tuning:
        return None
    order = view.order({str(r["loss"]) for r in tuning})
    per_loss = group_by(tuning, ["loss"])
    body = []
    for label in order:
        rows = per_loss[(label,)]
        epochs = sum(int(r["epochs_run"]) for r in rows if finite(r.get("epochs_run")))
        seconds = [float(r["time_s"]) for r in rows if finite(r.get("time_s"))]
        failed = sum(r.get("status") != "ok" for r in rows)
        body.append(
            [
                Cell(label),
                Cell(str(len(rows)) + (f" ({failed} failed)" if failed else ""), len(rows)),
                Cell(str(epochs), epochs),
                Cell(fmt_s(sum(seconds)) if seconds else "—", sum(seconds) if seconds else None),
            ]
        )
    return Table(
        id=f"{prefix}-tuning-cost",
        title="Tuning each loss got",
        columns=["loss", "tuning trials", "epochs run", "device time"],
        rows=body,
        notes=[
            "From tuning.parquet: trials (failed ones count against the budget), the epochs "
            "they ran (epochs_run, after early stopping) and their summed time_s. An equal "
            "budget in trials is not an equal budget in epochs or seconds when the scheduler "
            "stops some trials early."
        ],
    )
