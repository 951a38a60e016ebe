"""A local Ray's footprint on this machine: its temp directories and its processes.

Ray creates its temp directories 0777 without the sticky bit, and a local Ray's DashboardAgent
and RuntimeEnvAgent ignore SIGTERM and can outlive the driver; cluster.init_ray and
cluster.ray_session call these before starting and after shutting down the Ray it started.
"""

from __future__ import annotations

import os
import signal
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


def private_temp_dir(temp_dir: Path) -> Path:
    """Ray's temp directory for --ray-temp-dir: `<temp_dir>/ray`, below a `temp_dir` that is
    created 0700 when missing.

    Ray makes its temp, session, sockets/ and logs/ directories 0777 without the sticky bit,
    and every worker it starts does so again (Ray's node set-up), so a chmod after ray.init
    does not hold; one level up, Ray never touches the mode, and none of its files can be
    reached by another user through a 0700 directory. An existing `temp_dir` keeps its mode.
    """
    if not temp_dir.exists():
        temp_dir.mkdir(mode=0o700, parents=True)
        temp_dir.chmod(0o700)  # mkdir's mode is masked by the umask
    return temp_dir / "ray"
