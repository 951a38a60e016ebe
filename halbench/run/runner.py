"""Grid runs: suite -> one task per grid point (Ray Tune trials, or this process) -> run dir.

The driver owns the run directory (rundir.py). Each finished trial is written atomically to
trials/<trial_id>.json; those files are the unit of resume: a rerun with --resume runs only
the trials that have none, and trials.parquet / epochs.parquet are always rebuilt from all of
them, in grid order, so that a resumed run's files equal those of an uninterrupted one.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

from halbench.errors import UserError
from halbench.run import cluster, rundir, tune
from halbench.run.lock import run_lock
from halbench.run.options import RunOptions
from halbench.run.progress import Progress
from halbench.run.tune import MAX_RAY_RETRIES, TrialFn
from halbench.suite import Suite, TrialSpec

__all__ = [
    "MAX_RAY_RETRIES",
    "RunOptions",
    "RunSummary",
    "check_data",
    "preflight",
    "run_suite",
]


@dataclass
class RunSummary:
    out_dir: Path
    total: int
    skipped: int  # already finished before this invocation (resume)
    statuses: dict[str, int] = field(default_factory=dict)
    interrupted: bool = False


def check_data(specs: list[TrialSpec]) -> None:
    """On a local run, load every dataset once on this machine before any trial starts.

    A missing dataset is then a user mistake (one line, exit 2, nothing written) rather than
    one error row per trial, and a download (dataset.download) happens once here instead of in
    every concurrent trial at once. On a cluster the data lives on the workers: not checked.
    """
    from halbench import data

    for ds in {s.dataset.name: s.dataset for s in specs}.values():
        try:
            data.load(
                ds.name,
                root=ds.root,
                train_size=ds.train_size,
                test_size=ds.test_size,
                download=ds.download,
                **ds.params,
            )
        except ValueError as err:  # bad dataset params
            raise UserError(f"dataset {ds.name!r}: {err}") from None


def run_suite(
    suite: Suite,
    suite_path: Path,
    options: RunOptions | None = None,
    *,
    trial_fn: TrialFn | None = None,
) -> RunSummary:
    """Run every trial of `suite` that the output directory does not hold yet; write parquet.

    `trial_fn`: the trial function, importable on the workers (default
    halbench.trial.run_trial). Returns a summary; `interrupted` is True when some trials are
    missing (Ctrl-C), and the run can be finished with resume. Building the report is the
    caller's business (the CLI does it after this returns).
    """
    options = options or RunOptions()
    out_dir = (options.output or rundir.default_output(suite)).resolve()
    wanted = options.datasets
    specs = [s for s in suite.trials() if not wanted or s.dataset.name in wanted]
    if wanted and not specs:
        known = ", ".join(d.name for d in suite.datasets)
        raise UserError(f"--datasets {','.join(wanted)}: none of the suite's datasets ({known})")
    preflight(suite, suite_path, options)
    if not options.address:
        check_data(specs)
    if options.resume:  # nothing to resume: refused before a directory or lock file appears
        rundir.check_run_dir(suite, suite_path, out_dir, resume=True)
    with run_lock(out_dir):
        return _run_locked(suite, suite_path, specs, out_dir, options, trial_fn)


def preflight(suite: Suite, suite_path: Path, options: RunOptions) -> None:
    """What a run needs of the machine, checked before Ray or any run directory: one line.

    A local run (or the Ray this process is connected to) must hold one trial's resources and
    have CUDA when the suite asks for it; on a cluster (--address) Ray's nodes are checked
    after joining, before any trial starts (`_run_with_ray`).
    """
    if options.address:
        return
    cluster.check_device(suite.train.device, suite_path)
    resources = cluster.trial_resources(suite.resources)
    if "ray" in sys.modules and options.use_ray:
        import ray

        if ray.is_initialized():  # this process's Ray is the one the trials will use
            cluster.check_fits(resources, suite_path)
            return
    capacity = cluster.local_capacity(options.num_cpus, options.num_gpus)
    cluster.check_capacity(resources, capacity, suite_path)


def _run_locked(
    suite: Suite,
    suite_path: Path,
    specs: list[TrialSpec],
    out_dir: Path,
    options: RunOptions,
    trial_fn: TrialFn | None,
) -> RunSummary:
    rundir.prepare_run_dir(suite, suite_path, out_dir, resume=options.resume)
    rundir.fault_point("prepared")
    expected = {s.trial_id for s in suite.trials()}
    done = rundir.finished_trials(out_dir, suite, expected)
    todo = [s for s in specs if s.trial_id not in done]
    invocation = {"started_at": rundir.now(), "address": options.address, "argv": sys.argv}
    rundir.write_env(out_dir, suite, {**invocation, "trials_to_run": len(todo)})
    rundir.fault_point("env-written")
    progress = Progress(len(specs), len(specs) - len(todo))
    progress.say(
        f"{suite.name}: {len(specs)} trials, {len(specs) - len(todo)} already done; "
        f"writing to {out_dir}"
    )

    summary = RunSummary(out_dir=out_dir, total=len(specs), skipped=len(specs) - len(todo))
    try:
        if todo and options.use_ray:
            _run_with_ray(suite, todo, out_dir, progress, options, trial_fn)
        elif todo:
            _run_in_process(suite, todo, out_dir, progress, trial_fn)
    except KeyboardInterrupt:
        summary.interrupted = True
    finished = rundir.finished_trials(out_dir, suite, expected)
    summary.statuses = rundir.collect(out_dir, suite, finished)
    summary.interrupted = summary.interrupted or any(s.trial_id not in finished for s in specs)
    rundir.write_env(
        out_dir, suite, {"finished_at": rundir.now(), "interrupted": summary.interrupted}
    )
    rundir.fault_point("finished")
    return summary


def _run_in_process(
    suite: Suite, todo: list[TrialSpec], out_dir: Path, progress: Progress, trial_fn: TrialFn | None
) -> None:
    if trial_fn is None:
        from halbench.trial import run_trial as trial_fn

    for spec in todo:
        progress.started()
        rundir.fault_point("trial-started")
        result = trial_fn(suite, spec)
        rundir.save_trial(out_dir, result.row, result.epochs)
        progress.finished(spec.trial_id, result.row["status"])


def _run_with_ray(
    suite: Suite,
    todo: list[TrialSpec],
    out_dir: Path,
    progress: Progress,
    options: RunOptions,
    trial_fn: TrialFn | None,
) -> None:
    """Run `todo` as Tune trials on a new local Ray, the cluster at the address or this Ray."""
    resources = cluster.trial_resources(suite.resources)
    with cluster.ray_session(options) as dashboard:
        if dashboard:
            progress.say(dashboard)
        rundir.fault_point("ray-started")
        cluster.check_fits(resources, out_dir / "suite.yaml")  # before any trial is queued
        tune.fit(
            suite,
            todo,
            out_dir,
            progress,
            resources=resources,
            max_concurrent=options.max_concurrent or suite.resources.max_concurrent,
            storage=options.storage,
            trial_fn=trial_fn,
        )
