"""tune.budget_epochs: the training epochs one tuning group may spend, never more.

A budget equal in compute is the point of the fair protocol: every loss's tuning gets the same
number of training epochs. Two rules keep a group's total at or under its budget while its
trials run concurrently, and let it spend the whole budget when it has trials left to run:

- a trial starts only when the group's epochs so far, plus one epoch for each of its trials
  already running (each will finish at least the epoch it is in), leave at least one epoch;
  when they leave none but some are still running, it waits (they may end without spending
  their epoch), and it is refused for good once the group's epochs so far reach the budget;
- after each epoch a trial stops (like an ASHA stop: its row says stopped early) when the
  group's epochs so far, plus one for each *other* running trial, reach the budget.

Invariant: spent + running <= budget after every admission and every epoch, so the group never
trains more than `budget` epochs, whatever the concurrency; and with trials left to run it
trains exactly `budget` (tests/run/test_budget.py checks both on random schedules). A trial
is asked when it really starts, in the process or Ray actor that trains it, not when Tune
queues it: Tune queues many trials at once, and a rule asked at queueing time admits them all.

`EpochBudget` is plain Python: the in-process executor uses it directly, and on Ray one
instance lives in an actor (ray_search.budget_actor) that every trial of the run asks.
"""

from __future__ import annotations

START, WAIT, REFUSE = "start", "wait", "refuse"


class EpochBudget:
    """The epoch budget of every tuning group of one run."""

    def __init__(self, budget: int, groups: dict[str, str], spent: dict[str, int]) -> None:
        """`groups`: tuning trial id -> group key; `spent`: epochs of the group's trials that
        finished before (a resumed run), by group key."""
        self.budget = budget
        self.groups = dict(groups)
        self.finished = dict(spent)  # group -> epochs of its ended trials
        self.running: dict[str, int] = {}  # trial -> epochs it has trained so far
        self.refusals: set[str] = set()

    def spent(self, group: str) -> int:
        """Epochs the group has trained: its ended trials' and its running ones' so far."""
        running = sum(n for t, n in self.running.items() if self.groups[t] == group)
        return self.finished.get(group, 0) + running

    def _others(self, group: str, trial: str | None = None) -> int:
        return sum(1 for t in self.running if t != trial and self.groups[t] == group)

    def admit(self, trial: str) -> str:
        """Whether `trial` may start training now: START, WAIT (ask again soon) or REFUSE (for
        good: a refused trial is never asked again)."""
        if trial in self.running:
            return START  # Ray retried a trial whose worker was lost: it was admitted
        group = self.groups[trial]
        spent = self.spent(group)
        if trial in self.refusals or spent >= self.budget:
            self.refusals.add(trial)
            return REFUSE
        if spent + self._others(group) >= self.budget:
            return WAIT
        self.running[trial] = 0
        return START

    def epoch(self, trial: str, epoch: int) -> bool:
        """`trial` has trained `epoch` epochs: whether it must stop here (the budget is met)."""
        if trial not in self.running:
            return False  # not a budgeted trial (or already ended)
        self.running[trial] = max(self.running[trial], epoch)
        group = self.groups[trial]
        return self.spent(group) + self._others(group, trial) >= self.budget

    def end(self, trial: str, epochs: int | None = None) -> None:
        """`trial` ended (any status); `epochs`: what its row says it trained, which counts
        over what it told (an ASHA stop can end its worker before it told its last epoch)."""
        if trial not in self.running:
            return
        told = self.running.pop(trial)
        group = self.groups[trial]
        self.finished[group] = self.finished.get(group, 0) + max(told, epochs or 0)

    def refused(self, trial: str) -> bool:
        return trial in self.refusals

    def state(self) -> tuple[dict[str, int], set[str]]:
        """What a later keeper of the same run starts from (ray_search.budget_actor)."""
        return self.finished, self.refusals
