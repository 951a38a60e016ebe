"""`halbench run`: a suite -> its plan of tasks -> the executor -> the store -> the tables.

The driver owns the run directory (rundir.py). Each finished task is written atomically to the
store (store.py); those files are the unit of resume: a rerun with --resume runs only the tasks
that have none, and the tables are always rebuilt from all of them (tables.py), so that a
resumed run's files equal those of an uninterrupted one. A grid suite's plan is its grid
(plan.py); a tuned suite's comes from the tuning protocol (protocol.py).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

from halbench import data
from halbench.errors import UserError
from halbench.run import protocol, rundir, store, tables
from halbench.run import storage as tune_storage
from halbench.run.executor import Executor, preflight, session, task_resources
from halbench.run.lock import run_lock
from halbench.run.options import RunOptions
from halbench.run.plan import FINAL, GRID, Plan, grid_plan
from halbench.run.progress import Progress
from halbench.run.ray_tune import MAX_RAY_RETRIES, TrialFn
from halbench.suite import DatasetConfig, Suite, TrialSpec

__all__ = [
    "MAX_RAY_RETRIES",
    "RunOptions",
    "RunSummary",
    "check_data",
    "load_dataset",
    "preflight",
    "run_plan",
    "run_suite",
]


@dataclass
class RunSummary:
    out_dir: Path
    total: int
    skipped: int  # already finished before this invocation (resume)
    statuses: dict[str, int] = field(default_factory=dict)
    interrupted: bool = False


def run_plan(suite: Suite, datasets: tuple[str, ...] | None = None) -> Plan:
    """The tasks of a run of `suite` (of the datasets asked for; all by default)."""
    if suite.tune is None:
        return grid_plan(suite, datasets)
    return protocol.tuned_plan(suite, datasets)


def load_dataset(ds: DatasetConfig, **protocol_kw: object) -> data.Splits:
    """A suite's dataset loaded as its trials load it (the one place spelling data.load)."""
    return data.load(
        ds.name,
        root=ds.root,
        train_size=ds.train_size,
        test_size=ds.test_size,
        download=ds.download,
        **protocol_kw,
        **ds.params,
    )


def check_data(specs: list[TrialSpec], suite: Suite | None = None) -> None:
    """On a local run, load every dataset once on this machine before any trial starts.

    A missing dataset is then a user mistake (one line, exit 2, nothing written) rather than
    one error row per trial, and a download (dataset.download) happens once here instead of in
    every concurrent trial at once. On a cluster the data lives on the workers: not checked.
    """
    # A tuned suite is checked as its tuning trials load: the test split is not read here.
    tune = suite.tune if suite is not None else None
    protocol_kw = {"validation": tune.validation, "phase": "tune"} if tune else {}
    for ds in {s.dataset.name: s.dataset for s in specs}.values():
        try:
            load_dataset(ds, **protocol_kw)
        except ValueError as err:  # bad dataset params
            raise UserError(f"dataset {ds.name!r}: {err}") from None


def run_suite(
    suite: Suite,
    suite_path: Path,
    options: RunOptions | None = None,
    *,
    trial_fn: TrialFn | None = None,
) -> RunSummary:
    """Run every task of `suite` that the output directory does not hold yet; write parquet.

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
        return _run_locked(suite, suite_path, out_dir, options, trial_fn)


def _run_locked(
    suite: Suite, suite_path: Path, out_dir: Path, options: RunOptions, trial_fn: TrialFn | None
) -> RunSummary:
    rundir.prepare_run_dir(suite, suite_path, out_dir, resume=options.resume)
    rundir.fault_point("prepared")
    whole = run_plan(suite)  # every task a file of this run may hold (all datasets)
    mine = run_plan(suite, options.datasets)
    trials = mine.of(GRID, FINAL)
    done = store.finished(out_dir, suite, whole.expected(store.TRIALS))
    skipped = sum(t.task_id in done for t in trials)
    invocation = {"started_at": rundir.now(), "address": options.address, "argv": sys.argv}
    invocation["trials_to_run"] = len(trials) - skipped
    rundir.write_env(out_dir, suite, invocation, **_protocol_record(suite))
    rundir.fault_point("env-written")
    progress = Progress(len(trials), skipped)
    summary = RunSummary(out_dir=out_dir, total=len(trials), skipped=skipped)
    executor = Executor(suite, out_dir, options, trial_fn)
    groups = protocol.groups(suite, options.datasets) if suite.tune is not None else []
    if suite.tune is not None:
        progress.say(f"{suite.name}: tuned run ({len(groups)} groups); writing to {out_dir}")
        if not options.use_ray and (suite.tune.search, suite.tune.scheduler) != ("random", "fifo"):
            progress.say(
                "--no-ray: the seeded random configurations, one by one, no early stopping"
            )
    else:
        progress.say(
            f"{suite.name}: {len(trials)} trials, {skipped} already done; writing to {out_dir}"
        )
    todo = [t.spec for t in trials if t.task_id not in done and t.spec is not None]
    where = out_dir / "suite.yaml" if suite.tune is None else "suite"
    try:
        if suite.tune is not None or todo:
            with session(options, task_resources(suite), progress, where):
                if suite.tune is not None:
                    protocol.run_tuned(suite, out_dir, groups, executor, progress.say)
                else:
                    executor.trials(todo, progress)
    except KeyboardInterrupt:
        summary.interrupted = True
    if suite.tune is not None and (out_dir / store.TUNING).exists():
        protocol.collect_tuning(out_dir, suite, groups)
    return _finish(suite, out_dir, whole, trials, summary, options.storage)


def _protocol_record(suite: Suite) -> dict[str, object]:
    """What env.json says of a tuned run's protocol: its tuning and final seeds (disjoint),
    and the metric the tuning selected on (the one its claims judge)."""
    if suite.tune is None:
        return {}
    return {"seeds": protocol.protocol_seeds(suite), "tuning_metric": suite.tune.metric}


def _finish(
    suite: Suite, out_dir: Path, whole: Plan, trials: list, summary: RunSummary,
    storage: str | None,
) -> RunSummary:  # fmt: skip
    finished = store.finished(out_dir, suite, whole.expected(store.TRIALS))
    # A grid run's tables are in grid order; a tuned run's final trials in id order.
    order = whole.order(store.TRIALS) if suite.tune is None else []
    summary.statuses = tables.write_trials(out_dir, finished, order, whole.replicates())
    # A driver killed between a trial's local write and its upload left the storage a file
    # short; the resumed run does not rerun that trial, so its file is uploaded here.
    tune_storage.mirror_missing(storage, out_dir, list(finished))
    summary.interrupted = summary.interrupted or any(t.task_id not in finished for t in trials)
    finished_at = {"finished_at": rundir.now(), "interrupted": summary.interrupted}
    rundir.write_env(out_dir, suite, finished_at, **_protocol_record(suite))
    tune_storage.close()  # the queued uploads: a bounded wait, one warning if the store hangs
    rundir.fault_point("finished")
    return summary
