"""`halbench profile`: loss calls alone, no training, over B x d x C; one task per loss.

Each loss is a task (one Ray task, or in this process), measured by probes/sweep.py; each of
its points, when final, is a file of the store (kind `profile`, atomic), so that an
interrupted profile keeps every finished point and `--resume` measures only the losses with
points missing. profile.parquet (results.PROFILE_SCHEMA plus whatever keys
halbench.probes.profile_loss_call returns, one row per loss x B x d x C) is rebuilt from the
store (tables.py), also after a Ctrl-C. A failed point is a row with a status (failures.py):
'oom' for a point that cannot fit in memory, 'timeout' for one past --point-timeout.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from halbench import failures
from halbench.errors import UserError
from halbench.probes.sweep import point_row, sweep, time_point
from halbench.run import cluster, rundir, store, tables
from halbench.run.executor import preflight, session, task_resources
from halbench.run.lock import run_lock
from halbench.run.options import RunOptions
from halbench.run.plan import POINT, Plan, Task
from halbench.run.progress import Progress
from halbench.suite import LossSpec
from halbench.suite.profile import ProfileSuite, profile_overrides

Point = tuple[int, int, int]  # (B, d, C)


@dataclass(frozen=True)
class SweepOverrides:
    """Command-line values that replace the suite's (None: the suite's)."""

    losses: list[str] | None = None  # labels or names; an unknown one is a new entry by name
    batch_sizes: list[int] | None = None
    dims: list[int] | None = None
    classes: list[int] | None = None
    device: str | None = None
    warmup: int | None = None
    repeats: int | None = None


def apply_overrides(suite: ProfileSuite, o: SweepOverrides) -> ProfileSuite:
    """The suite with the overrides in place; UserError naming the flag of a bad value."""
    losses = None
    if o.losses is not None:
        known = {s.display: s for s in suite.losses} | {s.name: s for s in suite.losses}
        losses = [known.get(n, LossSpec(name=n)).model_dump() for n in o.losses]
    return profile_overrides(
        suite,
        {
            "losses": ("losses (--losses)", losses),
            "grid.batch_size": ("batch_sizes (--batch-sizes)", o.batch_sizes),
            "grid.embedding_dim": ("dims (--dims)", o.dims),
            "grid.num_classes": ("classes (--classes)", o.classes),
            "device": ("device (--device)", o.device),
            "probes.warmup": ("warmup (--warmup)", o.warmup),
            "probes.repeats": ("repeats (--repeats)", o.repeats),
        },
    )


def point_id(spec: LossSpec, b: int, d: int, c: int) -> str:
    return f"{spec.display}-b{b}-d{d}-c{c}"


def profile_plan(suite: ProfileSuite) -> Plan:
    """One task per loss x point, in the order of profile.parquet."""
    points = suite.grid.points()
    return Plan([Task(POINT, point_id(s, *p), None) for s in suite.losses for p in points])


def run_profile(suite: ProfileSuite, suite_path: Path | None, options: RunOptions) -> Path:
    """Measure every point the output directory does not hold yet; returns profile.parquet.

    Raises KeyboardInterrupt after a Ctrl-C, with every finished point stored and
    profile.parquet written from them (finish with --resume).
    """
    if options.output is None:
        raise UserError("--output: required (the profile directory)")
    preflight(suite, suite_path, options)
    out_dir = Path(options.output)
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"{out_dir}: --output exists and is not a directory")
    _check_profile_dir(suite, out_dir, options.resume)
    with run_lock(out_dir):
        return _run_locked(suite, suite_path, options, out_dir)


def _check_profile_dir(suite: ProfileSuite, out_dir: Path, resume: bool) -> None:
    """A profile directory is finished with --resume (the same sweep), never overwritten."""
    held = any((out_dir / store.PROFILE).glob("*.json")) or (out_dir / "profile.parquet").exists()
    stored = out_dir / "suite.json"
    if resume and not stored.is_file():
        raise UserError(f"{out_dir}: no suite.json here, nothing to resume (run without --resume)")
    if resume:
        try:
            old = ProfileSuite.model_validate(json.loads(stored.read_bytes()))
        except (OSError, ValueError) as err:  # ValueError: bad JSON and pydantic's errors
            raise UserError(f"{stored}: unreadable ({failures.first_line(err)[:200]})") from None
        if old.hash() != suite.hash():
            raise UserError(
                f"{out_dir}: holds another sweep (suite hash {old.hash()}, this one "
                f"{suite.hash()}); resume with the same losses, grid and probes"
            )
    if not resume and held:
        raise UserError(
            f"{out_dir}: already holds a profile; pass --resume to finish it, "
            "or choose another --output"
        )


def _run_locked(
    suite: ProfileSuite, suite_path: Path | None, options: RunOptions, out_dir: Path
) -> Path:
    if not options.resume or not (out_dir / "suite.json").exists():
        rundir.store_suite(out_dir, suite, suite_path)
    plan = profile_plan(suite)
    expected = plan.expected(store.PROFILE)
    done = store.finished(out_dir, suite, expected, store.PROFILE)
    invocation = {"started_at": rundir.now(), "address": options.address}
    # The machine's load around the sweep: timings from a loaded machine say so.
    load = {"load_average_before": _load_average()}
    rundir.write_env(out_dir, suite, invocation, profile_device=suite.device, **load)
    points = suite.grid.points()
    todo = [s for s in suite.losses if any(point_id(s, *p) not in done for p in points)]
    progress = Progress(len(expected), len(expected) - len(todo) * len(points), unit="points")
    progress.say(
        f"{suite.name}: {len(suite.losses)} losses x {len(points)} points, "
        f"{len(suite.losses) - len(todo)} losses already done; writing to {out_dir}"
    )
    interrupted = False
    try:
        if todo:
            writer = PointWriter(out_dir, suite, progress)
            with session(options, task_resources(suite), progress, suite_path or "suite"):
                run = _run_ray if options.use_ray else _run_local
                run(suite, todo, options.point_timeout, writer)
    except KeyboardInterrupt:
        interrupted = True
    path = tables.write_profile(
        out_dir, store.finished(out_dir, suite, expected, store.PROFILE), plan.order(store.PROFILE)
    )
    load["load_average_after"] = _load_average()
    finished = {"finished_at": rundir.now(), "interrupted": interrupted}
    rundir.write_env(out_dir, suite, finished, profile_device=suite.device, **load)
    if interrupted:
        raise KeyboardInterrupt
    return path


def _load_average() -> list[float] | None:
    """The 1, 5 and 15 minute load averages (None where the OS has none)."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (AttributeError, OSError):
        return None


