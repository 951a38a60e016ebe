"""What every test session shares: a Ray auth token of its own, never the user's."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from halbench.run.cluster import ensure_private_token


@pytest.fixture(scope="session", autouse=True)
def session_ray_token(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Every Ray the tests start (ray.init, `ray start`, drivers) uses a token of this session.

    Without it, a test's bare ray.init or `ray start` writes ~/.ray/auth_token when it is
    missing, with mode 0644 (Ray uses the umask): a file in the user's home that every user of
    the machine can read and that lets them run code on the user's next Ray cluster.
    Subprocesses inherit the variable. Tests of the default location set HOME themselves.
    """
    if os.environ.get("RAY_AUTH_TOKEN_PATH") or os.environ.get("RAY_AUTH_TOKEN"):
        yield  # the caller chose a token: keep it
        return
    path = tmp_path_factory.mktemp("ray-token") / "auth_token"
    os.environ["RAY_AUTH_TOKEN_PATH"] = str(path)
    try:
        ensure_private_token(create=True)  # 0600, before any Ray could write one
        yield
    finally:
        os.environ.pop("RAY_AUTH_TOKEN_PATH", None)
