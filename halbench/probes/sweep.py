"""The loss-call sweep: every (loss, B, d, C) point measured alone, no training.

FLOPs and memory once per point, then `probes.rounds` timing rounds that interleave the losses
(round-robin), so that a change of the machine's load hits every loss and point alike. Each
point is a row of profile.parquet (results.PROFILE_SCHEMA); a failed point is a row with a status
(halbench.failures), and a point that cannot fit in memory is a row with status 'oom'.
run/profile.py schedules this (one Ray task per loss, or in process); it measures nothing itself.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from halbench import failures
from halbench import losses as registry
from halbench.probes import profile_loss_call
from halbench.probes.call import forward_backward, leaf, loss_args
from halbench.probes.timing import Timing, time_call
from halbench.suite import LossSpec
from halbench.suite.profile import ProfileSuite

# Live [B, K] float32 tensors of one forward+backward (K = B, C or the memory size), with room
# to spare: the measured peaks of the built-in losses stay under half of this.
LIVE_MATRICES = 12


def profile_loss(
    spec: LossSpec, suite: ProfileSuite, progress: Callable[[str], None] | None = None
) -> list[dict[str, Any]]:
    """All points of one loss (the unit of a Ray task); failures are rows with a status."""
    return sweep([spec], suite, progress=progress)


# (loss, B, d, C, memory, device, seed) -> (forward samples, forward+backward samples), in ms
Timer = Callable[[LossSpec, ProfileSuite, int, int, int, int, Any, int], tuple[list, list]]


def sweep(
    specs: list[LossSpec],
    suite: ProfileSuite,
    progress: Callable[[str], None] | None = None,
    timer: Timer | None = None,
    on_row: Callable[[dict[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
    """Every point of every loss: FLOPs and memory once, then probes.rounds timing rounds.

    A round times every point once, the losses of a point one after the other (round-robin),
    so that a change of the machine's load hits every loss and point alike. A point's time is
    the median of all its rounds' samples, and its IQR is over the same samples (Timing.of).
    A point's row is final when the last round has timed it (or it failed); then
    ``on_row(row)`` and ``progress`` hear of it, once per point. Returns the rows loss by loss.
    """
    timer = timer or time_point
    device = torch.device(suite.device)
    if device.type == "cpu":
        # One thread in both modes, so that in-process and Ray tasks (num_cpus=1) time the same.
        torch.set_num_threads(1)
    rows: dict[tuple[str, int, int, int], dict[str, Any]] = {}
    samples: dict[tuple[str, int, int, int], tuple[list, list]] = {}
    points = suite.grid.points()
    for b, d, c in points:
        for i, spec in enumerate(specs):
            key, memory = (spec.display, b, d, c), _memory_size(spec, suite)
            shortfall = _memory_shortfall(b, d, c, memory, device)
            if shortfall:
                rows[key] = point_row(spec, suite, b, d, c, status="oom", error=shortfall)
            else:
                rows[key] = _profile_point(spec, suite, b, d, c, memory, device, _seed(i, b, d, c))
            samples[key] = ([], [])
    rounds = suite.probes.rounds
    for r in range(rounds):
        for b, d, c in points:
            for i, spec in enumerate(specs):
                key = (spec.display, b, d, c)
                if rows[key]["status"] == "ok":
                    rows[key] = _time_round(rows[key], samples[key], timer, spec, suite, i, device)
                if r == rounds - 1:
                    _finish(rows[key], samples[key], on_row, progress)
    return [rows[(spec.display, b, d, c)] for spec in specs for b, d, c in points]


def _time_round(
    row: dict[str, Any],
    samples: tuple[list, list],
    timer: Timer,
    spec: LossSpec,
    suite: ProfileSuite,
    i: int,
    device: Any,
) -> dict[str, Any]:
    """One round of one point: its samples extended, or its row replaced by a failure row."""
    b, d, c = row["batch_size"], row["embedding_dim"], row["num_classes"]
    memory, seed = _memory_size(spec, suite), _seed(i, b, d, c)
    try:
        fwd, fwdbwd = timer(spec, suite, b, d, c, memory, device, seed)
    except Exception as exc:  # noqa: BLE001 - a failed point is a row
        status, error = failures.classify(exc)
        return point_row(spec, suite, b, d, c, status=status, error=error)
    samples[0].extend(fwd)
    samples[1].extend(fwdbwd)
    return row


def _finish(
    row: dict[str, Any],
    samples: tuple[list, list],
    on_row: Callable[[dict[str, Any]], None] | None,
    progress: Callable[[str], None] | None,
) -> None:
    """Set a point's times from all its rounds' samples and tell the listeners."""
    fwd, fwdbwd = samples
    if row["status"] == "ok" and fwdbwd:
        row["time_fwd_ms"] = Timing.of(fwd).median_ms
        both = Timing.of(fwdbwd)
        row["time_fwdbwd_ms"], row["time_fwdbwd_iqr_ms"] = both.median_ms, both.iqr_ms
    if on_row:
        on_row(row)
    if progress:
        ok = row["status"] == "ok"
        detail = f"{row['time_fwdbwd_ms']:.3g} ms" if ok else row["status"]
        point = f"B={row['batch_size']} d={row['embedding_dim']} C={row['num_classes']}"
        progress(f"profile: {row['loss']} {point}: {detail}")


def _seed(i: int, b: int, d: int, c: int) -> int:
    """One seed per (loss, point): every round times the same inputs."""
    return (((i * 1_000_003 + b) * 1_000_003 + d) * 1_000_003 + c) % 2**31


def _inputs(
    spec: LossSpec, suite: ProfileSuite, b: int, d: int, c: int, memory: int, device: Any, seed: int
) -> tuple[Any, Any, Any, Any]:
    """(loss, embeddings, labels, indices) of one point, the same for the same seed."""
    generator = torch.Generator().manual_seed(seed)
    loss = registry.build(
        spec.name, num_classes=c, embedding_dim=d, memory_size=memory or None, **spec.params
    ).to(device)
    embeddings = torch.randn(b, d, generator=generator).to(device)
    labels = torch.randint(0, c, (b,), generator=generator).to(device)
    indices = None
    if memory:
        if b > memory:
            raise ValueError(f"batch size {b} > memory_size {memory}")
        indices = torch.randperm(memory, generator=generator)[:b].to(device)
    return loss, embeddings, labels, indices


def time_point(
    spec: LossSpec, suite: ProfileSuite, b: int, d: int, c: int, memory: int, device: Any, seed: int
) -> tuple[list[float], list[float]]:
    """One round of one point: probes.warmup calls, then probes.repeats timed ones (ms)."""
    loss, embeddings, labels, indices = _inputs(spec, suite, b, d, c, memory, device, seed)
    emb = leaf(embeddings)
    args = loss_args(emb, labels, indices)
    kw = {"device": device, "warmup": suite.probes.warmup, "repeats": suite.probes.repeats}
    fwd = time_call(lambda: loss(*args), **kw)
    fwdbwd = time_call(lambda: forward_backward(loss, emb, args), **kw)
    return list(fwd.samples_ms), list(fwdbwd.samples_ms)


def _profile_point(
    spec: LossSpec,
    suite: ProfileSuite,
    b: int,
    d: int,
    c: int,
    memory: int,
    device: Any,
    seed: int,
) -> dict[str, Any]:
    """FLOPs, peak memory and the other probe keys of one point (its times come from sweep)."""
    try:
        loss, embeddings, labels, indices = _inputs(spec, suite, b, d, c, memory, device, seed)
        analytic = _analytic(loss, b, d, c, memory)
        # Its one timed call is only a placeholder: sweep's interleaved rounds set the times.
        measured = profile_loss_call(loss, embeddings, labels, warmup=0, repeats=1, indices=indices)
    except Exception as exc:  # noqa: BLE001 - a failed point is a row, never a lost sweep
        if device.type == "cuda":
            torch.cuda.empty_cache()
        status, error = failures.classify(exc)
        return point_row(spec, suite, b, d, c, status=status, error=error)
    # Every key profile_loss_call returns becomes a column (new probes need no change here).
    return {
        **point_row(spec, suite, b, d, c, status="ok", error=None),
        **measured,
        "flops_analytic_fwd": analytic,
    }


def _analytic(loss: Any, b: int, d: int, c: int, memory: int) -> float | None:
    try:
        return float(loss.flops(b, d, c, memory)["total"])
    except NotImplementedError:
        return None


def _memory_size(spec: LossSpec, suite: ProfileSuite) -> int:
    """The memory bank size for losses that have one, else 0."""
    if registry.is_pml(spec.name):  # plug-in losses are not in the registry; none has a bank
        return 0
    return suite.memory_size if registry.LOSSES.get(spec.name).needs_memory_size else 0


def point_row(
    spec: LossSpec, suite: ProfileSuite, b: int, d: int, c: int, *, status: str, error: str | None
) -> dict[str, Any]:
    return {
        "loss": spec.display,
        "loss_name": spec.name,
        "loss_params": json.dumps(spec.params, sort_keys=True),
        "batch_size": b,
        "embedding_dim": d,
        "num_classes": c,
        "memory_size": _memory_size(spec, suite),
        "device": suite.device,
        "status": status,
        "error": error,
        "unsupported_ops": [],
    }


def _memory_shortfall(b: int, d: int, c: int, memory: int, device: Any) -> str | None:
    """Why this point cannot fit (a pre-check, so that the sweep never swaps the machine)."""
    k = max(b, c, memory)
    need = 4 * (LIVE_MATRICES * b * k + 4 * (b + c + memory) * d)
    free = available_memory(device)
    if free is not None and need > free:
        return f"skipped: estimated {need / 2**30:.2f} GiB > {free / 2**30:.2f} GiB available"
    return None


def available_memory(device: Any) -> int | None:
    """Bytes free for new tensors on the device (None when unknown)."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None
