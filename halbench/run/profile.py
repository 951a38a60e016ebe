"""Loss-call sweeps (`halbench profile`): loss calls alone, no training, over B x d x C.

Writes DIR/profile.parquet (results.PROFILE_SCHEMA plus whatever keys
halbench.probes.profile_loss_call returns, one row per loss x B x d x C), the suite files and
env.json (rundir.py). One Ray task per loss (cluster.py starts or joins Ray), or all in this
process. A failed point is a row with a status (failures.py); a point that cannot fit in
memory is a row with status 'oom'.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from halbench import failures, results
from halbench.errors import UserError
from halbench.probes.sweep import point_row, profile_loss, sweep
from halbench.run import cluster, rundir
from halbench.run.lock import run_lock
from halbench.run.options import RunOptions
from halbench.run.progress import Progress
from halbench.suite import LossSpec
from halbench.suite.profile import ProfileSuite, profile_overrides


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


def run_profile(suite: ProfileSuite, suite_path: Path | None, options: RunOptions) -> Path:
    """Run the sweep into options.output; returns the path of profile.parquet."""
    if options.output is None:
        raise UserError("--output: required (the profile directory)")
    profile_preflight(suite, suite_path, options)
    out_dir = Path(options.output)
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"{out_dir}: --output exists and is not a directory")
    with run_lock(out_dir):
        return _run_locked(suite, suite_path, options, out_dir)


def profile_preflight(suite: ProfileSuite, suite_path: Path | None, options: RunOptions) -> None:
    """CUDA and one task's resources on this machine, before Ray or any directory: one line."""
    where = suite_path or "the built-in profile suite"
    cluster.check_device(suite.device, where, "device (or --device)")
    if options.use_ray and not options.address:
        resources = _task_resources(suite)
        capacity = cluster.local_capacity(options.num_cpus, options.num_gpus)
        cluster.check_capacity(resources, capacity, where)


def _task_resources(suite: ProfileSuite) -> dict[str, float]:
    # A whole GPU per task: two losses timed on one GPU at once would slow each other.
    resources = cluster.trial_resources(suite.resources, whole_gpu=suite.device == "cuda")
    if suite.device != "cuda":
        resources["gpu"] = 0.0
    return resources


def _run_locked(
    suite: ProfileSuite, suite_path: Path | None, options: RunOptions, out_dir: Path
) -> Path:
    rundir.store_suite(out_dir, suite, suite_path)
    invocation = {"started_at": rundir.now(), "address": options.address}
    # The machine's load around the sweep: timings from a loaded machine say so.
    load = {"load_average_before": _load_average()}
    rundir.write_env(out_dir, suite, invocation, profile_device=suite.device, **load)
    progress = Progress(len(suite.losses), 0, unit="losses")
    progress.say(f"{suite.name}: {len(suite.losses)} losses x {len(suite.grid.points())} points")
    rows = _run_ray(suite, options, progress) if options.use_ray else _run_local(suite, progress)
    path = rundir.inside(out_dir, "profile.parquet")
    results.write_parquet_atomic(results.frame(rows, results.PROFILE_SCHEMA), path)
    load["load_average_after"] = _load_average()
    finished = {"finished_at": rundir.now()}
    rundir.write_env(out_dir, suite, finished, profile_device=suite.device, **load)
    return path


def _load_average() -> list[float] | None:
    """The 1, 5 and 15 minute load averages (None where the OS has none)."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def _finished(progress: Progress, spec: LossSpec, rows: list[dict[str, Any]]) -> None:
    bad = sum(r["status"] != "ok" for r in rows)
    errors = [r["error"] for r in rows if r["status"] != "ok" and r.get("error")]
    status = f"{bad} of {len(rows)} points failed" if bad else "ok"
    progress.finished(spec.display, status, errors[0] if errors else None)


def _run_local(suite: ProfileSuite, progress: Progress) -> list[dict[str, Any]]:
    for spec in suite.losses:
        progress.started(spec.display)
    # All losses in one sweep, so that their timing rounds interleave.
    done = sweep(suite.losses, suite, progress=progress.say)
    rows = []
    for spec in suite.losses:
        mine = [r for r in done if r["loss"] == spec.display]
        _finished(progress, spec, mine)
        rows.extend(mine)
    return rows


def _run_ray(suite: ProfileSuite, options: RunOptions, progress: Progress) -> list[dict[str, Any]]:
    import ray

    resources = _task_resources(suite)
    with cluster.ray_session(options) as dashboard:
        if dashboard:
            progress.say(dashboard)
        cluster.check_fits(resources)
        task = ray.remote(**cluster.ray_task_options(resources))(profile_loss)
        refs = {spec.display: task.remote(spec, suite) for spec in suite.losses}
        for label in refs:
            progress.started(label)
        rows = []
        for spec in suite.losses:
            try:
                done = ray.get(refs[spec.display])
            except ray.exceptions.RayError as exc:  # the worker died (e.g. killed for memory)
                status, error = failures.classify(exc)
                done = [
                    point_row(spec, suite, *p, status=status, error=error)
                    for p in suite.grid.points()
                ]
            _finished(progress, spec, done)
            rows.extend(done)
        return rows
