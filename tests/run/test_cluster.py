"""run/cluster.py: resources of a task, reachability of an address, the auth token."""

from __future__ import annotations

import os

import pytest

from halbench.errors import UserError
from halbench.run import cluster
from halbench.suite import Suite

SUITE = {
    "name": "stub",
    "dataset": {"name": "synthetic"},
    "losses": [{"name": "a"}],
    "grid": {"batch_size": [8], "embedding_dim": [4], "seed": [0]},
}


@pytest.mark.parametrize(
    ("resources", "expected"),
    [
        ({}, {"cpu": 1.0, "gpu": 0.0}),
        ({"gpus_per_trial": 0.25, "memory_gb": 2}, {"cpu": 1.0, "gpu": 0.25, "memory": 2 * 2**30}),
        ({"gpus_per_trial": 0.25, "exclusive_gpu": True}, {"cpu": 1.0, "gpu": 1.0}),
        (
            {"gpus_per_trial": 2, "exclusive_gpu": True, "cpus_per_trial": 4},
            {"cpu": 4.0, "gpu": 2.0},
        ),
        ({"exclusive_gpu": True}, {"cpu": 1.0, "gpu": 0.0}),
    ],
)
def test_trial_resources(resources, expected) -> None:
    suite = Suite.model_validate({**SUITE, "resources": resources})
    assert cluster.trial_resources(suite.resources) == expected


def test_fractional_gpus_above_one_are_refused() -> None:
    suite = Suite.model_validate({**SUITE, "resources": {"gpus_per_trial": 1.5}})
    with pytest.raises(UserError, match="resources.gpus_per_trial"):
        cluster.trial_resources(suite.resources)


def test_unreachable_address_fails_fast() -> None:
    import socket

    with socket.socket() as s:  # a port that was just free: nothing listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(UserError, match=f"--address 127.0.0.1:{port}: no Ray cluster answers"):
        cluster.check_reachable(f"127.0.0.1:{port}", timeout=2)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        cluster.check_reachable(f"127.0.0.1:{s.getsockname()[1]}", timeout=2)
    cluster.check_reachable("auto")  # resolved by Ray itself


@pytest.mark.parametrize(
    ("env", "token_file", "expected"),
    [
        ({}, True, "token"),  # ~/.ray/auth_token exists: send it
        ({}, False, None),  # no token anywhere: leave Ray's default
        ({"RAY_AUTH_TOKEN": "abc"}, False, "token"),
        ({"RAY_AUTH_MODE": "disabled"}, True, "disabled"),  # an explicit choice is kept
    ],
)
def test_a_driver_sends_the_auth_token_it_has(
    monkeypatch, tmp_path, env: dict, token_file: bool, expected: str | None
) -> None:
    for name in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("HOME", str(tmp_path))
    if token_file:
        (tmp_path / ".ray").mkdir()
        (tmp_path / ".ray" / "auth_token").write_text("secret")
    cluster.use_auth_token_if_present()
    assert os.environ.get("RAY_AUTH_MODE") == expected


def test_a_token_path_from_the_environment_counts(monkeypatch, tmp_path) -> None:
    monkeypatch.delenv("RAY_AUTH_MODE", raising=False)
    monkeypatch.delenv("RAY_AUTH_TOKEN", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(tmp_path / "missing"))
    assert not cluster.use_auth_token_if_present()
    (tmp_path / "missing").write_text("secret")
    assert cluster.use_auth_token_if_present()
