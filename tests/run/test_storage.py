"""Storage mirroring off the driver's critical path: uploads queue and return at once, a failing
or hung store is one warning, close() waits a bounded time, and --resume's mirror_missing
uploads exactly what the store lacks (a file:// URI stands in for a bucket)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from halbench.run import signals, storage, store


@pytest.fixture(autouse=True)
def fresh(monkeypatch):
    monkeypatch.setattr(storage, "RETRY_PAUSE_S", 0.01)
    signals.reset()
    yield
    storage.close(5)
    signals.reset()


def run_dir(tmp_path: Path, *ids: str) -> Path:
    out = tmp_path / "run"
    for trial_id in ids:
        store.save(out, {"trial_id": trial_id, "status": "ok"}, [])
    (out / "ray" / "tune-x").mkdir(parents=True)
    (out / "ray" / "tune-x" / "experiment_state-1.json").write_text("{}")
    return out


def test_trials_and_tune_state_reach_the_store(tmp_path: Path) -> None:
    out, bucket = run_dir(tmp_path, "a", "b"), tmp_path / "bucket"
    uri = f"file://{bucket}/p"
    storage.mirror_trial(uri, out, "a")
    assert storage.close(30)
    assert sorted(p.name for p in (bucket / "p" / "trials").iterdir()) == ["a.json"]
    storage.mirror_missing(uri, out, ["a", "b"])  # what --resume does at its end
    assert storage.close(30)
    assert sorted(p.name for p in (bucket / "p" / "trials").iterdir()) == ["a.json", "b.json"]
    assert (bucket / "p" / "tune-x" / "experiment_state-1.json").is_file()
    assert storage.storage_path(uri, out) == str(out / "ray")  # Tune itself writes locally


def test_a_hung_store_never_blocks_the_caller(tmp_path: Path, monkeypatch, capsys) -> None:
    release = threading.Event()
    monkeypatch.setattr(storage, "_upload", lambda *a: release.wait(60))
    monkeypatch.setattr(storage, "UPLOAD_TIMEOUT_S", 0.2)
    out = run_dir(tmp_path, "a", "b", "c")
    started = time.monotonic()
    for trial_id in ("a", "b"):
        storage.mirror_trial("s3://bucket/p", out, trial_id)
    time.sleep(0.4)
    storage.mirror_trial("s3://bucket/p", out, "c")  # finds the first upload stalled
    assert not storage.close(0.5)
    assert time.monotonic() - started < 5
    warnings = [ln for ln in capsys.readouterr().err.splitlines() if "warning" in ln]
    assert len(warnings) == 1 and "s3://bucket/p is not answering" in warnings[0], warnings
    assert "--resume uploads" in warnings[0]
    assert signals.hard_exit_requested()  # the CLI ends with os._exit: pyarrow would wait
    release.set()


def test_a_failing_store_is_retried_then_one_warning(tmp_path: Path, monkeypatch, capsys) -> None:
    calls: list[str] = []

    def refuse(storage_uri: str, out_dir: Path, trial_id: str) -> None:
        calls.append(trial_id)
        raise OSError("connection refused")

    monkeypatch.setattr(storage, "_upload", refuse)
    out = run_dir(tmp_path, "a", "b")
    storage.mirror_trial("s3://bucket/p", out, "a")
    storage.mirror_trial("s3://bucket/p", out, "b")
    assert storage.close(10)
    assert calls == ["a"] * storage.UPLOAD_ATTEMPTS  # then the store is given up for this run
    err = capsys.readouterr().err
    assert err.count("warning") == 1 and "connection refused" in err, err


def test_no_uri_no_thread(tmp_path: Path) -> None:
    out = run_dir(tmp_path, "a")
    storage.mirror_trial(None, out, "a")
    storage.mirror_missing(str(tmp_path / "shared"), out, ["a"])
    assert storage._mirrors == {} and not signals.hard_exit_requested()
    assert storage.close(0)
