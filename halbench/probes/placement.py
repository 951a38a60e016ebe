"""Where a trial ran: Ray's node id, the accelerator ids Ray gave it, and when it ran.

Recorded in every trial row so that a cluster run shows its spread (two nodes of one machine
share a hostname, not a node id) and fractional-GPU packing can be checked after the fact.
Outside Ray (`--no-ray`, tests) the Ray columns are null. Ray is imported only if the process
already has it: a trial on the CPU without Ray must not pay for the import.

`neighbours` reads these columns back when trials.parquet is built: how many other trials
shared each trial's device while it ran, so that a timing taken beside others is flagged.
"""

from __future__ import annotations

import socket
import sys
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

COLUMNS = ("node_id", "gpu_ids", "started_at", "ended_at")
NEIGHBOURS = "max_neighbours"


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


def _device_key(row: Mapping[str, Any]) -> tuple[str, frozenset[str]] | None:
    """(node, devices) of a trial: its GPU ids on its node, or the node's CPU as one device."""
    node = row.get("node_id") or row.get("node")
    if not node:
        return None
    gpus = row.get("gpu_ids")
    if gpus:
        return str(node), frozenset(f"gpu:{g.strip()}" for g in str(gpus).split(","))
    return str(node), frozenset({"cpu"})


def _span(row: Mapping[str, Any]) -> tuple[datetime, datetime] | None:
    try:
        start = datetime.fromisoformat(row["started_at"])
        end = datetime.fromisoformat(row["ended_at"])
    except (KeyError, TypeError, ValueError):
        return None
    return (start, end) if end >= start else None


def neighbours(rows: Iterable[Mapping[str, Any]]) -> dict[str, int | None]:
    """trial_id -> the most other trials that ran on its device at one instant while it ran.

    A trial's device is its GPU ids on its node (Ray's node id, else the hostname), or the
    node's CPU for a trial without a GPU; two trials share a device when they share a node
    and a GPU id (or both use the node's CPU). Spans are started_at..ended_at (the whole trial:
    setup, training and evaluation). Unknown (None) without a node or a span.
    """
    known = []
    out: dict[str, int | None] = {}
    for row in rows:
        key, span = _device_key(row), _span(row)
        out[row["trial_id"]] = None
        if key is not None and span is not None:
            known.append((row["trial_id"], key, span))
    for tid, (node, devices), (start, end) in known:
        events = []
        for other, (o_node, o_devices), (o_start, o_end) in known:
            if other == tid or o_node != node or not devices & o_devices:
                continue
            lo, hi = max(start, o_start), min(end, o_end)
            if lo < hi:  # a trial that ended as this one started was not beside it
                events += [(lo, 1), (hi, -1)]
        running = most = 0
        for _, step in sorted(events, key=lambda e: (e[0], e[1])):  # ends before starts
            running += step
            most = max(most, running)
        out[tid] = most
    return out


def add_neighbours(rows: list[dict[str, Any]]) -> None:
    """Fill each row's max_neighbours (trials.parquet's builder calls this)."""
    found = neighbours(rows)
    for row in rows:
        row[NEIGHBOURS] = found[row["trial_id"]]
