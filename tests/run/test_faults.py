"""Faults with real processes: kill -9 at named moments, damaged files, a full or read-only
disk, two runs into one directory. After each, `--resume` must finish the run exactly.

Kill points are HALBENCH_FAULT=<point>[:<n>] (halbench.run.rundir.fault_point): the run
SIGKILLs itself the n-th time it passes <point>.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest

from halbench.cli import main
from halbench.run import rundir
from halbench.run.lock import LOCK_NAME, run_lock

from .test_runner_ray import (
    comparable,
    end_group,
    same,
    start_group,
    tiny_suite,
    worker_env,
)

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
NO_REPORT = "--no-report"


def cli(suite: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "halbench.cli", "run", str(suite), "--output", str(out), *extra]


def run_killed(cmd: list[str], fault: str | None, timeout: float = 300) -> subprocess.Popen:
    """Start a run in its own process group; with `fault`, it must die of SIGKILL there."""
    env = {**worker_env(), **({"HALBENCH_FAULT": fault} if fault else {})}
    return start_group(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def wait_killed(proc: subprocess.Popen, timeout: float = 300) -> str:
    try:
        _, err = proc.communicate(timeout=timeout)
    finally:
        end_group(proc, grace=2)  # a Ray run's raylet and GCS outlive the killed driver
    assert proc.returncode == -signal.SIGKILL, (proc.returncode, err[-2000:])
    return err


def assert_equal_runs(resumed: Path, uninterrupted: Path, rtol: float = 0.0) -> None:
    """Same trials, once each, same values (float columns within `rtol`, 0: exact)."""
    trials = pl.read_parquet(resumed / "trials.parquet")
    assert trials["trial_id"].is_unique().all()
    for name in ("trials.parquet", "epochs.parquet"):
        a, b = comparable(resumed / name), comparable(uninterrupted / name)
        assert a.columns == b.columns, name
        differ = [c for c in a.columns if not _close(c, a[c], b[c], rtol)]
        assert differ == [], (name, {c: (a[c].to_list(), b[c].to_list()) for c in differ})


def _close(column: str, a: pl.Series, b: pl.Series, rtol: float) -> bool:
    if rtol and a.dtype.is_float() and b.dtype.is_float():
        return a.is_null().equals(b.is_null()) and bool(((a - b).abs() <= rtol * b.abs()).all())
    return same(column, a, b)


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A 4-trial suite and its uninterrupted in-process run."""
    tmp = tmp_path_factory.mktemp("reference")
    suite = tiny_suite(tmp, "faults", ["hal", "nca"], [0, 1])
    assert main(["run", str(suite), "--output", str(tmp / "full"), "--no-ray", "--no-report"]) == 0
    return suite, tmp / "full"


# trial-started:3 and trial-saved:3 repeated :1 (a kill between trials or inside one, with
# trial files already there) and are not points of their own: a kill inside a later trial is
# test_kill_9_mid_trial_from_outside_then_resume (second trial), and trial-saved:3 then resume
# is test_damaged_trial_files_are_moved_aside_and_rerun (with damaged files on top).
NO_RAY_POINTS = [
    "prepared",  # suite files written, env.json not yet
    "env-written",  # the invocation recorded, no trial started
    "trial-started:1",
    "trial-saved:1",
    "trial-saved:4",  # every trial file written, no parquet yet
    "trials-parquet",  # trials.parquet written, epochs.parquet not
    "finished",  # parquet and env.json done, before the report
    "report",  # while the report is built
]


@pytest.mark.parametrize("fault", NO_RAY_POINTS)
def test_kill_9_of_a_no_ray_run_then_resume(tmp_path: Path, reference, fault: str) -> None:
    suite, full = reference
    out = tmp_path / "run"
    extra = () if fault == "report" else ("--no-report",)
    wait_killed(run_killed(cli(suite, out, "--no-ray", *extra), fault))
    assert not list(out.glob("suite.yaml")) or (out / "suite.yaml").stat().st_size > 0
    assert main(["run", str(suite), "--output", str(out), "--resume", "--no-ray", *extra]) == 0
    assert_equal_runs(out, full)
    assert not (out / "trials" / "rejected").exists()  # an atomic write leaves nothing to reject


def test_kill_9_mid_trial_from_outside_then_resume(tmp_path: Path, reference) -> None:
    suite, full = reference
    out = tmp_path / "run"
    proc = run_killed(cli(suite, out, "--no-ray", "--no-report"), None)
    deadline = time.monotonic() + 300
    while not any((out / "trials").glob("*.json")):
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    time.sleep(0.5)  # well inside the second trial
    os.killpg(proc.pid, signal.SIGKILL)
    wait_killed(proc)
    assert (
        main(["run", str(suite), "--output", str(out), "--resume", "--no-ray", "--no-report"]) == 0
    )
    assert_equal_runs(out, full)


