"""Schemas and atomic writes: what every table in a run directory is built on."""

from __future__ import annotations

import os

import polars as pl
import pytest

from halbench import results


def test_frame_has_every_schema_column_and_keeps_extra_k() -> None:
    df = results.frame(
        [
            {"trial_id": "a", "status": "ok", "knn_acc_1": 0.5, "knn_acc_3": 0.6},
            {"trial_id": "b", "status": "error", "error": "ValueError: x"},
        ],
        results.TRIAL_SCHEMA,
    )
    assert list(df.columns)[: len(results.TRIAL_SCHEMA)] == list(results.TRIAL_SCHEMA)
    assert df["knn_acc_3"].to_list() == [0.6, None]
    assert df.schema["batch_size"] == pl.Int64
    assert df["error"].to_list() == [None, "ValueError: x"]


def test_frame_of_no_rows_is_empty_but_typed() -> None:
    df = results.frame([], results.EPOCH_SCHEMA)
    assert df.height == 0 and df.schema["epoch"] == pl.Int64


def test_atomic_write_leaves_old_file_when_writer_fails(tmp_path) -> None:
    path = tmp_path / "t.parquet"
    results.write_parquet_atomic(pl.DataFrame({"x": [1]}), path)

    def boom(f):
        f.write(b"partial")
        raise RuntimeError("killed mid-write")

    with pytest.raises(RuntimeError):
        results.write_bytes_atomic(path, boom)
    assert pl.read_parquet(path)["x"].to_list() == [1]
    assert os.listdir(tmp_path) == ["t.parquet"], "no temporary file is left behind"


def test_environment_names_versions_and_device() -> None:
    env = results.environment()
    for key in ("halbench", "python", "torch", "ray", "device", "git_sha", "cpu_count"):
        assert key in env
    assert env["torch"] and env["device"]
