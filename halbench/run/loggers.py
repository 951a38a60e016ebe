"""Experiment tracking: Ray Tune's own logger callbacks, writing under the run directory.

    halbench run suite.yaml --log-to tensorboard --log-to mlflow --log-to wandb

- tensorboard: Tune's TBXLoggerCallback; event files beside each trial in Tune's storage
  path (default `<run>/ray/tune-<time>/<trial>/`): `tensorboard --logdir <run>/ray`.
- mlflow: Tune's MLflowLoggerCallback tracking into a SQLite database in the run directory,
  `<run>/mlflow/mlflow.db` (`mlflow ui --backend-store-uri sqlite:///<run>/mlflow/mlflow.db`).
  Not MLflow's file store: MLflow 3 refuses it ("maintenance mode") unless an environment
  variable opts back in.
- wandb: Tune's WandbLoggerCallback in offline mode, files in `<run>/wandb` (`wandb sync`
  uploads them later, if the user wants).

Nothing here reaches the network. Each package is an optional extra (`halbench[tensorboard]`,
`[mlflow]`, `[wandb]`); a missing one is a one-line UserError before the run starts.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from halbench.errors import UserError

# --log-to name -> (the module it needs, the pyproject extra that installs it)
LOGGERS: dict[str, tuple[str, str]] = {
    "tensorboard": ("tensorboardX", "tensorboard"),
    "mlflow": ("mlflow", "mlflow"),
    "wandb": ("wandb", "wandb"),
}


def check_log_to(log_to: Sequence[str]) -> None:
    """Every requested logger is known and its package importable; else one line."""
    for name in log_to:
        if name not in LOGGERS:
            raise UserError(f"--log-to {name}: expected one of {', '.join(LOGGERS)}")
        module, extra = LOGGERS[name]
        if importlib.util.find_spec(module) is None:
            raise UserError(
                f"--log-to {name}: the {module} package is not installed "
                f"(pip install 'halbench[{extra}]')"
            )


def mlflow_uri(out_dir: Path) -> str:
    """The run's MLflow tracking database, `<run>/mlflow/mlflow.db`, as a SQLite URI."""
    folder = (out_dir / "mlflow").resolve()
    folder.mkdir(parents=True, exist_ok=True)  # SQLite creates the file, not its directory
    return f"sqlite:///{folder / 'mlflow.db'}"


def tune_callbacks(log_to: Sequence[str], out_dir: Path) -> list[Any]:
    """Ray Tune logger callbacks for `log_to`, configured to write under `out_dir`."""
    check_log_to(log_to)
    callbacks: list[Any] = []
    for name in dict.fromkeys(log_to):  # a repeated name is one logger
        if name == "tensorboard":
            from ray.tune.logger import TBXLoggerCallback

            callbacks.append(TBXLoggerCallback())
        elif name == "mlflow":
            from ray.air.integrations.mlflow import MLflowLoggerCallback

            callbacks.append(
                MLflowLoggerCallback(
                    tracking_uri=mlflow_uri(out_dir),
                    experiment_name=out_dir.parent.name or "halbench",
                )
            )
        elif name == "wandb":
            from ray.air.integrations.wandb import WandbLoggerCallback

            # Tune asks for an API key unless the mode variable says offline; the mode
            # argument reaches wandb.init in the logging actor. Never online from here.
            os.environ["WANDB_MODE"] = "offline"
            (out_dir / "wandb").mkdir(parents=True, exist_ok=True)
            callbacks.append(
                WandbLoggerCallback(
                    project=out_dir.parent.name or "halbench",
                    mode="offline",
                    dir=str(out_dir / "wandb"),
                )
            )
    return callbacks
