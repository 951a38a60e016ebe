"""run/ray_compat.py: the private Ray APIs halbench uses still exist and do what it needs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from halbench.run import ray_compat

pytest.importorskip("ray")
HALBENCH = Path(__file__).resolve().parents[2] / "halbench"


def test_the_private_names_are_still_there() -> None:
    """Fails on a Ray upgrade that moves what ray_compat reaches into."""
    from ray._private import ray_constants
    from ray._private.authentication import authentication_token_setup

    assert isinstance(ray_constants.ENABLE_RAY_CLUSTER, bool)
    assert callable(authentication_token_setup._enable_token_auth)


def test_cluster_mode_sets_and_restores_the_switch() -> None:
    from ray._private import ray_constants

    before = ray_constants.ENABLE_RAY_CLUSTER
    with ray_compat.cluster_mode(not before):
        assert ray_constants.ENABLE_RAY_CLUSTER is (not before)
    assert ray_constants.ENABLE_RAY_CLUSTER is before


def test_private_ray_apis_appear_only_in_compat_files() -> None:
    users = [
        p.relative_to(HALBENCH).as_posix()
        for p in HALBENCH.rglob("*.py")
        if re.search(r"ray\._private|from ray\._", p.read_text()) and not p.stem.endswith("_compat")
    ]
    assert users == []


def test_only_cluster_py_starts_or_joins_ray() -> None:
    users = [
        p.relative_to(HALBENCH).as_posix()
        for p in HALBENCH.rglob("*.py")
        if re.search(r"\bray\.init\(", p.read_text())
    ]
    assert users == ["run/cluster.py"]


def test_session_dir_is_none_without_a_local_ray_and_the_node_attribute_exists() -> None:
    """session_dir reads worker._global_node: the attribute must still exist (None here)."""
    from ray._private import worker

    assert hasattr(worker, "_global_node")
    if getattr(worker, "_global_node", None) is None:
        assert ray_compat.session_dir() is None
