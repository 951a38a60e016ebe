"""Tuning replicates and the epoch budget, without Ray (tests/plugins/tune_stub.py trials)."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import yaml

from halbench.run import protocol, runner
from halbench.run.options import RunOptions
from halbench.suite import Suite
from tests.plugins import tune_stub

SUITE = tune_stub.STUB_SUITE

ONE_GROUP = {**SUITE, "losses": [{"name": "a"}], "grid": {**SUITE["grid"], "batch_size": [8]}}


def write_suite(tmp_path: Path, doc: dict) -> tuple[Suite, Path]:
    path = tmp_path / f"{doc['name']}.yaml"
    path.write_text(yaml.safe_dump(doc))
    return Suite.model_validate(doc), path


def run(suite: Suite, path: Path, out: Path, trial=tune_stub.run_trial, **kw):  # noqa: ANN001, ANN201
    options = RunOptions(output=out, use_ray=False, **kw)
    return runner.run_suite(suite, path, options, trial_fn=trial)


def replicated(r: int, **tune) -> dict:  # noqa: ANN003
    return {**ONE_GROUP, "tune": {**SUITE["tune"], "replicates": r, **tune}}


def test_a_suite_without_the_new_keys_hashes_as_before() -> None:
    plain = Suite.model_validate(SUITE)
    assert "replicates" not in plain.science()["tune"]
    assert "budget_epochs" not in plain.science()["tune"]
    explicit = Suite.model_validate({**SUITE, "tune": {**SUITE["tune"], "replicates": 1}})
    assert explicit.hash() == plain.hash()
    assert Suite.model_validate(replicated(2)).hash() != plain.hash()
    # R = 1 keeps the ids and group keys of a run before replicates existed
    plan = protocol.tuned_plan(plain)
    assert plan.of("tune")[0].task_id == "tune-synthetic-a-b8-d4-t000"
    assert plan.of("final")[0].task_id == "final-synthetic-a-b8-d4-s0"
    assert {t.replicate for t in plan.tasks} == {0}


def test_replicates_tune_independently_and_each_gets_its_finals(tmp_path) -> None:
    suite, path = write_suite(tmp_path, replicated(2))
    summary = run(suite, path, tmp_path / "run")
    assert summary.statuses == {"ok": 2 * 2} and not summary.interrupted
    tun = pl.read_parquet(tmp_path / "run/tuning.parquet")
    assert tun.schema["replicate"] == pl.Int64
    assert tun.group_by("replicate").len().sort("replicate")["len"].to_list() == [5, 5]
    assert "tune-synthetic-a-b8-d4-r1-t003" in tun["trial_id"].to_list()
    assert set(tun["group"]) == {"synthetic/a/b8/d4/r0", "synthetic/a/b8/d4/r1"}
    # own search seed: the sampled configurations differ; the hand-set one opens both
    r0, r1 = (tun.filter(pl.col("replicate") == r).sort("trial_index") for r in (0, 1))
    assert r0["config"][0] == r1["config"][0]
    assert set(r0["config"][1:]).isdisjoint(set(r1["config"][1:]))
    # own training seed, never a final seed (final.seeds [0, 1], tune.seed 0 -> 2 and 3)
    assert set(r0["seed"]) == {2} and set(r1["seed"]) == {3}
    env = json.loads((tmp_path / "run/env.json").read_text())
    assert env["seeds"] == {"tuning": [2, 3], "final": [0, 1]}
    final = pl.read_parquet(tmp_path / "run/trials.parquet")
    assert final.schema["replicate"] == pl.Int64
    assert sorted(final["trial_id"]) == [f"final-synthetic-a-b8-d4-r{r}-s{s}"
                                         for r in (0, 1) for s in (0, 1)]  # fmt: skip
    for r, rows in ((0, r0), (1, r1)):
        pick = rows.filter(pl.col("chosen")).row(0, named=True)
        mine = final.filter(pl.col("replicate") == r)
        assert mine["tuned_from"].to_list() == [pick["trial_id"]] * 2
        assert sorted(mine["seed"]) == [0, 1]


def test_replicate_zero_is_todays_tuning(tmp_path) -> None:
    one = Suite.model_validate(ONE_GROUP)
    two = Suite.model_validate(replicated(2))
    g1, (g0, g_1) = protocol.groups(one), protocol.groups(two)
    assert protocol.planned_configs(one, g1[0]) == protocol.planned_configs(two, g0)
    assert protocol.planned_configs(two, g_1) != protocol.planned_configs(two, g0)
    # the validation split: replicate 0 today's, replicate r drawn with validation_seed r
    assert g0.dataset == g1[0].dataset and "validation_seed" not in g0.dataset.params
    assert g_1.dataset.params["validation_seed"] == 1
    spec = protocol.final_specs(two, [g_1], {g_1.key: None})[1][0][0]
    assert spec.dataset.params["validation_seed"] == 1  # its finals leave the same rows out


def test_tuning_and_final_seeds_are_disjoint_across_replicates() -> None:
    doc = {**replicated(3, seed=1), "final": {"seeds": [0, 2, 4], "epochs": 1}}
    suite = Suite.model_validate(doc)
    assert protocol.tuning_seeds(suite) == [1, 3, 5]
    specs = [protocol.tuning_spec(suite, g, 0, {}) for g in protocol.groups(suite)]
    assert [s.seed for s in specs] == [1, 3, 5]


def test_the_epoch_budget_is_spent_exactly(tmp_path, capsys) -> None:
    # 5 trials of 3 epochs each, a budget of 7 epochs: trials 0 and 1 run 3 each, trial 2
    # starts with 1 epoch left and stops after it (stopped early), trials 3 and 4 never start
    suite, path = write_suite(tmp_path, replicated(2, budget_epochs=7))
    ran: list[str] = []

    def counting(suite, spec, *, report=None):  # noqa: ANN001, ANN202
        ran.append(spec.trial_id)
        return tune_stub.run_trial(suite, spec, report=report)

    summary = run(suite, path, tmp_path / "run", counting)
    assert not summary.interrupted and summary.statuses == {"ok": 4}
    tun = pl.read_parquet(tmp_path / "run/tuning.parquet")
    for r in (0, 1):
        mine = tun.filter(pl.col("replicate") == r).sort("trial_index")
        assert mine["trial_index"].to_list() == [0, 1, 2]
        assert mine["epochs_run"].to_list() == [3, 3, 1]
        assert mine["stopped_early"].to_list() == [False, False, True]
    err = capsys.readouterr().err
    assert "epoch budget 7 spent (7 epochs run)" in err
    # refused trials leave the progress total: replicate 0's two are out of it when the last
    # trial ends (replicate 1's are refused after that), so the count ends at 6/8, not 6/10
    done = [line.split()[1] for line in err.splitlines() if " tuning trials done (" in line]
    assert done[-1] == "6/8", done
    ran.clear()
    run(suite, path, tmp_path / "run", counting, resume=True)
    assert ran == []  # the refused trials stay refused; nothing is rerun


def test_the_report_shows_what_each_replicate_chose(tmp_path) -> None:
    from halbench.cli import main

    suite, path = write_suite(tmp_path, replicated(2))
    out = tmp_path / "run"
    run(suite, path, out)
    assert main(["report", str(out)]) == 0
    text = (out / "report.md").read_text()
    assert "Configuration each tuning replicate chose" in text
    tun = pl.read_parquet(out / "tuning.parquet").filter(pl.col("chosen"))
    same = len(set(tun["config"])) == 1
    line = next(x for x in text.splitlines() if x.startswith("| synthetic/a/b8/d4 "))
    assert line.rstrip(" |").endswith("same" if same else "differ")
    # one replicate: no such table
    suite1, path1 = write_suite(tmp_path, ONE_GROUP)
    run(suite1, path1, tmp_path / "one")
    assert main(["report", str(tmp_path / "one")]) == 0
    assert "tuning replicate chose" not in (tmp_path / "one/report.md").read_text()
