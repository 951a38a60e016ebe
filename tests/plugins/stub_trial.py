"""A stand-in for halbench.trial.run_trial: fast, deterministic, no data or model.

Runner tests use it to exercise Ray, resume and interruption without training anything. The
loss params steer it: `sleep` (seconds per epoch), `status` (the status to return), `crash`
(end the worker process abruptly, as a lost node or a segfault would).
"""

from __future__ import annotations

import os
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from halbench.suite import Suite, TrialSpec
from halbench.trial.spec import base_row, resolve_spec


@dataclass
class StubResult:
    row: dict[str, Any]
    epochs: list[dict[str, Any]]


def accuracy(spec: TrialSpec, epoch: int) -> float:
    """A made-up accuracy that depends only on the trial's identity and the epoch."""
    return (zlib.crc32(f"{spec.trial_id}/{epoch}".encode()) % 1000) / 1000


def run_trial(
    suite: Suite, spec: TrialSpec, *, report: Callable[[dict[str, Any]], None] | None = None
) -> StubResult:
    if spec.loss.params.get("crash"):
        os._exit(1)
    sleep = float(spec.loss.params.get("sleep", 0.0))
    epochs = []
    for epoch in range(1, suite.train.epochs + 1):
        time.sleep(sleep)
        row = {
            "trial_id": spec.trial_id,
            "epoch": epoch,
            "train_loss": 1.0 / epoch,
            "knn_acc_1": accuracy(spec, epoch),
        }
        epochs.append(row)
        if report is not None:
            report(row)
    status = spec.loss.params.get("status", "ok")
    row = {
        **base_row(suite, resolve_spec(spec)),
        "epochs_done": suite.train.epochs,
        "status": status,
        "error": None if status == "ok" else f"StubError: {status}",
        "knn_acc_1": epochs[-1]["knn_acc_1"],
    }
    return StubResult(row, epochs)
