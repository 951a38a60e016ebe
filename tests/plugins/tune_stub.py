"""A tune-aware stand-in for halbench.trial.run_trial: known scores per configuration.

The score of a configuration is `score(config)`: 1.0 at lr = 1e-3 (the stub suites' hand-set
lr), falling with the distance in decades; a trial's epoch e of E reports score * e / E, so
that a better configuration is better at every epoch (ASHA's rungs then agree with the end).
`loss.status` in the configuration (or the loss params) makes the trial fail with that status;
the loss param `gain` scales every score (a loss that is worse at every configuration).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from halbench.suite import Suite, TrialSpec
from halbench.trial.spec import base_row, phase_epochs, resolve

# The tuned suite the protocol tests run with this stub (two losses, two batch sizes).
STUB_SUITE = {
    "name": "tstub",
    "dataset": {"name": "synthetic"},
    "losses": [{"name": "a"}, {"name": "b"}],
    "grid": {"batch_size": [8, 16], "embedding_dim": [4], "seed": [0]},
    "train": {"epochs": 2, "lr": 1e-3},
    "tune": {
        "budget": 5,
        "epochs": 3,
        "scheduler": "fifo",
        "space": {"lr": {"loguniform": [1e-5, 1e-1]}, "weight_decay": {"uniform": [0, 0.1]}},
    },
    "final": {"seeds": [0, 1], "epochs": 2},
}


@dataclass
class StubResult:
    row: dict[str, Any]
    epochs: list[dict[str, Any]]


def score(config: dict[str, Any]) -> float:
    """The stub's validation (and test) score of a configuration."""
    lr = float(config.get("lr", 1e-3))
    return math.exp(-abs(math.log10(lr) + 3.0))


def run_trial(
    suite: Suite, spec: TrialSpec, *, report: Callable[[dict[str, Any]], bool | None] | None = None
) -> StubResult:
    run_suite, run_spec = resolve(suite, spec)
    total = phase_epochs(suite, spec)
    value = score({"lr": run_suite.train.lr}) * float(run_spec.loss.params.get("gain", 1.0))
    status = run_spec.loss.params.get("status", "ok")
    epochs = []
    for epoch in range(1, total + 1):
        if status != "ok" and epoch == 2:
            break  # a failure after one epoch: its first score was reported
        row = {
            "trial_id": spec.trial_id,
            "epoch": epoch,
            "train_loss": 1.0 / epoch,
            **{f"knn_acc_{k}": value * epoch / total for k in suite.eval.ks},
        }
        epochs.append(row)
        if report is not None and report(row):
            break  # as the trainer does: its group's epoch budget is met (run/budget.py)
    row = {
        **base_row(suite, run_spec),
        "epochs_done": len(epochs),
        "status": status,
        "error": None if status == "ok" else f"StubError: {status}",
        **{f"knn_acc_{k}": epochs[-1][f"knn_acc_{k}"] for k in suite.eval.ks},
    }
    return StubResult(row, epochs)
