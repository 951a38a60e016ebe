"""The run directory: the suite (as given and normalized), env.json, trial files, parquet.

    <run>/suite.yaml   the suite file as given          <run>/suite.json  the normalized suite
    <run>/env.json     environment, suite hash, one record per invocation
    <run>/<kind>/<task file>.json  one finished task (store.py: writing, trusting, rejecting)
    <run>/trials.parquet, epochs.parquet, tuning.parquet, profile.parquet  (tables.py)

`halbench run` and `halbench profile` write the suite files and env.json through the same
functions here; env.json is written by no other file. Every path written under a run
directory goes through `inside`, so that no name taken from a suite can place a file elsewhere.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import yaml
from pydantic import ValidationError

from halbench import results
from halbench.errors import UserError
from halbench.failures import first_line
from halbench.suite import Suite, suite_diff

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


def task_file_name(task_id: str) -> str:
    """The file name of a finished task: the id itself when portable, else a prefix + hash.

    The id is always kept inside the file (row.trial_id), which is what resume reads.
    """
    if _SAFE_NAME.fullmatch(task_id):
        return f"{task_id}.json"
    digest = hashlib.sha256(task_id.encode("utf-8", "surrogatepass")).hexdigest()[:16]
    prefix = re.sub(r"[^A-Za-z0-9_-]+", "_", task_id)[:80].strip("_") or "trial"
    return f"{prefix}-{digest}.json"


def task_path(out_dir: Path, task_id: str, kind: str = "trials") -> Path:
    """<run>/<kind>/<task file>.json (kind: trials, tuning or profile; see store.py)."""
    return inside(out_dir, kind, task_file_name(task_id))


def check_run_dir(suite: Suite, suite_path: Path, out_dir: Path, *, resume: bool) -> None:
    """What prepare_run_dir refuses, without writing anything (run before creating the dir)."""
    if resume:
        # suite.yaml as given, else suite.json (the same suite, normalized): either identifies
        # the run, so a deleted suite.yaml does not strand it.
        stored = next((p for p in _suite_files(out_dir) if p.is_file()), None)
        if stored is None:
            raise UserError(
                f"{out_dir}: no suite.yaml or suite.json here, nothing to resume "
                "(run without --resume, or restore the run's suite.json)"
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


def _suite_files(out_dir: Path) -> tuple[Path, Path]:
    return out_dir / "suite.yaml", out_dir / "suite.json"


def prepare_run_dir(suite: Suite, suite_path: Path, out_dir: Path, *, resume: bool) -> None:
    """Create (or, with resume, check) a run's directory and its suite files.

    A resumed run whose suite.yaml was deleted gets it back from the suite file given (its
    hash equals the run's, checked above).
    """
    check_run_dir(suite, suite_path, out_dir, resume=resume)
    make_dir(inside(out_dir, "trials"))
    yaml_file, json_file = _suite_files(out_dir)
    if not resume or not json_file.exists() or not yaml_file.exists():
        store_suite(out_dir, suite, None if resume and yaml_file.exists() else suite_path)


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
