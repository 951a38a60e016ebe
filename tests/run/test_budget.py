"""tune.budget_epochs (run/budget.py): never past the budget, all of it while trials are left."""

from __future__ import annotations

import random

import pytest

from halbench.run.budget import REFUSE, START, WAIT, EpochBudget


def keeper(budget: int, trials: int = 8, spent: int = 0) -> EpochBudget:
    groups = {f"g-t{i}": "g" for i in range(trials)}
    return EpochBudget(budget, groups, {"g": spent} if spent else {})


def test_one_at_a_time_the_last_trial_stops_at_the_budget() -> None:
    b = keeper(10)
    ran = []
    for i in range(8):
        if b.admit(f"g-t{i}") != START:
            assert b.refused(f"g-t{i}")
            continue
        for epoch in range(1, 5):
            if b.epoch(f"g-t{i}", epoch):
                break
        b.end(f"g-t{i}", epoch)
        ran.append(epoch)
    assert ran == [4, 4, 2] and b.spent("g") == 10


def test_a_trial_waits_while_running_trials_hold_the_last_epochs() -> None:
    b = keeper(4)
    assert b.admit("g-t0") == START and b.admit("g-t1") == START
    assert not b.epoch("g-t0", 1) and not b.epoch("g-t1", 1)  # 2 spent, 2 reserved
    assert b.admit("g-t2") == WAIT
    assert b.epoch("g-t0", 2)  # 3 spent + t1's epoch in flight: the budget is met
    b.end("g-t0", 2)
    assert b.admit("g-t2") == WAIT
    b.end("g-t1", 1)  # ASHA stopped t1 before its second epoch: one epoch is free again
    assert b.admit("g-t2") == START
    assert b.epoch("g-t2", 1) and b.spent("g") == 4
    b.end("g-t2", 1)
    assert b.admit("g-t3") == REFUSE and b.admit("g-t3") == REFUSE


def test_a_resumed_run_starts_from_its_finished_epochs() -> None:
    b = keeper(10, spent=8)
    assert b.admit("g-t5") == START
    assert not b.epoch("g-t5", 1) and b.epoch("g-t5", 2)
    b.end("g-t5", 2)
    assert b.admit("g-t6") == REFUSE


def test_a_retried_trial_stays_admitted_and_its_row_counts() -> None:
    b = keeper(10)
    assert b.admit("g-t0") == START
    b.epoch("g-t0", 1)
    assert b.admit("g-t0") == START  # Ray retried it after its worker was lost
    b.end("g-t0", 3)  # stopped by ASHA after epoch 3 before telling it: the row counts
    assert b.spent("g") == 3 and b.state() == ({"g": 3}, set())


def test_groups_are_budgeted_apart() -> None:
    b = EpochBudget(2, {"a-t0": "a", "a-t1": "a", "b-t0": "b"}, {})
    assert b.admit("a-t0") == START and b.epoch("a-t0", 1) is False and b.epoch("a-t0", 2)
    b.end("a-t0", 2)
    assert b.admit("a-t1") == REFUSE and b.admit("b-t0") == START


@pytest.mark.parametrize("seed", range(40))
def test_random_concurrent_schedules_spend_the_budget_and_no_more(seed: int) -> None:
    rng = random.Random(seed)
    budget, epochs, slots, n = rng.randint(3, 30), rng.randint(1, 6), rng.randint(1, 6), 12
    b = keeper(budget, trials=n)
    queue = [f"g-t{i}" for i in range(n)]
    running: dict[str, int] = {}  # trial -> epochs trained
    last = {t: rng.randint(1, epochs) if rng.random() < 0.4 else epochs for t in queue}
    refused = trained = 0
    while queue or running:
        for t in list(queue):  # free slots go to queued trials, in order
            if len(running) >= slots:
                break
            answer = b.admit(t)
            if answer == START:
                queue.remove(t)
                running[t] = 0
            elif answer == REFUSE:
                queue.remove(t)
                refused += 1
            else:
                assert running, "WAIT with nothing of the group running would never end"
                break
        if not running:
            continue
        t = rng.choice(sorted(running))
        running[t] += 1
        trained += 1
        told = running[t]
        lost = running[t] == last[t] and rng.random() < 0.3  # ASHA ended it before it told
        stop = False if lost else b.epoch(t, told)
        if stop or running[t] == last[t]:
            b.end(t, running.pop(t))
        # each running trial will train at least the epoch it is in: never past the budget
        assert trained + len(running) <= budget, (seed, budget, trained, running)
    if refused:
        assert trained == budget, (seed, budget, epochs, slots, trained)
    assert b.spent("g") == trained
