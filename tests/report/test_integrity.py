"""Reports and compare on damaged or hostile run directories: one line and exit 2, never a
traceback; reports written atomically; compare never passes a run with nothing to compare."""

from __future__ import annotations

import math
import os

import polars as pl
import pytest

from halbench import results
from halbench.cli import main
from halbench.errors import UserError
from halbench.report import build_report

from .fixtures import SUITE, epochs_of, trial
from .test_report import training_rows


def one_line_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("halbench: error:") and err.count("\n") == 1, err
    return err


@pytest.fixture
def good_run(make_run):
    return make_run(*training_rows())


def damaged_runs(make_run, tmp_path):
    """name -> a run directory whose trials.parquet (or suite file) is damaged."""
    trials, epochs = training_rows()
    runs = {}
    empty = tmp_path / "empty"
    empty.mkdir()
    runs["empty directory"] = empty
    truncated = make_run(trials, epochs)
    data = (truncated / "trials.parquet").read_bytes()
    (truncated / "trials.parquet").write_bytes(data[: len(data) // 2])
    runs["truncated parquet"] = truncated
    only_id = make_run(trials, epochs)
    pl.DataFrame({"trial_id": [t["trial_id"] for t in trials]}).write_parquet(
        only_id / "trials.parquet"
    )
    runs["only trial_id"] = only_id
    no_keys = make_run(trials, epochs)
    pl.read_parquet(no_keys / "trials.parquet").drop(["dataset", "loss"]).write_parquet(
        no_keys / "trials.parquet"
    )
    runs["no dataset/loss"] = no_keys
    str_batch = make_run(trials, epochs)
    df = pl.read_parquet(str_batch / "trials.parquet")
    df.with_columns(pl.col("batch_size").cast(pl.Utf8)).write_parquet(str_batch / "trials.parquet")
    runs["batch_size as strings"] = str_batch
    int_status = make_run(trials, epochs)
    df.with_columns(pl.lit(1).alias("status")).write_parquet(int_status / "trials.parquet")
    runs["status as ints"] = int_status
    binary_suite = make_run(trials, epochs)
    (binary_suite / "suite.yaml").write_bytes(bytes(range(256)) * 4)
    runs["binary suite.yaml"] = binary_suite
    return runs


def test_report_on_damaged_runs_is_one_line_exit_2(make_run, tmp_path, capsys):
    for name, run in damaged_runs(make_run, tmp_path).items():
        err = one_line_exit_2(["report", str(run)], capsys)
        assert str(run) in err, name


def test_compare_against_damaged_runs_is_one_line_exit_2(good_run, make_run, tmp_path, capsys):
    for name, run in damaged_runs(make_run, tmp_path).items():
        assert str(run) in one_line_exit_2(["compare", str(good_run), str(run)], capsys), name
        one_line_exit_2(["compare", str(run), str(good_run)], capsys)


def test_compare_refuses_a_run_with_nothing_to_compare(good_run, make_run, capsys):
    trials, epochs = training_rows()
    no_rows = make_run([], [])
    err = one_line_exit_2(["compare", str(good_run), str(no_rows)], capsys)
    assert "NEW run has nothing to compare: no trial or profile rows" in err
    no_knn = make_run([{k: v for k, v in t.items() if not k.startswith("knn_acc")} for t in trials])
    for path in (no_knn,):
        df = pl.read_parquet(path / "trials.parquet")
        df.drop([c for c in df.columns if c.startswith("knn_acc")]).write_parquet(
            path / "trials.parquet"
        )
    nan = make_run([{**t, **{f"knn_acc_{k}": math.nan for k in (1, 5, 10, 20)}} for t in trials])
    for run in (no_knn, nan):
        err = one_line_exit_2(["compare", str(good_run), str(run)], capsys)
        assert "every metric missing or NaN" in err
        one_line_exit_2(["compare", str(run), str(good_run)], capsys)


def test_a_metric_that_became_nan_is_a_regression(good_run, make_run, capsys):
    trials, epochs = training_rows()
    trials[0] = {**trials[0], "knn_acc_1": math.nan}
    trials[1] = {**trials[1], "loss_call_ms": math.nan}
    assert main(["compare", str(good_run), str(make_run(trials, epochs))]) == 3
    out = capsys.readouterr().out
    assert "k-NN@1 became NaN (seed 0)" in out and "time became NaN (seed 1)" in out


def test_every_failed_trial_is_a_regression_not_an_error(good_run, make_run, capsys):
    trials, epochs = training_rows()
    failed = [{**t, "status": "oom", "knn_acc_1": None} for t in trials]
    assert main(["compare", str(good_run), str(make_run(failed, epochs))]) == 3
    assert "status ok → oom" in capsys.readouterr().out


def test_unwritable_output_is_one_line_exit_2(good_run, tmp_path, capsys):
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    one_line_exit_2(["report", str(good_run), "--output", str(a_file)], capsys)
    err = one_line_exit_2(
        ["compare", str(good_run), str(good_run), "--output", str(a_file / "cmp.md")], capsys
    )
    assert str(a_file) in err
    if os.geteuid() != 0:  # root writes anywhere
        locked = tmp_path / "locked"
        locked.mkdir()
        locked.chmod(0o500)
        try:
            one_line_exit_2(["report", str(good_run), "--output", str(locked)], capsys)
        finally:
            locked.chmod(0o700)


def test_compare_output_is_written(good_run, tmp_path, capsys):
    out = tmp_path / "deep" / "cmp.md"
    assert main(["compare", str(good_run), str(good_run), "--output", str(out)]) == 0
    assert out.read_text() == capsys.readouterr().out


def test_a_failed_report_write_keeps_the_previous_report(good_run, tmp_path, monkeypatch):
    out = tmp_path / "out"
    build_report([good_run], out)
    before = {p: (out / p).read_bytes() for p in ("report.md", "report.html")}

    def disk_full(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(results.io.os, "fsync", disk_full)
    with pytest.raises(UserError, match="No space left on device"):
        build_report([good_run], out)
    assert {p: (out / p).read_bytes() for p in before} == before
    assert sorted(os.listdir(out)) == ["report.html", "report.md"], "no temporary file is left"


def test_report_reads_suite_json_before_suite_yaml(make_run):
    from halbench.report.load import load_groups

    row = trial("hal", 64, 16, 0, 0.9)
    run = make_run([row], epochs_of(row, [0.5, 0.9]))
    normalized = {**SUITE, "name": "from-json", "eval": {"ks": [5]}}
    results.write_json_atomic(run / "suite.json", normalized)
    group = load_groups([run])[0]
    assert group.name == "from-json" and group.suite["eval"]["ks"] == [5]


def test_a_suite_file_of_any_shape_is_read_as_far_as_it_makes_sense(make_run, capsys):
    trials, epochs = training_rows()
    odd = {"eval": 3, "grid": [1], "losses": 5, "datasets": [3, {"name": None}]}
    run = make_run(trials, epochs, suite=odd)
    assert main(["report", str(run)]) == 0
    assert "| k (k-NN) | 1, 5, 10, 20 |" in (run / "report.md").read_text()