# A Ray run killed after its first trial is saved, then resumed, equal to an uninterrupted run:
# test_runner_ray.py::test_kill_9_then_resume_equals_an_uninterrupted_run (exactly equal, resumed
# with Ray, and "4 trials, N already done" said). Not repeated here.
RAY_POINTS = ["ray-started", "trial-saved:4", "trials-parquet"]


@pytest.mark.ray
@pytest.mark.parametrize("fault", RAY_POINTS)
def test_kill_9_of_a_ray_run_then_resume(tmp_path: Path, reference, fault: str) -> None:
    suite, full = reference
    out = tmp_path / "run"
    temp = tempfile.mkdtemp(prefix="hbfault-")  # short: Ray's socket paths have a length limit
    try:
        cmd = cli(suite, out, "--no-report", "--num-cpus", "2", "--ray-temp-dir", temp)
        wait_killed(run_killed(cmd, fault))
    finally:
        shutil.rmtree(temp, ignore_errors=True)
    # Resumed in this process without Ray. A trial trained in a Ray worker (one thread) and
    # in this process (all cores) was seen to differ by ~1e-5 relative in map_at_r: float
    # reduction order, not a lost or repeated trial; identities and counts stay exact.
    assert main(["run", str(suite), "--output", str(out), "--resume", "--no-ray", NO_REPORT]) == 0
    assert_equal_runs(out, full, rtol=1e-4)


def test_damaged_trial_files_are_moved_aside_and_rerun(tmp_path: Path, reference, capsys) -> None:
    suite, full = reference
    out = tmp_path / "run"
    wait_killed(run_killed(cli(suite, out, "--no-ray", "--no-report"), "trial-saved:3"))
    files = sorted((out / "trials").glob("*.json"))
    assert len(files) == 3
    files[0].write_bytes(files[0].read_bytes()[:40])  # truncated
    files[1].write_bytes(b"\x00\x9f\x92\x96 binary")
    foreign = json.loads(files[2].read_text())
    foreign["row"]["trial_id"] = foreign["row"]["trial_id"].replace("-s0", "-s7")
    (out / "trials" / f"{foreign['row']['trial_id']}.json").write_text(json.dumps(foreign))
    (out / "env.json").write_bytes(b"\xff\xfe\x00garbage")
    capsys.readouterr()
    assert main(["run", str(suite), "--output", str(out), "--resume", "--no-ray"]) == 0
    err = capsys.readouterr().err
    assert "Traceback" not in err
    moved = [line for line in err.splitlines() if "moved to trials/rejected/" in line]
    assert len(moved) == 3, err
    assert "4 trials, 1 already done" in err
    assert len(list((out / "trials" / "rejected").iterdir())) == 3
    assert any("env.json: damaged" in line for line in err.splitlines())
    assert len(list(out.glob("env.json.bad-*"))) == 1
    assert_equal_runs(out, full)
    assert (out / "report.md").is_file()  # the report of the resumed directory was built
    # a trial file damaged after the run is not the report's business: it reads the parquet
    (out / "trials" / "junk.json").write_text("null")
    (out / "report.md").unlink()
    assert main(["report", str(out)]) == 0
    assert (out / "report.md").is_file()
    # a binary env.json that no resume has set aside: one line from the report, no traceback
    (out / "env.json").write_bytes(b"\x00\x01binary")
    capsys.readouterr()
    assert main(["report", str(out)]) in (0, 2)
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.count("\n") <= 1, err


# --- one writer per run directory ---------------------------------------------------------------


def test_a_second_run_into_the_same_directory_is_refused(tmp_path: Path, reference, capsys):
    suite, _ = reference
    out = tmp_path / "run"
    proc = run_killed(cli(suite, out, "--no-ray", "--no-report"), None)
    try:
        deadline = time.monotonic() + 300
        while not (out / LOCK_NAME).is_file() or not (out / LOCK_NAME).read_text().strip():
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        capsys.readouterr()
        for argv in (
            ["run", str(suite), "--output", str(out), "--no-ray", "--no-report"],
            ["run", str(suite), "--output", str(out), "--no-ray", "--resume"],
            [
                "profile",
                "--output",
                str(out),
                "--no-ray",
                "--losses",
                "hal",
                "--repeats",
                "1",
                "--classes",
                "10",
            ],
        ):
            assert main(argv) == 2
            err = capsys.readouterr().err
            assert err.count("\n") == 1 and f"pid {proc.pid} on " in err, err
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        wait_killed(proc)
    # the killed holder's lock vanished with it; its stale file is taken over
    assert (out / LOCK_NAME).read_text().split()[0] == str(proc.pid)
    assert (
        main(["run", str(suite), "--output", str(out), "--no-ray", "--resume", "--no-report"]) == 0
    )
    assert (out / LOCK_NAME).read_text().split()[0] == str(os.getpid())


