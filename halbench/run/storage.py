"""--storage: where Tune's state and the trial files go, a check that a URI can be written
before Ray starts, and the uploads to it, off the driver's critical path.

A storage URI (s3://, gs://, ...) is opened with pyarrow, as Tune opens it, with the standard
environment (AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, ...). An unreachable endpoint, a missing
bucket or missing credentials are then one line and exit 2 instead of a traceback after the
first trial, or minutes of retries.

pyarrow's S3 calls against a stalled endpoint block for minutes and cannot be interrupted, and
Tune makes such calls on the driver's main thread (its state at the start, its listing at the
end). So with a URI, Tune writes its state under the run directory like a local run, and every
upload (each finished trial's file, Tune's state at the end) runs on one background thread per
URI with bounded retries: a dead or stalled store is one warning line, the run finishes
locally, and `--resume` uploads what the store lacks.
"""

from __future__ import annotations

import concurrent.futures
import queue
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from halbench.errors import UserError
from halbench.run import rundir, signals

CHECK_TIMEOUT_S = 30.0  # an endpoint that does not answer in this time is unreachable


def storage_path(storage: str | None, out_dir: Path) -> str:
    """Tune's storage_path: <out_dir>/ray for none or a URI (mirrored there by this module's
    thread), a local path (a shared filesystem) made absolute, as Tune requires."""
    if storage is None or _is_uri(storage):
        return str(out_dir / "ray")
    return str(Path(storage).expanduser().resolve())


def _probe(uri: str) -> None:
    """Create the prefix, write and delete a small file under it (what Tune will do)."""
    from pyarrow import fs

    filesystem, path = fs.FileSystem.from_uri(uri)
    path = path.rstrip("/")
    filesystem.create_dir(path, recursive=True)
    probe = f"{path}/.halbench-probe-{uuid.uuid4().hex[:8]}"
    with filesystem.open_output_stream(probe) as f:
        f.write(b"halbench storage check\n")
    filesystem.delete_file(probe)


def check_storage(storage: str | None, timeout: float = CHECK_TIMEOUT_S) -> None:
    """Raise UserError naming --storage when a storage URI cannot be written.

    Local paths are left to Tune (they are created on demand); only URIs are probed.
    """
    if storage is None or "://" not in storage:
        return
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)
    future = pool.submit(_probe, storage)
    try:
        future.result(timeout=timeout)
    except concurrent.futures.TimeoutError:
        raise UserError(
            f"--storage {storage}: no answer within {timeout:g} s; check the endpoint "
            "(AWS_ENDPOINT_URL for an S3-compatible server) and the network"
        ) from None
    except Exception as err:  # noqa: BLE001 - any failure to write there means the same
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UserError(f"--storage {storage}: cannot write there ({first})") from None
    finally:
        pool.shutdown(wait=False)  # a hung probe thread must not hold the command


# ----- mirroring finished trials, off the driver's critical path ------------------------------

UPLOAD_TIMEOUT_S = 30.0  # one upload that takes longer: the store is stalled (one warning)
UPLOAD_ATTEMPTS = 3  # a failed upload is retried this often in all, with a growing pause
RETRY_PAUSE_S = 1.0
CLOSE_TIMEOUT_S = 10.0  # the run's end waits this long at most for the uploads still queued
_MISSING = "<missing>"  # a queue item: the trial files the store lacks, and Tune's state
T = TypeVar("T")


class _Mirror:
    """One storage URI's uploads: a queue and a daemon thread, so that a slow, stalled or dead
    store never holds Tune's loop or Ctrl-C (pyarrow's S3 calls cannot be interrupted).

    The first upload that fails after its retries, or that has not answered within
    UPLOAD_TIMEOUT_S, gives one warning line and ends mirroring for this run: the run directory
    is the record, and `--resume` uploads what the store lacks (mirror_missing).
    """

    def __init__(self, storage: str) -> None:
        self.storage = storage
        self.queue: queue.Queue[tuple[Path, str, tuple[str, ...]] | None] = queue.Queue()
        self.broken = False
        self.current_since: float | None = None  # when the upload in progress started
        self.thread = threading.Thread(target=self._loop, name="halbench-mirror", daemon=True)
        self.thread.start()

    def put(self, out_dir: Path, what: str, trial_ids: tuple[str, ...] = ()) -> None:
        """Queue `what`: a trial id, or _MISSING (those of `trial_ids` the store lacks)."""
        self._check_stalled()
        if not self.broken:
            self.queue.put((out_dir, what, trial_ids))

    def _check_stalled(self) -> None:
        since = self.current_since
        if since is not None and time.monotonic() - since > UPLOAD_TIMEOUT_S:
            self._give_up(f"no answer within {UPLOAD_TIMEOUT_S:g} s")

    def _give_up(self, why: str) -> None:
        if self.broken:
            return
        self.broken = True
        _warn(
            f"storage {self.storage} is not answering ({why}); the run goes on locally, "
            "and --resume uploads the trial files it lacks"
        )

    def _loop(self) -> None:
        while (item := self.queue.get()) is not None:
            if self.broken:
                continue
            out_dir, what, trial_ids = item
            self.current_since = time.monotonic()
            try:
                if what == _MISSING:
                    present = _retried(_listed, self.storage)
                    for trial_id in trial_ids:
                        if rundir.task_path(out_dir, trial_id).name not in present:
                            _retried(_upload, self.storage, out_dir, trial_id)
                    _retried(_upload_tune_state, self.storage, out_dir)
                else:
                    _retried(_upload, self.storage, out_dir, what)
            except Exception as err:  # noqa: BLE001 - the local file is the record
                self._give_up(f"{type(err).__name__}: {str(err).strip()[:160]}")
            finally:
                self.current_since = None

    def close(self, timeout_s: float) -> bool:
        """Wait at most `timeout_s` for the queued uploads; whether they all ended."""
        self.queue.put(None)
        if self.broken:  # given up: the thread only drains its queue, or hangs in a call
            timeout_s = min(timeout_s, 0.5)
        try:
            self.thread.join(max(timeout_s, 0.0))
        except KeyboardInterrupt:  # Ctrl-C ends the wait, not the run's last lines
            pass
        if self.thread.is_alive():
            self._give_up(f"uploads still pending after {timeout_s:g} s")
            return False
        return True


