"""What a local Ray exposes: its services on 127.0.0.1 only, its auth token file private.

A local run needs no other machine, yet Ray binds its GCS, raylet, workers and agents to the
node IP (every interface for the gRPC servers) and serves Prometheus metrics there without a
token. Ray keeps everything on the loopback when the node IP is 127.0.0.1, which `ray.init`
picks only when Ray thinks it runs on a laptop OS (`RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`):
`loopback_only` makes it do so for the local start. Ray's private constant is touched here and
nowhere else; tests/run/test_listeners.py catches an upgrade that changes it.
"""

from __future__ import annotations

import os
import secrets
import stat
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

LOCAL_ONLY_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
_warned: set[Path] = set()


@contextmanager
def loopback_only() -> Iterator[None]:
    """Within this block, a local ray.init chooses 127.0.0.1 as its node IP (all services)."""
    from ray._private import ray_constants

    before_env = os.environ.get(LOCAL_ONLY_ENV)
    before = ray_constants.ENABLE_RAY_CLUSTER
    os.environ[LOCAL_ONLY_ENV] = "0"
    ray_constants.ENABLE_RAY_CLUSTER = False  # read by services.get_node_ip_address
    try:
        yield
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = before
        if before_env is None:
            os.environ.pop(LOCAL_ONLY_ENV, None)
        else:
            os.environ[LOCAL_ONLY_ENV] = before_env


def token_path() -> Path:
    """Where Ray reads its auth token: $RAY_AUTH_TOKEN_PATH, else ~/.ray/auth_token."""
    path = os.environ.get("RAY_AUTH_TOKEN_PATH")
    return Path(path).expanduser() if path else Path.home() / ".ray" / "auth_token"


def ensure_private_token(create: bool) -> Path | None:
    """The token file, created 0600 if missing (and `create`); warns once if others can read it.

    Ray itself writes a new token with the process umask (0644 usually), readable by every
    user of the machine, while the token lets its holder run code on the cluster. Nothing is
    done when authentication is off (RAY_AUTH_MODE=disabled) or the token is in
    $RAY_AUTH_TOKEN. Returns the file's path when there is one.
    """
    if os.environ.get("RAY_AUTH_MODE", "").lower() == "disabled" or os.environ.get(
        "RAY_AUTH_TOKEN"
    ):
        return None
    path = token_path()
    if not path.exists():
        if not create:
            return None
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another run created it just now: use theirs
            return path
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32))  # the shape of Ray's own tokens (64 hex digits)
        return path
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077 and path not in _warned:
        _warned.add(path)
        print(
            f"[halbench] warning: {path} is readable by other users (mode {mode:o}); "
            f"whoever reads it can run code on your Ray cluster: chmod 600 {path}",
            file=sys.stderr,
            flush=True,
        )
    return path
