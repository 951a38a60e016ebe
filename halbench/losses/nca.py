"""In-batch NCA (Goldberger et al. 2004) and the soft nearest neighbour loss (Frosst et al. 2019).

p_ij = softmax over j != i of -scale * dist(x_i, x_j); loss_i = -log sum_{j != i, y_j = y_i} p_ij,
averaged over the samples that have a positive in the batch. dist is the squared L2 distance
(R^n) or, with distance="cosine", the squared L2 distance of normalized embeddings (2 - 2 cos).
"""

from __future__ import annotations

from torch import Tensor

from halbench.losses.base import (
    KNNLoss,
    addmm_flops,
    check_choice,
    check_positive,
    gram_scores,
    lowest,
    neighbour_nll,
    neighbour_nll_flops,
    normalize,
    normalize_flops,
    register_loss,
    squared_norms_flops,
)

DISTANCES = ("l2", "cosine")


@register_loss("nca")
class NCA(KNNLoss):
    """In-batch NCA; cost grows with B^2 d."""

    def __init__(
        self, num_classes: int, embedding_dim: int, *, scale: float = 1.0, distance: str = "l2"
    ) -> None:
        super().__init__(num_classes, embedding_dim)
        self.scale = check_positive("scale", scale)
        self.distance = check_choice("distance", distance, DISTANCES)
        self.metric = self.distance

    def compute(self, embeddings: Tensor, labels: Tensor, indices: Tensor | None) -> Tensor:
        x = embeddings
        if self.distance == "cosine":
            # ||x^_i - x^_j||^2 = 2 - 2 cos: logits 2 scale cos, up to a per-row constant.
            x = normalize(x)
            logits = gram_scores(x, alpha=2 * self.scale, diagonal=lowest(x.dtype))
        else:
            # -||x_i - x_j||^2 = 2 x_i.x_j - ||x_j||^2 - ||x_i||^2; the last term is constant
            # in row i, so the softmax never sees it. No B x B x d tensor.
            logits = gram_scores(
                x, alpha=2 * self.scale, beta=-self.scale, diagonal=lowest(x.dtype)
            )
        positive = labels.unsqueeze(1) == labels.unsqueeze(0)
        positive.fill_diagonal_(0)
        return neighbour_nll(logits, positive)

    def cost(
        self, batch_size: int, embedding_dim: int, num_classes: int, memory_size: int = 0
    ) -> dict[str, int]:
        b, d = batch_size, embedding_dim
        matmul = 2 * b * b * d
        if self.distance == "cosine":
            scores = normalize_flops(b, d) + matmul + b * b  # times 2 scale
        else:
            alpha, beta = 2 * self.scale, -self.scale
            scores = squared_norms_flops(b, d) + addmm_flops(b, d, b, alpha=alpha, beta=beta)
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
    ) -> None:
        temperature = check_positive("temperature", temperature)
        super().__init__(num_classes, embedding_dim, scale=1.0 / temperature, distance=distance)
        self.temperature = temperature
