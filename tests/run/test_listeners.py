"""A local run keeps Ray to 127.0.0.1, and its auth token file private (issue 16).

The slow test lists every listening TCP socket of one run's processes (the driver's process
group and the processes under its Ray temp dir) while its trials run. The others check the
token file without Ray, with HOME pointed at a temporary directory.
"""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from halbench.run import (
    cluster as exposure,  # token file and loopback binding live in run/cluster.py
)
from tests.run.cluster_fixtures import listening_sockets, live_run, tiny_suite

LOOPBACK = {"127.0.0.1", "::1"}


def wait_for_listeners(pids: Callable[[], set[int]], timeout: float = 180) -> list:
    """The run's listening sockets once its GCS, raylet and a trial worker all listen."""
    deadline = time.monotonic() + timeout
    while True:
        sockets = listening_sockets(pids())
        names = set()
        for _, _, pid in sockets:
            try:
                names.add(Path(f"/proc/{pid}/comm").read_text().strip())
            except OSError:
                continue
        if {"gcs_server", "raylet"} <= names and any(n.startswith("ray::") for n in names):
            return sockets
        assert time.monotonic() < deadline, f"Ray's services not all seen: {sockets} {names}"
        time.sleep(2)


@pytest.mark.slow
@pytest.mark.ray
def test_a_local_run_listens_on_loopback_only(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    suite = tiny_suite(tmp_path, "listen", epochs=200)
    with live_run(suite, tmp_path / "run", home, "--num-cpus", "1") as run:
        run.wait_for("trials, 0 already done")
        sockets = wait_for_listeners(run.pids)
        exposed = [s for s in sockets if s[0] not in LOOPBACK]
        assert not exposed, f"listening beyond the loopback: {exposed}"
    token = home / ".ray" / "auth_token"
    assert stat.S_IMODE(token.stat().st_mode) == 0o600  # created by halbench, not by Ray


def test_the_token_is_created_private(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    for key in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"):
        monkeypatch.delenv(key, raising=False)
    path = exposure.ensure_private_token(create=True)
    assert path == tmp_path / ".ray" / "auth_token"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(path.read_text()) == 64
    assert exposure.ensure_private_token(create=True) == path  # kept, not replaced


def test_a_readable_token_is_warned_about_once(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    for key in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"):
        monkeypatch.delenv(key, raising=False)
    token = tmp_path / ".ray" / "auth_token"
    token.parent.mkdir()
    token.write_text("x" * 64)
    token.chmod(0o644)
    exposure.ensure_private_token(create=False)
    exposure.ensure_private_token(create=True)
    err = capsys.readouterr().err
    assert err.count("readable by other users (mode 644)") == 1, err
    assert f"chmod 600 {token}" in err
    assert stat.S_IMODE(token.stat().st_mode) == 0o644  # the user's file: said, not changed


def test_no_token_without_authentication(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    assert exposure.ensure_private_token(create=True) is None
    assert not (tmp_path / ".ray").exists()


def test_loopback_only_switches_rays_node_ip_and_restores_it(monkeypatch) -> None:
    """Catches a Ray upgrade that renames the constant the local start relies on."""
    from ray._private import ray_constants, services

    monkeypatch.delenv(exposure.LOCAL_ONLY_ENV, raising=False)
    before = ray_constants.ENABLE_RAY_CLUSTER
    with exposure.loopback_only():
        assert services.get_node_ip_address() == "127.0.0.1"
    assert ray_constants.ENABLE_RAY_CLUSTER == before
    assert exposure.LOCAL_ONLY_ENV not in os.environ
