"""The one loss call every probe measures: forward, or forward plus backward."""

from __future__ import annotations

import torch
from torch import nn


def loss_args(
    embeddings: torch.Tensor, labels: torch.Tensor, indices: torch.Tensor | None
) -> tuple[torch.Tensor, ...]:
    """Positional arguments of the call (indices only when given, as the trainer passes them)."""
    return (embeddings, labels) if indices is None else (embeddings, labels, indices)


def grad_inputs(loss: nn.Module, embeddings: torch.Tensor) -> list[torch.Tensor]:
    """What backward differentiates: the embeddings and the loss's own trainable parameters."""
    return [embeddings, *(p for p in loss.parameters() if p.requires_grad)]


def forward_backward(
    loss: nn.Module, embeddings: torch.Tensor, args: tuple[torch.Tensor, ...]
) -> None:
    """Forward, then backward into the embeddings and the loss's parameters.

    ``torch.autograd.grad`` returns the gradients instead of accumulating them into ``.grad``,
    so a measured call never changes what the optimizer will see.
    """
    out = loss(*args)
    torch.autograd.grad(out, grad_inputs(loss, embeddings), allow_unused=True)


def leaf(embeddings: torch.Tensor) -> torch.Tensor:
    """A detached copy of the embeddings that requires grad (the training graph is untouched)."""
    return embeddings.detach().requires_grad_(True)
