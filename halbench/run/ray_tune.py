"""The Ray Tune adapter: the trainable, ONE callback for every kind of trial, Ctrl-C handling.

Trials send their rows back through Tune's reporting (so they work on any node of a cluster,
shared filesystem or not); the callback on the driver hands each event to the task kind's
sink (executor.TrialWriter for grid and final trials, protocol.TuningRecorder for tuning
trials), which writes the finished task's file atomically. ray_search.py adds the tuning
schedulers and searchers.
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
from typing import Any, Protocol

from halbench import failures
from halbench.probes import placement
from halbench.run import storage as tune_storage
from halbench.run.budget import START, WAIT
from halbench.run.loggers import tune_callbacks
from halbench.run.progress import Progress
from halbench.suite import Suite, TrialSpec

FINAL_KEY = "halbench_final"  # the metric that carries a finished trial's rows, as JSON
# ... and its saved test embeddings (eval.save_embeddings), as parquet bytes: the callback takes
# them out of the result before Tune keeps it as the trial's last result (experiment state).
EMBEDDINGS_KEY = "halbench_embeddings"
VAL_KEY = "val_score"  # a tuning trial's validation score per epoch (ASHA, the searcher)
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
# A tuning trial that finds its group's epoch budget reserved by running trials asks again this
# often, for at most this long (ray_tune.budget_admits).
BUDGET_POLL_S = 0.5
BUDGET_WAIT_S = 600.0

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
    config: dict[str, Any], suite_json: dict[str, Any], trial_fn: TrialFn | None,
    budget: Any = None,
) -> None:  # fmt: skip
    """The Tune function trainable: one trial (a grid point, a tuning trial or a final seed).

    With --dashboard every trial gets its own actor, named by its trial id (named_trainable);
    otherwise actors are reused, and each trial logs its id when it starts, so an actor's log
    (dashboard: Actors -> Logs) says which trial runs. `budget`: the run's epoch-budget actor
    (tune.budget_epochs, run/budget.py), asked by a tuning trial as it really starts (Tune
    queues trials long before) and after each epoch; a refused trial returns with no result.
    """
    import ray
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
    budgeted = budget is not None and spec.phase == "tune"
    if budgeted and not budget_admits(budget, spec.trial_id):
        print(f"[halbench] trial {spec.trial_id}: not started, epoch budget spent", flush=True)
        if sampled:
            # Tune checks a searcher's metric in every result, also the one a trial that
            # returns makes; NaN is no score: Optuna records the trial as failed, not as a point.
            tune.report({VAL_KEY: float("nan")})
        return
    print(f"[halbench] trial {spec.trial_id}", flush=True)
    started = placement.now()

    # A tuning trial's score on the validation split, every epoch, for ASHA and the searcher.
    val_metric = suite.tune.metric if spec.phase == "tune" and suite.tune else None

    last_val = [float("-inf")]
    last_sent = [float("-inf")]

    def report_epoch(epoch_row: dict[str, Any]) -> bool:
        if spec.phase != "tune":  # only printed by the driver: REPORT_EVERY_S at most
            if _clock() - last_sent[0] < REPORT_EVERY_S:
                return False
            last_sent[0] = _clock()
        # Told before Tune sees the epoch: an ASHA stop may end this worker at the report.
        stop = budgeted and ray.get(budget.epoch.remote(spec.trial_id, int(epoch_row["epoch"])))
        metrics = {k: v for k, v in epoch_row.items() if isinstance(v, int | float)}
        if val_metric is not None and val_metric in metrics:
            metrics[VAL_KEY] = last_val[0] = metrics[val_metric]
        tune.report(metrics)
        return bool(stop)  # True: the trainer ends the trial after this epoch

    result = trial_fn(suite, spec, report=report_epoch)
    placement.record(result.row, started)  # node id, GPU ids, times; the node in an error
    blob = json.dumps({"row": result.row, "epochs": result.epochs}, default=str)
    final: dict[str, Any] = {FINAL_KEY: blob}
    saved = getattr(result, "embeddings", None)  # a stub trial_fn may return rows only
    if saved is not None:
        final[EMBEDDINGS_KEY] = saved
    # Tune checks that every result of a tuning trial has the scheduler's metric.
    tune.report({**final, **({VAL_KEY: last_val[0]} if val_metric else {})})


def budget_admits(budget: Any, trial_id: str) -> bool:
    """Ask the epoch-budget actor until it answers START or REFUSE (run/budget.py): WAIT
    while trials of the group that are running may still leave it an epoch. Bounded: a
    trial lost with its worker and waiting for a free slot to be retried keeps its epoch
    reserved, and the waiters must not hold every slot forever."""
    import ray

    deadline = _clock() + BUDGET_WAIT_S
    while (answer := ray.get(budget.admit.remote(trial_id))) == WAIT:
        if _clock() > deadline:
            return False
        time.sleep(BUDGET_POLL_S)
    return answer == START


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


class TaskSink(Protocol):
    """Where the callback hands a trial's events; one implementation per kind of task."""

    progress: Progress

    def epoch(self, task_id: str, result: dict[str, Any]) -> None: ...

    def final(
        self, task_id: str, row: dict[str, Any], epochs: list[Any], running: int | None,
        embeddings: bytes | None = None,
    ) -> None: ...  # fmt: skip

    def complete(self, task_id: str, last: dict[str, Any], interrupted: bool) -> None: ...

    def failed(self, task_id: str, status: str, error: str, running: int | None) -> None: ...


