"""The run directory: the suite (as given and normalized), env.json, trial files, parquet.

    <run>/suite.yaml   the suite file as given          <run>/suite.json  the normalized suite
    <run>/env.json     environment, suite hash, one record per invocation
    <run>/trials/<trial_id>.json  one finished trial (atomic; the unit of resume)
    <run>/trials.parquet, <run>/epochs.parquet  rebuilt from all trial files, in grid order

`halbench run` and `halbench profile` write the suite files and env.json through the same
functions here.
"""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import yaml
from pydantic import ValidationError

from halbench import results
from halbench.errors import UserError
from halbench.failures import first_line
from halbench.suite import Suite, suite_diff


class AnySuite(Protocol):
    """What the run directory needs of a run or profile suite."""

    name: str

    def hash(self) -> str: ...

    def model_dump(self, *, mode: str) -> dict[str, Any]: ...


def now() -> str:
    return datetime.now(UTC).isoformat()


def default_output(suite: Suite, base: Path = Path("reports")) -> Path:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return base / suite.name / stamp


def prepare_run_dir(suite: Suite, suite_path: Path, out_dir: Path, *, resume: bool) -> None:
    """Create (or, with resume, check) a run's directory and its suite files."""
    stored = out_dir / "suite.yaml"
    if resume:
        if not stored.exists():
            raise UserError(
                f"{out_dir}: no suite.yaml here, nothing to resume (run without --resume)"
            )
        old = _stored_suite(stored)
        if old.hash() != suite.hash():
            changed = suite_diff(old.science(), suite.science())
            more = " ..." if len(changed) > 6 else ""
            raise UserError(
                f"{suite_path}: differs from the suite of the run in {out_dir} "
                f"(changed: {', '.join(changed[:6])}{more}); "
                "resume with the same suite, or start a new output directory"
            )
    elif (out_dir / "trials").exists() and any((out_dir / "trials").glob("*.json")):
        raise UserError(
            f"{out_dir}: already holds results; pass --resume to finish it, "
            "or choose another --output"
        )
    (out_dir / "trials").mkdir(parents=True, exist_ok=True)
    if not resume or not (out_dir / "suite.json").exists():
        store_suite(out_dir, suite, None if resume else suite_path)


def store_suite(out_dir: Path, suite: AnySuite, suite_path: Path | None) -> None:
    """suite.yaml (a copy of the file, when there is one) and suite.json (the normalized suite).

    suite.json holds every default filled in, so that readers need not re-parse the YAML.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    if suite_path is not None:
        shutil.copyfile(suite_path, out_dir / "suite.yaml")
    blob = json.dumps(suite.model_dump(mode="json"), sort_keys=True, indent=2) + "\n"
    results.write_bytes_atomic(out_dir / "suite.json", lambda f: f.write(blob.encode()))


def _stored_suite(path: Path) -> Suite:
    """The suite a run directory was started with (its names were checked back then)."""
    try:
        return Suite.model_validate(yaml.safe_load(path.read_text()))
    except (OSError, yaml.YAMLError, ValidationError) as err:
        raise UserError(
            f"{path}: unreadable suite ({first_line(err)}); cannot resume this run"
        ) from None


def write_env(
    out_dir: Path, suite: AnySuite, invocation: dict[str, Any], **extra: Any
) -> dict[str, Any]:
    """env.json: the environment, the suite hash, and one record per invocation of the run.

    `started_at` is the first invocation's start and `finished_at` the last one's end, so a
    resumed run still reads as one run; `invocations` keeps every start, end and address. An
    invocation dict with `finished_at` completes the open record. `extra` keys (e.g. a
    profile's device) are stored at the top level. Returns what was written.
    """
    path = out_dir / "env.json"
    try:
        previous = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        previous = {}
    invocations = list(previous.get("invocations", []))
    if invocations and "finished_at" not in invocations[-1] and "finished_at" in invocation:
        invocations[-1] = {**invocations[-1], **invocation}  # the end of this invocation
    else:
        invocations.append(invocation)
    env = results.environment()
    env.update(
        suite=suite.name,
        suite_hash=suite.hash(),
        started_at=invocations[0].get("started_at"),
        finished_at=invocations[-1].get("finished_at"),
        invocations=invocations,
        **extra,
    )
    results.write_json_atomic(path, env)
    return env


def finished_trials(out_dir: Path) -> dict[str, dict[str, Any]]:
    """trial_id -> {"row": ..., "epochs": [...]} for every trial with a result file."""
    out: dict[str, dict[str, Any]] = {}
    for path in sorted((out_dir / "trials").glob("*.json")):
        try:
            blob = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            continue  # an atomic write never leaves this; a hand-edited file is rerun
        out[blob["row"]["trial_id"]] = blob
    return out


def save_trial(out_dir: Path, row: dict[str, Any], epochs: list[dict[str, Any]]) -> None:
    path = out_dir / "trials" / f"{row['trial_id']}.json"
    results.write_json_atomic(path, {"row": row, "epochs": epochs})


def has_trial(out_dir: Path, trial_id: str) -> bool:
    return (out_dir / "trials" / f"{trial_id}.json").exists()


def collect(out_dir: Path, suite: Suite, done: dict[str, dict[str, Any]]) -> dict[str, int]:
    """Finished trials -> trials.parquet + epochs.parquet, in grid order. Returns status counts.

    `done` is finished_trials(out_dir): every trial file, also those of earlier invocations.
    """
    order = {spec.trial_id: i for i, spec in enumerate(suite.trials())}
    ids = sorted(done, key=lambda t: (order.get(t, len(order)), t))
    rows = [done[t]["row"] for t in ids]
    epochs = [e for t in ids for e in done[t]["epochs"]]
    trials_df = results.frame(rows, results.TRIAL_SCHEMA)
    results.write_parquet_atomic(trials_df, out_dir / "trials.parquet")
    epochs_df = results.frame(epochs, results.EPOCH_SCHEMA)
    results.write_parquet_atomic(epochs_df, out_dir / "epochs.parquet")
    return status_counts(rows)


def status_counts(rows: list[dict[str, Any]]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for row in rows:
        counts[row["status"]] = counts.get(row["status"], 0) + 1
    return counts
