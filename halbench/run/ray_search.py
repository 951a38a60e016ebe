"""Tuning trials on Ray Tune: schedulers and searchers that keep the protocol's groups apart.

Random search runs every group's trials in one Tuner (full concurrency across losses) under
GroupedASHA, one ASHA per group, so that a trial is only ever compared with trials of its own
loss; Optuna needs a searcher per group, so it runs one Tuner per group.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from halbench.run import protocol
from halbench.run.budget import EpochBudget
from halbench.run.ray_tune import VAL_KEY, Search, TrialFn, fit
from halbench.suite import Suite, TrialSpec


def make_asha(suite: Suite) -> Any:
    """ASHA on the validation score per epoch (tune.epochs, tune.grace_epochs)."""
    from ray.tune.schedulers import ASHAScheduler

    assert suite.tune is not None
    # stop_last_trials=False: a trial that reaches max_t ends by itself and sends its row.
    return ASHAScheduler(
        time_attr="training_iteration",
        metric=VAL_KEY,
        mode="max",
        max_t=suite.tune.epochs,
        grace_period=suite.tune.grace_epochs,
        stop_last_trials=False,
    )


def grouped_asha(suite: Suite, group_of: Callable[[Any], str]) -> Any:
    """One Tune scheduler holding an ASHA per group: equal treatment in a shared Tuner.

    (tune.budget_epochs is kept by the trials themselves, as they start and after each epoch:
    budget_actor. A scheduler is asked about a trial when Tune queues it, too early.)
    """
    from ray.tune.schedulers import FIFOScheduler

    class GroupedASHA(FIFOScheduler):
        def __init__(self) -> None:
            super().__init__()
            self.by_group: dict[str, Any] = {}

        def _of(self, trial: Any) -> Any:
            key = group_of(trial)
            if key not in self.by_group:
                self.by_group[key] = make_asha(suite)
            return self.by_group[key]

        def on_trial_add(self, tune_controller, trial):  # noqa: ANN001, ANN201
            self._of(trial).on_trial_add(tune_controller, trial)

        def on_trial_error(self, tune_controller, trial):  # noqa: ANN001, ANN201
            self._of(trial).on_trial_error(tune_controller, trial)

        def on_trial_result(self, tune_controller, trial, result):  # noqa: ANN001, ANN201
            return self._of(trial).on_trial_result(tune_controller, trial, result)

        def on_trial_complete(self, tune_controller, trial, result):  # noqa: ANN001, ANN201
            self._of(trial).on_trial_complete(tune_controller, trial, result)

        def on_trial_remove(self, tune_controller, trial):  # noqa: ANN001, ANN201
            self._of(trial).on_trial_remove(tune_controller, trial)

    return GroupedASHA()


def fit_tuning(
    suite: Suite,
    todo: dict[str, list[TrialSpec]],
    out_dir: Path,
    recorder: Any,
    *,
    resources: dict[str, float],
    max_concurrent: int | None,
    storage: str | None,
    trial_fn: TrialFn | None,
    log_to: tuple[str, ...] = (),
) -> None:
    """Every group's missing tuning trials (`todo`: group key -> specs) on Ray Tune."""
    assert suite.tune is not None
    asha = suite.tune.scheduler == "asha"
    kw = {"resources": resources, "max_concurrent": max_concurrent, "storage": storage,
          "trial_fn": trial_fn, "log_to": log_to}  # fmt: skip
    if suite.tune.search == "optuna":
        for specs in todo.values():
            _one_tuner(suite, specs, out_dir, recorder, make_asha(suite) if asha else None,
                       optuna=True, **kw)  # fmt: skip
        return
    specs = [s for group in todo.values() for s in group]

    def task_id(trial: Any) -> str:
        return trial.config["spec"]["trial_id"]

    scheduler = grouped_asha(suite, lambda t: recorder.planned[task_id(t)][0].key) if asha else None
    _one_tuner(suite, specs, out_dir, recorder, scheduler, optuna=False, **kw)