def task_callback(sink: TaskSink, interrupt: Interrupt, names: dict[str, str] | None = None) -> Any:
    """The one Tune callback: every trial event of one Tuner to `sink`.

    on_trial_complete fires for a trial that ran to the end and for one ASHA stopped (with its
    last result); on_trial_error for one whose worker died (after MAX_RAY_RETRIES), or that
    the Ctrl-C killed: not a result, it reruns on --resume. `names`: Tune's trial id -> ours,
    for the trials a searcher created.
    """
    from ray.tune import Callback

    names = names if names is not None else {}

    def task_id(trial: Any) -> str:
        return names.get(trial.trial_id) or _trial_id(trial)

    class TaskCallback(Callback):
        def on_trial_start(self, iteration, trials, trial, **info):  # noqa: ANN001
            sink.progress.started(task_id(trial), running=_running(trials, trial) + 1)

        def on_trial_result(self, iteration, trials, trial, result, **info):  # noqa: ANN001
            if FINAL_KEY in result:
                blob = json.loads(result[FINAL_KEY])
                # popped: Tune keeps this result (in place) as the trial's last_result
                embeddings = result.pop(EMBEDDINGS_KEY, None)
                sink.final(task_id(trial), blob["row"], blob["epochs"], _running(trials, trial),
                           embeddings)  # fmt: skip
            elif "epoch" in result:
                sink.epoch(task_id(trial), result)

        def on_trial_recover(self, iteration, trials, trial, **info):  # noqa: ANN001
            sink.progress.say(f"{task_id(trial)}: worker lost, retrying")

        def on_trial_complete(self, iteration, trials, trial, **info):  # noqa: ANN001
            sink.complete(task_id(trial), trial.last_result or {}, interrupt.requested)

        def on_trial_error(self, iteration, trials, trial, **info):  # noqa: ANN001
            if interrupt.requested:
                return  # killed by the Ctrl-C: not a result, it reruns on --resume
            status, error = failures.classify(_recorded_error(trial))
            sink.failed(task_id(trial), status, error, _running(trials, trial))

    return TaskCallback()


def stop_on_interrupt(interrupt: Interrupt) -> Any:
    """The Tune stopper that ends the whole run after a Ctrl-C."""
    from ray.tune import Stopper

    class StopOnInterrupt(Stopper):
        def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
            return False

        def stop_all(self) -> bool:
            return interrupt.requested

    return StopOnInterrupt()


def _trial_id(trial: Any) -> str:
    return trial.config["spec"]["trial_id"]


def _running(trials: list[Any], trial: Any) -> int:
    """Trials Tune runs now, other than `trial`: from Tune's own trial states."""
    return sum(t.status == "RUNNING" for t in trials if t is not trial)


# (searcher, param_space, num_samples, trial namer) of a searcher's Tuner (ray_search.py)
Search = tuple[Any, dict[str, Any], int, Callable[[Any], str]]


def fit(
    suite: Suite,
    todo: list[TrialSpec],
    out_dir: Path,
    sink: TaskSink,
    *,
    resources: dict[str, float],
    max_concurrent: int | None,
    storage: str | None,
    trial_fn: TrialFn | None,
    reuse_actors: bool = True,
    scheduler: Any = None,
    budget: Any = None,
    search: Search | None = None,
    names: dict[str, str] | None = None,
    log_to: tuple[str, ...] = (),
) -> None:
    """One Tuner over `todo` on the Ray this process is connected to: a grid search over the
    specs (deterministic order, no sampling), or a searcher's `search`.

    Raises KeyboardInterrupt after a Ctrl-C stopped the run (the finished trials are written).
    """
    from ray import tune

    interrupt = Interrupt(sink.progress)
    param_space: dict[str, Any] = {
        "spec": tune.grid_search([s.model_dump(mode="json") for s in todo])
    }
    search_alg, num_samples, name = None, 1, _trial_id
    if search is not None:
        search_alg, param_space, num_samples, name = search

    trainable = tune.with_resources(
        named_trainable(
            tune.with_parameters(
                halbench_trial,
                suite_json=suite.model_dump(mode="json"),
                trial_fn=trial_fn,
                budget=budget,
            )  # fmt: skip
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
            callbacks=[task_callback(sink, interrupt, names), *tune_callbacks(log_to, out_dir)],
            stop=stop_on_interrupt(interrupt),
            failure_config=tune.FailureConfig(max_failures=MAX_RAY_RETRIES),
            verbose=0,
        ),
    )
    with interrupt.installed():
        tuner.fit()
    if interrupt.requested:
        raise KeyboardInterrupt
