"""The command line: listing, usage mistakes, exit codes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from halbench.cli import main

ROOT = Path(__file__).resolve().parents[1]
SMOKE = str(ROOT / "suites" / "smoke.yaml")


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


def test_list_patterns_match_the_pml_entry(capsys) -> None:
    assert main(["list", "losses", "pml*"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("pml:<ClassName>") and "hal\n" not in out
    main(["list", "losses"])
    assert "pml:<ClassName>" in capsys.readouterr().out  # the plain list keeps it, once
    main(["list", "losses", "nca*"])
    assert "pml:" not in capsys.readouterr().out


def test_list_losses_includes_plugins() -> None:
    # A subprocess: the plugin's names must not stay registered in this test process.
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT / "examples"), str(ROOT)]),
        "HALBENCH_PLUGINS": "my_loss_plugin",
    }
    out = subprocess.run(
        [sys.executable, "-m", "halbench.cli", "list", "losses", "centroid*"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["centroid_softmax", "    scale=10.0, impl='fast'"]


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (
            ["run", SMOKE, "--gpus", "1"],
            "unrecognized arguments: --gpus 1 (did you mean --num-gpus?)",
        ),
        # No abbreviations: --num-cpu is a mistake, not --num-cpus (it used to start a run).
        (["run", SMOKE, "--num-cpu", "2"], "(did you mean --num-cpus?)"),
        (["validate", SMOKE, "--num-gpu=1"], "unrecognized arguments: --num-gpu=1 (did you mean"),
        (["run"], "run: the following arguments are required: suite"),
    ],
    ids=["misspelled", "abbreviated", "with =", "missing"],
)
def test_usage_errors_have_one_prefix_and_a_hint(argv, expected, capsys) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("halbench") == 1 and err.count("\n") == 1, err
    assert expected in err


def test_log_to_needs_ray_and_its_package(monkeypatch, capsys) -> None:
    assert main(["run", SMOKE, "--log-to", "tensorboard", "--no-ray"]) == 2
    assert "needs Ray" in capsys.readouterr().err
    monkeypatch.setattr("halbench.run.loggers.importlib.util.find_spec", lambda name: None)
    assert main(["run", SMOKE, "--log-to", "mlflow"]) == 2
    err = capsys.readouterr().err
    assert "mlflow package is not installed (pip install 'halbench[mlflow]')" in err
    assert main(["run", SMOKE, "--log-to", "neptune"]) == 2
    assert "invalid choice: 'neptune'" in capsys.readouterr().err
