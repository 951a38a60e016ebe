"""--log-to: Ray Tune's own logger callbacks, writing under the run directory, offline.

That a real run with `--log-to tensorboard` leaves event files with the trials' metrics is
checked on the Ray smoke run of tests/test_e2e.py (test_smoke_suite_through_ray).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from halbench.errors import UserError
from halbench.run import loggers


def test_tensorboard_is_tunes_own_callback_once(tmp_path: Path) -> None:
    pytest.importorskip("tensorboardX")
    from ray.tune.logger import TBXLoggerCallback

    callbacks = loggers.tune_callbacks(["tensorboard", "tensorboard"], tmp_path)
    assert len(callbacks) == 1 and isinstance(callbacks[0], TBXLoggerCallback)
    assert loggers.tune_callbacks([], tmp_path) == []


def test_mlflow_tracks_into_a_database_in_the_run_directory(tmp_path: Path) -> None:
    pytest.importorskip("mlflow")
    (callback,) = loggers.tune_callbacks(["mlflow"], tmp_path / "run")
    db = (tmp_path / "run" / "mlflow" / "mlflow.db").resolve()
    assert callback.tracking_uri == f"sqlite:///{db}" and db.parent.is_dir()


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
