"""Pairwise metric-learning baselines on in-batch Euclidean distances: triplet and contrastive.

Distances are not squared (as in Hermans et al. 2017 and pytorch-metric-learning); with
normalize=True (default) they are taken between L2-normalized embeddings, so k-NN uses cosine.
"""

from __future__ import annotations

import torch
from torch import Tensor

from halbench.losses import kernels
from halbench.losses.base import (
    KNNLoss,
    as_float32,
    check_bool,
    check_choice,
    check_nonnegative,
    fast_path,
    normalize,
    register_loss,
    squared_norms,
)
from halbench.probes.flop_rules import matmul_flops, normalize_flops, squared_norms_flops

REDUCTIONS = ("mean", "nonzero")

# Floor of squared distances before sqrt: keeps sqrt's derivative finite at zero distance.
MIN_SQUARED_DISTANCE = 1e-12
# ||x_i||^2 + ||x_j||^2 - 2 x_i.x_j of identical rows rounds to up to ~5 float eps of
# ||x_i||^2 + ||x_j||^2 (measured for d = 8..2048, both impls). Squared distances within
# ROUNDING_EPS eps of it are that rounding, not a distance: they count as exactly 0, so that a
# pair of identical embeddings is neither "active" in a hinge nor a noisy gradient direction.
ROUNDING_EPS = 16


@fast_path(kernels.squared_distances)
def squared_distances(x: Tensor) -> Tensor:
    """||x_i - x_j||^2 = ||x_i||^2 + ||x_j||^2 - 2 x_i.x_j [B, B], from one matmul."""
    sq = squared_norms(x)
    return sq.unsqueeze(1) + sq.unsqueeze(0) - 2 * (x @ x.T)


class PairLoss(KNNLoss):
    """Shared distance matrix, label masks and hinge reduction of the pairwise losses."""

    def __init__(
        self,
        num_classes: int,
        embedding_dim: int,
        *,
        normalize: bool,
        reduction: str,
        impl: str = "fast",
    ) -> None:
        super().__init__(num_classes, embedding_dim, impl=impl)
        self.normalize_embeddings = check_bool("normalize", normalize)
        self.reduction = check_choice("reduction", reduction, REDUCTIONS)
        self.metric = "cosine" if self.normalize_embeddings else "l2"

    def distances(self, embeddings: Tensor) -> Tensor:
        """Euclidean distances [B, B] from one matmul, in fp32 (cancellation near 0), also
        under autocast; exactly 0 where the squared distance is within rounding of 0."""
        x = as_float32(embeddings)
        with kernels.no_autocast(x):
            if self.normalize_embeddings:
                x = normalize(x)
            squared = squared_distances(x)
            sq = squared_norms(x) * (ROUNDING_EPS * torch.finfo(x.dtype).eps)
            rounding = sq.unsqueeze(1) + sq.unsqueeze(0)
            # The clamp keeps sqrt (and its backward through `where`) finite where d = 0.
            distance = squared.clamp_min(MIN_SQUARED_DISTANCE).sqrt()
            return torch.where(squared > rounding, distance, 0.0)

    def distances_flops(self, b: int, d: int) -> int:
        """Optional normalize, norms, outer sum, 2 * and - per pair, the product, clamp, sqrt;
        the rounding level: norms again, scale, outer sum, compare."""
        prep = normalize_flops(b, d) if self.normalize_embeddings else 0
        gram = squared_norms_flops(b, d) + 3 * b * b + matmul_flops(b, d, b) + 2 * b * b
        return prep + gram + squared_norms_flops(b, d) + b + 2 * b * b

    def reduce(self, losses: Tensor, valid: Tensor) -> Tensor:
        """Mean of the valid hinge terms ('nonzero': of those > 0); 0 with grad if none."""
        keep = valid & (losses > 0) if self.reduction == "nonzero" else valid
        return torch.where(keep, losses, 0.0).sum() / keep.sum().clamp_min(1)

    def reduce_flops(self, n: int) -> int:
        """(> and & per term for 'nonzero'), sum, count, clamp, divide."""
        return (2 * n if self.reduction == "nonzero" else 0) + 2 * n + 2

    def extra_repr(self) -> str:
        return (
            f"{super().extra_repr()}, normalize={self.normalize_embeddings}, "
            f"reduction={self.reduction!r}"
        )


