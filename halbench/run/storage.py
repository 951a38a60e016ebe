"""Tune's storage path: where it goes, and a check that it can be written before Ray starts.

A storage URI (s3://, gs://, ...) is opened with pyarrow, as Tune opens it, with the standard
environment (AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, ...). An unreachable endpoint, a missing
bucket or missing credentials are then one line and exit 2 instead of a traceback after the
first trial, or minutes of retries.
"""

from __future__ import annotations

import concurrent.futures
import uuid
from pathlib import Path

from halbench.errors import UserError
from halbench.run import rundir

CHECK_TIMEOUT_S = 30.0  # an endpoint that does not answer in this time is unreachable


def storage_path(storage: str | None, out_dir: Path) -> str:
    """Tune's storage_path: a URI as given, a local path made absolute (Tune requires it)."""
    if storage is None:
        return str(out_dir / "ray")
    return storage if "://" in storage else str(Path(storage).expanduser().resolve())


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


def mirror_trial(storage: str | None, out_dir: Path, trial_id: str) -> None:
    """Copy a finished trial's file to `<storage>/trials/` when the storage is a URI.

    The run directory on the driver stays the record (resume reads it); the copy beside Tune's
    state lets a cluster's results outlive the driver's disk. A failed upload is a warning:
    the trial's result is already safe on the driver.
    """
    if storage is None or "://" not in storage:
        return
    from pyarrow import fs

    local = rundir.trial_path(out_dir, trial_id)
    try:
        filesystem, path = fs.FileSystem.from_uri(storage)
        target = f"{path.rstrip('/')}/trials/{local.name}"
        with filesystem.open_output_stream(target) as f:
            f.write(local.read_bytes())
    except Exception as err:  # noqa: BLE001 - the local file is the record; say and go on
        import sys

        print(
            f"[halbench] warning: could not copy {local.name} to {storage} "
            f"({type(err).__name__}: {str(err).strip()[:200]})",
            file=sys.stderr,
            flush=True,
        )


def mirror_missing(storage: str | None, out_dir: Path, trial_ids: list[str]) -> None:
    """Copy every finished trial's file that `<storage>/trials/` lacks (see mirror_trial)."""
    if storage is None or "://" not in storage or not trial_ids:
        return
    from pyarrow import fs

    try:
        filesystem, path = fs.FileSystem.from_uri(storage)
        selector = fs.FileSelector(f"{path.rstrip('/')}/trials", allow_not_found=True)
        present = {Path(info.path).name for info in filesystem.get_file_info(selector)}
    except Exception:  # noqa: BLE001 - cannot list: copy them all (mirror_trial warns)
        present = set()
    for trial_id in trial_ids:
        if rundir.trial_path(out_dir, trial_id).name not in present:
            mirror_trial(storage, out_dir, trial_id)
