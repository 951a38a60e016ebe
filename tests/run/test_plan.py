"""run/plan.py and the tuning protocol's plan: every task a run expects, with its epochs."""

from __future__ import annotations

from halbench.run import protocol, store
from halbench.run.plan import FINAL, GRID, TUNE, grid_plan
from halbench.suite import Suite

GRID_SUITE = {
    "name": "p",
    "dataset": {"name": "synthetic"},
    "losses": [{"name": "a"}, {"name": "b"}],
    "grid": {"batch_size": [8, 16], "embedding_dim": [4], "seed": [0, 1]},
    "train": {"epochs": 3},
}
TUNED = {
    **GRID_SUITE,
    "tune": {"budget": 4, "epochs": 2, "space": {"lr": {"loguniform": [1e-5, 1e-1]}}},
    "final": {"seeds": [0, 1, 2], "epochs": 5},
}


def test_a_grid_plan_is_the_grid_in_order() -> None:
    suite = Suite.model_validate(GRID_SUITE)
    plan = grid_plan(suite)
    assert [t.task_id for t in plan.tasks] == [s.trial_id for s in suite.trials()]
    assert {t.kind for t in plan.tasks} == {GRID}
    assert set(plan.expected(store.TRIALS).values()) == {3}
    assert plan.expected(store.TUNING) == {}


def test_a_tuned_plan_holds_every_tuning_and_final_id_before_anything_runs() -> None:
    suite = Suite.model_validate(TUNED)
    plan = protocol.tuned_plan(suite)
    groups = protocol.groups(suite)  # dataset x loss x B (d is one value): 4 groups
    assert len(groups) == 4
    assert len(plan.of(TUNE)) == 4 * 4 and len(plan.of(FINAL)) == 4 * 3
    tuning = plan.expected(store.TUNING)
    assert set(tuning.values()) == {2} and protocol.tuning_id(groups[0], 3) in tuning
    finals = plan.expected(store.TRIALS)
    assert set(finals.values()) == {5}
    picks = {g.key: {"config": "{}", "trial_id": "x", "last_val": 0.5} for g in groups}
    specs, missing = protocol.final_specs(suite, groups, picks)
    assert not missing and {s.trial_id for s in specs} == set(finals)
    assert {t.group for t in plan.of(FINAL)} == {g.key for g in groups}


def test_a_plan_for_some_datasets_keeps_only_theirs() -> None:
    doc = {**GRID_SUITE, "datasets": [{"name": "synthetic"}, {"name": "synthetic-b"}]}
    doc.pop("dataset")
    suite = Suite.model_validate(doc)
    plan = grid_plan(suite, ("synthetic",))
    assert plan.tasks and all(t.spec.dataset.name == "synthetic" for t in plan.tasks)
