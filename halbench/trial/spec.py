"""What a trial is: its configuration after the protocol's overrides, and its identity row.

A grid trial runs the suite as written. A tuning trial (phase "tune") runs a sampled
configuration and a final trial (phase "final") the chosen one: `resolve` applies their
`overrides` (train keys, batch size, embedding dim, `loss.<param>`) and the phase's epochs.
`base_row` is where every trials.parquet row starts, a failed trial's too.
"""

from __future__ import annotations

import json
import socket
from typing import Any

from halbench import results
from halbench.suite import Suite, TrainConfig, TrialSpec
from halbench.suite.tune import TRAIN_KEYS, config_columns, split_config


def phase_epochs(suite: Suite, spec: TrialSpec) -> int:
    """Epochs of the trial: train.epochs, tune.epochs or final.epochs by its phase."""
    if spec.phase == "tune" and suite.tune is not None:
        return suite.tune.epochs
    if spec.phase == "final" and suite.final is not None:
        return suite.final.epochs
    return suite.train.epochs


def resolve_spec(spec: TrialSpec) -> TrialSpec:
    """The spec with the overrides' batch size, embedding dim and loss params applied.

    Applied once per trial, where the trial starts (run_trial, or the runner's row for a trial
    that died outside it); everything after reads the resolved spec.
    """
    if not spec.overrides:
        return spec
    shared, loss_params = split_config(spec.overrides)
    loss = spec.loss.model_copy(update={"params": {**spec.loss.params, **loss_params}})
    return spec.model_copy(
        update={
            "loss": loss,
            "batch_size": shared.get("batch_size", spec.batch_size),
            "embedding_dim": shared.get("embedding_dim", spec.embedding_dim),
        }
    )


def resolve_suite(suite: Suite, spec: TrialSpec) -> Suite:
    """The suite a tuning or final trial runs with (a grid trial's is unchanged).

    The train keys of `overrides` and the phase's epochs replace the suite's (validated like
    the suite's own: a bad combination is the trial's error row); a tuning trial runs
    without probes, since only its validation score matters.
    """
    if spec.phase == "grid":
        return suite
    update = {k: v for k, v in spec.overrides.items() if k in TRAIN_KEYS}
    train = TrainConfig.model_validate(
        {**suite.train.model_dump(), **update, "epochs": phase_epochs(suite, spec)}
    )
    changes: dict[str, Any] = {"train": train}
    if spec.phase == "tune":
        changes["probes"] = suite.probes.model_copy(update={"enabled": False})
    return suite.model_copy(update=changes)


def resolve(suite: Suite, spec: TrialSpec) -> tuple[Suite, TrialSpec]:
    """Both at once, for callers that start from the planned spec (tests, stubs)."""
    resolved = resolve_spec(spec)
    return resolve_suite(suite, resolved), resolved


def base_row(suite: Suite, spec: TrialSpec) -> dict[str, Any]:
    """The trial's identity columns (of a resolved spec); every other column null until known.

    Every row starts here, also a failed trial's and one the runner writes for a trial that
    died outside run_trial, so all rows have the same columns. A tuning or final trial's row
    carries its configuration (`config`, cfg_<key>) and, for a final one, where it came from.
    """
    row = _identity_row(suite, spec)
    row["phase"] = spec.phase
    row["epochs"] = phase_epochs(suite, spec)
    if spec.phase != "grid":
        row["config"] = json.dumps(spec.overrides, sort_keys=True)
        row.update(config_columns(spec.overrides))
        row["tuned_from"] = spec.tuned_from
        row["val_score"] = spec.val_score
    return row


def _identity_row(suite: Suite, spec: TrialSpec) -> dict[str, Any]:
    return {
        **dict.fromkeys(results.TRIAL_SCHEMA),
        "trial_id": spec.trial_id,
        "suite": suite.name,
        "suite_hash": suite.hash(),
        "dataset": spec.dataset.name,
        "model": suite.model.backbone,
        "loss": spec.loss.display,
        "loss_name": spec.loss.name,
        "loss_params": json.dumps(spec.loss.params, sort_keys=True),
        "batch_size": spec.batch_size,
        "embedding_dim": spec.embedding_dim,
        "seed": spec.seed,
        "epochs": suite.train.epochs,
        "epochs_done": 0,
        "status": "error",
        "error": None,
        "node": socket.gethostname(),
    }
