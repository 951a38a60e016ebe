"""A local Ray's footprint on this machine: its temp directories and its processes.

Ray creates its temp directories 0777 without the sticky bit, and a local Ray's DashboardAgent
and RuntimeEnvAgent ignore SIGTERM and can outlive the driver; cluster.ray_session calls these
after starting and after shutting down the Ray it started.
"""

from __future__ import annotations

import os
import signal
import stat
import time
from pathlib import Path


def end_processes(session_dir: str, grace_s: float = 3.0) -> list[int]:
    """End every process of this user whose command line names `session_dir`: a local Ray's
    DashboardAgent and RuntimeEnvAgent ignore SIGTERM and outlived the run. Returns their pids.
    """
    me, uid = os.getpid(), os.getuid()
    found = []
    for entry in Path("/proc").iterdir() if Path("/proc").is_dir() else ():
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        try:
            if entry.stat().st_uid != uid:
                continue
            if session_dir in (entry / "cmdline").read_bytes().decode(errors="replace"):
                found.append(int(entry.name))
        except OSError:
            continue
    for sig, wait in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 0.0)):
        alive = [pid for pid in found if _signal(pid, sig)]
        deadline = time.monotonic() + wait
        while alive and time.monotonic() < deadline:
            time.sleep(0.1)
            alive = [pid for pid in alive if _signal(pid, 0)]
        if not alive:
            break
    return found


def _signal(pid: int, sig: int) -> bool:
    """Send `sig`; whether the process was there (a zombie counts as gone)."""
    try:
        if Path(f"/proc/{pid}/stat").read_text().split(") ")[-1].startswith("Z"):
            return False
        os.kill(pid, sig)
    except (OSError, ProcessLookupError):
        return False
    return True


def private_dirs(temp_dir: Path) -> None:
    """--ray-temp-dir and the directories Ray made in it: 0700, not Ray's 0777 without the
    sticky bit (any user could replace its sockets or logs there). Ray's processes all run as
    this user; a directory Ray creates later is out of others' reach below a 0700 one."""
    for root, dirs, _ in os.walk(temp_dir):
        for path in [Path(root), *(Path(root) / d for d in dirs)]:
            try:
                mode = path.lstat().st_mode
                if stat.S_ISDIR(mode) and mode & 0o002 and not mode & stat.S_ISVTX:
                    path.chmod(0o700)
            except OSError:
                continue
    temp_dir.chmod(0o700)
