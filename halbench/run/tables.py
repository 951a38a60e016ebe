"""The run's tables, each rebuilt from the store's trusted files in plan order.

    trials.parquet + epochs.parquet  grid and final trials (store kind `trials`)
    tuning.parquet                   tuning trials, the chosen one per group marked
    profile.parquet                  profile points (loss x B x d x C)

Each table is always rebuilt from every trusted file, also those of earlier invocations, so
that a resumed run's tables equal those of an uninterrupted one.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from halbench import results
from halbench.probes import placement
from halbench.run import rundir
from halbench.run.rundir import inside
from halbench.suite import Suite, TrialSpec
from halbench.trial.spec import base_row, resolve_spec

# Keys a profile point's file carries for the trust rule, which profile.parquet does not hold.
PROFILE_IDENTITY = ("trial_id", "suite", "suite_hash")


def _ordered(done: Mapping[str, Any], order: list[str]) -> list[str]:
    rank = {task_id: i for i, task_id in enumerate(order)}
    return sorted(done, key=lambda t: (rank.get(t, len(rank)), t))


def write_trials(
    out_dir: Path, done: Mapping[str, dict[str, Any]], order: list[str]
) -> dict[str, int]:
    """Finished trials -> trials.parquet + epochs.parquet, in plan order. Returns status counts."""
    ids = _ordered(done, order)
    rows = [done[t]["row"] for t in ids]
    placement.add_neighbours(rows)  # max_neighbours, from the rows' node, GPU ids and times
    epochs = [e for t in ids for e in done[t]["epochs"]]
    trials_df = results.frame(rows, results.TRIAL_SCHEMA)
    results.write_parquet_atomic(trials_df, inside(out_dir, "trials.parquet"))
    rundir.fault_point("trials-parquet")
    epochs_df = results.frame(epochs, results.EPOCH_SCHEMA)
    results.write_parquet_atomic(epochs_df, inside(out_dir, "epochs.parquet"))
    return status_counts(rows)


def write_tuning(
    out_dir: Path,
    done: Mapping[str, dict[str, Any]],
    group_order: list[str],
    chosen: Callable[[list[dict[str, Any]]], set[str]],
) -> list[dict[str, Any]]:
    """Finished tuning trials -> tuning.parquet, in group and trial order.

    `chosen(rows)`: the trial ids whose configuration is retrained (marked `chosen`).
    """
    rows = [dict(record["row"]) for record in done.values()]
    rank = {key: i for i, key in enumerate(group_order)}
    rows.sort(key=lambda r: (rank.get(r["group"], len(rank)), r["trial_index"]))
    picks = chosen(rows)
    for row in rows:
        row["chosen"] = row["trial_id"] in picks
    frame = results.frame(rows, results.TUNING_SCHEMA)
    results.write_parquet_atomic(frame, inside(out_dir, "tuning.parquet"))
    return rows


def write_profile(out_dir: Path, done: Mapping[str, dict[str, Any]], order: list[str]) -> Path:
    """Finished profile points -> profile.parquet, in sweep order; returns its path."""
    rows = [
        {k: v for k, v in done[t]["row"].items() if k not in PROFILE_IDENTITY}
        for t in _ordered(done, order)
    ]
    path = inside(out_dir, "profile.parquet")
    results.write_parquet_atomic(results.frame(rows, results.PROFILE_SCHEMA), path)
    return path


def failed_row(suite: Suite, spec: TrialSpec, status: str, error: str) -> dict[str, Any]:
    """A trials.parquet row for a trial that died outside run_trial (a lost worker, a crashed
    actor) or could not start (no tuning trial of its group finished)."""
    row = base_row(suite, resolve_spec(spec))
    return {**row, "status": status, "error": error, "node": None}


def status_counts(rows: list[dict[str, Any]]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for row in rows:
        counts[row["status"]] = counts.get(row["status"], 0) + 1
    return counts
