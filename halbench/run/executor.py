"""The one executor: preflight (validate, capacity), the locked run, tasks on Ray or in process.

`preflight` checks what a run or a profile needs of the machine before Ray or any directory;
`session` opens the Ray this run uses (cluster.py starts or joins it) or none (--no-ray);
`Executor` runs trials: as Tune trials through the Ray Tune adapter (ray_tune.py, ray_search.py
for the tuning protocol's schedulers and searchers), or one by one in this process. Both
paths hand every event to the same sinks (TrialWriter here, protocol.TuningRecorder), so a
finished trial's file is written the same way whichever path ran it.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from halbench.run import cluster, ray_search, ray_tune, rundir, store, tables
from halbench.run import storage as tune_storage
from halbench.run.options import RunOptions
from halbench.run.progress import Progress
from halbench.run.ray_tune import TaskSink, TrialFn
from halbench.suite import Suite, TrialSpec
from halbench.suite.profile import ProfileSuite
from halbench.trial.spec import phase_epochs


def task_resources(suite: Suite | ProfileSuite) -> dict[str, float]:
    """Ray resources of one task: a trial's, or a profile loss's (a whole GPU on CUDA: two
    losses timed on one GPU at once would slow each other)."""
    if isinstance(suite, ProfileSuite):
        resources = cluster.trial_resources(suite.resources, whole_gpu=suite.device == "cuda")
        if suite.device != "cuda":
            resources["gpu"] = 0.0
        return resources
    return cluster.trial_resources(suite.resources)


def preflight(
    suite: Suite | ProfileSuite, suite_path: Path | str | None, options: RunOptions
) -> None:
    """What a run needs of the machine, checked before Ray or any run directory: one line.

    A local run (or the Ray this process is connected to) must hold one task's resources and
    have CUDA when the suite asks for it; on a cluster (--address) Ray's nodes are checked
    after joining, before any task starts (`session`).
    """
    if options.address:
        return
    profile = isinstance(suite, ProfileSuite)
    where = suite_path or "the built-in profile suite"
    if profile:
        cluster.check_device(suite.device, where, "device (or --device)")
        if not options.use_ray:
            return
    else:
        cluster.check_device(suite.train.device, where)
    resources = task_resources(suite)
    if "ray" in sys.modules and options.use_ray and not profile:
        import ray  # already imported: only asks whether this process holds a Ray

        if ray.is_initialized():  # this process's Ray is the one the trials will use
            cluster.check_fits(resources, where)
            return
    capacity = cluster.local_capacity(options.num_cpus, options.num_gpus)
    cluster.check_capacity(resources, capacity, where)


@contextmanager
def session(
    options: RunOptions, resources: dict[str, float], progress: Progress, where: Path | str
) -> Iterator[None]:
    """The Ray the tasks run on (cluster.ray_session), checked to hold one task; none with
    --no-ray."""
    if not options.use_ray:
        yield
        return
    with cluster.ray_session(options) as dashboard:
        if dashboard:
            progress.say(dashboard)
        rundir.fault_point("ray-started")
        cluster.check_fits(resources, where)  # before any task is queued
        yield


class TrialWriter:
    """The sink of grid and final trials: each finished trial into the store (and mirrored)."""

    def __init__(
        self, suite: Suite, out_dir: Path, specs: list[TrialSpec], progress: Progress,
        storage: str | None,
    ) -> None:  # fmt: skip
        self.suite, self.out_dir, self.progress, self.storage = suite, out_dir, progress, storage
        self.specs = {s.trial_id: s for s in specs}

    def epoch(self, task_id: str, result: dict[str, Any]) -> None:
        spec = self.specs.get(task_id)
        self.progress.epoch(task_id, result, phase_epochs(self.suite, spec) if spec else None)

    def final(
        self, task_id: str, row: dict[str, Any], epochs: list[Any], running: int | None,
        embeddings: bytes | None = None,
    ) -> None:  # fmt: skip
        if embeddings is not None:  # first: a trial with a row has its embeddings
            store.save_embeddings(self.out_dir, row["trial_id"], embeddings)
        store.save(self.out_dir, row, epochs)
        tune_storage.mirror_trial(self.storage, self.out_dir, row["trial_id"])
        self.progress.finished(row["trial_id"], row["status"], row.get("error"), running)

    def complete(self, task_id: str, last: dict[str, Any], interrupted: bool) -> None:
        pass  # the trial's row came with its last result (final)

    def failed(self, task_id: str, status: str, error: str, running: int | None) -> None:
        if store.has(self.out_dir, task_id):
            return  # its result was written before the worker died
        self.final(task_id, tables.failed_row(self.suite, self.specs[task_id], status, error),
                   [], running)  # fmt: skip


@dataclass
class Executor:
    """Runs trials of one suite into one run directory, on the open session's Ray or here."""

    suite: Suite
    out_dir: Path
    options: RunOptions
    trial_fn: TrialFn | None = None

    def trials(self, todo: list[TrialSpec], progress: Progress) -> None:
        """Grid or final trials; each finished one is in the store when this returns."""
        sink = TrialWriter(self.suite, self.out_dir, todo, progress, self.options.storage)
        if self.options.use_ray:
            ray_tune.fit(self.suite, todo, self.out_dir, sink, **self._ray_kw(),
                         reuse_actors=not self.options.dashboard)  # fmt: skip
            # (a reused actor keeps its first trial's name: one actor per trial with the dashboard)
        else:
            self._in_process(todo, sink)

    def tuning(self, todo: dict[str, list[TrialSpec]], recorder: Any) -> None:
        """The tuning protocol's trials (group key -> specs), through its recorder."""
        if self.options.use_ray:
            ray_search.fit_tuning(self.suite, todo, self.out_dir, recorder, **self._ray_kw())
        else:  # the seeded random configurations, one by one, no early stopping (FIFO)
            specs = [s for group in todo.values() for s in group]
            # tune.budget_epochs: asked as each trial starts and after each of its epochs
            self._in_process(specs, recorder, admit=recorder.admit, stop=recorder.stop_after)

    def _ray_kw(self) -> dict[str, Any]:
        max_concurrent = self.options.max_concurrent or self.suite.resources.max_concurrent
        return {
            "resources": task_resources(self.suite),
            "max_concurrent": max_concurrent,
            "storage": self.options.storage,
            "trial_fn": self.trial_fn,
            "log_to": self.options.log_to,  # --log-to: Tune's logger callbacks (loggers.py)
        }

    def _in_process(
        self, todo: list[TrialSpec], sink: TaskSink, admit: Callable[[str], bool] | None = None,
        stop: Callable[[str, int], bool] | None = None,
    ) -> None:  # fmt: skip
        trial_fn = self.trial_fn
        if trial_fn is None:
            from halbench.trial import run_trial as trial_fn  # torch: only when trials run here

        for spec in todo:
            if admit is not None and not admit(spec.trial_id):
                continue  # not started: not a result
            sink.progress.started(spec.trial_id)
            rundir.fault_point("trial-started")

            def report(epoch_row: dict[str, Any], task_id: str = spec.trial_id) -> bool:
                sink.epoch(task_id, epoch_row)
                return stop is not None and stop(task_id, int(epoch_row["epoch"]))  # True: stop

            result = trial_fn(self.suite, spec, report=report)
            saved = getattr(result, "embeddings", None)  # a stub trial_fn may return rows only
            sink.final(spec.trial_id, result.row, result.epochs, None, saved)
            sink.complete(spec.trial_id, {"time_total_s": result.row.get("train_time_s")}, False)
