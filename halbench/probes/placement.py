"""Where a trial ran: Ray's node id, the accelerator ids Ray gave it, and when it ran.

Recorded in every trial row so that a cluster run shows its spread (two nodes of one machine
share a hostname, not a node id) and fractional-GPU packing can be checked after the fact.
Outside Ray (`--no-ray`, tests) the Ray columns are null. Ray is imported only if the process
already has it: a trial on the CPU without Ray must not pay for the import.
"""

from __future__ import annotations

import socket
import sys
from datetime import UTC, datetime
from typing import Any

COLUMNS = ("node_id", "gpu_ids", "started_at", "ended_at")


def now() -> str:
    """A UTC timestamp with microseconds, as the rows store it (ISO 8601)."""
    return datetime.now(UTC).isoformat()


def _ray_context() -> Any | None:
    ray = sys.modules.get("ray")
    if ray is None or not ray.is_initialized():
        return None
    return ray.get_runtime_context()


def where() -> dict[str, Any]:
    """{"node_id", "gpu_ids"} of this process: Ray's node id (hex) and the GPU ids Ray
    assigned to the running task or actor, comma-separated ("0" for a fraction of GPU 0)."""
    ctx = _ray_context()
    if ctx is None:
        return {"node_id": None, "gpu_ids": None}
    gpus = ctx.get_accelerator_ids().get("GPU", [])
    return {"node_id": ctx.get_node_id(), "gpu_ids": ",".join(str(g) for g in gpus) or None}


def node_label() -> str:
    """This node for an error message: hostname, Ray node id and IP when under Ray."""
    ctx = _ray_context()
    if ctx is None:
        return socket.gethostname()
    import ray

    return (
        f"{socket.gethostname()} (Ray node {ctx.get_node_id()}, {ray.util.get_node_ip_address()})"
    )


def name_the_node(row: dict[str, Any]) -> None:
    """Under Ray, an error about the trial's setup names the node it happened on.

    A UserError in a trial (a data set not found, a bad path) depends on the node: on a
    cluster one node may lack what another has. Errors of the computation itself (an
    exception in a loss, an OOM) are the same on every node and keep their message.
    """
    error = row.get("error") or ""
    if (
        row.get("status") == "error"
        and error.startswith("UserError:")
        and _ray_context() is not None
    ):
        row["error"] = f"{row['error']} [on node {node_label()}]"


def record(row: dict[str, Any], started: str) -> None:
    """Add where the trial ran to its row (in the trial's process); times the trial function
    did not record itself are the span of the call; an error row names the node."""
    row.update(where())
    row["started_at"] = row.get("started_at") or started
    row["ended_at"] = row.get("ended_at") or now()
    name_the_node(row)
