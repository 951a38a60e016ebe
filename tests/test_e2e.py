"""End to end: a suite through Ray Tune to parquet and reports, and a real-data run."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import polars as pl
import pytest
import yaml

from halbench.cli import main
from halbench.results import EPOCH_SCHEMA, TRIAL_SCHEMA

ROOT = Path(__file__).resolve().parents[1]
FASHION = Path("/usr/share/datasets/fashion-mnist")


@pytest.fixture
def ray_env(monkeypatch):
    # Ray workers import halbench from the repository even without an installed package.
    monkeypatch.setenv("PYTHONPATH", f"{ROOT}:{__import__('os').environ.get('PYTHONPATH', '')}")
    monkeypatch.setenv("RAY_DEDUP_LOGS", "0")


@pytest.mark.slow
@pytest.mark.ray
def test_smoke_suite_through_ray(tmp_path, ray_env, capsys) -> None:
    # The Ray smoke run also carries every `--log-to` (issue 25: "halbench run
    # suites/smoke.yaml --log-to tensorboard leaves TensorBoard event files"): one Ray run, not
    # four. tensorboardX, mlflow(-skinny) and wandb are test extras (pyproject.toml).
    for module in ("tensorboardX", "mlflow", "wandb"):
        pytest.importorskip(module)
    out = tmp_path / "run"
    suite = str(ROOT / "suites/smoke.yaml")
    argv = ["run", suite, "--output", str(out), "--num-cpus", "2"]
    argv += ["--log-to", "tensorboard", "--log-to", "mlflow", "--log-to", "wandb"]
    rc = main(argv)
    assert rc == 0, capsys.readouterr().err
    for name in (
        "suite.yaml",
        "env.json",
        "trials.parquet",
        "epochs.parquet",
        "report.md",
        "report.html",
    ):
        assert (out / name).exists(), name

    env = json.loads((out / "env.json").read_text())
    assert env["suite"] == "smoke" and len(env["suite_hash"]) == 12 and env["torch"]

    trials = pl.read_parquet(out / "trials.parquet")
    assert set(TRIAL_SCHEMA) <= set(trials.columns)
    assert trials.height == 4  # 2 losses x 1 batch size x 1 dim x 2 seeds
    assert trials["status"].to_list() == ["ok"] * 4, trials.select("trial_id", "status", "error")
    assert sorted(trials["loss"].unique().to_list()) == ["hal", "nca"]
    # 4 synthetic classes: chance is 25%; a trained model is far above it.
    assert trials["knn_acc_10"].min() > 0.6, trials.select("trial_id", "knn_acc_10")
    assert (trials["loss_call_ms"] > 0).all()

    epochs = pl.read_parquet(out / "epochs.parquet")
    assert set(EPOCH_SCHEMA) <= set(epochs.columns)
    assert epochs.height == 4 * 2
    assert epochs.group_by("trial_id").len()["len"].to_list() == [2] * 4
    # The models learn: every trial's training loss falls from the first epoch to the second.
    losses = (
        epochs.sort("trial_id", "epoch")
        .group_by("trial_id", maintain_order=True)
        .agg(pl.col("train_loss"))
    )
    assert all(first > last for first, last in losses["train_loss"].to_list()), losses

    # --log-to tensorboard: Tune's TBX callback wrote event files under the run directory, with
    # the per-epoch metrics each trial reports to Tune as scalar tags.
    events = sorted(out.glob("ray/**/events.out.tfevents.*"))
    assert events, sorted(p.relative_to(out).as_posix() for p in out.rglob("*"))
    blob = b"".join(p.read_bytes() for p in events)
    assert b"ray/tune/knn_acc_1" in blob and b"ray/tune/train_loss" in blob

    # --log-to mlflow: one MLflow run per trial, named by its trial id, in the run's database
    import mlflow

    trial_ids = sorted(pl.read_parquet(out / "trials.parquet")["trial_id"])
    client = mlflow.MlflowClient(f"sqlite:///{(out / 'mlflow' / 'mlflow.db').resolve()}")
    experiment = client.get_experiment_by_name(out.parent.name)
    runs = client.search_runs([experiment.experiment_id])
    assert sorted(r.info.run_name for r in runs) == trial_ids
    assert all({"knn_acc_1", "train_loss"} <= set(r.data.metrics) for r in runs)
    # --log-to wandb: one offline run per trial under <run>/wandb, nothing sent anywhere
    offline = sorted(out.glob("wandb/**/offline-run-*/run-*.wandb"))
    assert len(offline) == len(trial_ids), offline


@pytest.mark.slow
def test_report_regenerates_from_parquet_alone(tmp_path, capsys) -> None:
    out = tmp_path / "run"
    suite = yaml.safe_load((ROOT / "suites/smoke.yaml").read_text())
    suite["grid"]["seed"] = [0]
    path = tmp_path / "smoke1.yaml"
    path.write_text(yaml.safe_dump(suite))
    assert main(["run", str(path), "--output", str(out), "--no-ray"]) == 0
    before = (out / "report.md").read_text()
    for name in ("report.md", "report.html"):
        (out / name).unlink()
    shutil.rmtree(out / "trials")  # only the parquet files (and provenance) remain
    assert main(["report", str(out)]) == 0, capsys.readouterr().err
    assert (out / "report.html").stat().st_size > 10_000
    after = (out / "report.md").read_text()
    assert "hal" in after and "nca" in after
    assert len(after.splitlines()) == len(before.splitlines())


@pytest.mark.slow
@pytest.mark.skipif(
    not FASHION.exists(),
    reason="Fashion-MNIST not installed (apt-get install dataset-fashion-mnist)",
)
def test_real_fashion_mnist_run(tmp_path, capsys) -> None:
    suite = yaml.safe_load((ROOT / "suites/quickstart.yaml").read_text())
    suite["dataset"].update(train_size=2000, test_size=1000)
    suite["grid"]["seed"] = [0]
    suite["train"]["epochs"] = 1
    path = tmp_path / "fm.yaml"
    path.write_text(yaml.safe_dump(suite))
    out = tmp_path / "run"
    assert main(["run", str(path), "--output", str(out), "--no-ray", "--no-report"]) == 0
    trials = pl.read_parquet(out / "trials.parquet")
    assert trials["status"].to_list() == ["ok", "ok"], trials.select("trial_id", "error")
    # Ten classes: chance is 10%. One short epoch on 2,000 real images gives far more.
    assert trials["knn_acc_10"].min() > 0.6, trials.select("loss", "knn_acc_10")
