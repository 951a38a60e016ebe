"""placement and storage without Ray or a server: the row columns and the storage check."""

from __future__ import annotations

from datetime import datetime

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
