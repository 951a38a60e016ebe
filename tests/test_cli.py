"""The command line: listing, usage mistakes, exit codes."""

from __future__ import annotations

import subprocess
import sys

import pytest

from halbench.cli import main


@pytest.mark.parametrize("kind", ["losses", "datasets", "models"])
def test_list(kind, capsys) -> None:
    assert main(["list", kind]) == 0
    names = capsys.readouterr().out.split()
    assert names


def test_list_core_names(capsys) -> None:
    main(["list", "losses"])
    out = capsys.readouterr().out.split()
    assert {"hal", "al", "nca"} <= set(out)
    main(["list", "datasets"])
    assert {"synthetic", "fashion-mnist", "cifar10"} <= set(capsys.readouterr().out.split())


def test_list_wildcard(capsys) -> None:
    assert main(["list", "losses", "nca*"]) == 0
    names = capsys.readouterr().out.splitlines()
    assert "nca" in names and "hal" not in names


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["frobnicate"],
        ["list", "widgets"],
        ["run"],
        ["run", "x.yaml", "--max-concurrent", "0"],
        ["list", "losses", "zzz*"],
        ["report", "/nonexistent/run"],
    ],
    ids=[
        "no command",
        "unknown command",
        "bad list kind",
        "run without suite",
        "bad max-concurrent",
        "nothing matches",
        "missing report dir",
    ],
)
def test_usage_mistakes_are_one_line_exit_2(argv, capsys) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("halbench: error:") and err.count("\n") == 1, err


def test_resume_needs_output(tmp_path, capsys) -> None:
    from pathlib import Path

    suite = Path(__file__).resolve().parents[1] / "suites/smoke.yaml"
    assert main(["run", str(suite), "--resume"]) == 2
    assert "--output" in capsys.readouterr().err


def test_console_script_entry_point() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "halbench.cli", "--version"], capture_output=True, text=True
    )
    assert out.returncode == 0 and out.stdout.startswith("halbench ")


def test_list_losses_shows_parameters_and_defaults(capsys) -> None:  # noqa: ANN001
    assert main(["list", "losses", "hal"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "hal"
    assert "scale=16.0" in lines[1] and "impl='fast'" in lines[1]
    main(["list", "losses", "nca_memory"])
    assert "memory_size=<training set size>" in capsys.readouterr().out
