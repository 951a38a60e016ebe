"""What stops a run from outside: SIGTERM like Ctrl-C (exit 143, the resume command, env.json
closed, no process of its local Ray left), and a cluster head that dies (one line naming its
address, the parquet of what finished). The fast tests drive halbench.run.signals and
halbench.run.session directly; the slow ones a real `halbench run` in its own process group."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest

from halbench.run import session, signals
from tests.run.cluster_fixtures import (
    end_group,
    free_port,
    halbench,
    live_run,
    ray_cluster,
    session_pids,
    tiny_suite,
)


@pytest.fixture(autouse=True)
def fresh_state():
    before = signal.getsignal(signal.SIGTERM)
    signals.reset()
    yield
    signals.reset()
    signal.signal(signal.SIGTERM, before)


def test_sigterm_raises_terminated_once() -> None:
    signals.install_sigterm()
    with pytest.raises(signals.Terminated):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)
    assert signals.terminated() and not signals.head_lost()
    os.kill(os.getpid(), signal.SIGTERM)  # a second one while the run winds down: ignored
    time.sleep(0.1)
    assert isinstance(signals.Terminated(), KeyboardInterrupt)  # the run's Ctrl-C path
    assert signals.EXIT_TERMINATED == 143


def test_head_watch_stops_the_main_thread_when_the_gcs_is_gone(monkeypatch) -> None:
    monkeypatch.setattr(signals, "PROBE_EVERY_S", 0.1)
    signals.install_sigterm()
    address = f"127.0.0.1:{free_port()}"  # nothing listens there
    watch = signals.HeadWatch(address, lost_after_s=0.3).start()
    try:
        with pytest.raises(signals.Terminated):
            time.sleep(10)
    finally:
        watch.stop()
    assert signals.head_lost() == address and signals.hard_exit_requested()


def test_the_ray_temp_dir_is_below_a_private_one(tmp_path: Path) -> None:
    made = tmp_path / "new" / "t"
    assert session.private_temp_dir(made) == made / "ray"
    assert stat.S_IMODE(made.stat().st_mode) == 0o700
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)
    assert session.private_temp_dir(shared) == shared / "ray"
    assert stat.S_IMODE(shared.stat().st_mode) == 0o1777  # the user's own: left alone


def open_dirs(temp: Path) -> list[Path]:
    """Directories at or under `temp` that another user can reach and write into:
    world-writable without the sticky bit, and no directory from `temp` down to them closed
    to others."""
    found = []
    for path in [temp, *(p for p in temp.rglob("*") if p.is_dir() and not p.is_symlink())]:
        mode = path.stat().st_mode
        if not mode & 0o002 or mode & stat.S_ISVTX:
            continue
        above = [a for a in path.parents if a == temp or temp in a.parents]
        if not any(a.stat().st_mode & 0o001 == 0 for a in above):  # no o+x: not reachable
            found.append(path)
    return found


def test_end_processes_ends_what_ignores_sigterm(tmp_path: Path) -> None:
    marker = str(tmp_path / "session_x")
    code = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(120)"
    stubborn = subprocess.Popen([sys.executable, "-c", code, marker], start_new_session=True)
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        time.sleep(0.5)
        assert session.end_processes(marker, grace_s=0.5) == [stubborn.pid]
        assert stubborn.wait(10) == -signal.SIGKILL
        assert other.poll() is None  # not the run's
    finally:
        for proc in (stubborn, other):
            proc.kill()
            proc.wait()


def _wait_for_trial(out: Path, proc: subprocess.Popen, timeout: float = 400) -> None:
    deadline = time.monotonic() + timeout
    while not any((out / "trials").glob("*.json")):
        assert proc.poll() is None, f"the run ended early (rc {proc.returncode})"
        assert time.monotonic() < deadline, "no trial finished in time"
        time.sleep(0.2)


def _one_line_stop(err: str, *, contains: str, out: Path) -> None:
    assert "Traceback" not in err and "SIGTERM received" not in err, err[-3000:]
    assert "internal error" not in err, err[-3000:]
    stops = [ln for ln in err.splitlines() if ln.startswith("halbench: ")]
    assert len(stops) == 1 and contains in stops[0], err[-3000:]
    assert f"--output {out} --resume" in stops[0], stops


@pytest.mark.slow
@pytest.mark.ray
def test_sigterm_to_a_local_ray_run(tmp_path: Path) -> None:
    suite = tiny_suite(tmp_path, "term", losses=("hal", "nca"), seeds=(0, 1), epochs=2)
    out, home = tmp_path / "run", tmp_path / "home"
    home.mkdir()
    with live_run(suite, out, home, "--num-cpus", "1") as run:
        _wait_for_trial(out, run.proc)
        assert stat.S_IMODE(run.temp_dir.stat().st_mode) == 0o700
        assert (run.temp_dir / "ray").is_dir() and open_dirs(run.temp_dir) == []
        started = time.monotonic()
        os.kill(run.proc.pid, signal.SIGTERM)  # the driver alone, as Kubernetes does
        assert run.proc.wait(60) == 143
        assert time.monotonic() - started < 60
        _one_line_stop(run.output(), contains="terminated (SIGTERM)", out=out)
        deadline = time.monotonic() + 10
        while (left := session_pids(None, str(run.temp_dir))) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not left, [Path(f"/proc/{p}/cmdline").read_text() for p in left if p]
    env = json.loads((out / "env.json").read_text())
    assert env["invocations"][-1].get("finished_at"), env["invocations"]
    done = {p.stem for p in (out / "trials").glob("*.json")}
    assert set(pl.read_parquet(out / "trials.parquet")["trial_id"]) == done


@pytest.mark.slow
@pytest.mark.ray
def test_a_lost_head_ends_the_driver_in_one_line(tmp_path: Path) -> None:
    suite = tiny_suite(tmp_path, "headless", losses=("hal", "nca"), seeds=(0, 1, 2), epochs=3)
    out = tmp_path / "run"
    with ray_cluster() as cluster:
        cluster.add_node()
        log = tmp_path / "driver.log"
        cmd = halbench(suite, "--address", cluster.address, "--output", out, "--no-report")
        with log.open("w") as err:
            driver = subprocess.Popen(
                cmd, env=cluster.env, stdout=subprocess.DEVNULL, stderr=err,
                start_new_session=True,
            )  # fmt: skip
        try:
            _wait_for_trial(out, driver)
            os.killpg(cluster.nodes[0].pid, signal.SIGKILL)  # the head, all of it
            started = time.monotonic()
            rc = driver.wait(120)
            assert time.monotonic() - started < 90
        finally:
            end_group(driver, grace=1)
    assert rc == 1, log.read_text()[-3000:]
    _one_line_stop(log.read_text(), contains=f"head at {cluster.address}", out=out)
    done = {p.stem for p in (out / "trials").glob("*.json")}
    assert done and set(pl.read_parquet(out / "trials.parquet")["trial_id"]) == done
