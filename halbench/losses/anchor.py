"""One anchor per class, NCA softmax over the anchors: AL (R^n), HAL (sphere) and relatives.

AL:       logits_c = -scale * ||x - a_c||^2          (Euclidean anchor loss)
HAL:      logits_c = scale * cos(x, a_c)             (Hypersphere Anchor Loss)
ProxyNCA: logits_c = -scale * ||x^ - a^_c||^2        (AL between normalized x and anchors)
NormFace is HAL with scale 1/temperature; CosFace and ArcFace (margin.py) add a margin to the
target logit. A zero vector normalizes to zero (x^ = 0, cos(0, a) = 0), as F.normalize and
pytorch-metric-learning's distances. The formulas are the functions below; impl="fast" runs
their kernels (kernels.py, kernels_cosine.py), which have the same signatures.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from halbench.losses import kernels, kernels_cosine
from halbench.losses.base import (
    KNNLoss,
    as_float32,
    check_bool,
    check_choice,
    check_positive,
    fast_path,
    normalize,
    register_loss,
    squared_norms,
)
from halbench.probes.flop_rules import (
    cross_entropy_flops,
    matmul_flops,
    normalize_flops,
    squared_norms_flops,
)

# ----- the formulas ---------------------------------------------------------------------------


@fast_path(kernels.euclidean_logits)
def euclidean_logits(x: Tensor, anchors: Tensor, scale: float) -> Tensor:
    """-scale * ||x_i - a_c||^2 up to the per-row constant -scale * ||x_i||^2, which the
    softmax never sees: scale * (2 x.a_c - ||a_c||^2). No B x C x d tensor."""
    return scale * (2 * (x @ anchors.T) - squared_norms(anchors))


@fast_path(kernels.cross_entropy)
def cross_entropy(logits: Tensor, labels: Tensor) -> Tensor:
    """Mean softmax cross-entropy, with fp32 statistics for low-precision logits."""
    return F.cross_entropy(as_float32(logits), labels)


@fast_path(kernels_cosine.cosine_cross_entropy)
def cosine_cross_entropy(
    x: Tensor,
    weight: Tensor,
    labels: Tensor,
    scale: float,
    adjust_target: Callable[[Tensor, Tensor], Tensor] | None = None,
) -> Tensor:
    """HAL: cross-entropy of logits scale * cos(x_i, w_c), after an optional target margin."""
    logits = scale * (normalize(x) @ normalize(weight).T)
    if adjust_target is not None:
        logits = adjust_target(logits, labels)
    return F.cross_entropy(as_float32(logits), labels)


# ----- the losses -----------------------------------------------------------------------------


ANCHOR_INITS = ("normal", "orthogonal", "simplex")


def init_anchors(num_classes: int, dim: int, method: str) -> Tensor:
    """Unit-norm initial anchors [C, d] from the global torch RNG.

    normal: i.i.d. Gaussian directions; orthogonal: mutually orthogonal (C <= d); simplex: the C
    vertices of a regular simplex, pairwise cosine -1/(C-1), the most spread-out C points on the
    sphere (C <= d + 1). The last two are randomly rotated so they are not axis-aligned.
    """
    check_choice("init", method, ANCHOR_INITS)
    if method == "normal":
        return normalize(torch.randn(num_classes, dim))
    if method == "orthogonal":
        if num_classes > dim:
            raise ValueError(f"init 'orthogonal' needs num_classes <= embedding_dim ({dim})")
        return nn.init.orthogonal_(torch.empty(num_classes, dim))
    if num_classes > dim + 1:
        raise ValueError(f"init 'simplex' needs num_classes <= embedding_dim + 1 ({dim + 1})")
    centered = torch.eye(num_classes) - 1.0 / num_classes  # vertices, in the plane sum(v) = 0
    basis = torch.linalg.qr(centered).Q[:, : num_classes - 1]  # orthonormal basis of that plane
    vertices = torch.zeros(num_classes, dim)
    vertices[:, : num_classes - 1] = centered @ basis
    rotation = nn.init.orthogonal_(torch.empty(dim, dim))
    return normalize(vertices @ rotation)


class AnchorLoss(KNNLoss):
    """Shared storage of one learnable (or fixed) anchor per class, with its init."""

    has_anchors = True

    def __init__(
        self,
        num_classes: int,
        embedding_dim: int,
        *,
        init: str = "normal",
        learn_anchors: bool = True,
        lr_scale: float = 1.0,
        impl: str = "fast",
    ) -> None:
        super().__init__(num_classes, embedding_dim, impl=impl)
        anchors = init_anchors(num_classes, embedding_dim, init)
        if check_bool("learn_anchors", learn_anchors):
            self.weight = nn.Parameter(anchors)
        else:
            self.register_buffer("weight", anchors)
        self.lr_scale = check_positive("lr_scale", lr_scale)

    def anchors(self) -> Tensor:
        return self.weight.detach()


@register_loss("al")
class EuclideanAnchorLoss(AnchorLoss):
    """AL: NCA softmax over the anchors with logits -scale * ||x - a_c||^2, in R^n."""

    metric = "l2"

    def __init__(
        self, num_classes: int, embedding_dim: int, *, scale: float = 1.0, **anchor: Any
    ) -> None:
        super().__init__(num_classes, embedding_dim, **anchor)
        self.scale = check_positive("scale", scale)

    def compute(self, embeddings: Tensor, labels: Tensor, indices: Tensor | None) -> Tensor:
        logits = euclidean_logits(embeddings, self.weight.to(embeddings.dtype), self.scale)
        return cross_entropy(logits, labels)

    def cost(
        self, batch_size: int, embedding_dim: int, num_classes: int, memory_size: int = 0
    ) -> dict[str, int]:
        b, d, c = batch_size, embedding_dim, num_classes
        matmul = matmul_flops(b, d, c)
        # ||a||^2; 2 *, -, scale * per logit; cross-entropy
        total = squared_norms_flops(c, d) + matmul + 3 * b * c + cross_entropy_flops(b, c)
        return {"matmul": matmul, "total": total}

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, scale={self.scale}"


@register_loss("hal")
class HypersphereAnchorLoss(AnchorLoss):
    """HAL: NCA softmax over the anchors with logits scale * cos(x, a_c).

    Embeddings and anchors are L2-normalized; the scale (inverse temperature) lets the
    softmax saturate although cosines lie in [-1, 1]. Subclasses add a margin to the target
    logit through `adjust_target`.
    """

    metric = "cosine"

    def __init__(
        self, num_classes: int, embedding_dim: int, *, scale: float = 16.0, **anchor: Any
    ) -> None:
        super().__init__(num_classes, embedding_dim, **anchor)
        self.scale = check_positive("scale", scale)

    def anchors(self) -> Tensor:
        return normalize(self.weight.detach())

    def compute(self, embeddings: Tensor, labels: Tensor, indices: Tensor | None) -> Tensor:
        weight = self.weight.to(embeddings.dtype)
        adjust = self.adjust_target if self.has_margin else None
        return cosine_cross_entropy(embeddings, weight, labels, self.scale, adjust)

    def kernel_checks_labels(self, device_type: str) -> bool:
        adjust = self.adjust_target if self.has_margin else None
        return kernels_cosine.checks_labels(device_type, adjust)

    def adjust_target(self, logits: Tensor, labels: Tensor) -> Tensor:
        """Hook for margin losses: logits (scale * cos) with the target modified; HAL: none."""
        return logits

    @property
    def has_margin(self) -> bool:
        """Whether a subclass overrides `adjust_target`; then the unfused logits path runs.

        Read from the override itself, so a subclass cannot add a margin that the fused path
        would silently skip.
        """
        return type(self).adjust_target is not HypersphereAnchorLoss.adjust_target

    def adjust_target_flops(self, batch_size: int, num_classes: int) -> int:
        """FLOPs of `adjust_target`."""
        return 0

    def cost(
        self, batch_size: int, embedding_dim: int, num_classes: int, memory_size: int = 0
    ) -> dict[str, int]:
        b, d, c = batch_size, embedding_dim, num_classes
        matmul = matmul_flops(b, d, c)
        total = (
            normalize_flops(b, d)
            + normalize_flops(c, d)
            + matmul
            + b * c  # scale *
            + self.adjust_target_flops(b, c)
            + cross_entropy_flops(b, c)
        )
        return {"matmul": matmul, "total": total}

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, scale={self.scale}"


@register_loss("proxy_nca")
class ProxyNCA(AnchorLoss):
    """ProxyNCA (Movshovitz-Attias et al. 2017; softmax incl. the positive, as ProxyNCA++):
    NCA with the proxies as the reference set, logits_c = -scale * ||x^ - p^_c||^2.

    For nonzero x and p this is HAL with scale 2*scale (||x^ - p^||^2 = 2 - 2 cos), but a zero
    proxy sits at squared distance 1 from every x^, not 2. Default 9 = the original's
    embeddings and proxies scaled to norm 3; pytorch-metric-learning's
    ProxyNCALoss(softmax_scale=scale) is the same loss.
    """

    metric = "cosine"

    def __init__(
        self, num_classes: int, embedding_dim: int, *, scale: float = 9.0, **anchor: Any
    ) -> None:
        super().__init__(num_classes, embedding_dim, **anchor)
        self.scale = check_positive("scale", scale)

    def anchors(self) -> Tensor:
        return normalize(self.weight.detach())

    def compute(self, embeddings: Tensor, labels: Tensor, indices: Tensor | None) -> Tensor:
        proxies = normalize(self.weight.to(embeddings.dtype))
        logits = euclidean_logits(normalize(embeddings), proxies, self.scale)
        return cross_entropy(logits, labels)

    def cost(
        self, batch_size: int, embedding_dim: int, num_classes: int, memory_size: int = 0
    ) -> dict[str, int]:
        b, d, c = batch_size, embedding_dim, num_classes
        matmul = matmul_flops(b, d, c)
        total = (
            normalize_flops(b, d)
            + normalize_flops(c, d)
            + squared_norms_flops(c, d)
            + matmul
            + 3 * b * c  # 2 *, -, scale * per logit
            + cross_entropy_flops(b, c)
        )
        return {"matmul": matmul, "total": total}

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, scale={self.scale}"


@register_loss("normface")
class NormFace(HypersphereAnchorLoss):
    """NormFace / normalized softmax (Wang et al. 2017): logits cos(x, w_c) / temperature.

    HAL with scale 1/temperature; default 0.05 as pytorch-metric-learning's
    NormalizedSoftmaxLoss.
    """

    def __init__(
        self, num_classes: int, embedding_dim: int, *, temperature: float = 0.05, **anchor: Any
    ) -> None:
        if "scale" in anchor:  # HAL's own parameter, fixed here: say which one to set instead
            raise ValueError("loss 'normface': parameter 'scale' is 1/temperature; set temperature")
        temperature = check_positive("temperature", temperature)
        super().__init__(num_classes, embedding_dim, scale=1.0 / temperature, **anchor)
