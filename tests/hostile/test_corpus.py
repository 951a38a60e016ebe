"""The hostile corpus through load_suite (in process) and through the CLI (a sample).

For every case: no traceback (only UserError), no hang (10 s each), no invalid suite accepted,
every refusal one line that names the file, every valid suite loads.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from types import FrameType

import pytest

from halbench.errors import UserError
from halbench.suite import load_suite

from .corpus import ROOT, build_corpus, case_path

LIMIT_S = 10


class _Hang(Exception):
    pass


def _alarm(signum: int, frame: FrameType | None) -> None:
    raise _Hang


def _outcome(path: Path, expected_valid: bool) -> tuple[str, str]:
    """(kind, detail): kind is ok, accepted-invalid, refused-valid, traceback, hang, bad-message."""
    old = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(LIMIT_S)
    try:
        load_suite(path)
    except UserError as err:
        message = str(err)
        if expected_valid:
            return "refused-valid", message
        if "\n" in message or not message.startswith(str(path)) or len(message) > 600:
            return "bad-message", message[:300]
        return "ok", message
    except _Hang:
        return "hang", f"over {LIMIT_S} s"
    except BaseException as err:  # noqa: BLE001 - any other exception is the bug we look for
        return "traceback", f"{type(err).__name__}: {str(err)[:200]}"
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
    return ("ok", "") if expected_valid else ("accepted-invalid", "")


def test_corpus_has_the_promised_spread(tmp_path: Path) -> None:
    cases = build_corpus(tmp_path)
    assert len(cases) >= 300
    names = [name for name, _, _ in cases]
    assert len(set(names)) == len(names), "case names are unique"
    valid = sum(1 for _, _, ok in cases if ok)
    assert 50 <= valid <= len(cases) - 200


def test_every_case_is_refused_in_one_line_or_loads(tmp_path: Path) -> None:
    cases = build_corpus(tmp_path / "files")
    outcomes: Counter[str] = Counter()
    problems: list[str] = []
    slowest = (0.0, "")
    for i, (name, item, expected) in enumerate(cases):
        path = case_path(tmp_path, i, item)
        start = time.perf_counter()
        kind, detail = _outcome(path, expected)
        slowest = max(slowest, (time.perf_counter() - start, name))
        outcomes[kind] += 1
        if kind != "ok":
            problems.append(f"{kind}: {name}: {detail}")
    assert not problems, f"{len(problems)} of {len(cases)} cases:\n" + "\n".join(problems)
    assert outcomes["ok"] == len(cases)
    assert slowest[0] < LIMIT_S, slowest


# A sample through the real command: exit 2, one stderr line, no run directory. Every case's
# outcome is proven in process (load_suite above, `validate` through cli.main below); these
# processes only add what a real `halbench run` process does on top (its exit status, its stderr,
# no run directory left, no file written outside it), so two suffice: a FIFO (a read that could
# block a real process) and, below, a loss label that would escape the run directory.
CLI_SAMPLE = ["file: a FIFO"]


@pytest.mark.slow
def test_cli_refuses_a_sample_in_one_line_without_a_run_directory(tmp_path: Path) -> None:
    cases = {name: (item, ok) for name, item, ok in build_corpus(tmp_path / "files")}
    labels = [name for name in cases if name.startswith("losses bad") and "ESCAPED" in name]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for i, name in enumerate(CLI_SAMPLE + labels[:1]):
        item, ok = cases[name]
        assert not ok, name
        path = case_path(tmp_path, i, item)
        out = tmp_path / f"out-{i}"
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "halbench.cli",
                "run",
                str(path),
                "--output",
                str(out),
                "--no-ray",
                "--no-report",
            ],
            capture_output=True,
            text=True,
            timeout=60,
            env=env,
            cwd=tmp_path,
        )
        assert proc.returncode == 2, (name, proc.stderr[-2000:])
        assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr, (name, proc.stderr)
        assert str(path) in proc.stderr, (name, proc.stderr)
        assert not out.exists(), name
    assert not (Path("/tmp") / "ESCAPED-b64-d16-s0.json").exists()


# --- the same corpus through `halbench validate` -----------------------------------------------


def _machine_can_run(path: Path) -> bool:
    """Whether a load-valid suite also fits this machine (validate checks that too)."""
    import torch

    suite = load_suite(path)
    res = suite.resources
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return (
        res.cpus_per_trial <= (os.cpu_count() or 1)
        and res.gpus_per_trial <= torch.cuda.device_count()
        and (res.memory_gb or 0) * 2**30 <= memory
        and (suite.train.device != "cuda" or torch.cuda.is_available())
    )


def _validate_outcome(path: Path, expected_valid: bool) -> tuple[str, str]:
    """(kind, detail) of `halbench validate path` in process: ok or what went wrong."""
    import contextlib
    import io

    from halbench.cli import main

    err, out = io.StringIO(), io.StringIO()
    old = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(LIMIT_S)
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
            code = main(["validate", str(path)])
    except _Hang:
        return "hang", f"over {LIMIT_S} s"
    except BaseException as exc:  # noqa: BLE001 - main() must never raise
        return "traceback", f"{type(exc).__name__}: {str(exc)[:200]}"
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
    text = err.getvalue()
    if "Traceback" in text or code == 1:
        return "traceback", text[-300:]
    if code == 0:
        if not expected_valid:
            return "accepted-invalid", out.getvalue()[:200]
        return ("ok", "") if "valid" in out.getvalue() else ("bad-summary", out.getvalue()[:200])
    if expected_valid:
        return "refused-valid", text[:300]
    prefix = f"halbench: error: {path}: "
    if code != 2 or text.count("\n") != 1 or not text.startswith(prefix) or len(text) > 700:
        return "bad-message", f"exit {code}: {text[:300]}"
    return "ok", ""


def test_every_case_through_halbench_validate(tmp_path: Path) -> None:
    cases = build_corpus(tmp_path / "files")
    problems: list[str] = []
    counts: Counter[str] = Counter()
    for i, (name, item, expected) in enumerate(cases):
        path = case_path(tmp_path, i, item)
        if expected:
            expected = _machine_can_run(path)
        start = time.perf_counter()
        kind, detail = _validate_outcome(path, expected)
        if time.perf_counter() - start > LIMIT_S:
            kind = "hang"
        counts[kind, expected] += 1
        if kind != "ok":
            problems.append(f"{kind}: {name}: {detail}")
    assert not problems, f"{len(problems)} of {len(cases)} cases:\n" + "\n".join(problems)
    assert counts["ok", True] >= 50 and counts["ok", False] >= 300, counts


# A sample through a real `halbench validate` process each: the same outcomes. Every case of the
# corpus goes through `validate` in process above (test_every_case_through_halbench_validate);
# the processes only add the real exit status and streams, so one valid and one invalid suite.
VALIDATE_SAMPLE = ["smoke as shipped", "text: alias bomb in description"]


@pytest.mark.slow
def test_validate_processes_agree_on_a_sample(tmp_path: Path) -> None:
    cases = {name: (item, ok) for name, item, ok in build_corpus(tmp_path / "files")}
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for i, name in enumerate(VALIDATE_SAMPLE):
        item, expected = cases[name]
        path = case_path(tmp_path, i, item)
        expected = expected and _machine_can_run(path)
        proc = subprocess.run(
            [sys.executable, "-m", "halbench.cli", "validate", str(path)],
            capture_output=True,
            text=True,
            timeout=60,
            env=env,
            cwd=tmp_path,
        )
        assert "Traceback" not in proc.stderr, (name, proc.stderr[-2000:])
        if expected:
            assert proc.returncode == 0 and "valid" in proc.stdout, (name, proc.stderr)
        else:
            assert proc.returncode == 2, (name, proc.returncode, proc.stderr[-500:])
            assert proc.stderr.count("\n") == 1, (name, proc.stderr)
            assert proc.stderr.startswith(f"halbench: error: {path}: "), (name, proc.stderr)
