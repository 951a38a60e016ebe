"""run/store.py: finished-task files, one trust rule for every kind, rejected/ with a reason."""

from __future__ import annotations

import json
import re
from pathlib import Path

import polars as pl
import pytest

from halbench.run import rundir, store, tables
from halbench.run.plan import grid_plan
from halbench.suite import Suite

SUITE = {
    "name": "stub",
    "dataset": {"name": "synthetic"},
    "losses": [{"name": "a"}, {"name": "b"}],
    "grid": {"batch_size": [8], "embedding_dim": [4], "seed": [0, 1]},
    "train": {"epochs": 3},
}


@pytest.fixture
def suite() -> Suite:
    return Suite.model_validate(SUITE)


def own(suite: Suite, trial_id: str, status: str = "ok") -> dict:
    """A row as this suite's trials write it (identity columns of the trust rule)."""
    epochs = suite.train.epochs
    return {"trial_id": trial_id, "status": status, "suite": suite.name,
            "suite_hash": suite.hash(), "epochs": epochs}  # fmt: skip


def test_tables_are_in_grid_order_and_count_statuses(tmp_path: Path, suite: Suite) -> None:
    specs = suite.trials()
    for spec, status in zip(reversed(specs), ["ok", "oom", "ok", "error"], strict=True):
        store.save(tmp_path, own(suite, spec.trial_id, status), [{"trial_id": spec.trial_id}])
    assert store.has(tmp_path, specs[0].trial_id)
    plan = grid_plan(suite)
    done = store.finished(tmp_path, suite, plan.expected(store.TRIALS))
    counts = tables.write_trials(tmp_path, done, plan.order(store.TRIALS))
    assert counts == {"ok": 2, "oom": 1, "error": 1}
    trials = pl.read_parquet(tmp_path / "trials.parquet")
    assert trials["trial_id"].to_list() == [s.trial_id for s in specs]
    assert pl.read_parquet(tmp_path / "epochs.parquet").height == 4


@pytest.mark.parametrize(
    "trial_id",
    ["/../../../../tmp/ESCAPED-b64", "a/b", "..", ".hidden", "a\x00b", "x" * 300, "ü", "a b"],
)
def test_any_task_id_becomes_a_file_name_inside_its_kind(
    tmp_path: Path, suite: Suite, trial_id: str
) -> None:
    name = rundir.task_file_name(trial_id)
    assert re.fullmatch(r"[A-Za-z0-9_-]{1,80}-[0-9a-f]{16}\.json", name), name
    assert len(name.encode()) < 255
    store.save(tmp_path, own(suite, trial_id), [])
    (written,) = (tmp_path / "trials").iterdir()
    assert written.name == name
    # the id is kept inside the file, and resume finds it by that id
    done = store.finished(tmp_path, suite, {trial_id: suite.train.epochs})
    assert done == {trial_id: {"row": own(suite, trial_id), "epochs": []}}
    assert store.has(tmp_path, trial_id)


def _damaged(suite: Suite) -> dict[str, tuple[bytes, str]]:
    """File name -> (content, why) of trial files that resume must not read as results."""
    s0, s1, other = suite.trials()[0].trial_id, suite.trials()[1].trial_id, "stub-a-b8-d4-s7"

    def blob(row: object, epochs: object = ()) -> bytes:
        return json.dumps({"row": row, "epochs": list(epochs)}).encode()

    good = own(suite, s0)
    s2 = suite.trials()[2].trial_id
    s3 = suite.trials()[3].trial_id
    hashless = {k: v for k, v in own(suite, s2).items() if k != "suite_hash"}
    return {
        f"{s0}.json": (blob(good)[:20], "not JSON"),  # truncated
        f"{s1}.json": (b"\x00\xff\xfe binary \x89PNG", "not JSON"),
        "empty-object.json": (b"{}", "no 'row' record"),
        "a-list.json": (b"[]", "a JSON list"),
        "null.json": (b"null", "a JSON NoneType"),
        "no-row.json": (b'{"epochs": []}', "no 'row' record"),
        "empty-row.json": (b'{"row": {}, "epochs": []}', "no trial_id"),
        "no-epochs.json": (
            json.dumps({"row": {**good, "trial_id": "no-epochs"}}).encode(),
            "no 'epochs' list",
        ),  # fmt: skip
        f"{other}.json": (blob({**good, "trial_id": other}), "not one this run plans"),
        "renamed.json": (blob(good), "not this file's task"),
        "bad-type.json": (
            blob({**good, "trial_id": "bad-type", "batch_size": "64"}),
            "not one this run plans",
        ),  # fmt: skip
        "garbled.json": (b'{"row": {"trial_id": "x", "status": "ok"}, "epochs": [', "not JSON"),
        # issue 24: another suite's trial file with its hash removed used to be trusted
        f"{s2}.json": (blob(hashless), "no suite_hash"),
        f"{s3}.json": (blob({**own(suite, s3), "suite": "longsmoke"}), "suite 'longsmoke'"),
    }


