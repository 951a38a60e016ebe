"""One writer per run directory: <run>/.halbench.lock, held with fcntl.flock for the run.

The kernel drops a flock when its holder dies (kill -9 included), so a crashed run never
blocks the next one; the pid and host written into the file name the holder for the message
of a refused second run, and a file left by a dead process is simply taken over.
"""

from __future__ import annotations

import errno
import fcntl
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from halbench import results
from halbench.errors import UserError

LOCK_NAME = ".halbench.lock"


def _holder(path: Path) -> str:
    try:
        text = path.read_text(errors="replace").strip()[:200]
    except OSError:
        return "an unknown process"
    pid, _, host = text.partition(" ")
    return f"pid {pid} on {host}" if pid.isdigit() else "an unknown process"


@contextmanager
def run_lock(out_dir: Path) -> Iterator[None]:
    """Hold the run directory's lock; UserError naming the holder when another run has it."""
    from halbench.run.rundir import inside, make_dir

    make_dir(Path(out_dir))
    path = inside(out_dir, LOCK_NAME)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as err:
        raise results.write_error(path, err) from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            if err.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise
            raise UserError(
                f"{out_dir}: another halbench ({_holder(path)}) is writing this directory; "
                "wait for it to finish, or choose another --output"
            ) from None
        # Ours now (any pid left in the file was a dead holder's): record who holds it.
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()} {socket.gethostname()}\n".encode(), 0)
        except OSError as err:
            raise results.write_error(path, err) from None
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the flock
