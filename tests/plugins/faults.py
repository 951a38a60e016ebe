"""Test-only losses that fail on purpose: load with HALBENCH_PLUGINS=tests.plugins.faults.

Each fails on its first call, the way a real loss fails: a NaN value (status 'diverged'), an
exception ('error') or an allocation no machine can satisfy ('oom').
"""

from __future__ import annotations

import torch
from torch import Tensor

from halbench.losses.base import KNNLoss, register_loss

INJECTED_MESSAGE = "injected failure"


class _FaultLoss(KNNLoss):
    def flops(
        self, batch_size: int, embedding_dim: int, num_classes: int, memory_size: int = 0
    ) -> dict[str, int]:
        return {"matmul": 0, "total": batch_size * embedding_dim}


@register_loss("fault_nan")
class NaNLoss(_FaultLoss):
    def compute(self, embeddings: Tensor, labels: Tensor, indices: Tensor | None) -> Tensor:
        return embeddings.sum() * float("nan")


@register_loss("fault_raise")
class RaisingLoss(_FaultLoss):
    def compute(self, embeddings: Tensor, labels: Tensor, indices: Tensor | None) -> Tensor:
        raise RuntimeError(INJECTED_MESSAGE)


@register_loss("fault_oom")
class HugeAllocationLoss(_FaultLoss):
    def compute(self, embeddings: Tensor, labels: Tensor, indices: Tensor | None) -> Tensor:
        # 2**45 float32 values = 128 TiB: the CPU allocator refuses at once ("can't allocate
        # memory"), like a real out-of-memory, without touching the machine's memory.
        huge = torch.empty(2**45, dtype=embeddings.dtype, device=embeddings.device)
        return embeddings.sum() + huge[0]
