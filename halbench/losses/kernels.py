"""Fast paths of the readable loss formulas (the HAL family's are in kernels_cosine.py).

Each public function here computes what a readable expression in a loss file computes, with
the same signature, faster; tests/losses/test_kernels.py checks values and gradients in
float64 against the readable form. A loss runs these with `impl="fast"` (the default) and
the readable form with `impl="reference"`.

    cross_entropy(logits, labels)        == F.cross_entropy(as_float32(logits), labels)
    neighbour_nll(logits, positive)      == nca.neighbour_nll
    neighbour_logits(x, scale, distance) == nca.neighbour_logits
    squared_distances(x)                 == pair.squared_distances
    euclidean_logits(x, anchors, scale)  == anchor.euclidean_logits
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from halbench.losses.base import as_float32, lowest, normalize, squared_norms

# Entering torch.autocast costs about as much as a small op, so it is skipped when autocast is
# already off (the fp32 case).
_NO_CONTEXT = nullcontext()


def no_autocast(x: Tensor) -> AbstractContextManager[Any]:
    """Autocast off inside hand-written autograd functions: they compute in their inputs' dtype
    and their backward (which runs outside autocast) must see the same dtypes as forward."""
    if not torch.is_autocast_enabled(x.device.type):
        return _NO_CONTEXT
    return torch.autocast(x.device.type, enabled=False)


# On CPU, log_softmax over a short last dimension runs one row at a time: for [B, 10] logits it
# is ~20x slower than over the first dimension of the same values stored class-major [10, B],
# where the kernel vectorizes across the batch (benchmarks/loss_calls.py, `floor_cm`). Past a
# few dozen classes rows are long enough and batch-major wins again. GPU kernels do not care.
CLASS_MAJOR_MAX_CLASSES = 32


def class_major(device: torch.device, num_classes: int) -> bool:
    """Whether softmax logits [B, C] are best stored transposed, as [C, B]."""
    return device.type == "cpu" and num_classes <= CLASS_MAJOR_MAX_CLASSES


def cross_entropy(logits: Tensor, labels: Tensor) -> Tensor:
    """Mean softmax cross-entropy of [B, C] logits, computed in fp32 for low-precision logits.

    Where `class_major` says so, the logits are copied to [C, B] and F.cross_entropy takes them
    as one sample with B positions ([1, C, B]); the copy costs far less than it saves.
    """
    if class_major(logits.device, logits.shape[1]):
        return class_major_cross_entropy(logits.T.contiguous(), labels)
    return F.cross_entropy(as_float32(logits), labels)


def class_major_cross_entropy(logits: Tensor, labels: Tensor) -> Tensor:
    """Mean softmax cross-entropy of logits stored class-major, [C, B] (fp32 statistics).

    F.cross_entropy takes them as one sample with B positions, [1, C, B].
    """
    return F.cross_entropy(as_float32(logits).unsqueeze(0), labels.unsqueeze(0))


# exp(-80) = 2e-35: terms clamped up to it change a sum that is >= 1 by far less than float32's
# resolution, and clamping keeps exp off its slow path for underflowing arguments (about 10x
# slower on CPU), which unclamped masked or distant entries would take.
EXP_FLOOR = -80.0


class _NeighbourNLL(torch.autograd.Function):
    """Per row: -log sum_{j pos} softmax_j = lse(all) - lse(positives), and whether the row has a
    positive. Each logsumexp is shifted by its own maximum, so neither overflows nor loses the
    positives to underflow; the backward is softmax(all) - softmax(positives), from the exps
    saved in forward.
    """

    @staticmethod
    def forward(ctx: Any, logits: Tensor, positive: Tensor) -> tuple[Tensor, Tensor]:  # type: ignore[override]
        top = logits.amax(dim=1, keepdim=True)
        exp_all = (logits - top).clamp_min_(EXP_FLOOR).exp_()
        top_positive = torch.where(positive, logits, lowest(logits.dtype)).amax(dim=1, keepdim=True)
        exp_positive = (logits - top_positive).clamp_(EXP_FLOOR, 0.0).exp_().mul_(positive)
        has_positive = (top_positive > lowest(logits.dtype)).squeeze(1)
        # Each sum holds its maximum's term exp(0) = 1, so >= 1; a row without a positive sums
        # to 0 and is set to 1 so that nothing below divides by or takes the log of 0.
        sum_all = exp_all.sum(dim=1, keepdim=True)
        sum_positive = exp_positive.sum(dim=1, keepdim=True).clamp_min_(1.0)
        per_row = ((top - top_positive) + (sum_all.log() - sum_positive.log())).squeeze(1)
        ctx.save_for_backward(exp_all, sum_all, exp_positive, sum_positive)
        ctx.mark_non_differentiable(has_positive)
        return per_row, has_positive

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, grad: Tensor, _: Tensor) -> tuple[Tensor, None]:
        exp_all, sum_all, exp_positive, sum_positive = ctx.saved_tensors
        grad = grad.unsqueeze(1)
        dlogits = (exp_all * (grad / sum_all)).addcmul_(exp_positive, grad / sum_positive, value=-1)
        return dlogits, None


def neighbour_nll(logits: Tensor, positive: Tensor) -> Tensor:
    """Fast `nca.neighbour_nll`: mean over rows with a positive of -log sum_{j pos} softmax_ij,
    as one node whose backward reuses the forward's exps.

    Entries that are not candidates at all (self-pairs, empty memory slots) must already hold
    `lowest(dtype)`: a finite mask keeps every step free of inf - inf. A row without a positive
    gives a finite value that `where` drops with a zero gradient, so a batch without any positive
    gives 0 with a gradient, not NaN.
    """
    per_row, has_positive = _NeighbourNLL.apply(as_float32(logits), positive)
    per_row = torch.where(has_positive, per_row, 0.0)
    return per_row.sum() / has_positive.sum().clamp_min(1)


class _GramScores(torch.autograd.Function):
    """S = alpha x x^T + beta n with n_ij = ||x_j||^2, or ||x_i||^2 + ||x_j||^2 (both_sides).

    Autograd through addmm(x, x.T) runs two B x B x d products backward, one per operand; as S
    uses x on both sides, the symmetrized gradient gives dx with one. (For d < 64 on CPU, two
    products would cost less than the strided transpose-add; the grid's d is 64 and up.)
    `diagonal` (if not None) fills S_ii with a constant, whose gradient is zero.
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any, x: Tensor, alpha: float, beta: float, both_sides: bool, diagonal: float | None
    ) -> Tensor:
        ctx.save_for_backward(x)
        ctx.alpha, ctx.beta, ctx.both_sides, ctx.diagonal = alpha, beta, both_sides, diagonal
        with no_autocast(x):
            if beta == 0:
                scores = torch.mm(x, x.T).mul_(alpha)
            else:
                sq = squared_norms(x)
                bias = sq.unsqueeze(1) + sq.unsqueeze(0) if both_sides else sq
                scores = torch.addmm(bias, x, x.T, beta=beta, alpha=alpha)
        if diagonal is not None:
            scores.fill_diagonal_(diagonal)
        return scores

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        (x,) = ctx.saved_tensors
        symmetric = grad + grad.T
        if ctx.diagonal is not None:
            symmetric.diagonal().zero_()
        dx = torch.mm(symmetric, x).mul_(ctx.alpha)
        if ctx.beta != 0:
            # d/dx_k of beta sum_ij g_ij ||x_j||^2 is 2 beta (sum_i g_ik) x_k; likewise rows.
            weight = grad.sum(dim=0)
            if ctx.both_sides:
                weight = weight + grad.sum(dim=1)
            if ctx.diagonal is not None:
                weight = weight - (2 if ctx.both_sides else 1) * grad.diagonal()
            dx.addcmul_(weight.unsqueeze(1), x, value=2 * ctx.beta)
        return dx, None, None, None, None


