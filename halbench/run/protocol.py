"""The tuning protocol: a planner that emits tuning tasks, reads their results, emits finals.

Phase 1 tunes every group on the validation split, phase 2 retrains the best.

A group is dataset x loss x the grid point left as an axis (a tuned batch size or embedding
dim is no axis) x the tuning replicate (`tune.replicates`: R independent tunings, each with its
own search seed, training seed and validation split, each followed by the final seeds of its
own choice; with R = 1 the ids and keys are those of a run before replicates existed).
`tune.budget_epochs` caps the epochs one group's tuning may spend, concurrency included: a
trial starts only while epochs are left and stops once they are spent (run/budget.py; asked by
the trial itself as it starts and after each epoch).

Phase 1 gives each group `tune.budget` tuning trials, one Ray Tune Tuner per
group (so ASHA and the searcher compare the trials of one loss only); trial 0 is the suite's
hand-set configuration. Each finished tuning trial (also one ASHA stopped, and a failed one:
it counts against the budget) is a file of the store (kind `tuning`), the unit of resume;
tuning.parquet is rebuilt from those files (tables.py). Phase 2 runs `final.seeds` trials of
each group's best_trial() configuration like grid trials (trials/, trials.parquet, epochs.parquet).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from halbench import results
from halbench.run import store, tables
from halbench.run.budget import START, EpochBudget
from halbench.run.groups import (
    Group,
    default_config,
    final_id,
    groups,
    planned_configs,
    protocol_seeds,
    search_seed,
    tuning_id,
    tuning_seed,
    tuning_seeds,
    tuning_spec,
)
from halbench.run.plan import FINAL, TUNE, Plan, Task
from halbench.run.progress import Progress
from halbench.suite import Suite, TrialSpec
from halbench.suite.tune import best_trial, config_columns

__all__ = [  # the groups' names are the protocol's (callers spell protocol.groups, ...)
    "Group",
    "Runs",
    "TuningRecorder",
    "chosen",
    "collect_tuning",
    "default_config",
    "final_id",
    "final_specs",
    "finished_tuning",
    "groups",
    "planned_configs",
    "protocol_seeds",
    "run_tuned",
    "search_seed",
    "tuned_plan",
    "tuning_id",
    "tuning_row",
    "tuning_seed",
    "tuning_seeds",
    "tuning_spec",
]


def tuned_plan(suite: Suite, datasets: tuple[str, ...] | None = None) -> Plan:
    """Every tuning trial id (budget per group) and every final trial of a tuned suite.

    The ids are known before anything runs (a searcher's trials take the group's free
    indices); a final task's spec is the group's, its configuration chosen after phase 1.
    """
    assert suite.tune is not None
    plan = Plan()
    groups_ = groups(suite, datasets)
    for group in groups_:
        for i in range(suite.tune.budget):
            spec = tuning_spec(suite, group, i, {})
            plan.tasks.append(
                Task(TUNE, spec.trial_id, suite.tune.epochs, spec, group.key, group.replicate)
            )
    for group in groups_ if suite.final is not None else []:
        for spec, _ in final_specs(suite, [group], {})[1]:  # no choice yet: every seed
            plan.tasks.append(
                Task(FINAL, spec.trial_id, suite.final.epochs, spec, group.key, group.replicate)
            )
    return plan


# ------------------------------------------------------------------ tuning rows and files


def tuning_row(
    suite: Suite,
    group: Group,
    spec: TrialSpec,
    curve: list[float],
    *,
    status: str,
    error: str | None,
    time_s: float | None,
    node: str | None,
) -> dict[str, Any]:
    """One tuning.parquet row (TUNING_SCHEMA + cfg_<key> columns)."""
    assert suite.tune is not None
    index = int(spec.trial_id.rsplit("-t", 1)[1])
    config = spec.overrides
    return {
        **dict.fromkeys(results.TUNING_SCHEMA),
        "trial_id": spec.trial_id,
        "suite": suite.name,
        "suite_hash": suite.hash(),
        "group": group.key,
        "replicate": group.replicate,
        "dataset": group.dataset.name,
        "loss": group.loss.display,
        "loss_name": group.loss.name,
        "batch_size": config.get("batch_size", group.batch_size),
        "embedding_dim": config.get("embedding_dim", group.embedding_dim),
        "trial_index": index,
        "is_default": index == 0,
        "seed": spec.seed,
        "config": json.dumps(config, sort_keys=True),
        "metric": suite.tune.metric,
        "val_curve": curve,
        "last_val": curve[-1] if curve else None,
        "best_val": max(curve) if curve else None,
        "epochs": suite.tune.epochs,
        "epochs_run": len(curve),
        "stopped_early": status == "ok" and len(curve) < suite.tune.epochs,
        "chosen": False,
        "status": status,
        "error": error,
        "time_s": time_s,
        "node": node,
        **config_columns(config),
    }


def finished_tuning(out_dir: Path, suite: Suite) -> dict[str, dict[str, Any]]:
    """trial_id -> row of every trusted tuning file (the store moves others aside)."""
    done = store.finished(out_dir, suite, tuned_plan(suite).expected(store.TUNING), store.TUNING)
    return {task_id: record["row"] for task_id, record in done.items()}


def chosen(rows: list[dict[str, Any]], groups_: list[Group]) -> dict[str, dict[str, Any] | None]:
    """group key -> the tuning row whose configuration is retrained (None: none finished)."""
    return {g.key: best_trial([r for r in rows if r["group"] == g.key]) for g in groups_}


def collect_tuning(out_dir: Path, suite: Suite, groups_: list[Group]) -> list[dict[str, Any]]:
    """The trusted tuning files -> tuning.parquet, in group and trial order, `chosen` marked."""
    done = store.finished(out_dir, suite, tuned_plan(suite).expected(store.TUNING), store.TUNING)

    def picks(rows: list[dict[str, Any]]) -> set[str]:
        return {r["trial_id"] for r in chosen(rows, groups_).values() if r is not None}

    return tables.write_tuning(out_dir, done, [g.key for g in groups_], picks)


class TuningRecorder:
    """Driver-side bookkeeping of running tuning trials: their curves, then their files.

    ASHA stops a trial between epochs, so a tuning row is built from the per-epoch scores the
    driver saw, completed by the trial's own row when it ran to the end or failed.
    """

    def __init__(
        self, out_dir: Path, suite: Suite, planned: dict[str, tuple[Group, TrialSpec]],
        progress: Progress,
    ) -> None:  # fmt: skip
        self.out_dir, self.suite, self.planned, self.progress = out_dir, suite, planned, progress
        self.curves: dict[str, dict[int, float]] = {}  # trial -> epoch -> score
        self.rows: dict[str, dict[str, Any]] = {}  # the trial's own row, when it sent one
        self.done = finished_tuning(out_dir, suite)
        self.denied: set[str] = set()  # trials not started: their group's epoch budget is spent
        # tune.budget_epochs: the budget keeper (budget.EpochBudget, or on Ray a proxy of the
        # actor that every trial asks: ray_search.budget_actor), None without a budget.
        self.budget: Any = None
        if suite.tune is not None and suite.tune.budget_epochs is not None:
            spent: dict[str, int] = {}
            for r in self.done.values():
                spent[r["group"]] = spent.get(r["group"], 0) + int(r["epochs_run"] or 0)
            groups = {task_id: group.key for task_id, (group, _) in planned.items()}
            self.budget = EpochBudget(suite.tune.budget_epochs, groups, spent)

    def spent(self, group_key: str) -> int:
        """Epochs a group's tuning has run: its finished trials' and its running ones' so far."""
        done = sum(r["epochs_run"] for r in self.done.values() if r["group"] == group_key)
        running = sum(
            len(curve) for t, curve in self.curves.items()
            if t not in self.done and t in self.planned and self.planned[t][0].key == group_key
        )  # fmt: skip
        return done + running

    # tune.budget_epochs, in process: the executor asks before a trial and after each epoch.

    def admit(self, task_id: str) -> bool:
        """Whether a tuning trial may start: always without tune.budget_epochs. A trial refused
        is no result: no file, no row, and a resumed run refuses it again (the budget is spent
        from the finished rows)."""
        # One trial at a time here: none of the group runs, so WAIT cannot come back.
        if self.budget is None or self.budget.admit(task_id) == START:
            return True
        self.refused(task_id)
        return False

    def stop_after(self, task_id: str, epoch: int) -> bool:
        """Whether a tuning trial stops after `epoch`: its group's epoch budget is met."""
        return self.budget is not None and bool(self.budget.epoch(task_id, epoch))

    def refused(self, task_id: str) -> None:
        if task_id in self.denied:
            return
        assert self.suite.tune is not None
        self.denied.add(task_id)
        self.progress.dropped(task_id)
        group = self.planned[task_id][0]
        self.progress.say(
            f"tune {group.key}: epoch budget {self.suite.tune.budget_epochs} spent "
            f"({self.spent(group.key)} epochs run); {task_id} not started"
        )

    # The executor's sink (ray_tune.TaskSink): the events of a running tuning trial.

    def epoch(self, task_id: str, result: dict[str, Any]) -> None:
        """A trial's score after an epoch (by number: a retried trial reports them again)."""
        assert self.suite.tune is not None
        score, epoch = result.get(self.suite.tune.metric), result.get("epoch")
        if isinstance(score, int | float) and isinstance(epoch, int | float):
            self.curves.setdefault(task_id, {})[int(epoch)] = float(score)
        self.progress.epoch(task_id, result, self.suite.tune.epochs)

    def final(
        self, task_id: str, row: dict[str, Any], epochs: list[Any], running: int | None,
        embeddings: bytes | None = None,
    ) -> None:  # fmt: skip
        self.rows[task_id] = row  # (a tuning trial never saves embeddings)

    def complete(self, task_id: str, last: dict[str, Any], interrupted: bool) -> None:
        self.write(task_id, time_s=last.get("time_total_s"), node=last.get("hostname"),
                   interrupted=interrupted)  # fmt: skip

    def failed(self, task_id: str, status: str, error: str, running: int | None) -> None:
        self.write(task_id, status=status, error=error)

    def write(
        self, trial_id: str, *, time_s: float | None = None, node: str | None = None,
        status: str | None = None, error: str | None = None, interrupted: bool = False,
    ) -> None:  # fmt: skip
        """Write the trial's file. A trial cut short by Ctrl-C is not a result: it reruns; nor
        is one the epoch budget kept from starting (Tune reports it complete)."""
        if trial_id in self.denied:
            return
        group, spec = self.planned[trial_id]
        own = self.rows.get(trial_id)
        if status is None and own is None and trial_id not in self.curves:
            # It never trained an epoch: refused by the budget as it started (on Ray the trial
            # asks, then returns without a result), or cut off by the Ctrl-C before any epoch.
            if self.budget is not None and self.budget.refused(trial_id):
                self.refused(trial_id)
                return
        if status is None:
            if own is None and interrupted:
                return
            status = own["status"] if own else "ok"
            error = own.get("error") if own else None
        node = node or (own or {}).get("node")
        row = tuning_row(
            self.suite, group, spec, [v for _, v in sorted(self.curves.get(trial_id, {}).items())],
            status=status, error=error, time_s=time_s, node=node,
        )  # fmt: skip
        store.save(self.out_dir, row, kind=store.TUNING)
        self.done[trial_id] = row
        if self.budget is not None:
            self.budget.end(trial_id, row["epochs_run"])
        self.progress.finished(trial_id, status, error)  # a trial ASHA stopped is ok
        early = f"; {trial_id} stopped early after {row['epochs_run']} epochs"
        self.progress.say(self.group_line(group) + (early if row["stopped_early"] else ""))

    def group_line(self, group: Group) -> str:
        assert self.suite.tune is not None
        rows = [r for r in self.done.values() if r["group"] == group.key]
        best = best_trial(rows)
        score = f"{best['last_val']:.4f} ({best['trial_id']})" if best else "none yet"
        budget = self.suite.tune.budget_epochs
        spent = f", {self.spent(group.key)}/{budget} epochs" if budget is not None else ""
        return (
            f"tune {group.key}: {len(rows)}/{self.suite.tune.budget} tuning trials done{spent}, "
            f"best validation {self.suite.tune.metric} {score}"
        )


