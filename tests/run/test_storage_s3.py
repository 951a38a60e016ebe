"""--storage on an S3-compatible server (moto, on 127.0.0.1): Tune's state and every finished
trial reach the bucket, the run directory stays complete, a killed driver's run resumes with
the same storage, and a storage nobody answers for is one line and exit 2 before any trial."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest

from tests.run.cluster_fixtures import (
    AWS_TEST_ENV,
    S3,
    base_env,
    end_group,
    free_port,
    halbench,
    run_cli,
    s3_server,
    tiny_suite,
)

pytestmark = [pytest.mark.slow, pytest.mark.ray]


@pytest.fixture(scope="module")
def s3() -> Iterator[S3]:
    with s3_server() as server:
        yield server


@pytest.fixture(scope="module")
def ray_temp() -> Iterator[Path]:
    """Short session directories for the local Rays (Ray's socket paths are limited)."""
    temp = Path(tempfile.mkdtemp(prefix="hbs3-", dir="/tmp"))
    yield temp
    shutil.rmtree(temp, ignore_errors=True)


def local_run(temp_root: Path, suite: Path, out: Path, storage: str, *extra: str) -> list[str]:
    temp = tempfile.mkdtemp(dir=temp_root)
    return halbench(
        suite, "--output", out, "--storage", storage, "--num-cpus", "1", "--ray-temp-dir", temp,
        *extra,
    )  # fmt: skip


def test_tune_state_and_trials_reach_the_bucket(s3, ray_temp, tmp_path) -> None:
    suite = tiny_suite(tmp_path, "s3run", losses=("hal", "nca"))
    out = tmp_path / "run"
    run_cli(local_run(ray_temp, suite, out, f"s3://{s3.bucket}/first"), base_env(**s3.env), 600)
    keys = s3.keys("first/")
    trials = pl.read_parquet(out / "trials.parquet")
    assert trials["status"].to_list() == ["ok", "ok"]
    assert sorted(k for k in keys if k.startswith("first/trials/")) == sorted(
        f"first/trials/{t}.json" for t in trials["trial_id"]
    )
    assert any("experiment_state" in k for k in keys), keys  # Tune's own state
    assert (out / "report.md").exists() and (out / "report.html").exists()


def test_resume_with_the_same_storage_finishes_a_killed_run(s3, ray_temp, tmp_path) -> None:
    suite = tiny_suite(tmp_path, "s3resume", losses=("hal", "nca"), seeds=(0, 1))
    out, storage = tmp_path / "run", f"s3://{s3.bucket}/resumed"
    env = base_env(**s3.env)
    driver = subprocess.Popen(
        local_run(ray_temp, suite, out, storage, "--no-report"),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its local Ray is in its group: killed with it
    )
    try:
        deadline = time.monotonic() + 400
        while not any((out / "trials").glob("*.json")):
            assert driver.poll() is None, f"the run ended early (rc {driver.returncode})"
            assert time.monotonic() < deadline, "no trial finished in time"
            time.sleep(0.2)
    finally:
        end_group(driver, grace=0.0)  # SIGKILL at once is what a crash looks like
    first = {p.stem for p in (out / "trials").glob("*.json")}
    assert 1 <= len(first) < 4
    run_cli(local_run(ray_temp, suite, out, storage, "--resume", "--no-report"), env, 600)
    trials = pl.read_parquet(out / "trials.parquet")
    assert trials["status"].to_list() == ["ok"] * 4
    uploaded = {Path(k).stem for k in s3.keys("resumed/trials/")}
    assert uploaded == set(trials["trial_id"])
    assert sum("experiment_state" in k for k in s3.keys("resumed/")) >= 2  # both invocations


def test_unreachable_storage_is_one_line_before_any_trial(ray_temp, tmp_path) -> None:
    suite = tiny_suite(tmp_path, "s3gone")
    out = tmp_path / "run"
    closed = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    env = base_env(**AWS_TEST_ENV, AWS_ENDPOINT_URL=closed)
    done = run_cli(local_run(ray_temp, suite, out, "s3://nobucket/x"), env, 300, ok=False)
    assert done.returncode == 2, done.stderr[-3000:]
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("halbench: error: --storage s3://nobucket/x")
    assert not out.exists()  # nothing started: no run directory, no trial


# --- a store that stalls or dies mid-run: the run is never held by it ---------------------------


@pytest.fixture
def own_s3() -> Iterator[S3]:
    """A server of this test's own, to stop or kill (the module's one serves the others)."""
    with s3_server() as server:
        yield server


def start_run(cmd: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    with log.open("w") as err:
        return subprocess.Popen(
            cmd, env=env, stdout=subprocess.DEVNULL, stderr=err, start_new_session=True
        )


def wait_for_trial(out: Path, proc: subprocess.Popen, timeout: float = 400) -> None:
    deadline = time.monotonic() + timeout
    while not any((out / "trials").glob("*.json")):
        assert proc.poll() is None, f"the run ended early (rc {proc.returncode})"
        assert time.monotonic() < deadline, "no trial finished in time"
        time.sleep(0.2)


def no_internal_error(err: str) -> None:
    assert "Traceback" not in err and "internal error" not in err, err[-3000:]


@pytest.mark.parametrize("fault", ["stop", "kill"])
def test_a_stalled_or_dead_store_lets_the_run_finish(own_s3, ray_temp, tmp_path, fault) -> None:
    suite = tiny_suite(tmp_path, f"s3{fault}", losses=("hal", "nca"), seeds=(0, 1))
    out, log = tmp_path / "run", tmp_path / "run.log"
    cmd = local_run(ray_temp, suite, out, f"s3://{own_s3.bucket}/{fault}", "--no-report")
    proc = start_run(cmd, base_env(**own_s3.env), log)
    try:
        wait_for_trial(out, proc)
        os.killpg(own_s3.pid, signal.SIGSTOP if fault == "stop" else signal.SIGKILL)
        assert proc.wait(300) == 0, log.read_text()[-3000:]
    finally:
        end_group(proc, grace=2)
    err = log.read_text()
    no_internal_error(err)
    warnings = [ln for ln in err.splitlines() if "warning: storage" in ln]
    assert len(warnings) == 1 and "--resume uploads" in warnings[0], err[-3000:]
    assert pl.read_parquet(out / "trials.parquet")["status"].to_list() == ["ok"] * 4


def test_ctrl_c_with_a_stalled_store_ends_the_run_quickly(own_s3, ray_temp, tmp_path) -> None:
    suite = tiny_suite(
        tmp_path,
        "s3ctrlc",
        losses=("hal", "nca"),
        seeds=(0, 1, 2),
        epochs=3,
        dataset={"train_size": 2048},
    )  # fmt: skip  (trials of seconds: the store stops while most still run)
    out, log = tmp_path / "run", tmp_path / "run.log"
    cmd = local_run(ray_temp, suite, out, f"s3://{own_s3.bucket}/ctrlc", "--no-report")
    proc = start_run(cmd, base_env(**own_s3.env), log)
    try:
        wait_for_trial(out, proc)
        os.killpg(own_s3.pid, signal.SIGSTOP)
        time.sleep(3)  # a trial finishes meanwhile, or its upload is queued
        assert proc.poll() is None, "the run ended before the Ctrl-C"
        started = time.monotonic()
        os.kill(proc.pid, signal.SIGINT)
        time.sleep(1)
        os.kill(proc.pid, signal.SIGINT)  # the second Ctrl-C: quit now
        rc = proc.wait(60)
        assert time.monotonic() - started < 15, log.read_text()[-3000:]
    finally:
        end_group(proc, grace=2)
    assert rc == 130, log.read_text()[-3000:]
    err = log.read_text()
    no_internal_error(err)
    assert f"--output {out} --resume" in err
    assert (out / "trials.parquet").is_file()