def gram_scores(
    x: Tensor,
    *,
    alpha: float,
    beta: float = 0.0,
    both_sides: bool = False,
    diagonal: float | None = None,
) -> Tensor:
    """alpha x x^T + beta ||x_j||^2 (+ beta ||x_i||^2 if both_sides) [B, B] from one matmul.

    FLOPs of the forward: beta = 0: matmul + B^2 (alpha); else squared norms (2Bd), the outer
    sum if both_sides (B^2), and addmm_flops(B, d, B, alpha=alpha, beta=beta).
    """
    return _GramScores.apply(x, alpha, beta, both_sides, diagonal)


def neighbour_logits(x: Tensor, scale: float, distance: str) -> Tensor:
    """Fast `nca.neighbour_logits`: one Gram product with a symmetric one-product backward."""
    if distance == "cosine":  # then ||x_j||^2 below is 1, or 0 for a zero row
        x = normalize(x)
    return gram_scores(x, alpha=2 * scale, beta=-scale, diagonal=lowest(x.dtype))


def squared_distances(x: Tensor) -> Tensor:
    """Fast `pair.squared_distances`: ||x_i||^2 + ||x_j||^2 - 2 x_i.x_j from one addmm."""
    return gram_scores(x, alpha=-2.0, beta=1.0, both_sides=True)


def euclidean_logits(x: Tensor, anchors: Tensor, scale: float) -> Tensor:
    """Fast `anchor.euclidean_logits`: scale (2 x.a_c - ||a_c||^2) as one addmm."""
    return torch.addmm(squared_norms(anchors), x, anchors.T, beta=-scale, alpha=2 * scale)
