"""The store of finished-task files: one atomic JSON file per finished task, the unit of resume.

    <run>/trials/<task file>.json   a grid or final trial   {"row": {...}, "epochs": [...]}
    <run>/tuning/<task file>.json   a tuning trial          {"row": {...}}
    <run>/profile/<task file>.json  a profile point         {"row": {...}}
    <run>/embeddings/<stem>.parquet a final trial's test embeddings (eval.save_embeddings),
                                    written before its trial file
    <run>/<kind>/rejected/          files resume could not trust, moved aside

One trust rule for every kind (`problem`): a file is trusted only when it is a record of the
task its name says, its suite hash is present and equal to this suite's, its suite name and
planned epochs match, its task id is one the plan expects, and its row fits the table's
schema. Anything else is moved to <kind>/rejected/ with one line naming why, and the task
reruns: a file is never silently skipped.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import polars as pl

from halbench import results
from halbench.errors import UserError
from halbench.failures import first_line
from halbench.results import embeddings
from halbench.run import rundir
from halbench.run.rundir import inside, make_dir, task_file_name, task_path

TRIALS, TUNING, PROFILE = "trials", "tuning", "profile"  # the kinds, and their directories
REJECTED = "rejected"  # <kind>/rejected/: files resume moved aside
SCHEMAS = {
    TRIALS: results.TRIAL_SCHEMA,
    TUNING: results.TUNING_SCHEMA,
    PROFILE: results.PROFILE_SCHEMA,
}

# task id -> the epochs the plan gives it (None: a kind without epochs, e.g. profile points)
Expected = Mapping[str, int | None]


class AnySuite(Protocol):
    """What the store needs of a run or profile suite."""

    name: str

    def hash(self) -> str: ...


def save(
    out_dir: Path, row: dict[str, Any], epochs: list[dict[str, Any]] | None = None,
    kind: str = TRIALS,
) -> None:  # fmt: skip
    """Write one finished task's file atomically (`row` carries trial_id, suite, suite_hash)."""
    record: dict[str, Any] = {"row": row}
    if kind == TRIALS:
        record["epochs"] = epochs or []
    path = task_path(out_dir, row["trial_id"], kind)
    make_dir(path.parent)
    results.write_json_atomic(path, record)
    if kind == TRIALS:
        rundir.fault_point("trial-saved")


def save_embeddings(out_dir: Path, task_id: str, parquet: bytes) -> None:
    """Write a final trial's saved test embeddings (results/embeddings.py) atomically."""
    name = embeddings.file_name(task_file_name(task_id))
    results.write_bytes_atomic(inside(out_dir, embeddings.EMBEDDINGS_DIR, name),
                               lambda f: f.write(parquet))  # fmt: skip


def has(out_dir: Path, task_id: str, kind: str = TRIALS) -> bool:
    return task_path(out_dir, task_id, kind).exists()


def problem(
    path: Path, blob: Any, suite: AnySuite, expected: Expected, kind: str = TRIALS
) -> str | None:
    """Why a task file cannot be trusted as a result of this suite's plan (None: it can)."""
    if not isinstance(blob, dict):
        return f"a JSON {type(blob).__name__}, not a task record"
    row = blob.get("row")
    if not isinstance(row, dict):
        return "no 'row' record"
    trial_id = row.get("trial_id")
    if not isinstance(trial_id, str) or not trial_id:
        return "no trial_id in its row"
    epochs = blob.get("epochs", [])
    if kind == TRIALS and not isinstance(blob.get("epochs"), list):
        return "no 'epochs' list"
    if not isinstance(epochs, list) or not all(isinstance(e, dict) for e in epochs):
        return "its 'epochs' is not a list of records"
    if task_file_name(trial_id) != path.name:
        return f"holds task {trial_id[:100]!r}, which is not this file's task"
    if "suite_hash" not in row:
        return "no suite_hash in its row (a file of unknown origin)"
    if row["suite_hash"] != suite.hash():
        return f"written by another suite (hash {str(row['suite_hash'])[:20]})"
    if row.get("suite") != suite.name:
        return f"written by suite {str(row.get('suite'))[:60]!r}, not {suite.name!r}"
    if trial_id not in expected:
        return f"task {trial_id[:100]!r} is not one this run plans"
    planned = expected[trial_id]
    if planned is not None and row.get("epochs") != planned:
        return f"planned for {row.get('epochs')} epochs, this run plans {planned}"
    if not isinstance(row.get("status"), str) or not row["status"]:
        return "no status in its row"
    if any(e.get("trial_id", trial_id) != trial_id for e in epochs):
        return "its epochs belong to another task"
    for key, dtype in SCHEMAS[kind].items():
        if not _fits(row.get(key), dtype):
            return f"column {key}: expected {dtype}, got {type(row.get(key)).__name__}"
    return None


def _fits(value: Any, dtype: Any) -> bool:
    """Whether a JSON value can stand in a column of this polars type without guessing."""
    if value is None:
        return True
    if dtype.is_integer():
        return isinstance(value, int) and not isinstance(value, bool)
    if dtype.is_float():
        return isinstance(value, int | float) and not isinstance(value, bool)
    if dtype == pl.Utf8:
        return isinstance(value, str)
    return True


def finished(
    out_dir: Path,
    suite: AnySuite,
    expected: Expected,
    kind: str = TRIALS,
    say: Callable[[str], None] | None = None,
) -> dict[str, dict[str, Any]]:
    """task id -> its record ({"row": ..., "epochs": [...]}) for every trusted file of `kind`.

    Every other file (not JSON, not a task record, another suite's or of unknown origin,
    another plan's task or epochs) is moved into <kind>/rejected/ with one line through `say`,
    so that the task reruns instead of being read as a result.
    """
    out: dict[str, dict[str, Any]] = {}
    for path in sorted((Path(out_dir) / kind).glob("*.json")):
        blob: Any = None
        if not path.is_file():
            why: str | None = "not a regular file"
        else:
            try:
                blob = json.loads(path.read_bytes())
                if kind == TUNING and isinstance(blob, dict) and "row" not in blob:
                    blob = {"row": blob}  # a tuning file written before the store: a bare row
                why = problem(path, blob, suite, expected, kind)
            except OSError as err:
                raise UserError(f"{path}: cannot read ({err.strerror or err})") from None
            except (ValueError, RecursionError) as err:  # bad JSON or bad UTF-8
                why = f"not JSON ({first_line(err)[:120]})"
        if why is None:
            blob.setdefault("epochs", [])
            out[blob["row"]["trial_id"]] = blob
        else:
            reject(out_dir, path, why, kind, say or _stderr)
    return out


def reject(out_dir: Path, path: Path, why: str, kind: str, say: Callable[[str], None]) -> None:
    """Move `path` into <kind>/rejected/ and say why (the task reruns)."""
    target_dir = inside(out_dir, kind, REJECTED)
    make_dir(target_dir)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    target = inside(out_dir, kind, REJECTED, f"{path.name}.{stamp}")
    try:
        os.replace(path, target)
    except OSError as err:
        raise results.write_error(target, err) from None
    say(f"{path}: {why}; moved to {kind}/{REJECTED}/{target.name}, the task reruns")


def _stderr(message: str) -> None:
    import sys

    print(f"[halbench] {message}", file=sys.stderr, flush=True)
