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
from halbench.run import storage as tune_storage
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


def check_data(specs: list[TrialSpec], suite: Suite | None = None) -> None:
    """On a local run, load every dataset once on this machine before any trial starts.

    A missing dataset is then a user mistake (one line, exit 2, nothing written) rather than
    one error row per trial, and a download (dataset.download) happens once here instead of in
    every concurrent trial at once. On a cluster the data lives on the workers: not checked.
    """
    from halbench import data

    # A tuned suite is checked as its tuning trials load: the test split is not read here.
    tune = suite.tune if suite is not None else None
    protocol = {"validation": tune.validation, "phase": "tune"} if tune else {}
    for ds in {s.dataset.name: s.dataset for s in specs}.values():
        try:
            data.load(
                ds.name,
                root=ds.root,
                train_size=ds.train_size,
                test_size=ds.test_size,
                download=ds.download,
                **protocol,
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
        check_data(specs, suite)
    if options.use_ray:
        tune_storage.check_storage(options.storage)  # one line, exit 2, before Ray starts
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
    # A tuned suite's final trial ids depend on the chosen configurations: its files are
    # checked by suite hash and schema only (halbench/run/tuning.py knows the ids).
    expected = None if suite.tune is not None else {s.trial_id for s in suite.trials()}
    done = rundir.finished_trials(out_dir, suite, expected)
    todo = [s for s in specs if s.trial_id not in done]
    invocation = {"started_at": rundir.now(), "address": options.address, "argv": sys.argv}
    rundir.write_env(out_dir, suite, {**invocation, "trials_to_run": len(todo)})
    rundir.fault_point("env-written")
    progress = Progress(len(specs), len(specs) - len(todo))
    if suite.tune is not None:
        return _run_tuned(suite, out_dir, specs, progress, options, trial_fn)
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
    return _finish(suite, out_dir, specs, summary, expected, storage=options.storage)


def _finish(
    suite: Suite,
    out_dir: Path,
    specs: list[TrialSpec],
    summary: RunSummary,
    expected: set[str] | None = None,
    *,
    storage: str | None = None,
) -> RunSummary:
    finished = rundir.finished_trials(out_dir, suite, expected)
    summary.statuses = rundir.collect(out_dir, suite, finished)
    # A driver killed between a trial's local write and its upload left the storage a file
    # short; the resumed run does not rerun that trial, so its file is uploaded here.
    tune_storage.mirror_missing(storage, out_dir, list(finished))
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
        progress.started(spec.trial_id)
        rundir.fault_point("trial-started")

        def report(epoch_row: dict, trial_id: str = spec.trial_id) -> None:
            progress.epoch(trial_id, epoch_row, suite.train.epochs)

        result = trial_fn(suite, spec, report=report)
        rundir.save_trial(out_dir, result.row, result.epochs)
        progress.finished(spec.trial_id, result.row["status"], result.row.get("error"))


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
            reuse_actors=not options.dashboard,  # a reused actor keeps its first trial's name
            log_to=options.log_to,
        )


def _run_tuned(
    suite: Suite,
    out_dir: Path,
    grid: list[TrialSpec],
    progress: Progress,
    options: RunOptions,
    trial_fn: TrialFn | None,
) -> RunSummary:
    """A suite with tune:/final: (halbench/run/tuning.py): tuning, then the final seeds."""
    from halbench.run import tuning

    assert suite.tune is not None
    groups = tuning.groups(suite, options.datasets)
    specs, missing = tuning.final_specs(suite, groups, dict.fromkeys(g.key for g in groups))
    finals = [s for s, _ in missing] + specs
    summary = RunSummary(out_dir=out_dir, total=len(finals), skipped=0)
    summary.skipped = sum(rundir.has_trial(out_dir, s.trial_id) for s in finals)
    progress.say(f"{suite.name}: tuned run ({len(groups)} groups); writing to {out_dir}")
    if not options.use_ray and (suite.tune.search, suite.tune.scheduler) != ("random", "fifo"):
        progress.say("--no-ray: the seeded random configurations, one by one, no early stopping")
    resources = cluster.trial_resources(suite.resources)
    max_concurrent = options.max_concurrent or suite.resources.max_concurrent
    ray_kw = {"resources": resources, "max_concurrent": max_concurrent, "storage": options.storage,
              "log_to": options.log_to}  # fmt: skip

    def tune_groups(todo, recorder):  # noqa: ANN001, ANN202
        if options.use_ray:
            from halbench.run.tuning_ray import fit_tuning

            fit_tuning(suite, todo, out_dir, recorder, trial_fn=trial_fn, **ray_kw)
        else:
            tuning.tune_in_process(suite, todo, recorder, trial_fn)

    def run_finals(todo: list[TrialSpec]) -> None:
        final_progress = Progress(len(finals), len(finals) - len(todo))
        if options.use_ray:
            tune.fit(suite, todo, out_dir, final_progress, trial_fn=trial_fn, **ray_kw)
        else:
            _run_in_process(suite, todo, out_dir, final_progress, trial_fn)

    def run_both() -> None:
        tuning.run_tuned(
            suite, out_dir, groups, tune_groups=tune_groups, run_finals=run_finals,
            say=progress.say, progress_for=lambda n, done, unit: Progress(n, done, unit=unit),
        )  # fmt: skip

    try:
        if options.use_ray:
            with cluster.ray_session(options) as dashboard:
                if dashboard:
                    progress.say(dashboard)
                if not options.address:
                    cluster.check_fits(resources)
                run_both()
        else:
            run_both()
    except KeyboardInterrupt:
        summary.interrupted = True
    if (out_dir / "tuning").exists():
        tuning.collect_tuning(out_dir, groups)
    return _finish(suite, out_dir, finals, summary, storage=options.storage)
