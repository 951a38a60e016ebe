"""A run is a plan of tasks: grid trials, tuning trials, final trials and profile points.

The plan says which task ids a run expects and for how many epochs each; the store trusts a
finished-task file only for a task of the plan (store.py), the tables are written in plan
order (tables.py), `--dry-run` prices the plan (dryrun.py), and the executor runs its tasks
(executor.py). A grid suite's plan is its grid; a tuned suite's plan comes from the tuning
protocol (protocol.py), whose final tasks carry the chosen configuration once it is known.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from halbench.run.store import PROFILE, TRIALS, TUNING
from halbench.suite import Suite, TrialSpec
from halbench.trial.spec import phase_epochs

GRID, TUNE, FINAL, POINT = "grid", "tune", "final", "profile"  # the kinds of task
STORE_KIND = {GRID: TRIALS, FINAL: TRIALS, TUNE: TUNING, POINT: PROFILE}


@dataclass(frozen=True)
class Task:
    """One unit of work and of resume: one finished-task file in the store."""

    kind: str  # grid | tune | final | profile
    task_id: str
    epochs: int | None  # the epochs it trains (None: a profile point)
    spec: TrialSpec | None = None  # a trial's spec (a final trial's before the choice is known)
    group: str | None = None  # a tuning or final trial's group (protocol.Group.key)
    replicate: int | None = None  # a tuning or final trial's tuning replicate (0 when R = 1)


@dataclass
class Plan:
    """Every task of a run, in the order its tables list them."""

    tasks: list[Task] = field(default_factory=list)

    def of(self, *kinds: str) -> list[Task]:
        return [t for t in self.tasks if t.kind in kinds]

    def expected(self, store_kind: str) -> dict[str, int | None]:
        """task id -> planned epochs, for the store's files of `store_kind`."""
        return {t.task_id: t.epochs for t in self.tasks if STORE_KIND[t.kind] == store_kind}

    def replicates(self) -> dict[str, int]:
        """task id -> tuning replicate, for the tasks of the tuning protocol."""
        return {t.task_id: t.replicate for t in self.tasks if t.replicate is not None}

    def order(self, store_kind: str) -> list[str]:
        return [t.task_id for t in self.tasks if STORE_KIND[t.kind] == store_kind]


def grid_plan(suite: Suite, datasets: tuple[str, ...] | None = None) -> Plan:
    """One task per grid point (of the datasets asked for: all by default)."""
    return Plan(
        [
            Task(GRID, s.trial_id, phase_epochs(suite, s), s)
            for s in suite.trials()
            if not datasets or s.dataset.name in datasets
        ]
    )
