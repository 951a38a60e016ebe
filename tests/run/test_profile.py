"""`halbench profile`: the sweep, its rows and files, OOM handling and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
import torch

from halbench import results
from halbench.cli import main
from halbench.errors import UserError
from halbench.probes import sweep as loss_sweep
from halbench.run import profile
from halbench.run.options import RunOptions
from halbench.suite.profile import load_profile_suite

TINY = {"batch_sizes": [8, 16], "dims": [8], "classes": [4], "warmup": 0, "repeats": 1}


def sweep(tmp_path: Path, **overrides) -> pl.DataFrame:  # noqa: ANN003
    """The sweep as the CLI runs it: suite file (or built-in), then overrides, then the run."""
    kwargs = {"losses": ["hal", "nca"], "device": "cpu", "use_ray": False, **TINY, **overrides}
    suite_path, use_ray = kwargs.pop("suite_path", None), kwargs.pop("use_ray")
    suite = profile.apply_overrides(
        load_profile_suite(suite_path), profile.SweepOverrides(**kwargs)
    )
    options = RunOptions(output=tmp_path / "out", use_ray=use_ray)
    return pl.read_parquet(profile.run_profile(suite, suite_path, options))


def test_sweep_writes_one_row_per_point_with_the_probe_keys(tmp_path: Path) -> None:
    df = sweep(tmp_path)
    assert df.height == 4
    assert list(df.columns[: len(results.PROFILE_SCHEMA)]) == list(results.PROFILE_SCHEMA)
    assert df["status"].to_list() == ["ok"] * 4
    assert sorted(zip(df["loss"], df["batch_size"], strict=True)) == [
        ("hal", 8), ("hal", 16), ("nca", 8), ("nca", 16)
    ]  # fmt: skip
    for row in df.iter_rows(named=True):
        assert row["flops_fwd"] > 0 and row["flops_bwd"] > 0 and row["time_fwdbwd_ms"] > 0
        # the loss's own formula, next to the count (their agreement is tested in tests/probes)
        assert row["flops_analytic_fwd"] == pytest.approx(row["flops_fwd"], rel=0.2)
        assert row["unsupported_ops"] == []
        assert row["peak_mem_source"] == "torch_profiler"
    out = tmp_path / "out"
    assert json.loads((out / "env.json").read_text())["profile_device"] == "cpu"


def test_pytorch_metric_learning_losses_profile_by_name(tmp_path: Path) -> None:
    pytest.importorskip("pytorch_metric_learning")
    df = sweep(tmp_path, losses=["pml:NCALoss:softmax_scale=1"])
    assert df["status"].to_list() == ["ok", "ok"], df["error"].to_list()
    # No analytic formula for a plug-in, but every op it runs is counted.
    assert df["flops_analytic_fwd"].to_list() == [None, None]
    assert all(ops == [] for ops in df["unsupported_ops"].to_list())
    assert (df["flops_fwd"] > 0).all()


def test_suite_file_sets_the_sweep_and_is_copied(tmp_path: Path) -> None:
    suite = tmp_path / "p.yaml"
    suite.write_text(
        "name: tiny\nlosses: [{name: hal, label: hal-s8, params: {scale: 8.0}}, {name: nca}]\n"
        "grid: {batch_size: [8], embedding_dim: [8], num_classes: [4]}\n"
        "probes: {warmup: 0, repeats: 1}\n"
    )
    kwargs = dict.fromkeys(["losses", "batch_sizes", "dims", "classes", "warmup", "repeats"])
    df = sweep(tmp_path, suite_path=suite, **kwargs)
    assert df["loss"].to_list() == ["hal-s8", "nca"]
    assert json.loads(df["loss_params"][0]) == {"scale": 8.0}
    assert (tmp_path / "out" / "suite.yaml").read_text() == suite.read_text()
    stored = json.loads((tmp_path / "out" / "suite.json").read_text())
    assert stored["kind"] == "profile" and stored["grid"]["batch_size"] == [8]


def test_point_that_cannot_fit_is_an_oom_row(tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    # 16 x 16 pairwise matrices fit in 20 kB; nothing bigger does
    monkeypatch.setattr(loss_sweep, "available_memory", lambda device: 20_000)
    df = sweep(tmp_path, losses=["nca"], batch_sizes=[16, 4096])
    status = dict(zip(df["batch_size"], df["status"], strict=True))
    assert status == {16: "ok", 4096: "oom"}
    assert "estimated" in df.filter(pl.col("status") == "oom")["error"][0]


def test_out_of_memory_during_the_call_is_an_oom_row(tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    def fail(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise RuntimeError("DefaultCPUAllocator: not enough memory: you tried to allocate 1 TB")

    monkeypatch.setattr(loss_sweep, "profile_loss_call", fail)
    df = sweep(tmp_path, losses=["hal"], batch_sizes=[8])
    assert df["status"].to_list() == ["oom"]
    assert "not enough memory" in df["error"][0]


def test_a_failing_point_is_an_error_row_not_a_lost_sweep(tmp_path: Path) -> None:
    suite = tmp_path / "p.yaml"
    # orthogonal anchors need C <= d: C=4 fits d=8, C=16 does not
    suite.write_text(
        "losses: [{name: hal, params: {init: orthogonal}}]\ngrid: {num_classes: [4, 16]}\n"
    )
    df = sweep(tmp_path, suite_path=suite, losses=None, classes=None)
    status = dict(zip(df["num_classes"], df["status"], strict=True))
    assert status == {4: "ok", 16: "error"}
    assert "orthogonal" in df.filter(pl.col("status") == "error")["error"][0]


def test_failing_report_is_a_warning(tmp_path: Path, monkeypatch, capsys) -> None:  # noqa: ANN001
    def broken(run_dirs, out_dir):  # noqa: ANN001, ANN202
        raise RuntimeError("report exploded")

    monkeypatch.setattr("halbench.report.build_report", broken)
    argv = ["profile", "--losses", "hal", "--batch-sizes", "8", "--dims", "8", "--classes", "4"]
    argv += ["--warmup", "0", "--repeats", "1", "--no-ray", "--output", str(tmp_path / "out")]
    assert main(argv) == 0
    df = pl.read_parquet(tmp_path / "out" / "profile.parquet")
    assert df.height == 1
    assert "warning: report not built" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"losses": ["hal", "nope"]}, "nope"),
        ({"batch_sizes": [8, 0]}, "batch_sizes"),
        ({"dims": [-1]}, "dims"),
        ({"classes": [1]}, "classes"),
        ({"repeats": 0}, "repeats"),
        ({"suite_path": Path("/nonexistent/profile.yaml")}, "not found"),
    ],
)
def test_bad_input_raises_user_error(tmp_path: Path, overrides: dict, message: str) -> None:
    with pytest.raises(UserError, match=message):
        sweep(tmp_path, **overrides)
    assert not (tmp_path / "out" / "profile.parquet").exists()


def test_unknown_suite_key_raises_user_error(tmp_path: Path) -> None:
    suite = tmp_path / "p.yaml"
    suite.write_text("batch_size: [8]\n")  # a run suite's grid key, at the top level
    with pytest.raises(UserError, match="unknown key.*batch_size"):
        sweep(tmp_path, suite_path=suite)


def test_cuda_without_a_gpu_raises_user_error(tmp_path: Path) -> None:
    if torch.cuda.is_available():
        pytest.skip("a GPU is visible")
    with pytest.raises(UserError, match="cuda"):
        sweep(tmp_path, device="cuda")


def test_command_line_arguments_reach_the_sweep(tmp_path: Path) -> None:
    argv = ["profile", "--losses", "hal", "--batch-sizes", "8", "--dims", "8", "--classes", "4",
            "--warmup", "0", "--repeats", "1", "--no-ray", "--no-report",
            "--output", str(tmp_path / "cli")]  # fmt: skip
    assert main(argv) == 0
    df = pl.read_parquet(tmp_path / "cli" / "profile.parquet")
    assert df.select("loss", "batch_size", "embedding_dim", "num_classes").row(0) == (
        "hal",
        8,
        8,
        4,
    )


def test_ray_mode_runs_one_task_per_loss(tmp_path: Path) -> None:
    pytest.importorskip("ray")
    local = sweep(tmp_path / "local")
    remote = sweep(tmp_path / "ray", use_ray=True)
    key = ["loss", "batch_size", "embedding_dim", "num_classes"]
    columns = [*key, "status", "flops_fwd", "flops_bwd"]
    assert remote.select(columns).sort(key).equals(local.select(columns).sort(key))


def test_the_shipped_profile_suite_parses() -> None:
    suite = load_profile_suite(Path(__file__).resolve().parents[2] / "suites/profile.yaml")
    assert suite.grid.batch_size[0] == 32 and suite.probes.repeats == 10
    assert [s.name for s in suite.losses][:3] == ["hal", "al", "nca"]


def test_the_old_flat_keys_say_where_they_went(tmp_path: Path) -> None:
    suite = tmp_path / "p.yaml"
    suite.write_text("batch_sizes: [8]\nwarmup: 0\n")
    with pytest.raises(UserError, match=r"batch_sizes is now grid\.batch_size; warmup is now"):
        load_profile_suite(suite)


def test_profile_and_run_share_env_json_and_the_failure_map(tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    """One recipe: env.json through rundir.write_env, failed points through failures.classify."""
    from halbench import failures
    from halbench.run import rundir

    calls: list[str] = []
    real_env, real_classify = rundir.write_env, failures.classify
    monkeypatch.setattr(
        rundir, "write_env", lambda *a, **k: calls.append("env") or real_env(*a, **k)
    )
    monkeypatch.setattr(
        failures, "classify", lambda exc: calls.append("classify") or real_classify(exc)
    )
    monkeypatch.setattr(loss_sweep, "available_memory", lambda device: None)

    def fail(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise ValueError("bad point")

    monkeypatch.setattr(loss_sweep, "profile_loss_call", fail)
    df = sweep(tmp_path, losses=["hal"], batch_sizes=[8])
    assert df["status"].to_list() == ["error"] and df["error"][0] == "ValueError: bad point"
    assert calls == ["env", "classify", "env"]
    env = json.loads((tmp_path / "out" / "env.json").read_text())
    assert env["suite"] == "profile" and len(env["suite_hash"]) == 12
    assert [sorted(inv) for inv in env["invocations"]] == [["address", "finished_at", "started_at"]]


def test_timing_rounds_interleave_losses_and_points(tmp_path: Path) -> None:
    suite = profile.apply_overrides(
        load_profile_suite(None),
        profile.SweepOverrides(
            losses=["hal", "nca"], batch_sizes=[8, 16], dims=[8], classes=[4], device="cpu"
        ),
    )
    assert suite.probes.rounds == 3
    calls: list[tuple[str, int]] = []

    def timer(spec, suite, b, d, c, memory, device, seed):  # noqa: ANN001, ANN202
        calls.append((spec.display, b))
        # round r gives r + 1 ms: the median over all rounds is the middle round's
        n = sum(1 for x in calls if x == (spec.display, b))
        return [float(n)] * 2, [float(n), float(n) + 0.5]

    rows = loss_sweep.sweep(suite.losses, suite, timer=timer)
    one_round = [("hal", 8), ("nca", 8), ("hal", 16), ("nca", 16)]
    assert calls == one_round * 3  # round-robin over points, the losses of a point in turn
    for row in rows:
        assert row["time_fwd_ms"] == 2.0
        assert row["time_fwdbwd_ms"] == 2.25  # median of 1, 1.5, 2, 2.5, 3, 3.5
        assert row["time_fwdbwd_iqr_ms"] == pytest.approx(1.25)


def test_env_records_the_load_average_around_the_sweep(tmp_path: Path) -> None:
    sweep(tmp_path, losses=["hal"])
    env = json.loads((tmp_path / "out" / "env.json").read_text())
    assert len(env["load_average_before"]) == 3 and len(env["load_average_after"]) == 3
    assert env["finished_at"] is not None


def test_cli_says_when_it_adds_default_class_counts(tmp_path: Path, capsys) -> None:  # noqa: ANN001
    args = ["profile", "--losses", "hal", "--batch-sizes", "8", "--dims", "8", "--no-ray"]
    args += ["--warmup", "0", "--repeats", "1", "--no-report", "-o", str(tmp_path / "a")]
    assert main(args) == 0
    assert "adding the default class counts C = 10, 100" in capsys.readouterr().err
    assert main([*args[:-1], str(tmp_path / "b"), "--classes", "4"]) == 0
    assert "default class counts" not in capsys.readouterr().err
