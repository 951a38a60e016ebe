"""placement and storage without Ray or a server: the row columns and the storage check."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from halbench.errors import UserError
from halbench.probes import placement
from halbench.results import TRIAL_SCHEMA
from halbench.run import storage


def test_the_columns_are_in_the_trial_schema() -> None:
    assert set(placement.COLUMNS) <= set(TRIAL_SCHEMA)


def test_record_outside_ray_keeps_the_trials_times_and_nulls_the_ray_columns() -> None:
    row = {"status": "error", "error": "ValueError: x", "started_at": "2026-01-01T00:00:00+00:00"}
    placement.record(row, placement.now())
    assert row["node_id"] is None and row["gpu_ids"] is None
    assert row["started_at"] == "2026-01-01T00:00:00+00:00"  # the trial's own start wins
    assert datetime.fromisoformat(row["ended_at"]).tzinfo is not None
    assert row["error"] == "ValueError: x"  # no node to name without Ray


def test_local_storage_is_left_to_tune(tmp_path) -> None:
    storage.check_storage(None)
    storage.check_storage(str(tmp_path / "tune"))
    assert storage.storage_path(None, tmp_path) == str(tmp_path / "ray")
    # a URI is mirrored by halbench (run/storage.py): Tune writes under the run directory
    assert storage.storage_path("s3://b/p", tmp_path) == str(tmp_path / "ray")


def test_an_unknown_scheme_is_a_user_error() -> None:
    with pytest.raises(UserError, match=r"^--storage nosuch://x/y: cannot write there"):
        storage.check_storage("nosuch://x/y")


def _row(tid: str, start: int, end: int, gpus: str | None = "0", node: str = "n1") -> dict:
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    return {
        "trial_id": tid,
        "node_id": node,
        "node": "host",
        "gpu_ids": gpus,
        "started_at": (t0 + timedelta(seconds=start)).isoformat(),
        "ended_at": (t0 + timedelta(seconds=end)).isoformat(),
    }


def test_neighbours_count_the_most_trials_beside_each_at_one_instant() -> None:
    rows = [
        _row("a", 0, 10),
        _row("b", 2, 4),
        _row("c", 5, 12),  # b and c never overlap: a has at most one neighbour at a time
        _row("d", 10, 20),  # starts as a ends: not beside a; beside c from 10 to 12
        _row("e", 0, 30, gpus="1"),  # another GPU of the node
        _row("f", 0, 30, gpus="0", node="n2"),  # GPU 0 of another node
        _row("g", 0, 30, gpus="1,2"),  # shares GPU 1 with e
    ]
    found = placement.neighbours(rows)
    assert found == {"a": 1, "b": 1, "c": 1, "d": 1, "e": 1, "f": 0, "g": 1}


def test_a_cpu_node_is_one_device_and_unknowns_are_null() -> None:
    rows = [
        _row("a", 0, 10, gpus=None),
        _row("b", 1, 9, gpus=None),
        _row("c", 2, 8, gpus=None),
        _row("gpu", 0, 10, gpus="0"),  # a GPU trial is not on the CPU device
        {**_row("x", 0, 10), "started_at": None},
        {**_row("y", 0, 10, gpus=None), "node_id": None, "node": None},
    ]
    found = placement.neighbours(rows)
    assert found == {"a": 2, "b": 2, "c": 2, "gpu": 0, "x": None, "y": None}
    # without Ray (node_id null) the hostname is the node
    alone = [
        {**_row("p", 0, 5, gpus=None), "node_id": None},
        {**_row("q", 6, 9, gpus=None), "node_id": None},
    ]
    assert placement.neighbours(alone) == {"p": 0, "q": 0}


def test_add_neighbours_fills_the_schema_column() -> None:
    rows = [_row("a", 0, 10), _row("b", 5, 15)]
    placement.add_neighbours(rows)
    assert [r["max_neighbours"] for r in rows] == [1, 1]
    assert TRIAL_SCHEMA["max_neighbours"].is_integer()
