"""Atomic writes: a kill at any moment leaves the old file or the new one, never half.

A full disk, a read-only filesystem or missing permissions becomes one UserError naming the path.
"""

from __future__ import annotations

import errno
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import polars as pl

from halbench.errors import UserError
from halbench.failures import free_space


def write_parquet_atomic(df: pl.DataFrame, path: Path) -> None:
    """Write to a temporary file in the same directory, then rename over the target.

    A kill at any moment leaves either the old file or the new one, never a truncated file.
    """
    write_bytes_atomic(path, lambda f: df.write_parquet(f))


def write_json_atomic(path: Path, obj: Any) -> None:
    write_bytes_atomic(path, lambda f: f.write(json.dumps(obj, indent=2, default=str).encode()))


def write_text_atomic(path: Path, text: str) -> None:
    """A text file (a report, a comparison) written like the parquet files: all or nothing."""
    write_bytes_atomic(path, lambda f: f.write(text.encode()))


# A full disk, a read-only filesystem or missing permissions is the user's to fix: one line
# naming the path (what finished is on disk and resumable), not a traceback.
_WRITE_ERRNOS = {errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EPERM, errno.EDQUOT}
_FULL_ERRNOS = {errno.ENOSPC, errno.EDQUOT}


def write_error(path: Path, err: OSError) -> UserError | OSError:
    """The UserError for a failed write of `path` (or `err` itself when it is not the user's)."""
    if err.errno not in _WRITE_ERRNOS:
        return err
    return _cannot_write(path, os.strerror(err.errno), full=err.errno in _FULL_ERRNOS)


def _cannot_write(path: Path, why: str, *, full: bool) -> UserError:
    free = f", {free_space(path)}" if full else ""  # how far from enough space it was
    return UserError(f"{path}: cannot write ({why}{free}); what finished is kept")


def write_bytes_atomic(path: Path, writer: Callable[[BinaryIO], object]) -> None:
    """Write through a temporary file and a rename; a failed write is one line (write_error)."""
    path = Path(path)
    try:
        _write_bytes_atomic(path, writer)
    except OSError as err:
        raise write_error(path, err) from None
    except Exception as err:  # noqa: BLE001 - pyarrow wraps ENOSPC in its own error types
        if "No space left" in str(err):
            raise _cannot_write(path, os.strerror(errno.ENOSPC), full=True) from None
        raise


def _write_bytes_atomic(path: Path, writer: Callable[[BinaryIO], object]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        # mkstemp creates 0600; a results file is as readable as any other file we write.
        os.chmod(tmp, 0o644)
        with os.fdopen(fd, "wb") as f:
            writer(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


# ---------------------------------------------------------------- the k that matters