@register_loss("triplet")
class BatchHardTriplet(PairLoss):
    """Batch-hard triplet loss (Hermans et al. 2017): for each sample with a positive and a
    negative in the batch, relu(d(hardest positive) - d(hardest negative) + margin).

    reduction="mean" averages over those samples (Hermans et al.); "nonzero" averages over the
    active ones, as pytorch-metric-learning's TripletMarginLoss with a BatchHardMiner. Margin
    0.2 as FaceNet on normalized embeddings.

    Ties: the hardest positive and negative come from amax/amin, so tied hardest entries share
    the gradient evenly (two tied negatives get half each); pytorch-metric-learning's miner
    gives all of it to one of them. Values agree either way.
    """

    def __init__(
        self,
        num_classes: int,
        embedding_dim: int,
        *,
        margin: float = 0.2,
        normalize: bool = True,
        reduction: str = "mean",
        impl: str = "fast",
    ) -> None:
        super().__init__(
            num_classes, embedding_dim, normalize=normalize, reduction=reduction, impl=impl
        )
        self.margin = check_nonnegative("margin", margin)

    def compute(self, embeddings: Tensor, labels: Tensor, indices: Tensor | None) -> Tensor:
        dist = self.distances(embeddings)
        same = labels.unsqueeze(1) == labels.unsqueeze(0)
        positive = same.clone()
        positive.fill_diagonal_(0)
        hardest_positive = torch.where(positive, dist, 0.0).amax(dim=1)
        # `same` includes the diagonal, so a sample is never its own negative.
        hardest_negative = torch.where(same, torch.finfo(dist.dtype).max, dist).amin(dim=1)
        valid = positive.any(dim=1) & ~same.all(dim=1)
        losses = (hardest_positive - hardest_negative + self.margin).relu()
        return self.reduce(losses, valid)

    def cost(
        self, batch_size: int, embedding_dim: int, num_classes: int, memory_size: int = 0
    ) -> dict[str, int]:
        b, d = batch_size, embedding_dim
        masks = b * b  # label equality
        mining = 2 * b * b  # amax, amin
        validity = 2 * b * b + 2 * b  # any, all, not, and
        hinge = 3 * b  # sub, add margin, relu
        total = (
            self.distances_flops(b, d) + masks + mining + validity + hinge + self.reduce_flops(b)
        )
        return {"matmul": matmul_flops(b, d, b), "total": total}

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, margin={self.margin}"


@register_loss("contrastive")
class Contrastive(PairLoss):
    """Contrastive loss (Hadsell et al. 2006, pytorch-metric-learning's form): over all ordered
    pairs, mean relu(d - pos_margin) over positive pairs + mean relu(neg_margin - d) over negative
    pairs.

    Default reduction "nonzero" (each mean over the active pairs, as pytorch-metric-learning):
    most negative pairs are soon beyond the margin, and a mean over all of them would shrink the
    gradient with the batch. Margins 0 and 1 (cosine 0.5 on the unit sphere) as there.
    Identical embeddings are at distance exactly 0 (`distances`), so with pos_margin 0 a pair of
    duplicates is not active and does not dilute the positive mean.
    """

    def __init__(
        self,
        num_classes: int,
        embedding_dim: int,
        *,
        pos_margin: float = 0.0,
        neg_margin: float = 1.0,
        normalize: bool = True,
        reduction: str = "nonzero",
        impl: str = "fast",
    ) -> None:
        super().__init__(
            num_classes, embedding_dim, normalize=normalize, reduction=reduction, impl=impl
        )
        self.pos_margin = check_nonnegative("pos_margin", pos_margin)
        self.neg_margin = check_nonnegative("neg_margin", neg_margin)

    def compute(self, embeddings: Tensor, labels: Tensor, indices: Tensor | None) -> Tensor:
        dist = self.distances(embeddings)
        same = labels.unsqueeze(1) == labels.unsqueeze(0)
        negative = ~same
        same.fill_diagonal_(0)
        positive_loss = self.reduce((dist - self.pos_margin).relu(), same)
        negative_loss = self.reduce((self.neg_margin - dist).relu(), negative)
        return positive_loss + negative_loss

    def cost(
        self, batch_size: int, embedding_dim: int, num_classes: int, memory_size: int = 0
    ) -> dict[str, int]:
        b, d = batch_size, embedding_dim
        masks = 2 * b * b  # label equality, negation
        hinges = 4 * b * b  # two (sub, relu)
        total = self.distances_flops(b, d) + masks + hinges + 2 * self.reduce_flops(b * b) + 1
        return {"matmul": matmul_flops(b, d, b), "total": total}

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, pos_margin={self.pos_margin}, neg_margin={self.neg_margin}"
