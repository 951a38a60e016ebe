"""Tuned runs through Ray Tune: ASHA stops trials, Optuna and its resume, the smoke suite."""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest
import ray
import yaml

from halbench.run.options import RunOptions
from halbench.run.runner import run_suite
from halbench.suite import Suite
from tests.plugins import tune_stub
from tests.run.test_runner_ray import worker_env

pytestmark = [pytest.mark.slow, pytest.mark.ray]

ROOT = Path(__file__).resolve().parents[2]


STUB = {
    "name": "tray",
    "dataset": {"name": "synthetic"},
    "losses": [{"name": "a"}],
    "grid": {"batch_size": [8], "embedding_dim": [4], "seed": [0]},
    "train": {"epochs": 2, "lr": 1e-3},
    "resources": {"cpus_per_trial": 1, "max_concurrent": 1},
    "tune": {
        "budget": 8,
        "epochs": 4,
        "scheduler": "asha",
        "grace_epochs": 1,
        "space": {"lr": {"loguniform": [1e-6, 1e-1]}},
    },
    "final": {"seeds": [0], "epochs": 2},
}


@pytest.fixture(scope="module")
def ray_session() -> Iterator[None]:
    """One local Ray whose workers import this repository (and so the stub)."""
    if ray.is_initialized():
        ray.shutdown()
    temp = tempfile.mkdtemp(prefix="hbtune-")
    with pytest.MonkeyPatch.context() as mp:
        for key, value in worker_env().items():
            mp.setenv(key, value)
        ray.init(
            num_cpus=2,
            num_gpus=0,
            include_dashboard=False,
            object_store_memory=128 * 1024**2,
            log_to_driver=False,
            _temp_dir=temp,
        )
    try:
        yield
    finally:
        ray.shutdown()
        shutil.rmtree(temp, ignore_errors=True)


def run(tmp_path: Path, doc: dict, out: Path, **kw) -> None:
    path = tmp_path / f"{doc['name']}.yaml"
    path.write_text(yaml.safe_dump(doc))
    options = RunOptions(output=out, **kw)
    run_suite(Suite.model_validate(doc), path, options, trial_fn=tune_stub.run_trial)


def test_asha_stops_weak_trials_after_the_grace_epoch(tmp_path, ray_session, capsys) -> None:
    doc = json.loads(json.dumps(STUB))
    # loss b scores a tenth of a's everywhere and runs after it: one ASHA for both would stop
    # every trial of b, also its best; one ASHA per group compares b with b only
    doc["losses"] = [{"name": "a"}, {"name": "b", "params": {"gain": 0.1}}]
    run(tmp_path, doc, tmp_path / "run")
    both = pl.read_parquet(tmp_path / "run/tuning.parquet").sort("trial_index")
    weak = both.filter(pl.col("loss") == "b")
    assert weak.filter(pl.col("is_default"))["epochs_run"].to_list() == [4]
    assert weak.filter(pl.col("chosen"))["trial_index"].to_list() == [0]
    err = capsys.readouterr().err
    assert "stopped early after 1 epochs" in err and "16/16 tuning trials done (0 failed" in err
    tun = both.filter(pl.col("loss") == "a")
    assert tun.height == 8 and set(tun["status"]) == {"ok"}
    stopped = tun.filter(pl.col("stopped_early"))
    # one trial at a time, the hand-set optimum first: ASHA's rung 1 cuts most samples
    assert stopped.height >= 3, tun.select("trial_index", "last_val", "epochs_run")
    assert set(stopped["epochs_run"]) == {1}
    assert all(len(c) == 1 for c in stopped["val_curve"])
    full = tun.filter(~pl.col("stopped_early"))
    assert set(full["epochs_run"]) == {4} and full["is_default"].any()
    assert tun.filter(pl.col("chosen"))["trial_index"].to_list() == [0]
    assert tun["epochs_run"].sum() < 8 * 4