class PointWriter:
    """Each final point into the store (atomic) and the progress line with its ETA."""

    def __init__(self, out_dir: Path, suite: ProfileSuite, progress: Progress) -> None:
        self.out_dir, self.suite, self.progress = out_dir, suite, progress

    def started(self, spec: LossSpec) -> None:
        for p in self.suite.grid.points():
            self.progress.started(point_id(spec, *p))

    def row(self, spec: LossSpec, row: dict[str, Any]) -> None:
        task_id = point_id(spec, row["batch_size"], row["embedding_dim"], row["num_classes"])
        identity = {"trial_id": task_id, "suite": self.suite.name, "suite_hash": self.suite.hash()}
        store.save(self.out_dir, {**row, **identity}, kind=store.PROFILE)
        self.progress.finished(task_id, row["status"], row.get("error"))


def measure_loss(
    spec: LossSpec,
    suite: ProfileSuite,
    point_timeout: float | None,
    on_row: Callable[[dict[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
    """All points of one loss (the unit of a task), each timing round within the time limit."""
    timer = PointBudget(point_timeout) if point_timeout else None
    return sweep([spec], suite, timer=timer, on_row=on_row)


class PointBudget:
    """A sweep timer that gives each point at most `seconds` of timing, over all its rounds.

    A point past it raises failures.TimedOut, which the sweep turns into a row with status
    'timeout' (and it times that point no more). The limit interrupts a call through SIGALRM
    where this runs in the main thread (in process, and in a Ray task); the FLOP and memory
    probes of a point run before its timing and are not limited.
    """

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.used: dict[tuple[str, int, int, int], float] = {}

    def __call__(self, spec, suite, b, d, c, memory, device, seed):  # noqa: ANN001, ANN204
        key = (spec.display, b, d, c)
        left = self.seconds - self.used.get(key, 0.0)
        start = time.monotonic()
        try:
            if left <= 0:
                raise failures.TimedOut(self._why())
            with _alarm(left, self._why()):
                return time_point(spec, suite, b, d, c, memory, device, seed)
        finally:
            self.used[key] = self.used.get(key, 0.0) + time.monotonic() - start

    def _why(self) -> str:
        return f"TimedOut: over {self.seconds:g} s of timing (--point-timeout)"


@contextmanager
def _alarm(seconds: float, why: str) -> Iterator[None]:
    """failures.TimedOut raised in this block after `seconds` (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def expire(signum: int, frame: object) -> None:
        raise failures.TimedOut(why)

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, max(seconds, 1e-3))
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _run_local(
    suite: ProfileSuite, todo: list[LossSpec], point_timeout: float | None, writer: PointWriter
) -> None:
    """The losses one after the other in this process, each point stored when final."""
    for spec in todo:
        writer.started(spec)
        measure_loss(spec, suite, point_timeout, on_row=lambda row, s=spec: writer.row(s, row))


def _run_ray(
    suite: ProfileSuite, todo: list[LossSpec], point_timeout: float | None, writer: PointWriter
) -> None:
    """One Ray task per loss (on the session's Ray); each loss's points stored as it ends."""
    import ray  # optional at import time: only a Ray profile needs it (session opened it)

    task = ray.remote(**cluster.ray_task_options(task_resources(suite)))(measure_loss)
    refs = {task.remote(spec, suite, point_timeout): spec for spec in todo}
    for spec in todo:
        writer.started(spec)
    pending = list(refs)
    while pending:
        ready, pending = ray.wait(pending, num_returns=1)
        spec = refs[ready[0]]
        try:
            rows = ray.get(ready[0])
        except ray.exceptions.RayError as exc:  # the worker died (e.g. killed for memory)
            status, error = failures.classify(exc)
            rows = [point_row(spec, suite, *p, status=status, error=error)
                    for p in suite.grid.points()]  # fmt: skip
        for row in rows:
            writer.row(spec, row)
