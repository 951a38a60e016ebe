"""`halbench validate` and the same checks at the start of `run` and `profile`.

Everything knowable without training is refused in seconds, in one line naming the file and
field, before Ray starts or any run directory exists.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from halbench.cli import main

ROOT = Path(__file__).resolve().parents[1]
SMOKE = yaml.safe_load((ROOT / "suites" / "smoke.yaml").read_text())
CPUS = os.cpu_count() or 1


def write_suite(tmp_path: Path, **sections: dict[str, Any]) -> Path:
    doc = {**SMOKE, **{k: {**SMOKE.get(k, {}), **v} for k, v in sections.items()}}
    path = tmp_path / "suite.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    assert err.startswith("halbench: error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err
    return err


def test_a_valid_suite_is_summarized(tmp_path: Path, capsys) -> None:
    assert main(["validate", str(ROOT / "suites" / "smoke.yaml")]) == 0
    out = capsys.readouterr().out
    assert "valid" in out and "4 trials of 2 losses" in out and "--dry-run" in out


def test_an_absurd_but_legal_suite_shows_its_size_not_a_refusal(tmp_path: Path, capsys) -> None:
    path = write_suite(tmp_path, train={"epochs": 10**9})
    assert main(["validate", str(path)]) == 0
    out = capsys.readouterr().out
    assert "4 trials" in out and "4000000000 training epochs" in out
    assert "halbench run --dry-run" in out


@pytest.mark.parametrize(
    ("section", "field"),
    [
        ({"resources": {"cpus_per_trial": CPUS * 100}}, "resources.cpus_per_trial"),
        ({"resources": {"memory_gb": 10**6}}, "resources.memory_gb"),
        ({"train": {"lr": "1e400"}}, "train.lr"),
    ],
)
def test_what_the_machine_cannot_give_is_refused(tmp_path: Path, capsys, section, field) -> None:
    path = write_suite(tmp_path, **section)
    assert main(["validate", str(path)]) == 2
    assert one_error_line(capsys).startswith(f"halbench: error: {path}: {field}: ")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
@pytest.mark.parametrize(
    ("section", "field"),
    [
        ({"train": {"device": "cuda"}}, "train.device"),
        ({"resources": {"gpus_per_trial": 1}}, "resources.gpus_per_trial"),
        ({"resources": {"gpus_per_trial": 0.25}}, "resources.gpus_per_trial"),
    ],
)
def test_cuda_on_a_machine_without_it_is_refused(tmp_path: Path, capsys, section, field) -> None:
    path = write_suite(tmp_path, **section)
    assert main(["validate", str(path)]) == 2
    assert one_error_line(capsys).startswith(f"halbench: error: {path}: {field}: ")


def test_num_cpus_is_what_a_local_run_would_get(tmp_path: Path, capsys) -> None:
    path = write_suite(tmp_path, resources={"cpus_per_trial": 2})
    assert main(["validate", str(path), "--num-cpus", "1"]) == 2
    assert "a trial needs 2 CPU but this machine has 1" in one_error_line(capsys)


@pytest.mark.parametrize("ray", [False, True], ids=["no-ray", "ray"])
def test_a_refused_run_leaves_no_run_directory(tmp_path: Path, capsys, ray: bool) -> None:
    path = write_suite(tmp_path, resources={"cpus_per_trial": CPUS * 100})
    out = tmp_path / "run"
    argv = ["run", str(path), "--output", str(out), "--no-report"]
    assert main(argv if ray else [*argv, "--no-ray"]) == 2
    assert "resources.cpus_per_trial" in one_error_line(capsys)
    assert not out.exists()
    # refused before Ray: no Ray was started (its import alone would not start one)
    assert "ray" not in sys.modules or not sys.modules["ray"].is_initialized()


def test_resume_of_nothing_leaves_no_run_directory(tmp_path: Path, capsys) -> None:
    path = write_suite(tmp_path)
    out = tmp_path / "run"
    assert main(["run", str(path), "--output", str(out), "--resume", "--no-ray"]) == 2
    assert "nothing to resume" in one_error_line(capsys)
    assert not out.exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_a_refused_profile_leaves_no_directory(tmp_path: Path, capsys) -> None:
    out = tmp_path / "prof"
    args = ["profile", "--device", "cuda", "--classes", "10", "--output", str(out), "--no-ray"]
    assert main(args) == 2
    assert "device" in one_error_line(capsys)
    assert not out.exists()


def test_a_profile_asking_more_cpus_than_the_machine_is_refused(tmp_path: Path, capsys) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "kind": "profile",
                "name": "p",
                "losses": [{"name": "hal"}],
                "grid": {"num_classes": [10]},  # no note about default class counts
                "resources": {"cpus_per_trial": CPUS * 100},
            }
        )
    )
    out = tmp_path / "prof"
    assert main(["profile", str(path), "--output", str(out)]) == 2
    assert one_error_line(capsys).startswith(f"halbench: error: {path}: resources.cpus_per_trial")
    assert not out.exists()


def test_an_output_that_is_a_file_is_one_line(tmp_path: Path, capsys) -> None:
    path = write_suite(tmp_path)
    (tmp_path / "file").write_text("x")
    for out in (tmp_path / "file", tmp_path / "file" / "run"):
        assert main(["run", str(path), "--output", str(out), "--no-ray", "--no-report"]) == 2
        assert "not a directory" in one_error_line(capsys)


def test_a_tuned_suite_is_summarized_by_its_plan(capsys) -> None:
    # 2 replicates x 3 losses x (8 tuning trials + 5 final seeds) = 78 planned; the epoch budget
    # (16 per replicate and loss) lets 4 tuning trials of 4 epochs run per group: 24 + 30 = 54
    # trials, 2 x 3 x 16 + 30 x 4 = 216 epochs at most.
    assert main(["validate", str(ROOT / "suites" / "fair-fashion-mnist-cpu.yaml")]) == 0
    out = capsys.readouterr().out
    assert "54 trials of 3 losses, at most 216 training epochs" in out
    assert "tune.budget_epochs 16" in out and "30 final trials" in out


def test_data_missing_from_disk_fails_validate(tmp_path: Path, monkeypatch, capsys) -> None:
    # The check `run` makes before any trial (runner.check_data), made by validate too.
    monkeypatch.setenv("HALBENCH_DATA", str(tmp_path / "empty"))
    path = write_suite(tmp_path)
    doc = yaml.safe_load(path.read_text())
    doc["dataset"] = {"name": "cifar10", "train_size": 200, "test_size": 100}
    path.write_text(yaml.safe_dump(doc))
    assert main(["validate", str(path)]) == 2
    err = one_error_line(capsys)
    assert "dataset 'cifar10' not found" in err and "download: true" in err


def test_the_plugin_example_validates() -> None:
    # docs/plugins.md's example, as the guide runs it; a subprocess keeps its registrations
    # out of this test process.
    import subprocess

    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT / "examples"), str(ROOT)]),
        "HALBENCH_PLUGINS": "my_loss_plugin",
    }
    suite = ROOT / "examples" / "plugin-suite.yaml"
    out = subprocess.run(
        [sys.executable, "-m", "halbench.cli", "validate", str(suite)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert "valid: suite 'plugin-example', 2 trials of 2 losses" in out.stdout
