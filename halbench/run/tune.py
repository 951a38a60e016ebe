"""Ray Tune for grid runs: the trainable, the callback that writes trials, Ctrl-C handling.

Trials send their rows back through Tune's reporting (so they work on any node of a cluster,
shared filesystem or not); a callback on the driver writes each finished trial atomically.
"""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from halbench import failures
from halbench.run import rundir
from halbench.run.progress import Progress
from halbench.suite import Suite, TrialSpec

FINAL_KEY = "halbench_final"  # the metric that carries a finished trial's rows, as JSON
# Ray retries a trial whose worker or node was lost; run_trial itself never raises for an
# OOM, NaN or exception, so only infrastructure failures reach this limit.
MAX_RAY_RETRIES = 2

TrialFn = Callable[..., Any]  # run_trial's signature (halbench.trial), returning .row, .epochs


def failed_row(suite: Suite, spec: TrialSpec, status: str, error: str) -> dict[str, Any]:
    """A row for a trial that died outside run_trial (a lost worker, a crashed actor)."""
    from halbench.trial import base_row

    return {**base_row(suite, spec), "status": status, "error": error, "node": None}


def _recorded_error(trial: Any) -> BaseException | None:
    """The exception Tune recorded for a failed trial, from the driver's own copy.

    (Trial.get_pickled_error reads the copy in the storage path, which is synced later.)
    """
    from ray import cloudpickle

    path = trial.pickled_error_file
    try:
        with open(path, "rb") as f:
            return cloudpickle.load(f)
    except Exception:  # noqa: BLE001 - no file, or an unpicklable error: still a row
        return None


def halbench_trial(
    config: dict[str, Any], suite_json: dict[str, Any], trial_fn: TrialFn | None
) -> None:
    """The Tune function trainable: one grid point.

    Its name is what the Ray dashboard shows for the trial actors; each trial logs its id when it
    starts, so the actor's log (dashboard: Actors -> halbench_trial -> Logs) says which trial runs.
    """
    from ray import tune

    from halbench.plugins import load_plugins

    load_plugins()  # the worker process may not have imported the user's plugin modules yet
    if trial_fn is None:
        from halbench.trial import run_trial as trial_fn
    suite = Suite.model_validate(suite_json)
    spec = TrialSpec.model_validate(config["spec"])
    print(f"[halbench] trial {spec.trial_id}", flush=True)

    def report_epoch(epoch_row: dict[str, Any]) -> None:
        tune.report({k: v for k, v in epoch_row.items() if isinstance(v, int | float)})

    result = trial_fn(suite, spec, report=report_epoch)
    blob = json.dumps({"row": result.row, "epochs": result.epochs}, default=str)
    tune.report({FINAL_KEY: blob})


class Interrupt:
    """Ctrl-C while Tune runs: the first one stops the run gracefully, a second one at once.

    Tune's own SIGINT handler is switched off so that we know the run was interrupted (Tune
    returns from fit() as if it had finished) and can tell a trial killed by the Ctrl-C from a
    trial that failed.
    """

    def __init__(self, progress: Progress) -> None:
        self.requested = False
        self.progress = progress

    def handle(self, signum: int, frame: object) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        self.progress.say("interrupted: stopping running trials (Ctrl-C again to quit now)")

    @contextmanager
    def installed(self) -> Iterator[None]:
        previous = signal.signal(signal.SIGINT, self.handle)
        before = os.environ.get("TUNE_DISABLE_SIGINT_HANDLER")
        os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = "1"
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)
            if before is None:
                os.environ.pop("TUNE_DISABLE_SIGINT_HANDLER", None)
            else:
                os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = before


