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


def test_primary_k_is_the_wanted_k_when_evaluated_else_the_smallest() -> None:
    assert results.primary_k([10, 1, 5]) == 1
    assert results.primary_k([1, 5, 10], wanted=10) == 10
    assert results.primary_k([1, 5], wanted=10) == 1  # not evaluated: the policy's k
    assert results.primary_k([]) is None


def test_convergence_skips_epochs_without_the_k_and_takes_any_fraction() -> None:
    epochs = [
        {"epoch": 3, "knn_acc_1": 0.9, "elapsed_s": 3.0},
        {"epoch": 1, "knn_acc_1": 0.5, "elapsed_s": 1.0},
        {"epoch": 2, "knn_acc_1": None, "elapsed_s": 2.0},
        {"epoch": 4, "knn_acc_1": 0.8, "elapsed_s": 4.0},
    ]
    out = results.convergence(epochs, 1, (0.5, 0.9))
    # Sorted by epoch; final 0.8: 50% = 0.4 (epoch 1), 90% = 0.72 (epoch 3, the best one).
    assert out == {
        "best_epoch": 3,
        "best_knn_acc": 0.9,
        "epochs_to_50": 1,
        "seconds_to_50": 1.0,
        "epochs_to_90": 3,
        "seconds_to_90": 3.0,
    }
    assert results.convergence(epochs, 5) == {}


def test_read_table_names_the_file_and_column(tmp_path) -> None:
    from halbench.errors import UserError

    path = tmp_path / "trials.parquet"
    pl.DataFrame({"trial_id": ["a"], "batch_size": [64], "knn_acc_1": [1]}).write_parquet(path)
    df = results.read_table(path, results.TRIAL_SCHEMA, ["trial_id"])
    assert df.schema["knn_acc_1"] == pl.Float64 and df["status"].to_list() == [None]
    with pytest.raises(UserError, match=r"trials.parquet: missing column\(s\) status"):
        results.read_table(path, results.TRIAL_SCHEMA, ["trial_id", "status"])
    pl.DataFrame({"trial_id": ["a"], "batch_size": ["64"]}).write_parquet(path)
    with pytest.raises(UserError, match="column batch_size: expected Int64, got String"):
        results.read_table(path, results.TRIAL_SCHEMA)
    path.write_bytes(b"PAR1 not really")
    with pytest.raises(UserError, match="cannot read parquet file"):
        results.read_table(path, results.TRIAL_SCHEMA)


def test_read_suite_record_prefers_suite_json(tmp_path) -> None:
    from halbench.errors import UserError

    assert results.read_suite_record(tmp_path) == {}
    (tmp_path / "suite.yaml").write_text("name: from-yaml\n")
    assert results.read_suite_record(tmp_path) == {"name": "from-yaml"}
    results.write_json_atomic(tmp_path / "suite.json", {"name": "from-json"})
    assert results.read_suite_record(tmp_path) == {"name": "from-json"}
    (tmp_path / "suite.json").write_bytes(b"\xff\xfe\x00")
    with pytest.raises(UserError, match="suite.json: cannot read the suite"):
        results.read_suite_record(tmp_path)


def test_write_text_atomic_replaces_the_whole_file(tmp_path) -> None:
    path = tmp_path / "report.md"
    results.write_text_atomic(path, "old\n")
    results.write_text_atomic(path, "new ✓\n")
    assert path.read_text() == "new ✓\n" and os.listdir(tmp_path) == ["report.md"]


def test_read_table_refuses_nulls_in_key_columns(tmp_path) -> None:
    from halbench.errors import UserError

    path = tmp_path / "epochs.parquet"
    pl.DataFrame({"trial_id": ["a", "b"], "epoch": [1, None]}).write_parquet(path)
    with pytest.raises(UserError, match="column epoch: 1 null value"):
        results.read_table(path, results.EPOCH_SCHEMA, ["trial_id", "epoch"])
