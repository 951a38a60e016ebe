"""A local run keeps Ray to 127.0.0.1, and its auth token file private (issue 16).

The tests here check the token file without Ray, with HOME pointed at a temporary directory.
That a live local run listens on the loopback only (every listening TCP socket of the driver's
process group and of the processes under its Ray temp dir) and that the token it leaves is
0600 is checked on the one live run of tests/run/test_dashboard.py, which starts Ray with more
listeners (the dashboard's) than a plain run.
"""

from __future__ import annotations

import os
import stat

from halbench.run import (
    cluster as exposure,  # token file and loopback binding live in run/cluster.py
)


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
