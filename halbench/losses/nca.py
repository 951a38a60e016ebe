"""In-batch NCA (Goldberger et al. 2004) and the soft nearest neighbour loss (Frosst et al. 2019).

p_ij = softmax over j != i of -scale * dist(x_i, x_j); loss_i = -log sum_{j != i, y_j = y_i} p_ij,
averaged over the samples that have a positive in the batch. dist is the squared L2 distance
(R^n) or, with distance="cosine", the squared L2 distance of normalized embeddings (2 - 2 cos
between nonzero rows; a zero row normalizes to 0, at distance 1 from every other unit row, as
in pytorch-metric-learning's NCALoss).
"""

from __future__ import annotations

import torch
from torch import Tensor

from halbench.losses import kernels
from halbench.losses.base import (
    KNNLoss,
    as_float32,
    check_choice,
    check_positive,
    fast_path,
    lowest,
    normalize,
    register_loss,
    squared_norms,
)
from halbench.probes.flop_rules import (
    log_softmax_flops,
    logsumexp_flops,
    matmul_flops,
    normalize_flops,
    squared_norms_flops,
)

# ----- the formulas ---------------------------------------------------------------------------


@fast_path(kernels.neighbour_logits)
def neighbour_logits(x: Tensor, scale: float, distance: str) -> Tensor:
    """-scale * dist(x_i, x_j) up to a per-row constant (the softmax over j ignores it), with
    the self-pairs masked by the lowest finite value."""
    if distance == "cosine":  # the distance between normalized rows
        x = normalize(x)
    # -||x_i - x_j||^2 = 2 x_i.x_j - ||x_j||^2 - ||x_i||^2 (||x_j||^2 is 1 or, for a zero row, 0)
    logits = scale * (2 * (x @ x.T) - squared_norms(x))
    self_pairs = torch.eye(len(x), dtype=torch.bool, device=x.device)
    return logits.masked_fill(self_pairs, lowest(logits.dtype))


@fast_path(kernels.neighbour_nll)
def neighbour_nll(logits: Tensor, positive: Tensor) -> Tensor:
    """NCA from logits: mean over rows with a positive of -log sum_{j pos} softmax_ij.

    Entries that are not candidates (self-pairs, empty memory slots) hold lowest(dtype): a
    finite mask, so a row without a positive stays finite and `where` drops it with a zero
    gradient (a batch without any positive gives 0, not NaN).
    """
    log_p = torch.log_softmax(logits, dim=1)
    log_p_positive = torch.logsumexp(log_p.masked_fill(~positive, lowest(log_p.dtype)), dim=1)
    has_positive = positive.any(dim=1)
    per_row = torch.where(has_positive, -log_p_positive, 0.0)
    return per_row.sum() / has_positive.sum().clamp_min(1)


def neighbour_nll_flops(m: int, n: int) -> int:
    """`neighbour_nll` on [m, n]: log_softmax, ~positive, logsumexp, any, negation, two sums,
    clamp and divide."""
    return log_softmax_flops(m * n, m) + m * n + logsumexp_flops(m * n, m) + m * n + 3 * m + 2


# ----- the losses -----------------------------------------------------------------------------


DISTANCES = ("l2", "cosine")


@register_loss("nca")
class NCA(KNNLoss):
    """In-batch NCA; cost grows with B^2 d."""

    def __init__(
        self,
        num_classes: int,
        embedding_dim: int,
        *,
        scale: float = 1.0,
        distance: str = "l2",
        impl: str = "fast",
    ) -> None:
        super().__init__(num_classes, embedding_dim, impl=impl)
        self.scale = check_positive("scale", scale)
        self.distance = check_choice("distance", distance, DISTANCES)
        self.metric = self.distance

    def compute(self, embeddings: Tensor, labels: Tensor, indices: Tensor | None) -> Tensor:
        positive = labels.unsqueeze(1) == labels.unsqueeze(0)
        positive.fill_diagonal_(0)
        logits = neighbour_logits(embeddings, self.scale, self.distance)
        return neighbour_nll(as_float32(logits), positive)

    def cost(
        self, batch_size: int, embedding_dim: int, num_classes: int, memory_size: int = 0
    ) -> dict[str, int]:
        b, d = batch_size, embedding_dim
        matmul = matmul_flops(b, d, b)
        # (normalize;) ||x||^2; 2 *, -, scale * per pair
        scores = squared_norms_flops(b, d) + matmul + 3 * b * b
        if self.distance == "cosine":
            scores += normalize_flops(b, d)
        total = scores + b * b + neighbour_nll_flops(b, b)  # b * b: label equality
        return {"matmul": matmul, "total": total}

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, scale={self.scale}, distance={self.distance!r}"


@register_loss("snnl")
class SoftNearestNeighbour(NCA):
    """Soft nearest neighbour loss: NCA with a temperature T, logits -dist / T.

    snnl(temperature=T) equals nca(scale=1/T); kept under its own name because the literature
    reports it with its own temperature convention.
    """

    def __init__(
        self,
        num_classes: int,
        embedding_dim: int,
        *,
        temperature: float = 1.0,
        distance: str = "l2",
        impl: str = "fast",
    ) -> None:
        temperature = check_positive("temperature", temperature)
        super().__init__(
            num_classes, embedding_dim, scale=1.0 / temperature, distance=distance, impl=impl
        )
        self.temperature = temperature
