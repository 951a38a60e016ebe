"""Scalable NCA against a memory bank of all training embeddings (Wu et al. 2018).

p_ij = softmax over memory entries j != i of cos(x_i, v_j) / temperature; loss_i = -log sum over
the entries j != i with y_j = y_i of p_ij. After the loss, the batch's entries move towards the
new embeddings: v_i <- normalize(momentum * v_i + (1 - momentum) * x^_i). Cost grows with B N d.
"""

from __future__ import annotations

import torch
from torch import Tensor

from halbench.losses.base import (
    KNNLoss,
    as_float32,
    check_fraction,
    check_int,
    check_positive,
    lowest,
    normalize,
    register_loss,
)
from halbench.losses.nca import neighbour_nll, neighbour_nll_flops
from halbench.probes.flop_rules import matmul_flops, normalize_flops


@register_loss("nca_memory")
class MemoryNCA(KNNLoss):
    """NCA over a memory bank indexed by dataset row (`indices` in forward).

    Entries not yet written (labels -1) are neither neighbours nor in the denominator, so the
    first epoch compares against the part of the training set seen so far; an entry is set to
    the embedding itself on its first write, then updated with momentum. A training-mode call
    writes its batch at the start of the next call (after this call's backward, as Wu et al.).
    The bank is a buffer: it moves with `.to(device)` and is saved in the state dict.
    """

    metric = "cosine"
    needs_memory_size = True

    def __init__(
        self,
        num_classes: int,
        embedding_dim: int,
        *,
        memory_size: int | None = None,
        temperature: float = 0.05,
        momentum: float = 0.5,
        impl: str = "fast",
    ) -> None:
        super().__init__(num_classes, embedding_dim, impl=impl)
        if memory_size is None:
            raise ValueError("memory_size (the number of training samples) is required")
        self.memory_size = check_int("memory_size", memory_size, minimum=2)
        self.temperature = check_positive("temperature", temperature)
        self.momentum = check_fraction("momentum", momentum)
        self.register_buffer("memory", torch.zeros(self.memory_size, embedding_dim))
        self.register_buffer("memory_labels", torch.full((self.memory_size,), -1))
        self._pending: tuple[Tensor, Tensor, Tensor] | None = None

    def compute(self, embeddings: Tensor, labels: Tensor, indices: Tensor | None) -> Tensor:
        indices = self._check_indices(indices, len(labels))
        if self._pending is not None:
            self._update(*self._pending)
            self._pending = None
        x = normalize(embeddings)
        logits = as_float32((x @ self.memory.to(x.dtype).T) / self.temperature)
        rows = torch.arange(len(labels), device=labels.device)
        empty = self.memory_labels < 0
        # Masked with a finite value (see neighbour_nll); a row's own entry is not a neighbour.
        logits = logits.masked_fill(empty, lowest(logits.dtype))
        logits = logits.index_put((rows, indices), logits.new_full((), lowest(logits.dtype)))
        positive = labels.unsqueeze(1) == self.memory_labels.unsqueeze(0)
        positive[rows, indices] = False
        loss = neighbour_nll(logits, positive)
        if self.training:
            # Written at the next call: backward still needs the bank as it is now.
            self._pending = (x.detach(), labels, indices)
        return loss

    @torch.no_grad()
    def _update(self, x: Tensor, labels: Tensor, indices: Tensor) -> None:
        old = self.memory[indices]
        momentum = torch.where(self.memory_labels[indices] < 0, 0.0, self.momentum).unsqueeze(1)
        self.memory[indices] = normalize(momentum * old + (1 - momentum) * x.to(old.dtype))
        self.memory_labels[indices] = labels

    def _check_indices(self, indices: Tensor | None, batch_size: int) -> Tensor:
        if indices is None:
            raise ValueError(f"{self.name}: needs indices (dataset row indices) in forward")
        if (
            not isinstance(indices, Tensor)
            or indices.is_floating_point()
            or indices.dtype == torch.bool
            or indices.shape != (batch_size,)
        ):
            raise ValueError(f"{self.name}: indices must be an integer tensor of shape [B]")
        if self.host_reads and bool(((indices < 0) | (indices >= self.memory_size)).any()):
            raise ValueError(f"{self.name}: indices must be in [0, {self.memory_size})")
        return indices.long()

    def cost(
        self, batch_size: int, embedding_dim: int, num_classes: int, memory_size: int = 0
    ) -> dict[str, int]:
        """Training-mode forward; memory_size defaults to this loss's bank size."""
        b, d, n = batch_size, embedding_dim, memory_size or self.memory_size
        matmul = matmul_flops(b, d, n)
        total = (
            normalize_flops(b, d)
            + matmul
            + b * n  # / temperature
            + n  # empty-slot test
            + b * n  # label equality
            + neighbour_nll_flops(b, n)
            + 2 * b  # update: first-write test, 1 - momentum
            + 3 * b * d  # momentum * old + (1 - momentum) * x
            + normalize_flops(b, d)
            + 4 * b  # index checks
        )
        return {"matmul": matmul, "total": total}

    def extra_repr(self) -> str:
        return (
            f"{super().extra_repr()}, memory_size={self.memory_size}, "
            f"temperature={self.temperature}, momentum={self.momentum}"
        )
