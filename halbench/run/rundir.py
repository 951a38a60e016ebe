"""The run directory: the suite (as given and normalized), env.json, trial files, parquet.

    <run>/suite.yaml   the suite file as given          <run>/suite.json  the normalized suite
    <run>/env.json     environment, suite hash, one record per invocation
    <run>/trials/<trial file>.json  one finished trial (atomic; the unit of resume)
    <run>/trials/rejected/          trial files resume could not trust, moved aside
    <run>/trials.parquet, <run>/epochs.parquet  rebuilt from all trial files, in grid order

`halbench run` and `halbench profile` write the suite files and env.json through the same
functions here. Every path written under a run directory goes through `inside`, so that no
name taken from a suite can place a file elsewhere.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
from collections.abc import Callable, Collection
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import polars as pl
import yaml
from pydantic import ValidationError

from halbench import results
from halbench.errors import UserError
from halbench.failures import first_line
from halbench.probes import placement
from halbench.suite import Suite, suite_diff

REJECTED = "rejected"  # trials/rejected/: files resume moved aside
# A trial id that is already a portable file name is its own file name (old run directories
# keep resuming); anything else becomes a sanitized prefix plus a hash of the id.
_SAFE_NAME = re.compile(r"(?!.*\.\.)[A-Za-z0-9_:=,+-][A-Za-z0-9._:=,+-]{0,149}")
_FAULT_HITS: dict[str, int] = {}


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


def fault_point(name: str) -> None:
    """Test hook: HALBENCH_FAULT=<name>[:<n>] kills this process (SIGKILL) at the n-th pass.

    The fault tests (tests/run/test_faults.py) crash a run at named moments this way; without
    the variable this is a dictionary lookup.
    """
    wanted = os.environ.get("HALBENCH_FAULT")
    if not wanted:
        return
    point, _, count = wanted.partition(":")
    if point != name:
        return
    _FAULT_HITS[name] = _FAULT_HITS.get(name, 0) + 1
    if _FAULT_HITS[name] == (int(count) if count.isdigit() else 1):
        os.kill(os.getpid(), signal.SIGKILL)


def inside(out_dir: Path, *parts: str) -> Path:
    """out_dir/parts, resolved; UserError when it would lie outside the run directory."""
    root = Path(out_dir).resolve()
    path = root.joinpath(*parts).resolve()
    if path == root or not path.is_relative_to(root):
        shown = "/".join(parts)[:200]
        raise UserError(
            f"{out_dir}: refusing to write {shown!r}: it lies outside the run directory"
        )
    return path


def trial_file_name(trial_id: str) -> str:
    """The file name of a trial: the id itself when portable, else a safe prefix + hash.

    The id is always kept inside the file (row.trial_id), which is what resume reads.
    """
    if _SAFE_NAME.fullmatch(trial_id):
        return f"{trial_id}.json"
    digest = hashlib.sha256(trial_id.encode("utf-8", "surrogatepass")).hexdigest()[:16]
    prefix = re.sub(r"[^A-Za-z0-9_-]+", "_", trial_id)[:80].strip("_") or "trial"
    return f"{prefix}-{digest}.json"


def trial_path(out_dir: Path, trial_id: str) -> Path:
    return inside(out_dir, "trials", trial_file_name(trial_id))


def check_run_dir(suite: Suite, suite_path: Path, out_dir: Path, *, resume: bool) -> None:
    """What prepare_run_dir refuses, without writing anything (run before creating the dir)."""
    stored = out_dir / "suite.yaml"
    if resume:
        if not stored.is_file():
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
    elif out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"{out_dir}: --output exists and is not a directory")
    elif (out_dir / "trials").is_dir() and any((out_dir / "trials").glob("*.json")):
        raise UserError(
            f"{out_dir}: already holds results; pass --resume to finish it, "
            "or choose another --output"
        )


def prepare_run_dir(suite: Suite, suite_path: Path, out_dir: Path, *, resume: bool) -> None:
    """Create (or, with resume, check) a run's directory and its suite files."""
    check_run_dir(suite, suite_path, out_dir, resume=resume)
    make_dir(inside(out_dir, "trials"))
    if not resume or not (out_dir / "suite.json").exists():
        store_suite(out_dir, suite, None if resume else suite_path)


