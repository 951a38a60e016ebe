"""Phase 1 of a tuned run on Ray Tune: schedulers and searchers that keep the groups apart.

Random search runs every group's trials in one Tuner (full concurrency across losses) under
GroupedASHA, one ASHA per group, so that a trial is only ever compared with trials of its own
loss; Optuna needs a searcher per group, so it runs one Tuner per group.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from halbench.run.tune import VAL_KEY, Interrupt, TrialFn, _fit, tune_hooks, tuning_hooks
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
    """One Tune scheduler holding an ASHA per group: equal treatment in a shared Tuner."""
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
    scheduler = None
    if asha:
        scheduler = grouped_asha(
            suite, lambda t: recorder.planned[t.config["spec"]["trial_id"]][0].key
        )
    _one_tuner(suite, specs, out_dir, recorder, scheduler, optuna=False, **kw)


def _one_tuner(
    suite: Suite, todo: list[TrialSpec], out_dir: Path, recorder: Any, scheduler: Any, *,
    optuna: bool, resources: dict[str, float], max_concurrent: int | None, storage: str | None,
    trial_fn: TrialFn | None, log_to: tuple[str, ...] = (),
) -> None:  # fmt: skip
    interrupt = Interrupt(recorder.progress)
    _, stopper = tune_hooks(out_dir, suite, todo, recorder.progress, interrupt)
    names: dict[str, str] = {}
    search = optuna_search(suite, todo, recorder, names) if optuna else None
    hooks = [tuning_hooks(recorder, interrupt, names)]
    _fit(suite, todo, out_dir, interrupt, hooks, stopper, resources, max_concurrent, storage,
         trial_fn, scheduler, search, log_to=log_to)  # fmt: skip


def optuna_search(
    suite: Suite, todo: list[TrialSpec], recorder: Any, names: dict[str, str]
) -> tuple[Any, dict[str, Any], int, Callable[[Any], str]]:
    """OptunaSearch over one group's domains, seeded per group, told the finished trials.

    The hand-set configuration is its first point when it has not run yet; every tuning
    trial of the group already on disk is given back as an evaluated point (resume). Trials
    it creates take the group's free trial indices in order.
    """
    from ray.tune.search.optuna import OptunaSearch

    from halbench.run import tuning

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
        seed=(suite.tune.seed * 1_000_003 + zlib.crc32(group.key.encode())) % 2**32,
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
            spec = tuning.tuning_spec(suite, group, index, config)
            recorder.planned[spec.trial_id] = (group, spec)
            names[trial.trial_id] = spec.trial_id
        return names[trial.trial_id]

    param_space = {"spec": todo[0].model_dump(mode="json")}
    return searcher, param_space, len(todo), name
