"""What stops a run from outside: SIGTERM (Slurm, Kubernetes) and a cluster head that is gone.

SIGTERM is handled like a second Ctrl-C: `Terminated` (a KeyboardInterrupt) unwinds the run,
which writes what finished, closes env.json's invocation and ends its local Ray; the command
exits 143 with the resume command. Ray's driver installs a C++ handler for SIGTERM that dumps
a stack and aborts, so the handler is installed again after Ray starts (cluster.ray_session).

A driver whose cluster head died waits for Ray's GCS reconnect timeout (60 s) and is then ended
by Ray's C++ code with one line of its own. `HeadWatch` probes the GCS port from a thread and,
after HEAD_LOST_AFTER_S without an answer, stops the run the same way, naming the address.
"""

from __future__ import annotations

import os
import signal
import socket
import threading
import time

HEAD_LOST_AFTER_S = 20.0  # the GCS port refused or silent this long: the head is gone
PROBE_EVERY_S = 2.0
EXIT_TERMINATED = 128 + signal.SIGTERM  # 143, what a shell reports for a SIGTERMed command


class Terminated(KeyboardInterrupt):
    """SIGTERM, or a lost cluster head: the run stops as after Ctrl-C, then exits."""


_state = {"terminated": False, "head_lost": None, "hard_exit": False}


def _on_sigterm(signum: int, frame: object) -> None:
    if _state["terminated"]:
        return  # the run is already winding down: let it write what finished
    _state["terminated"] = True
    raise Terminated


def install_sigterm() -> None:
    """SIGTERM raises Terminated in the main thread (once); no-op off the main thread."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _on_sigterm)


def terminated() -> bool:
    """Whether SIGTERM (or a lost head) stopped this process's run."""
    return bool(_state["terminated"])


def head_lost() -> str | None:
    """The address of the cluster head that stopped answering, if one did."""
    return _state["head_lost"]  # type: ignore[return-value]


def stop_line() -> str | None:
    """Why the command was stopped from outside (after 'halbench: '), if it was."""
    if address := head_lost():
        return (
            f"error: the Ray cluster's head at {address} stopped answering; what finished is kept"
        )
    if terminated():
        return "terminated (SIGTERM); what finished is kept"
    return None


def exit_code() -> int:
    """The command's exit code after a stop: 1 for a lost head (a failure), 143 for SIGTERM."""
    return 1 if head_lost() else EXIT_TERMINATED


def request_hard_exit() -> None:
    """A thread is stuck in a call that blocks interpreter exit: end with os._exit."""
    _state["hard_exit"] = True


def hard_exit_requested() -> bool:
    return bool(_state["hard_exit"])


def reset() -> None:
    """Forget a previous run's stop (a process that runs several commands: the tests)."""
    _state.update(terminated=False, head_lost=None, hard_exit=False)


class HeadWatch:
    """A daemon thread that stops the run when the GCS at `address` stops answering."""

    def __init__(self, address: str, lost_after_s: float = HEAD_LOST_AFTER_S) -> None:
        host, _, port = address.rpartition(":")
        self.address, self.host, self.port = address, host, int(port)
        self.lost_after_s = lost_after_s
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._watch, name="halbench-head", daemon=True)

    def start(self) -> HeadWatch:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.stopped.set()

    def _answers(self) -> bool:
        try:
            socket.create_connection((self.host, self.port), timeout=PROBE_EVERY_S).close()
        except OSError:
            return False
        return True

    def _watch(self) -> None:
        last_answer = time.monotonic()
        while not self.stopped.wait(PROBE_EVERY_S):
            if self._answers():
                last_answer = time.monotonic()
            elif time.monotonic() - last_answer > self.lost_after_s:
                _state["head_lost"] = self.address
                request_hard_exit()  # Ray's own shutdown would wait for the dead GCS
                # A real signal (not _thread.interrupt_main): it also wakes a main thread
                # blocked in a system call, and runs _on_sigterm there.
                signal.pthread_kill(threading.main_thread().ident or 0, signal.SIGTERM)
                return


def hard_exit(code: int) -> None:
    """os._exit(code) after flushing: the interpreter's exit would hang (request_hard_exit)."""
    import sys

    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)