def make_dir(path: Path) -> None:
    """mkdir -p; a read-only or full filesystem is one line naming the path."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise UserError(f"{path}: exists and is not a directory (or lies under a file)") from None
    except OSError as err:
        raise results.write_error(path, err) from None


def store_suite(out_dir: Path, suite: AnySuite, suite_path: Path | None) -> None:
    """suite.yaml (a copy of the file, when there is one) and suite.json (the normalized suite).

    suite.json holds every default filled in, so that readers need not re-parse the YAML. Both
    are written atomically: a full disk leaves no empty suite.yaml behind.
    """
    make_dir(Path(out_dir))
    if suite_path is not None:
        try:
            # The suite loader read this file already, within its size limit.
            given = Path(suite_path).read_bytes()
        except OSError as err:
            raise UserError(f"{suite_path}: cannot read ({err.strerror or err})") from None
        results.write_bytes_atomic(inside(out_dir, "suite.yaml"), lambda f: f.write(given))
    blob = json.dumps(suite.model_dump(mode="json"), sort_keys=True, indent=2) + "\n"
    results.write_bytes_atomic(inside(out_dir, "suite.json"), lambda f: f.write(blob.encode()))


def _stored_suite(path: Path) -> Suite:
    """The suite a run directory was started with (its names were checked back then)."""
    try:
        return Suite.model_validate(yaml.safe_load(path.read_text()))
    except (OSError, ValueError, yaml.YAMLError, ValidationError) as err:
        raise UserError(
            f"{path}: unreadable suite ({first_line(err)}); cannot resume this run"
        ) from None


def _previous_env(path: Path, say: Callable[[str], None]) -> dict[str, Any]:
    """The env.json of earlier invocations; a damaged one is kept beside it, with a message."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return {}
    except OSError as err:
        raise UserError(f"{path}: cannot read ({err.strerror or err})") from None
    kept: dict[str, Any] = {}
    try:
        previous = json.loads(raw)
        invocations = previous.get("invocations", []) if isinstance(previous, dict) else None
        if isinstance(invocations, list) and all(isinstance(i, dict) for i in invocations):
            return previous
        reason = f"a JSON {type(previous).__name__} without a list of invocations"
        if isinstance(previous, dict) and isinstance(previous.get("started_at"), str):
            kept = {"invocations": [{"started_at": previous["started_at"]}]}  # the first start
    except (ValueError, RecursionError) as err:  # ValueError: bad JSON and bad UTF-8
        reason = first_line(err)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    bad = inside(path.parent, f"env.json.bad-{stamp}")
    try:
        os.replace(path, bad)
    except OSError as err:
        raise results.write_error(bad, err) from None
    say(f"{path}: damaged ({reason[:200]}); kept as {bad.name}, a new env.json is written")
    return kept