def test_resume_moves_aside_every_file_it_cannot_trust_and_says_why(
    tmp_path: Path, suite: Suite
) -> None:
    specs = suite.trials()
    out = tmp_path / "run"
    (out / "trials").mkdir(parents=True)
    damaged = _damaged(suite)
    for name, (content, _) in damaged.items():
        (out / "trials" / name).write_bytes(content)
    lines: list[str] = []
    expected = grid_plan(suite).expected(store.TRIALS)
    assert store.finished(out, suite, expected, say=lines.append) == {}
    assert len(lines) == len(damaged)
    assert all("\n" not in line and "moved to trials/rejected/" in line for line in lines)
    for name, (_, why) in damaged.items():
        line = next(ln for ln in lines if ln.startswith(str(out / "trials" / name) + ":"))
        assert why in line, (name, line)
    rejected = list((out / "trials" / "rejected").iterdir())
    assert len(rejected) == len(damaged)
    assert not list((out / "trials").glob("*.json"))
    # the sound file of this suite is kept; a second look moves nothing more
    store.save(out, own(suite, specs[3].trial_id), [{"trial_id": specs[3].trial_id}])
    done = store.finished(out, suite, expected, say=lines.append)
    assert list(done) == [specs[3].trial_id] and len(lines) == len(damaged)
    assert tables.write_trials(out, done, []) == {"ok": 1}
    assert pl.read_parquet(out / "trials.parquet")["suite"].to_list() == [suite.name]


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"suite_hash": "feedbeef0000"}, "another suite (hash feedbeef"),
        ({"epochs": 5}, "planned for 5 epochs, this run plans 3"),
        ({"suite": "longsmoke"}, "written by suite 'longsmoke'"),
        ({"status": ""}, "no status"),
    ],
)
def test_one_rule_for_every_kind(tmp_path: Path, suite: Suite, change: dict, why: str) -> None:
    """Trials, tuning trials and profile points are trusted by the same rule."""
    for kind in (store.TRIALS, store.TUNING, store.PROFILE):
        planned = None if kind == store.PROFILE else 3
        if kind == store.PROFILE and "epochs" in change:
            continue  # a profile point trains no epochs
        row = {**own(suite, "t1"), **change}
        store.save(tmp_path, row, [], kind=kind)
        lines: list[str] = []
        assert store.finished(tmp_path, suite, {"t1": planned}, kind, lines.append) == {}
        (line,) = lines
        assert why in line and f"moved to {kind}/rejected/" in line, line


def test_a_tuning_file_written_before_the_store_is_still_read(tmp_path: Path, suite: Suite) -> None:
    (tmp_path / "tuning").mkdir()
    row = own(suite, "tune-x-t000")
    (tmp_path / "tuning" / "tune-x-t000.json").write_text(json.dumps(row))  # a bare row
    done = store.finished(tmp_path, suite, {"tune-x-t000": 3}, store.TUNING)
    assert done["tune-x-t000"]["row"] == row