def _one_tuner(
    suite: Suite, todo: list[TrialSpec], out_dir: Path, recorder: Any, scheduler: Any, *,
    optuna: bool, resources: dict[str, float], max_concurrent: int | None, storage: str | None,
    trial_fn: TrialFn | None, log_to: tuple[str, ...] = (),
) -> None:  # fmt: skip
    names: dict[str, str] = {}
    search = optuna_search(suite, todo, recorder, names) if optuna else None
    with budget_actor(recorder) as budget:
        fit(suite, todo, out_dir, recorder, resources=resources, max_concurrent=max_concurrent,
            storage=storage, trial_fn=trial_fn, scheduler=scheduler, search=search,
            names=names, log_to=log_to, budget=budget)  # fmt: skip


class BudgetProxy:
    """The recorder's view of the budget actor: budget.EpochBudget's calls, answered by it."""

    def __init__(self, actor: Any) -> None:
        self.actor = actor

    def admit(self, trial: str) -> str:
        return self._get(self.actor.admit.remote(trial))

    def epoch(self, trial: str, epoch: int) -> bool:
        return self._get(self.actor.epoch.remote(trial, epoch))

    def end(self, trial: str, epochs: int | None = None) -> None:
        self._get(self.actor.end.remote(trial, epochs))

    def refused(self, trial: str) -> bool:
        return self._get(self.actor.refused.remote(trial))

    @staticmethod
    def _get(ref: Any) -> Any:
        import ray

        return ray.get(ref)


@contextmanager
def budget_actor(recorder: Any) -> Iterator[Any]:
    """tune.budget_epochs on Ray: the recorder's EpochBudget moved into an actor for one
    Tuner, which every tuning trial asks where it runs; the recorder asks it too (a refused
    trial, a trial's end). Yields the actor handle (None without a budget); killed after."""
    local = recorder.budget
    if local is None:
        yield None
        return
    import ray

    actor = ray.remote(num_cpus=0)(EpochBudget).remote(local.budget, local.groups, local.finished)
    recorder.budget = BudgetProxy(actor)
    try:
        yield actor
    finally:
        # what the actor knows comes back (a later Tuner of this run starts from it)
        try:
            local.finished, local.refusals = ray.get(actor.state.remote())
        except Exception:  # noqa: BLE001 - the run is ending (Ctrl-C, a lost head)
            pass
        recorder.budget = local
        ray.kill(actor)


def optuna_search(
    suite: Suite, todo: list[TrialSpec], recorder: Any, names: dict[str, str]
) -> Search:
    """OptunaSearch over one group's domains, seeded per group, told the finished trials.

    The hand-set configuration is its first point when it has not run yet; every tuning
    trial of the group already on disk is given back as an evaluated point (resume). Trials
    it creates take the group's free trial indices in order.
    """
    from ray.tune.search.optuna import OptunaSearch

    assert suite.tune is not None
    group, _ = recorder.planned[todo[0].trial_id]
    space = {k: d.domain() for k, d in group.space.items()}
    free = sorted(int(s.trial_id.rsplit("-t", 1)[1]) for s in todo)
    default = [s.overrides for s in todo if s.trial_id.endswith("-t000")]
    searcher = OptunaSearch(
        space=space,
        metric=VAL_KEY,
        mode="max",
        points_to_evaluate=default or None,
        seed=(protocol.search_seed(suite, group) * 1_000_003 + zlib.crc32(group.base.encode()))
        % 2**32,
    )
    for row in recorder.done.values():
        if row["group"] != group.key:
            continue
        ok = row["status"] == "ok" and row["last_val"] is not None
        try:
            searcher.add_evaluated_point(
                json.loads(row["config"]), row["last_val"] if ok else None, error=not ok
            )
        except (ValueError, TypeError):  # the hand-set value outside the space: not a point
            pass

    def name(trial: Any) -> str:
        if trial.trial_id not in names:
            index = free[len(names)]
            config = {k: v for k, v in trial.config.items() if k != "spec"}
            spec = protocol.tuning_spec(suite, group, index, config)
            recorder.planned[spec.trial_id] = (group, spec)
            names[trial.trial_id] = spec.trial_id
        return names[trial.trial_id]

    param_space = {"spec": todo[0].model_dump(mode="json")}
    return searcher, param_space, len(todo), name