def test_optuna_search_fills_the_budget_and_resumes(tmp_path, ray_session) -> None:
    doc = json.loads(json.dumps(STUB))
    doc["tune"].update(search="optuna", budget=5, scheduler="fifo", epochs=2)
    run(tmp_path, doc, tmp_path / "run")
    out = tmp_path / "run"
    tun = pl.read_parquet(out / "tuning.parquet").sort("trial_index")
    assert tun["trial_index"].to_list() == [0, 1, 2, 3, 4]
    assert tun.filter(pl.col("is_default"))["cfg_lr"].to_list() == [1e-3]
    assert len(set(tun["cfg_lr"])) == 5  # Optuna's own suggestions after the default
    kept = {p.name: p.read_text() for p in sorted((out / "tuning").glob("*.json"))[:3]}
    for p in sorted((out / "tuning").glob("*.json"))[3:] + sorted((out / "trials").glob("*")):
        p.unlink()
    run(tmp_path, doc, out, resume=True)
    assert {p.name: p.read_text() for p in sorted((out / "tuning").glob("*.json"))[:3]} == kept
    again = pl.read_parquet(out / "tuning.parquet")
    assert sorted(again["trial_index"]) == [0, 1, 2, 3, 4] and again["chosen"].sum() == 1
    final = pl.read_parquet(out / "trials.parquet")
    best = again.filter(pl.col("chosen")).row(0, named=True)
    assert final["tuned_from"].to_list() == [best["trial_id"]]


def test_smoke_tune_suite_end_to_end(tmp_path, ray_session, capsys) -> None:
    from halbench.cli import main

    out = tmp_path / "run"
    rc = main(["run", str(ROOT / "suites/smoke-tune.yaml"), "-o", str(out)])
    assert rc == 0
    err = capsys.readouterr().err
    assert "phase 1 (tune)" in err and "phase 2 (final)" in err and "best validation" in err
    tun = pl.read_parquet(out / "tuning.parquet")
    assert tun.height == 6 and tun.group_by("loss").len()["len"].to_list() == [3, 3]
    final = pl.read_parquet(out / "trials.parquet")
    assert final.height == 4 and set(final["phase"]) == {"final"}
    assert set(final["status"]) == {"ok"}
    for row in tun.filter(pl.col("chosen")).iter_rows(named=True):
        mine = final.filter(pl.col("tuned_from") == row["trial_id"])
        assert mine.height == 2 and set(mine["config"]) == {row["config"]}
        assert set(mine["cfg_lr"]) == {row["cfg_lr"]}
    epochs = pl.read_parquet(out / "epochs.parquet")
    assert set(epochs["trial_id"]) == set(final["trial_id"])
    assert (out / "report.md").exists()


def test_the_epoch_budget_holds_with_trials_queued_and_concurrent(
    tmp_path, ray_session, capsys
) -> None:
    doc = json.loads(json.dumps(STUB))
    # 8 trials of 4 epochs, 2 at a time on 2 CPUs and, with no max_concurrent, all 8 queued by
    # Tune from the start: the budget is asked as each trial really starts (asked when Tune
    # queued them, it once let all 8 run), and is spent exactly, not one epoch more
    doc["tune"].update(scheduler="fifo", budget_epochs=10)
    doc["resources"] = {"cpus_per_trial": 1}
    run(tmp_path, doc, tmp_path / "run")
    tun = pl.read_parquet(tmp_path / "run/tuning.parquet").sort("trial_index")
    assert tun["epochs_run"].sum() == 10, tun.select("trial_index", "epochs_run")
    assert 3 <= tun.height < 8 and tun["stopped_early"].any()
    assert len(list((tmp_path / "run/tuning").glob("*.json"))) == tun.height  # refused: no file
    assert "epoch budget 10 spent (10 epochs run)" in capsys.readouterr().err
    final = pl.read_parquet(tmp_path / "run/trials.parquet")
    assert final["status"].to_list() == ["ok"] and final["replicate"].to_list() == [0]


def test_the_epoch_budget_holds_with_optuna(tmp_path, ray_session, capsys) -> None:
    doc = json.loads(json.dumps(STUB))
    # one Tuner per group with Optuna; its trials are named by the searcher as they are made
    doc["tune"].update(search="optuna", scheduler="fifo", budget=5, epochs=3, budget_epochs=7)
    doc["resources"] = {"cpus_per_trial": 1}
    run(tmp_path, doc, tmp_path / "run")
    tun = pl.read_parquet(tmp_path / "run/tuning.parquet").sort("trial_index")
    assert tun["epochs_run"].sum() == 7 and set(tun["status"]) == {"ok"}
    assert 3 <= tun.height < 5  # 3 + 3 + 1 one at a time; two at once may split it further
    # a refused trial returns a NaN score (Tune checks the searcher's metric): no row, no error
    assert "not started" in capsys.readouterr().err
