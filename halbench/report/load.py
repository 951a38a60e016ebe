"""Read run directories and group them by suite hash.

Runs of one suite (one hash) are merged into one group; runs of different suites stay in
separate groups and are never averaged together.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from halbench.errors import UserError
from halbench.results import (
    EPOCH_SCHEMA,
    PROFILE_SCHEMA,
    TRIAL_SCHEMA,
    TUNING_SCHEMA,
    frame,
    read_suite_record,
    read_table,
)

# Columns without which a file cannot be grouped or keyed; any other schema column may be
# absent (older files) and reads as nulls.
TRIAL_REQUIRED = ("trial_id", "dataset", "loss", "batch_size", "embedding_dim", "seed", "status")
EPOCH_REQUIRED = ("trial_id", "epoch")
PROFILE_REQUIRED = ("loss", "batch_size", "embedding_dim", "status")
TUNING_REQUIRED = ("trial_id", "group", "loss", "trial_index", "status")


@dataclass
class RunGroup:
    """Everything the report knows about one suite: merged trials, epochs and profile rows."""

    suite_hash: str | None
    suite: dict[str, Any]
    envs: list[dict[str, Any]]
    dirs: list[Path]
    trials: pl.DataFrame  # TRIAL_SCHEMA + "run" (index into dirs)
    epochs: pl.DataFrame  # EPOCH_SCHEMA joined with the trial keys (dataset, loss, B, d, seed)
    profile: pl.DataFrame  # PROFILE_SCHEMA + "run"
    tuning: pl.DataFrame = field(default_factory=lambda: _empty(TUNING_SCHEMA))  # + "run"
    notes: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        names = {str(e["suite"]) for e in self.envs if e.get("suite")}
        if self.suite.get("name"):
            return str(self.suite["name"])
        if names:
            return ", ".join(sorted(names))
        if self.trials.height:
            return ", ".join(sorted(set(self.trials["suite"].drop_nulls().to_list()))) or "?"
        return "profile"


def _empty(schema: dict[str, pl.DataType]) -> pl.DataFrame:
    return frame([], schema)


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:  # ValueError: also bytes that are not UTF-8
        raise UserError(f"{path}: not valid JSON ({exc.__class__.__name__})") from exc
    return data if isinstance(data, dict) else {}


@dataclass
class LoadedRun:
    path: Path
    env: dict[str, Any]
    suite: dict[str, Any]
    trials: pl.DataFrame
    epochs: pl.DataFrame
    profile: pl.DataFrame
    tuning: pl.DataFrame


def read_run(path: Path) -> LoadedRun:
    """Read one run directory; UserError naming the path when it is not one."""
    path = Path(path)
    if not path.is_dir():
        raise UserError(f"{path}: run directory not found")
    has_trials = (path / "trials.parquet").is_file()
    has_profile = (path / "profile.parquet").is_file()
    if not has_trials and not has_profile:
        raise UserError(f"{path}: no trials.parquet or profile.parquet in this directory")
    trials = (
        read_table(path / "trials.parquet", TRIAL_SCHEMA, TRIAL_REQUIRED)
        if has_trials
        else _empty(TRIAL_SCHEMA)
    )
    epochs_path = path / "epochs.parquet"
    epochs = (
        read_table(epochs_path, EPOCH_SCHEMA, EPOCH_REQUIRED)
        if epochs_path.is_file()
        else _empty(EPOCH_SCHEMA)
    )
    profile = (
        read_table(path / "profile.parquet", PROFILE_SCHEMA, PROFILE_REQUIRED)
        if has_profile
        else _empty(PROFILE_SCHEMA)
    )
    tuning_path = path / "tuning.parquet"  # a tuned suite's phase 1 (one row per trial)
    tuning = (
        read_table(tuning_path, TUNING_SCHEMA, TUNING_REQUIRED)
        if tuning_path.is_file()
        else _empty(TUNING_SCHEMA)
    )
    # suite.json (the normalized suite) when the runner wrote one, else suite.yaml as given.
    return LoadedRun(
        path,
        _read_json(path / "env.json"),
        read_suite_record(path),
        trials,
        epochs,
        profile,
        tuning,
    )


def _split_by_hash(run: LoadedRun) -> list[tuple[str | None, LoadedRun]]:
    """The run's parts per suite hash: the trials' suite_hash column, else env.json's.

    A directory normally holds one suite; a mixed one is split so that its suites are never
    averaged together. The profile rows go with env.json's hash (else the first part).
    """
    env_hash = str(run.env["suite_hash"]) if run.env.get("suite_hash") else None
    if run.trials.height == 0:
        return [(env_hash, run)]
    hashes = run.trials["suite_hash"].fill_null(env_hash) if env_hash else run.trials["suite_hash"]
    values = list(dict.fromkeys(hashes.to_list()))
    if len(values) == 1:
        return [(values[0], run)]
    home = env_hash if env_hash in values else values[0]
    parts = []
    for value in values:
        mask = hashes.is_null() if value is None else hashes == value
        trials = run.trials.filter(mask)
        epochs = run.epochs.filter(pl.col("trial_id").is_in(trials["trial_id"].to_list()))
        profile = run.profile if value == home else run.profile.clear()
        tuning = run.tuning if value == home else run.tuning.clear()
        parts.append(
            (value, LoadedRun(run.path, run.env, run.suite, trials, epochs, profile, tuning))
        )
    return parts


_TRIAL_KEYS = ["dataset", "loss", "loss_name", "batch_size", "embedding_dim", "seed", "status"]


def _dedupe_trials(trials: pl.DataFrame) -> pl.DataFrame:
    """One row per (dataset, trial_id): a trial run twice keeps its ok row, else the last one."""
    if trials.height == 0:
        return trials
    ranked = trials.with_row_index("_order").with_columns(
        (pl.col("status") == "ok").cast(pl.Int8).alias("_ok")
    )
    keep = ranked.sort(["_ok", "_order"]).unique(
        subset=["dataset", "trial_id"], keep="last", maintain_order=False
    )
    return keep.sort("_order").drop(["_order", "_ok"])


def load_groups(run_dirs: list[Path]) -> list[RunGroup]:
    """Read run directories and merge those of one suite hash, in the order first given.

    A directory without a known suite hash (e.g. a profile run without suite) is its own group.
    """
    if not run_dirs:
        raise UserError("no run directory given")
    runs = [read_run(Path(p)) for p in run_dirs]
    order: list[str] = []
    by_key: dict[str, list[LoadedRun]] = {}
    for run in runs:
        for h, part in _split_by_hash(run):
            key = h if h is not None else f"dir:{run.path}"
            if key not in by_key:
                order.append(key)
                by_key[key] = []
            by_key[key].append(part)
    return [_merge(by_key[key], None if key.startswith("dir:") else key) for key in order]


def _merge(runs: list[LoadedRun], suite_hash: str | None) -> RunGroup:
    trials, epochs, profile, tuning = [], [], [], []
    for i, run in enumerate(runs):
        t = run.trials.with_columns(pl.lit(i).alias("run"))
        # trial_id does not name the dataset, so epochs are joined within their own run.
        keys = t.select(["trial_id", *_TRIAL_KEYS]).unique(subset=["trial_id"], keep="last")
        e = run.epochs.join(keys, on="trial_id", how="inner").with_columns(pl.lit(i).alias("run"))
        trials.append(t)
        epochs.append(e)
        profile.append(run.profile.with_columns(pl.lit(i).alias("run")))
        tuning.append(run.tuning.with_columns(pl.lit(i).alias("run")))
    merged_trials = _dedupe_trials(pl.concat(trials, how="diagonal_relaxed"))
    merged_epochs = pl.concat(epochs, how="diagonal_relaxed")
    # Keep only the epochs of the trial rows that survived deduplication.
    merged_epochs = merged_epochs.join(
        merged_trials.select(["dataset", "trial_id", "run"]),
        on=["dataset", "trial_id", "run"],
        how="semi",
    )
    return RunGroup(
        suite_hash=suite_hash,
        suite=next((r.suite for r in runs if r.suite), {}),
        envs=[r.env for r in runs],
        dirs=[r.path for r in runs],
        trials=merged_trials,
        epochs=merged_epochs,
        profile=pl.concat(profile, how="diagonal_relaxed"),
        tuning=pl.concat(tuning, how="diagonal_relaxed"),
    )
