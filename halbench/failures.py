"""Exception -> (status, one line), for every kind of task: trials, profile points, lost workers.

A failure is a row with a status, never a lost suite. The statuses are results.STATUSES:
'oom' (out of memory on the GPU or the host, or a worker the memory monitor or the kernel
killed), 'diverged' (NaN/inf), 'timeout' (a profile point over its time limit), 'error'
(anything else, "ExceptionType: first line").
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import textwrap
from pathlib import Path

# Substrings of allocator messages that mean "out of memory" (CUDA, the CPU allocator, glibc).
OOM_MESSAGES = ("out of memory", "not enough memory", "can't allocate memory")
# A worker that Ray's memory monitor, or the kernel's OOM killer (SIGKILL), ended.
_KILLED_FOR_MEMORY = re.compile(
    r"running low on memory|memory monitor|signal (9|SIGKILL)\b|exit code 137\b", re.IGNORECASE
)
LOST_WORKER = "RayTrialError: trial process failed"  # Ray gave no exception to show
_MAX_LINE = 240  # Ray's messages run to a paragraph on one line; a row needs the gist


class Diverged(Exception):
    """The training loss (or an embedding) became NaN or infinite."""


class TimedOut(Exception):
    """A task ran past its time limit (a profile point past --point-timeout)."""


def first_line(exc: BaseException) -> str:
    """'ExceptionType: first line of its message' ('ExceptionType' alone when it has none)."""
    name = type(exc).__name__
    return f"{name}: {message_line(exc)}" if str(exc).strip() else name


def message_line(exc: BaseException) -> str:
    """The first line of the message alone, where the context names the kind of problem."""
    lines = str(exc).strip().splitlines()
    return lines[0].strip() if lines else type(exc).__name__


def is_oom(exc: BaseException) -> bool:
    """Out of memory on the GPU (CUDA), on the host (allocator, MemoryError) or Ray's killer."""
    if isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError":
        # torch.OutOfMemoryError (= torch.cuda.OutOfMemoryError) and ray.exceptions'
        # OutOfMemoryError, matched by name so that neither package is imported here.
        return True
    message = str(exc)
    return any(m in message for m in OOM_MESSAGES) or (
        _is_ray_error(exc) and bool(_KILLED_FOR_MEMORY.search(message))
    )


def classify(exc: BaseException | None) -> tuple[str, str]:
    """(status, error) of a failed task; None: a worker that died without an exception."""
    if exc is None:
        return "error", LOST_WORKER
    if isinstance(exc, Diverged):
        return "diverged", str(exc)
    if isinstance(exc, TimedOut):
        return "timeout", str(exc)
    status = "oom" if is_oom(exc) else "error"
    if _is_ray_error(exc):
        # Ray wraps the cause in a paragraph of context; its last line says what happened.
        lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
        gist = textwrap.shorten(lines[-1], _MAX_LINE, placeholder=" ...") if lines else ""
        return status, f"{type(exc).__name__}: {gist}" if gist else type(exc).__name__
    return status, first_line(exc)[:500]


def _is_ray_error(exc: BaseException) -> bool:
    return type(exc).__module__.split(".")[0] == "ray"


# ----- a full disk, wherever it was hit (halbench's writes, pyarrow's, Tune's, Ray's) ----------

_NO_SPACE = (errno.ENOSPC, errno.EDQUOT)
_NO_SPACE_TEXT = ("No space left on device", "Disk quota exceeded")
_PATH = re.compile(r"(/[^\s:'\"(),]+)")


def no_space(exc: BaseException) -> tuple[str | None, str] | None:
    """(path or None, errno text) when a full disk is somewhere in `exc`: itself, its causes,
    its context, or the exceptions in its args (Tune's TuneError wraps the cause there)."""
    stack: list[object] = [exc]
    seen: set[int] = set()
    while stack:
        err = stack.pop()
        if not isinstance(err, BaseException) or id(err) in seen:
            continue
        seen.add(id(err))
        if isinstance(err, OSError) and err.errno in _NO_SPACE:
            return (str(err.filename) if err.filename else None), os.strerror(err.errno)
        text = str(err)
        for phrase in _NO_SPACE_TEXT:
            if phrase in text:
                found = _PATH.search(text)
                return (found.group(1) if found else None), phrase
        stack += [err.__cause__, err.__context__, *err.args]
    return None


def free_space(path: Path | str) -> str:
    """The free space of the filesystem holding `path` (or its nearest existing parent)."""
    where = Path(path)
    while not where.exists() and where != where.parent:
        where = where.parent
    try:
        free = shutil.disk_usage(where).free
    except OSError:
        return "free space unknown"
    for unit in ("B", "kB", "MB", "GB"):
        if free < 1024 or unit == "GB":
            return f"{free:.0f} {unit} free" if unit == "B" else f"{free:.1f} {unit} free"
        free /= 1024
    return ""  # not reached


def disk_full_line(exc: BaseException, default_path: Path | str) -> str | None:
    """One line for a full disk hit anywhere in `exc` (None when it was not one): the path,
    what is free there, and that what finished is kept."""
    found = no_space(exc)
    if found is None:
        return None
    path, text = found
    path = path or str(default_path)
    return f"{path}: {text} ({free_space(path)}); what finished is kept"