_mirrors: dict[str, _Mirror] = {}
_lock = threading.Lock()


def _warn(message: str) -> None:
    print(f"[halbench] warning: {message}", file=sys.stderr, flush=True)


def _is_uri(storage: str | None) -> bool:
    return storage is not None and "://" in storage


def _mirror(storage: str) -> _Mirror:
    with _lock:
        mirror = _mirrors.get(storage)
        if mirror is None:
            mirror = _mirrors[storage] = _Mirror(storage)
            # pyarrow's exit hook (S3 finalization) hung for minutes on a store that stalled
            # even after every upload had ended; skipping it crashes: the CLI ends with os._exit.
            signals.request_hard_exit()
        return mirror


def _retried(call: Callable[..., T], *args: Any) -> T:
    """`call(*args)`, tried UPLOAD_ATTEMPTS times in all with a doubling pause."""
    for attempt in range(UPLOAD_ATTEMPTS - 1):
        try:
            return call(*args)
        except Exception:  # noqa: BLE001 - retried; the last attempt's error is the one said
            time.sleep(RETRY_PAUSE_S * 2**attempt)
    return call(*args)


def _upload(storage: str, out_dir: Path, trial_id: str) -> None:
    from pyarrow import fs

    local = rundir.task_path(out_dir, trial_id)
    filesystem, path = fs.FileSystem.from_uri(storage)
    if isinstance(filesystem, fs.LocalFileSystem):  # file://: a bucket has no directories
        filesystem.create_dir(f"{path.rstrip('/')}/trials", recursive=True)
    with filesystem.open_output_stream(f"{path.rstrip('/')}/trials/{local.name}") as f:
        f.write(local.read_bytes())


def _upload_tune_state(storage: str, out_dir: Path) -> None:
    """<out_dir>/ray (Tune's experiment directories) to `<storage>/`, as Tune would sync it."""
    from pyarrow import fs

    local_state = out_dir / "ray"
    if local_state.is_dir():
        filesystem, path = fs.FileSystem.from_uri(storage)
        fs.copy_files(str(local_state), path.rstrip("/"), fs.LocalFileSystem(), filesystem)


def mirror_trial(storage: str | None, out_dir: Path, trial_id: str) -> None:
    """Queue a finished trial's file for `<storage>/trials/` when the storage is a URI.

    The run directory on the driver stays the record (resume reads it); the copy beside Tune's
    state lets a cluster's results outlive the driver's disk. The upload runs on a background
    thread (_Mirror): this returns at once, and a failed or stalled upload is one warning.
    """
    if _is_uri(storage):
        _mirror(storage).put(out_dir, trial_id)  # type: ignore[arg-type]


def mirror_missing(storage: str | None, out_dir: Path, trial_ids: list[str]) -> None:
    """Queue every finished trial's file that `<storage>/trials/` lacks, and Tune's state
    (<out_dir>/ray, to `<storage>/`). The run calls this at its end, then close().

    The listing runs on the mirror's thread too: a store that does not answer holds nothing.
    """
    if _is_uri(storage):
        _mirror(storage).put(out_dir, _MISSING, tuple(trial_ids))  # type: ignore[arg-type]


def _listed(storage: str) -> set[str]:
    from pyarrow import fs

    filesystem, path = fs.FileSystem.from_uri(storage)
    selector = fs.FileSelector(f"{path.rstrip('/')}/trials", allow_not_found=True)
    return {Path(info.path).name for info in filesystem.get_file_info(selector)}


def close(timeout_s: float = CLOSE_TIMEOUT_S) -> bool:
    """End every mirror of this process, waiting at most `timeout_s` in all for queued uploads.

    The run calls this at its end. Returns whether every upload ended (False: one warning was
    printed; the files are in the run directory and --resume uploads them).
    """
    with _lock:
        mirrors = list(_mirrors.values())
        _mirrors.clear()
    deadline = time.monotonic() + timeout_s
    ended = [m.close(deadline - time.monotonic()) for m in mirrors]
    return all(ended)