def write_env(
    out_dir: Path,
    suite: AnySuite,
    invocation: dict[str, Any],
    say: Callable[[str], None] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """env.json: the environment, the suite hash, and one record per invocation of the run.

    `started_at` is the first invocation's start and `finished_at` the last one's end, so a
    resumed run still reads as one run; `invocations` keeps every start, end and address. An
    invocation dict with `finished_at` completes the open record. `extra` keys (e.g. a
    profile's device) are stored at the top level. A damaged env.json is moved aside
    (env.json.bad-<time>) and reported through `say`. Returns what was written.
    """
    path = inside(out_dir, "env.json")
    previous = _previous_env(path, say or _stderr)
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


def _stderr(message: str) -> None:
    import sys

    print(f"[halbench] {message}", file=sys.stderr, flush=True)


def _trial_problem(
    path: Path, blob: Any, suite_hash: str | None, expected: Collection[str] | None
) -> str | None:
    """Why a trial file cannot be trusted as a result of this suite (None: it can)."""
    if not isinstance(blob, dict):
        return f"a JSON {type(blob).__name__}, not a trial record"
    row, epochs = blob.get("row"), blob.get("epochs")
    if not isinstance(row, dict):
        return "no 'row' record"
    trial_id = row.get("trial_id")
    if not isinstance(trial_id, str) or not trial_id:
        return "no trial_id in its row"
    if not isinstance(epochs, list) or not all(isinstance(e, dict) for e in epochs):
        return "no 'epochs' list"
    if trial_file_name(trial_id) != path.name:
        return f"holds trial {trial_id[:100]!r}, which is not this file's trial"
    if expected is not None and trial_id not in expected:
        return f"trial {trial_id[:100]!r} is not a trial of this suite"
    if suite_hash is not None and row.get("suite_hash", suite_hash) != suite_hash:
        return f"written by another suite (hash {str(row.get('suite_hash'))[:20]})"
    if not isinstance(row.get("status"), str) or not row["status"]:
        return "no status in its row"
    if any(e.get("trial_id", trial_id) != trial_id for e in epochs):
        return "its epochs belong to another trial"
    for key, dtype in results.TRIAL_SCHEMA.items():
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


def finished_trials(
    out_dir: Path,
    suite: AnySuite | None = None,
    expected: Collection[str] | None = None,
    say: Callable[[str], None] | None = None,
) -> dict[str, dict[str, Any]]:
    """trial_id -> {"row": ..., "epochs": [...]} for every trusted trial file.

    A file that is not a trial record (truncated, garbled, binary, `{}`, `null`, no row or
    trial id), whose name is not its trial's, whose trial is not in `expected`, or whose suite
    hash is not `suite`'s, is moved into trials/rejected/ with one line through `say`, so
    that the trial reruns instead of being read as a result.
    """
    out: dict[str, dict[str, Any]] = {}
    suite_hash = suite.hash() if suite is not None else None
    trials = Path(out_dir) / "trials"
    for path in sorted(trials.glob("*.json")):
        if not path.is_file():
            problem: str | None = "not a regular file"
            blob: Any = None
        else:
            try:
                blob = json.loads(path.read_bytes())
                problem = _trial_problem(path, blob, suite_hash, expected)
            except OSError as err:
                raise UserError(f"{path}: cannot read ({err.strerror or err})") from None
            except (ValueError, RecursionError) as err:  # bad JSON or bad UTF-8
                problem = f"not JSON ({first_line(err)[:120]})"
        if problem is None:
            out[blob["row"]["trial_id"]] = blob
        else:
            _reject(out_dir, path, problem, say or _stderr)
    return out


def _reject(out_dir: Path, path: Path, problem: str, say: Callable[[str], None]) -> None:
    target_dir = inside(out_dir, "trials", REJECTED)
    make_dir(target_dir)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    target = inside(out_dir, "trials", REJECTED, f"{path.name}.{stamp}")
    try:
        os.replace(path, target)
    except OSError as err:
        raise results.write_error(target, err) from None
    say(f"{path}: {problem}; moved to trials/{REJECTED}/{target.name}, the trial reruns")


def save_trial(out_dir: Path, row: dict[str, Any], epochs: list[dict[str, Any]]) -> None:
    results.write_json_atomic(trial_path(out_dir, row["trial_id"]), {"row": row, "epochs": epochs})
    fault_point("trial-saved")


def has_trial(out_dir: Path, trial_id: str) -> bool:
    return trial_path(out_dir, trial_id).exists()


def collect(out_dir: Path, suite: Suite, done: dict[str, dict[str, Any]]) -> dict[str, int]:
    """Finished trials -> trials.parquet + epochs.parquet, in grid order. Returns status counts.

    `done` is finished_trials(out_dir): every trial file, also those of earlier invocations.
    """
    order = {spec.trial_id: i for i, spec in enumerate(suite.trials())}
    ids = sorted(done, key=lambda t: (order.get(t, len(order)), t))
    rows = [done[t]["row"] for t in ids]
    placement.add_neighbours(rows)  # max_neighbours, from the rows' node, GPU ids and times
    epochs = [e for t in ids for e in done[t]["epochs"]]
    trials_df = results.frame(rows, results.TRIAL_SCHEMA)
    results.write_parquet_atomic(trials_df, inside(out_dir, "trials.parquet"))
    fault_point("trials-parquet")
    epochs_df = results.frame(epochs, results.EPOCH_SCHEMA)
    results.write_parquet_atomic(epochs_df, inside(out_dir, "epochs.parquet"))
    return status_counts(rows)


def status_counts(rows: list[dict[str, Any]]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for row in rows:
        counts[row["status"]] = counts.get(row["status"], 0) + 1
    return counts
