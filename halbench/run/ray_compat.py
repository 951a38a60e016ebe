"""The private Ray APIs halbench uses, each behind a public function (one file to check when
Ray is upgraded; tests/run/test_ray_compat.py fails when one of them moves).

- `enable_token_auth()`: Ray caches its auth config at import; ray.init turns token mode on
  through `ray._private.authentication.authentication_token_setup._enable_token_auth`.
- `cluster_mode(enabled)`: `ray._private.ray_constants.ENABLE_RAY_CLUSTER`, read by
  services.get_node_ip_address: False makes a local ray.init choose 127.0.0.1.
- `session_dir()`: the session directory of the local Ray this process started
  (`ray._private.worker._global_node`), whose processes are ended after the run.
- `detected_cpus()`: the CPUs a local ray.init registers (`ray._private.utils.get_num_cpus`,
  cgroup-aware), for the packing that validate and --dry-run print.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager


def enable_token_auth() -> bool:
    """Switch this process's Ray to token authentication; False for a Ray without it."""
    try:
        from ray._private.authentication.authentication_token_setup import _enable_token_auth
    except ImportError:  # a Ray without token authentication: nothing to switch on
        return False
    _enable_token_auth()
    return True


@contextmanager
def cluster_mode(enabled: bool) -> Iterator[None]:
    """Within this block Ray's ENABLE_RAY_CLUSTER is `enabled` (restored after)."""
    from ray._private import ray_constants

    before = ray_constants.ENABLE_RAY_CLUSTER
    ray_constants.ENABLE_RAY_CLUSTER = enabled
    try:
        yield
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = before


def session_dir() -> str | None:
    """The session directory of the local Ray this process started, or None."""
    from ray._private import worker

    node = getattr(worker, "_global_node", None)
    return node.get_session_dir_path() if node is not None else None


def detected_cpus() -> int | None:
    """The CPUs a local Ray registers without num_cpus; None without Ray."""
    try:
        from ray._private.utils import get_num_cpus
    except ImportError:
        return None
    return max(1, int(get_num_cpus(override_docker_cpu_warning=True)))
