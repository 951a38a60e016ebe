"""--log-to: Ray Tune's own logger callbacks, writing under the run directory, offline."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from halbench.errors import UserError
from halbench.run import loggers
from tests.run.cluster_fixtures import halbench, run_cli, tiny_suite

ROOT = Path(__file__).resolve().parents[2]


def test_tensorboard_is_tunes_own_callback_once(tmp_path: Path) -> None:
    pytest.importorskip("tensorboardX")
    from ray.tune.logger import TBXLoggerCallback

    callbacks = loggers.tune_callbacks(["tensorboard", "tensorboard"], tmp_path)
    assert len(callbacks) == 1 and isinstance(callbacks[0], TBXLoggerCallback)
    assert loggers.tune_callbacks([], tmp_path) == []


def test_mlflow_tracks_into_a_file_store_in_the_run_directory(tmp_path: Path) -> None:
    pytest.importorskip("mlflow")
    (callback,) = loggers.tune_callbacks(["mlflow"], tmp_path / "run")
    assert callback.tracking_uri == (tmp_path / "run" / "mlflow").resolve().as_uri()


def test_wandb_is_offline_and_writes_in_the_run_directory(tmp_path: Path, monkeypatch) -> None:
    pytest.importorskip("wandb")
    monkeypatch.delenv("WANDB_MODE", raising=False)
    (callback,) = loggers.tune_callbacks(["wandb"], tmp_path / "run")
    assert callback.kwargs == {"mode": "offline", "dir": str(tmp_path / "run" / "wandb")}
    assert os.environ["WANDB_MODE"] == "offline"  # Tune's setup then asks for no API key


def test_a_missing_package_or_name_is_one_line(monkeypatch) -> None:
    monkeypatch.setattr(loggers.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(UserError, match=r"pip install 'halbench\[wandb\]'"):
        loggers.tune_callbacks(["wandb"], Path("run"))
    with pytest.raises(UserError, match="expected one of tensorboard, mlflow, wandb"):
        loggers.check_log_to(["neptune"])


@pytest.mark.slow
@pytest.mark.ray
def test_run_log_to_tensorboard_leaves_event_files(tmp_path: Path) -> None:
    pytest.importorskip("tensorboardX")
    suite = tiny_suite(tmp_path, "tb")
    out = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("RAY_ADDRESS", None)
    cmd = halbench(
        suite, "--output", out, "--no-report", "--num-cpus", "1", "--log-to", "tensorboard"
    )
    run_cli(cmd, env, timeout=400)
    events = sorted(out.glob("ray/**/events.out.tfevents.*"))
    assert events, sorted(p.relative_to(out).as_posix() for p in out.rglob("*"))
    # The per-epoch metrics the trial reports to Tune, as TensorBoard scalar tags.
    blob = b"".join(p.read_bytes() for p in events)
    assert b"ray/tune/knn_acc_1" in blob and b"ray/tune/train_loss" in blob
