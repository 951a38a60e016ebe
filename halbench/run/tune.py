"""Ray Tune for grid runs: the trainable, the callback that writes trials, Ctrl-C handling.

Trials send their rows back through Tune's reporting (so they work on any node of a cluster,
shared filesystem or not); a callback on the driver writes each finished trial atomically.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from halbench import failures
from halbench.probes import placement
from halbench.run import rundir
from halbench.run import storage as tune_storage
from halbench.run.loggers import tune_callbacks
from halbench.run.progress import Progress
from halbench.suite import Suite, TrialSpec

FINAL_KEY = "halbench_final"  # the metric that carries a finished trial's rows, as JSON
VAL_KEY = "val_score"  # a tuning trial's validation score per epoch (halbench.run.tuning)
# Ray retries a trial whose worker or node was lost; run_trial itself never raises for an
# OOM, NaN or exception, so only infrastructure failures reach this limit.
MAX_RAY_RETRIES = 2
# A grid or final trial sends an epoch to the driver at most this often: each tune.report is a
# round trip to the driver (about 30 ms on 2 busy cores), so a trial of 200 epochs of 50 ms ran
# 40% slower than in a plain process (benchmarks/ray_overhead.py). The driver only prints
# them (progress.EPOCH_LINE_EVERY_S); every epoch row still arrives with the trial's result.
# A tuning trial reports every epoch: ASHA and the searcher score each one.
REPORT_EVERY_S = 2.0
_clock = time.monotonic  # the reporting cadence's clock (a test steps it)

TrialFn = Callable[..., Any]  # run_trial's signature (halbench.trial), returning .row, .epochs


def named_trainable(fn: Any) -> type:
    """Tune's class for function trainable `fn`, whose actors carry the trial's name.

    Ray names an actor by its repr when the actor is created (the state API's repr_name, the
    dashboard's Actors page); Tune's default repr is the function's name. This repr is the
    Tune trial name (halbench's readable trial id). An actor that Tune reuses for a later
    trial keeps the first name, so the runner reuses actors only without the dashboard.
    """
    from ray.tune.trainable import wrap_function

    base = wrap_function(fn)

    class NamedTrial(base):  # type: ignore[misc, valid-type]
        def __repr__(self) -> str:
            return self.trial_name or base.__repr__(self)

    NamedTrial.__name__ = NamedTrial.__qualname__ = getattr(fn, "__name__", "trial")
    return NamedTrial


def failed_row(suite: Suite, spec: TrialSpec, status: str, error: str) -> dict[str, Any]:
    """A row for a trial that died outside run_trial (a lost worker, a crashed actor)."""
    from halbench.trial.spec import base_row

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
    """The Tune function trainable: one trial (a grid point, a tuning trial or a final seed).

    With --dashboard every trial gets its own actor, named by its trial id (named_trainable);
    otherwise actors are reused, and each trial logs its id when it starts, so an actor's log
    (dashboard: Actors -> Logs) says which trial runs.
    """
    from ray import tune

    from halbench.plugins import load_plugins

    load_plugins()  # the worker process may not have imported the user's plugin modules yet
    if trial_fn is None:
        from halbench.trial import run_trial as trial_fn
    suite = Suite.model_validate(suite_json)
    spec = TrialSpec.model_validate(config["spec"])
    sampled = {k: v for k, v in config.items() if k != "spec"}
    if sampled:  # a searcher's suggestion (tune.search: optuna); its name is the trial id
        name = tune.get_context().get_trial_name()
        spec = spec.model_copy(update={"overrides": sampled, "trial_id": name})
    print(f"[halbench] trial {spec.trial_id}", flush=True)
    started = placement.now()

    # A tuning trial's score on the validation split, every epoch, for ASHA and the searcher.
    val_metric = suite.tune.metric if spec.phase == "tune" and suite.tune else None

    last_val = [float("-inf")]
    last_sent = [float("-inf")]

    def report_epoch(epoch_row: dict[str, Any]) -> None:
        if spec.phase != "tune":  # only printed by the driver: REPORT_EVERY_S at most
            if _clock() - last_sent[0] < REPORT_EVERY_S:
                return
            last_sent[0] = _clock()
        metrics = {k: v for k, v in epoch_row.items() if isinstance(v, int | float)}
        if val_metric is not None and val_metric in metrics:
            metrics[VAL_KEY] = last_val[0] = metrics[val_metric]
        tune.report(metrics)

    result = trial_fn(suite, spec, report=report_epoch)
    placement.record(result.row, started)  # node id, GPU ids, times; the node in an error
    blob = json.dumps({"row": result.row, "epochs": result.epochs}, default=str)
    # Tune checks that every result of a tuning trial has the scheduler's metric.
    tune.report({FINAL_KEY: blob, **({VAL_KEY: last_val[0]} if val_metric else {})})


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
    out_dir: Path,
    suite: Suite,
    todo: list[TrialSpec],
    progress: Progress,
    interrupt: Interrupt,
    storage_uri: str | None = None,
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
                tune_storage.mirror_trial(storage_uri, out_dir, row["trial_id"])
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
            tune_storage.mirror_trial(storage_uri, out_dir, spec.trial_id)
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
    reuse_actors: bool = True,
    log_to: tuple[str, ...] = (),
) -> None:
    """Run `todo` as Tune trials on the Ray this process is connected to.

    Raises KeyboardInterrupt after a Ctrl-C stopped the run (the finished trials are written).
    """
    interrupt = Interrupt(progress)
    writer, stopper = tune_hooks(out_dir, suite, todo, progress, interrupt, storage)
    _fit(suite, todo, out_dir, interrupt, [writer], stopper, resources, max_concurrent, storage,
         trial_fn, reuse_actors=reuse_actors, log_to=log_to)  # fmt: skip


def _fit(
    suite: Suite,
    todo: list[TrialSpec],
    out_dir: Path,
    interrupt: Interrupt,
    callbacks: list[Any],
    stopper: Any,
    resources: dict[str, float],
    max_concurrent: int | None,
    storage: str | None,
    trial_fn: TrialFn | None,
    scheduler: Any = None,
    search: tuple[Any, dict[str, Any], int, Callable[[Any], str]] | None = None,
    *,
    reuse_actors: bool = True,
    log_to: tuple[str, ...] = (),
) -> None:
    """One Tuner over `todo`: a grid search over the specs (deterministic order, no sampling),
    or `search` = (searcher, param_space, num_samples, trial namer)."""
    from ray import tune

    param_space: dict[str, Any] = {
        "spec": tune.grid_search([s.model_dump(mode="json") for s in todo])
    }
    search_alg, num_samples = None, 1
    name = lambda t: t.config["spec"]["trial_id"]  # noqa: E731
    if search is not None:
        search_alg, param_space, num_samples, name = search

    trainable = tune.with_resources(
        named_trainable(
            tune.with_parameters(
                halbench_trial, suite_json=suite.model_dump(mode="json"), trial_fn=trial_fn
            )
        ),
        resources,
    )
    tuner = tune.Tuner(
        trainable,
        param_space=param_space,
        tune_config=tune.TuneConfig(
            max_concurrent_trials=max_concurrent,
            # Short trials: no actor start-up per trial. With the dashboard, one actor per
            # trial, so that each actor carries its trial's name (named_trainable).
            reuse_actors=reuse_actors,
            trial_name_creator=name,
            trial_dirname_creator=name,
            scheduler=scheduler,
            search_alg=search_alg,
            num_samples=num_samples,
        ),
        run_config=tune.RunConfig(
            name=f"tune-{datetime.now(UTC).strftime('%Y%m%dT%H%M%S%f')}",
            storage_path=tune_storage.storage_path(storage, out_dir),
            callbacks=[*callbacks, *tune_callbacks(log_to, out_dir)],  # --log-to
            stop=stopper,
            failure_config=tune.FailureConfig(max_failures=MAX_RAY_RETRIES),
            verbose=0,
        ),
    )
    with interrupt.installed():
        tuner.fit()
    if interrupt.requested:
        raise KeyboardInterrupt


def tuning_hooks(recorder: Any, interrupt: Interrupt, names: dict[str, str]) -> Any:
    """The Tune callback of a tuning Tuner: per-epoch scores in, one tuning file per trial out.

    on_trial_complete fires for a trial that ran to the end and for one ASHA stopped (with
    its last result); on_trial_error for one whose worker died. `names`: Tune's trial id ->
    ours, for the trials a searcher created.
    """
    from ray.tune import Callback

    def trial_id(trial: Any) -> str:
        return names.get(trial.trial_id) or trial.config["spec"]["trial_id"]

    class TuningWriter(Callback):
        def on_trial_start(self, iteration, trials, trial, **info):  # noqa: ANN001
            recorder.progress.started(trial_id(trial), running=_running(trials, trial) + 1)

        def on_trial_result(self, iteration, trials, trial, result, **info):  # noqa: ANN001
            if FINAL_KEY not in result and VAL_KEY in result:
                recorder.epoch(trial_id(trial), result.get("epoch"), result[VAL_KEY])
                recorder.progress.epoch(trial_id(trial), result, recorder.suite.tune.epochs)
            if FINAL_KEY in result:
                recorder.trial_row(json.loads(result[FINAL_KEY])["row"])

        def on_trial_complete(self, iteration, trials, trial, **info):  # noqa: ANN001
            last = trial.last_result or {}
            recorder.complete(
                trial_id(trial),
                time_s=last.get("time_total_s"),
                node=last.get("hostname"),
                interrupted=interrupt.requested,
            )

        def on_trial_error(self, iteration, trials, trial, **info):  # noqa: ANN001
            if interrupt.requested:
                return  # killed by the Ctrl-C: not a result, it reruns on --resume
            status, error = failures.classify(_recorded_error(trial))
            recorder.complete(trial_id(trial), status=status, error=error)

    return TuningWriter()