# ------------------------------------------------------------------ phase 2


def final_specs(
    suite: Suite, groups_: list[Group], picks: dict[str, dict[str, Any] | None]
) -> tuple[list[TrialSpec], list[tuple[TrialSpec, str]]]:
    """The final trials of each group's chosen configuration, and those that cannot run.

    A group without a finished tuning trial gets one (spec, error) per seed instead.
    """
    assert suite.final is not None
    specs, missing = [], []
    for group in groups_:
        pick = picks.get(group.key)
        for seed in suite.final.seeds:
            spec = TrialSpec(
                trial_id=final_id(group, seed),
                dataset=group.dataset,
                loss=group.loss,
                batch_size=group.batch_size,
                embedding_dim=group.embedding_dim,
                seed=seed,
                phase="final",
                overrides=json.loads(pick["config"]) if pick else {},
                tuned_from=pick["trial_id"] if pick else None,
                val_score=pick["last_val"] if pick else None,
            )
            if pick is None:
                missing.append((spec, f"no tuning trial of group {group.key} finished"))
            else:
                specs.append(spec)
    return specs, missing


class Runs(Protocol):
    """What the protocol needs of the executor: run tuning trials, run final trials."""

    def tuning(self, todo: dict[str, list[TrialSpec]], recorder: TuningRecorder) -> None: ...

    def trials(self, todo: list[TrialSpec], progress: Progress) -> None: ...


