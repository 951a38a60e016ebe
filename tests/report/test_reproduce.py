"""`halbench reproduce`: headline numbers of a rerun against the original's intervals."""

import shutil
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from halbench.cli import main
from halbench.report import reproduce
from halbench.report.claims import load_claims

from .fixtures import profile_row, trial
from .test_verdicts_report import NCA, SEEDS, shifted_copy

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def original(make_run):
    rows = [trial("hal", 64, 16, s, NCA[s] + 0.02, dataset="fashion-mnist") for s in SEEDS]
    rows += [trial("nca", 64, 16, s, NCA[s], dataset="fashion-mnist") for s in SEEDS]
    profile = [profile_row("hal", 64, 16, time=1.0, flops=1e4)]
    profile += [profile_row("nca", 64, 16, time=10.0, flops=1e6)]
    return make_run(rows, [], profile)


def test_headlines_name_accuracy_claim_differences_and_cost_ratios(original):
    names = set(reproduce.headlines(original, load_claims()))
    assert "accuracy fashion-mnist hal (k-NN@1, B=64 d=16)" in names
    assert "C1 fashion-mnist difference" in names
    assert "C2 FLOPs B=64 d=16 vs nca" in names and "C2 call time B=64 d=16 vs nca" in names


def fake_rerun(shift):
    """A rerun that copies the original with HAL shifted by `shift` points."""

    def run(suite, out, no_ray):
        src = suite.parent
        shutil.rmtree(out, ignore_errors=True)
        shifted_copy(src, out, 2.0 + shift, [0.0] * 5)

    return run


@pytest.mark.parametrize("shift,code", [(0.0, 0), (-4.0, 3)])
def test_reproduce_exit_code_says_whether_every_headline_is_inside(
    original, tmp_path, monkeypatch, capsys, shift, code
):
    monkeypatch.setattr(reproduce, "rerun", fake_rerun(shift))
    out = tmp_path / "again"
    assert main(["reproduce", str(original), "--output", str(out)]) == code
    text = capsys.readouterr().out
    assert "accuracy fashion-mnist nca (k-NN@1, B=64 d=16): new 81; original 81 [" in text
    assert "C2 FLOPs B=64 d=16 vs nca: new 0.01; original 0.01 (exact): inside" in text
    line = next(x for x in text.splitlines() if x.startswith("C1 fashion-mnist difference"))
    assert ("OUTSIDE" in line) == (code == 3)


def test_c3_in_epochs_is_not_compared_with_c3_in_steps():
    old = {"C3 ds B=64 d=16 epochs saved": reproduce.Headline(0.5, -1.0, 2.0)}
    lines, ok = reproduce.check(old, {"C3 ds B=64 d=16 steps saved": reproduce.Headline(12.0)})
    assert ok and lines == [
        "C3 ds B=64 d=16 epochs saved: the rerun measures steps saved (12); the original, "
        "without sub-epoch curves, epochs: not compared"
    ]
    lines, ok = reproduce.check(old, {})
    assert not ok and "missing in the rerun — NOT reproduced" in lines[0]


def test_reproduce_refuses_a_directory_without_a_suite(tmp_path):
    assert main(["reproduce", str(tmp_path)]) == 2


@pytest.mark.slow
def test_reproduce_reruns_the_smoke_suite(tmp_path):
    """The smoke suite, run then reproduced with today's code (--no-ray, about a minute)."""
    orig = tmp_path / "orig"
    run = [sys.executable, "-m", "halbench.cli", "run", str(REPO / "suites/smoke.yaml")]
    assert subprocess.run([*run, "--output", str(orig), "--no-ray"], check=False).returncode == 0
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "halbench.cli",
            "reproduce",
            str(orig),
            "--output",
            str(tmp_path / "again"),
            "--no-ray",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    lines = proc.stdout.splitlines()
    assert proc.returncode in (0, 3), proc.stderr
    # training is deterministic on CPU: accuracies and FLOPs land inside; times may move
    acc = [x for x in lines if x.startswith("accuracy ")]
    assert acc and all("inside" in x or "not judged" in x for x in acc)
    assert all("inside" in x for x in lines if x.startswith("C2 FLOPs"))
    assert (proc.returncode == 0) == (not any("OUTSIDE" in x for x in lines))
    assert pl.read_parquet(tmp_path / "again" / "trials.parquet").height > 0