def test_a_stale_lock_file_is_taken_over(tmp_path: Path) -> None:
    (tmp_path / LOCK_NAME).write_text("999999999 elsewhere\n")
    with run_lock(tmp_path):
        assert (tmp_path / LOCK_NAME).read_text().split()[0] == str(os.getpid())
        with pytest.raises(rundir.UserError, match=f"pid {os.getpid()} on "):
            with run_lock(tmp_path):
                pass
    with run_lock(tmp_path):  # released on exit
        pass


# --- a full or read-only disk -------------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 2 MB tmpfs (needs root and a kernel that lets us mount), unmounted after."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    proc = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)], capture_output=True
    )
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.decode().strip()[:100]}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def fill(disk: Path) -> Path:
    """Fill the disk to the last byte; returns the filler to delete."""
    filler = disk / "filler"
    with open(filler, "ab", buffering=0) as f:  # unbuffered: nothing left to flush at close
        try:
            while True:
                f.write(b"\0" * 4096)
        except OSError:
            pass
        try:
            while True:  # the last partial page
                f.write(b"\0")
        except OSError:
            pass
    return filler


def test_a_full_disk_stops_the_run_in_one_line_and_resume_finishes_it(
    small_disk: Path, reference, capsys, monkeypatch
) -> None:
    suite, full = reference
    out = small_disk / "run"
    argv = ["run", str(suite), "--output", str(out), "--no-ray", "--no-report"]
    filler = fill(small_disk)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "No space left on device" in err and str(out) in err, err
    assert not (out / "suite.yaml").exists()  # never a 0-byte copy
    filler.unlink()

    real = rundir.fault_point

    def disk_full_after_two_trials(name: str) -> None:
        real(name)
        if name == "trial-saved" and len(list((out / "trials").glob("*.json"))) == 2:
            fill(small_disk)

    monkeypatch.setattr(rundir, "fault_point", disk_full_after_two_trials)
    assert main(argv) == 2
    err = capsys.readouterr().err.splitlines()
    assert "No space left on device" in err[-1] and str(out / "trials") in err[-1], err
    assert not any("Traceback" in line for line in err)
    monkeypatch.undo()
    assert len(list((out / "trials").glob("*.json"))) == 2  # what finished is kept
    (small_disk / "filler").unlink()
    assert main([*argv, "--resume"]) == 0
    assert_equal_runs(out, full)


def test_a_read_only_run_directory_is_one_line(small_disk: Path, reference, capsys) -> None:
    suite, full = reference
    out = small_disk / "run"
    wait_killed(run_killed(cli(suite, out, "--no-ray", "--no-report"), "trial-saved:2"))
    subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
    try:
        capsys.readouterr()
        argv = ["run", str(suite), "--output", str(out), "--no-ray", "--no-report", "--resume"]
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "Read-only file system" in err and str(out) in err, err
    finally:
        subprocess.run(["mount", "-o", "remount,rw", str(small_disk)], check=True)
    assert len(list((out / "trials").glob("*.json"))) == 2
    assert main(argv) == 0
    assert_equal_runs(out, full)


@pytest.mark.ray
def test_a_disk_that_fills_during_a_ray_run_is_one_line(small_disk: Path, reference) -> None:
    """ENOSPC inside Tune (its state, a trial file): one line with the path, the free space and
    the resume command; every trial file written before is kept; --resume finishes the run."""
    suite, full = reference
    out = small_disk / "run"
    temp = tempfile.mkdtemp(prefix="hbfull-")
    cmd = cli(suite, out, "--no-report", "--num-cpus", "1", "--ray-temp-dir", temp)
    proc = run_killed(cmd, None)
    try:
        deadline = time.monotonic() + 300
        while not any((out / "trials").glob("*.json")):
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.1)
        kept = {p.name for p in (out / "trials").glob("*.json")}
        fill(small_disk)
        _, err = proc.communicate(timeout=300)
    finally:
        end_group(proc, grace=2)
        shutil.rmtree(temp, ignore_errors=True)
    assert proc.returncode == 2, err[-3000:]
    assert "Traceback" not in err and "internal error" not in err, err[-3000:]
    last = err.strip().splitlines()[-1]
    assert last.startswith("halbench: error: ") and "No space left on device" in last, err[-3000:]
    assert " free" in last and f"--output {out} --resume" in last, last
    assert kept <= {p.name for p in (out / "trials").glob("*.json")}  # what finished is kept
    (small_disk / "filler").unlink()
    assert main(["run", str(suite), "--output", str(out), "--resume", "--no-ray", NO_REPORT]) == 0
    assert_equal_runs(out, full, rtol=1e-4)
