"""Tuned runs without Ray: budgets, the selection rule, resume, failures, no test-split reads."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import yaml

from halbench import data
from halbench.run import protocol, runner
from halbench.run.options import RunOptions
from halbench.suite import Suite
from tests.plugins import tune_stub

ROOT = Path(__file__).resolve().parents[2]


SUITE = tune_stub.STUB_SUITE


def write_suite(tmp_path: Path, doc: dict) -> tuple[Suite, Path]:
    path = tmp_path / f"{doc['name']}.yaml"
    path.write_text(yaml.safe_dump(doc))
    return Suite.model_validate(doc), path


def run(suite: Suite, path: Path, out: Path, trial=tune_stub.run_trial, **kw):  # noqa: ANN001
    options = RunOptions(output=out, use_ray=False, **kw)
    return runner.run_suite(suite, path, options, trial_fn=trial)


def test_every_group_gets_the_same_budget_and_default_first(tmp_path) -> None:
    suite, path = write_suite(tmp_path, SUITE)
    summary = run(suite, path, tmp_path / "run")
    assert summary.statuses == {"ok": 2 * 2 * 2} and not summary.interrupted
    tun = pl.read_parquet(tmp_path / "run/tuning.parquet")
    # a grid axis left in the grid (batch_size) is a group of its own: 2 losses x 2 sizes
    counts = tun.group_by("group").len().sort("group")
    assert counts["group"].to_list() == ["synthetic/a/b16/d4", "synthetic/a/b8/d4",
                                         "synthetic/b/b16/d4", "synthetic/b/b8/d4"]  # fmt: skip
    assert counts["len"].to_list() == [5, 5, 5, 5]
    default = tun.filter(pl.col("is_default"))
    assert default["trial_index"].unique().to_list() == [0]
    assert default["cfg_lr"].to_list() == [1e-3] * 4  # the suite's own value
    assert tun["epochs_run"].to_list() == [3] * 20 and not tun["stopped_early"].any()
    assert tun.filter(pl.col("chosen")).height == 4


def test_the_best_validation_configuration_is_retrained(tmp_path) -> None:
    doc = {**SUITE, "tune": {**SUITE["tune"], "budget": 6}}
    # the hand-set lr is far from the stub's optimum (1e-3): a sample must win
    doc["train"] = {"epochs": 2, "lr": 0.09}
    suite, path = write_suite(tmp_path, doc)
    run(suite, path, tmp_path / "run")
    tun = pl.read_parquet(tmp_path / "run/tuning.parquet")
    final = pl.read_parquet(tmp_path / "run/trials.parquet")
    assert set(final["phase"]) == {"final"} and final.height == 8
    for group in tun["group"].unique():
        rows = tun.filter(pl.col("group") == group)
        scores = [tune_stub.score(json.loads(c)) for c in rows["config"]]
        best = rows.row(int(np.argmax(scores)), named=True)
        assert best["chosen"] and rows["chosen"].sum() == 1
        assert not best["is_default"]
        picked = final.filter(pl.col("tuned_from") == best["trial_id"])
        assert picked.height == 2 and picked["seed"].to_list() == [0, 1]
        assert picked["config"].to_list() == [best["config"]] * 2
        assert picked["cfg_lr"].to_list() == [best["cfg_lr"]] * 2
        assert picked["val_score"].to_list() == [best["last_val"]] * 2
        assert picked["epochs"].to_list() == [2, 2]
    # tuning and final seeds are disjoint (final.seeds [0, 1], tune.seed 0 -> 2), and recorded
    assert set(tun["seed"]) == {2}
    env = json.loads((tmp_path / "run/env.json").read_text())
    assert env["seeds"] == {"tuning": [2], "final": [0, 1]}
    assert env["tuning_metric"] == suite.tune.metric


def test_the_tuning_seed_is_never_a_final_seed() -> None:
    for tune_seed, finals, expected in [(0, [0, 1, 2], 3), (5, [0, 1, 2], 5), (1, [0, 1, 3], 2)]:
        doc = {**SUITE, "tune": {**SUITE["tune"], "seed": tune_seed},
               "final": {"seeds": finals, "epochs": 1}}  # fmt: skip
        suite = Suite.model_validate(doc)
        assert protocol.tuning_seed(suite) == expected
        specs = [protocol.tuning_spec(suite, g, 0, {}) for g in protocol.groups(suite)]
        assert {s.seed for s in specs} == {expected}


def test_resume_mid_tuning_reruns_only_missing_and_picks_the_same(tmp_path) -> None:
    suite, path = write_suite(tmp_path, SUITE)
    run(suite, path, tmp_path / "full")
    part = tmp_path / "part"
    run(suite, path, part)
    gone = sorted((part / "tuning").glob("*.json"))[::3]
    for file in gone + sorted((part / "trials").glob("*.json")):
        file.unlink()  # as if killed during tuning: no final trial yet
    ran: list[str] = []

    def counting(suite, spec, *, report=None):  # noqa: ANN001, ANN202
        ran.append(spec.trial_id)
        return tune_stub.run_trial(suite, spec, report=report)

    summary = run(suite, path, part, counting, resume=True)
    assert not summary.interrupted
    assert sorted(t for t in ran if t.startswith("tune-")) == sorted(f.stem for f in gone)
    timeless = [c for c in pl.read_parquet(part / "tuning.parquet").columns if c != "time_s"]
    for name, cols in (("tuning.parquet", timeless), ("trials.parquet", None)):
        a, b = pl.read_parquet(part / name), pl.read_parquet(tmp_path / "full" / name)
        cols = cols or [c for c in a.columns if c not in ("node",)]
        assert a.select(cols).equals(b.select(cols)), name


def test_a_tuned_batch_size_is_no_axis_and_failures_count(tmp_path) -> None:
    doc = json.loads(json.dumps(SUITE))
    doc["tune"]["space"]["batch_size"] = {"choice": [8, 16]}
    doc["losses"] = [{"name": "a"}, {"name": "b", "params": {"status": "oom"}}]
    suite, path = write_suite(tmp_path, doc)
    summary = run(suite, path, tmp_path / "run")
    tun = pl.read_parquet(tmp_path / "run/tuning.parquet")
    assert sorted(tun["group"].unique()) == ["synthetic/a/d4", "synthetic/b/d4"]
    failed = tun.filter(pl.col("loss") == "b")
    assert failed.height == 5 and set(failed["status"]) == {"oom"}  # they use the budget
    assert failed["epochs_run"].to_list() == [1] * 5 and not failed["chosen"].any()
    final = pl.read_parquet(tmp_path / "run/trials.parquet")
    bad = final.filter(pl.col("loss") == "b")
    assert set(bad["status"]) == {"error"} and bad.height == 2
    assert bad["error"][0] == "no tuning trial of group synthetic/b/d4 finished"
    good = final.filter(pl.col("loss") == "a")
    assert good["batch_size"].to_list() == [json.loads(good["config"][0])["batch_size"]] * 2
    assert summary.statuses == {"ok": 2, "error": 2}


def test_grid_suites_keep_their_hash_and_rows(tmp_path) -> None:
    grid = {k: v for k, v in SUITE.items() if k not in ("tune", "final")}
    suite = Suite.model_validate(grid)
    assert "tune" not in suite.science() and "final" not in suite.science()
    tuned = Suite.model_validate(SUITE)
    changed = json.loads(json.dumps(SUITE))
    changed["tune"]["budget"] = 4
    assert len({suite.hash(), tuned.hash(), Suite.model_validate(changed).hash()}) == 3
    assert {s.phase for s in suite.trials()} == {"grid"}


# ---------------------------------------------------------------- the test split is not read

ALLOW_TEST = {"now": False}


@data.DATASETS.register("tuning-guarded-synthetic")
def _guarded(request: data.LoadRequest) -> data.RawData:
    """Synthetic data whose test split raises unless a final trial asks for it."""
    if request.wants("test") and not ALLOW_TEST["now"]:
        raise AssertionError(f"the test split was requested: {sorted(request.splits)}")
    return data.DATASETS.get("synthetic")(request)


def test_tuning_never_reads_the_test_split(tmp_path) -> None:
    from halbench.trial import run_trial

    seen: list[tuple[str, str]] = []

    def guarded(suite, spec, *, report=None):  # noqa: ANN001, ANN202
        ALLOW_TEST["now"] = spec.phase == "final"
        try:
            result = run_trial(suite, spec, report=report)
        finally:
            ALLOW_TEST["now"] = False
        seen.append((spec.phase, result.row["status"]))
        return result

    doc = yaml.safe_load((ROOT / "suites/smoke-tune.yaml").read_text())
    doc["dataset"] = {"name": "tuning-guarded-synthetic", "train_size": 96, "test_size": 32,
                      "params": {"num_classes": 3, "image_size": 8, "channels": 1}}  # fmt: skip
    doc["tune"].update(budget=2, epochs=1)
    doc["final"].update(seeds=[0], epochs=1)
    doc["grid"]["batch_size"] = [16]
    doc["probes"] = {"enabled": False}
    suite, path = write_suite(tmp_path, doc)
    summary = run(suite, path, tmp_path / "run", guarded)
    assert seen == [("tune", "ok")] * 4 + [("final", "ok")] * 2, seen
    assert summary.statuses == {"ok": 2}
    tun = pl.read_parquet(tmp_path / "run/tuning.parquet")
    assert set(tun["status"]) == {"ok"} and tun.height == 4
    # the guard works: a final trial without the permission fails on the test split
    spec = protocol.final_specs(suite, protocol.groups(suite), {})[1][0][0]
    assert "test split was requested" in run_trial(suite, spec).row["error"]


# ---------------------------------------------------------------- bad tune: values


BAD = [
    ({"tune": {"budget": 0}}, "tune.budget"),
    ({"tune": {"epochs": 2, "grace_epochs": 3}}, "tune.grace_epochs"),
    ({"tune": {"metric": "knn_acc_7"}}, "tune.metric"),
    ({"tune": {"metric": "accuracy"}}, "tune.metric"),
    ({"tune": {"scheduler": "pbt"}}, "tune.scheduler"),
    ({"tune": {"validation": 1.5}}, "tune.validation"),
    ({"tune": {"validation": 600}}, "tune.validation"),
    ({"tune": {"bogus": 1}}, "tune.bogus"),
    ({"space": {"lr": {"loguniform": [0, 1]}}}, "tune.space.lr"),
    ({"space": {"lr": {"uniform": [0.1, 0.01]}}}, "tune.space.lr"),
    ({"space": {"momentum": {"uniform": [0.5, 1.0]}}}, "tune.space.momentum"),
    ({"space": {"warmup_epochs": {"uniform": [0, 9]}}}, "tune.space.warmup_epochs"),
    ({"space": {"batch_size": {"choice": [64, 1024]}}}, "tune.space.batch_size"),
    ({"space": {"embedding_dim": {"choice": [0, 8]}}}, "tune.space.embedding_dim"),
    ({"space": {"nope": {"uniform": [0, 1]}}}, "tune.space.nope"),
    ({"space": {"hal": {"margin_x": {"uniform": [0, 1]}}}}, "tune.space.hal.margin_x"),
    ({"space": {"hal": {"scale": {"uniform": [-4, 4]}}}}, "tune.space.hal.scale"),
    ({"space": {}}, "tune.space"),
    ({"final": {"seeds": []}}, "final.seeds"),
    ({"final": {"train_on": "all"}}, "final.train_on"),
    ({"final": None}, "tune"),
    ({"tune": None}, "final"),
]


@pytest.mark.parametrize(("change", "field"), BAD)
def test_every_bad_tune_value_is_one_line_exit_2(tmp_path, capsys, change, field) -> None:
    from halbench.cli import main

    doc = yaml.safe_load((ROOT / "suites/smoke-tune.yaml").read_text())
    for section, value in change.items():
        if section == "space":
            doc["tune"]["space"] = value
        elif value is None:
            del doc[section]
        else:
            doc[section] = {**doc[section], **value}
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(doc))
    assert main(["run", str(path), "-o", str(tmp_path / "out"), "--no-ray"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and f"{path}: {field}" in err, err
    assert not (tmp_path / "out").exists()