def run_tuned(
    suite: Suite, out_dir: Path, groups_: list[Group], runs: Runs, say: Callable[[str], None]
) -> None:
    """Both phases: emit the tuning tasks, read their results, emit the final tasks.

    What is already in the store is not rerun (resume).
    """
    assert suite.tune is not None
    done = finished_tuning(out_dir, suite)
    planned: dict[str, tuple[Group, TrialSpec]] = {}
    todo: dict[str, list[TrialSpec]] = {}
    for group in groups_:
        for i, config in enumerate(planned_configs(suite, group)):
            spec = tuning_spec(suite, group, i, config)
            planned[spec.trial_id] = (group, spec)
            if spec.trial_id not in done:
                todo.setdefault(group.key, []).append(spec)
    total, left = len(planned), sum(map(len, todo.values()))
    say(
        f"phase 1 (tune): {len(groups_)} groups x {suite.tune.budget} trials on the validation "
        f"split, {total - left} already done"
    )
    recorder = TuningRecorder(
        out_dir, suite, planned, Progress(total, total - left, unit="tuning trials")
    )
    if todo:
        runs.tuning(todo, recorder)
    rows = collect_tuning(out_dir, suite, groups_)
    picks = chosen(rows, groups_)
    specs, missing = final_specs(suite, groups_, picks)
    for spec, error in missing:
        if not store.has(out_dir, spec.trial_id):
            store.save(out_dir, tables.failed_row(suite, spec, "error", error), [])
    finished = store.finished(out_dir, suite, tuned_plan(suite).expected(store.TRIALS))
    final_todo = [s for s in specs if s.trial_id not in finished]
    n = len(specs) + len(missing)
    say(f"phase 2 (final): {n} trials on the test split, {n - len(final_todo)} already done")
    if final_todo:
        runs.trials(final_todo, Progress(n, n - len(final_todo)))