def tune_hooks(
    out_dir: Path, suite: Suite, todo: list[TrialSpec], progress: Progress, interrupt: Interrupt
) -> tuple[Any, Any]:
    """The Tune callback that writes finished trials, and the stopper that obeys Ctrl-C."""
    from ray.tune import Callback, Stopper

    specs = {s.trial_id: s for s in todo}

    class ResultWriter(Callback):
        """Writes each finished trial on the driver, the moment Tune hands us its rows."""

        def on_trial_start(self, iteration, trials, trial, **info):  # noqa: ANN001
            progress.started(_trial_id(trial), running=_running(trials, trial) + 1)

        def on_trial_result(self, iteration, trials, trial, result, **info):  # noqa: ANN001
            if FINAL_KEY in result:
                blob = json.loads(result[FINAL_KEY])
                row = blob["row"]
                rundir.save_trial(out_dir, row, blob["epochs"])
                progress.finished(
                    row["trial_id"], row["status"], row.get("error"), _running(trials, trial)
                )
            elif "epoch" in result:
                progress.epoch(_trial_id(trial), result, suite.train.epochs)

        def on_trial_recover(self, iteration, trials, trial, **info):  # noqa: ANN001
            progress.say(f"{trial.config['spec']['trial_id']}: worker lost, retrying")

        def on_trial_error(self, iteration, trials, trial, **info):  # noqa: ANN001
            spec = specs[trial.config["spec"]["trial_id"]]
            if interrupt.requested or rundir.has_trial(out_dir, spec.trial_id):
                return  # killed by the Ctrl-C: not a result, it reruns on --resume
            status, error = failures.classify(_recorded_error(trial))
            rundir.save_trial(out_dir, failed_row(suite, spec, status, error), [])
            progress.finished(spec.trial_id, status, error, _running(trials, trial))

    class StopOnInterrupt(Stopper):
        def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
            return False

        def stop_all(self) -> bool:
            return interrupt.requested

    return ResultWriter(), StopOnInterrupt()


def _trial_id(trial: Any) -> str:
    return trial.config["spec"]["trial_id"]


def _running(trials: list[Any], trial: Any) -> int:
    """Trials Tune runs now, other than `trial`: from Tune's own trial states."""
    return sum(t.status == "RUNNING" for t in trials if t is not trial)


def storage_path(storage: str | None, out_dir: Path) -> str:
    """Tune's storage_path: a URI as given, a local path made absolute (Tune requires it)."""
    if storage is None:
        return str(out_dir / "ray")
    return storage if "://" in storage else str(Path(storage).expanduser().resolve())


def fit(
    suite: Suite,
    todo: list[TrialSpec],
    out_dir: Path,
    progress: Progress,
    *,
    resources: dict[str, float],
    max_concurrent: int | None,
    storage: str | None,
    trial_fn: TrialFn | None,
) -> None:
    """Run `todo` as Tune trials on the Ray this process is connected to.

    Raises KeyboardInterrupt after a Ctrl-C stopped the run (the finished trials are written).
    """
    from ray import tune

    interrupt = Interrupt(progress)
    writer, stopper = tune_hooks(out_dir, suite, todo, progress, interrupt)
    trainable = tune.with_resources(
        tune.with_parameters(
            halbench_trial, suite_json=suite.model_dump(mode="json"), trial_fn=trial_fn
        ),
        resources,
    )
    tuner = tune.Tuner(
        trainable,
        param_space={"spec": tune.grid_search([s.model_dump(mode="json") for s in todo])},
        tune_config=tune.TuneConfig(
            max_concurrent_trials=max_concurrent,
            reuse_actors=True,  # short trials: no actor start-up per trial
            trial_name_creator=lambda t: t.config["spec"]["trial_id"],
            trial_dirname_creator=lambda t: t.config["spec"]["trial_id"],
        ),
        run_config=tune.RunConfig(
            name=f"tune-{datetime.now(UTC).strftime('%Y%m%dT%H%M%S%f')}",
            storage_path=storage_path(storage, out_dir),
            callbacks=[writer],
            stop=stopper,
            failure_config=tune.FailureConfig(max_failures=MAX_RAY_RETRIES),
            verbose=0,
        ),
    )
    with interrupt.installed():
        tuner.fit()
    if interrupt.requested:
        raise KeyboardInterrupt
