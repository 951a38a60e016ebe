"""Cost probes: FLOPs, wall time and peak memory of one loss call; NVML per trial.

    profile_loss_call(loss, embeddings, labels, *, warmup, repeats, indices=None) -> dict
    TrialProbe(every_n_steps=50, enabled=True, device=torch.device("cpu"), warmup=1, repeats=3)

docs/probes.md says what every number counts and how it is measured.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from halbench.probes.call import forward_backward, leaf, loss_args
from halbench.probes.flops import count_loss_flops
from halbench.probes.memory import peak_memory
from halbench.probes.timing import time_call
from halbench.probes.trial_probe import TrialProbe

__all__ = ["TrialProbe", "profile_loss_call"]


def profile_loss_call(
    loss: nn.Module,
    embeddings: torch.Tensor,
    labels: torch.Tensor,
    *,
    warmup: int,
    repeats: int,
    indices: torch.Tensor | None = None,
) -> dict[str, Any]:
    """FLOPs, wall time and peak memory of ``loss(embeddings, labels[, indices])``.

    Runs on the embeddings' device. Backward differentiates the embeddings and the loss's own
    parameters without touching ``.grad``. Keys: the measured columns of
    results.PROFILE_SCHEMA (flops_*, time_*, peak_mem_*, unsupported_ops, device) and
    ``fvcore_flops`` (fvcore's forward count at 2 FLOPs per multiply-add, the cross-check; None
    when it cannot trace the loss) with ``fvcore_note`` (None, or one line: why the count is
    None or which ops fvcore could not count).
    """
    device = embeddings.device
    emb = leaf(embeddings)
    args = loss_args(emb, labels, indices)
    flops = count_loss_flops(loss, emb, labels, indices)
    fwd = time_call(lambda: loss(*args), device=device, warmup=warmup, repeats=repeats)
    fwdbwd = time_call(
        lambda: forward_backward(loss, emb, args), device=device, warmup=warmup, repeats=repeats
    )
    peak, source = peak_memory(lambda: forward_backward(loss, emb, args), device=device)
    return {
        "flops_fwd": float(flops.fwd),
        "flops_bwd": float(flops.bwd),
        "flops_matmul_fwd": float(flops.matmul_fwd),
        "fvcore_flops": flops.fwd_fvcore,
        "fvcore_note": flops.fvcore_note,
        "time_fwd_ms": fwd.median_ms,
        "time_fwdbwd_ms": fwdbwd.median_ms,
        "time_fwdbwd_iqr_ms": fwdbwd.iqr_ms,
        "peak_mem_bytes": float(peak),
        "peak_mem_source": source,
        "unsupported_ops": flops.unsupported,
        "device": device_name(device),
    }


def device_name(device: torch.device) -> str:
    """The device label every row carries: "cpu" or "cuda:<GPU name>"."""
    if device.type == "cuda":
        return f"cuda:{torch.cuda.get_device_name(device)}"
    return "cpu"
