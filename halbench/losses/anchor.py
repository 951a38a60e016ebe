"""One anchor per class, NCA softmax over the anchors: AL (R^n), HAL (sphere) and relatives.

AL:  logits_c = -scale * ||x - a_c||^2           (Euclidean anchor loss)
HAL: logits_c = scale * cos(x, a_c)              (Hypersphere Anchor Loss)
ProxyNCA and NormFace are HAL under another parameterization (see docs/losses.md); CosFace
and ArcFace (margin.py) add a margin to the target logit.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from halbench.losses.base import (
    KNNLoss,
    LabelRangeError,
    addmm_flops,
    check_bool,
    check_choice,
    check_positive,
    cross_entropy,
    cross_entropy_flops,
    normalize,
    register_loss,
    squared_norms,
    squared_norms_flops,
    weight_norm_flops,
)
from halbench.losses.cosine import cosine_cross_entropy, uses_fused_node, with_clamped_fallback

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
    ) -> None:
        super().__init__(num_classes, embedding_dim)
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
        a = self.weight.to(embeddings.dtype)
        # -||x - a||^2 = 2 x.a - ||a||^2 - ||x||^2; the last term is constant over classes,
        # so the softmax never sees it and it is not computed.
        logits = torch.addmm(
            squared_norms(a), embeddings, a.T, beta=-self.scale, alpha=2 * self.scale
        )
        return cross_entropy(logits, labels)

    def cost(
        self, batch_size: int, embedding_dim: int, num_classes: int, memory_size: int = 0
    ) -> dict[str, int]:
        b, d, c = batch_size, embedding_dim, num_classes
        matmul = 2 * b * c * d
        total = (
            squared_norms_flops(c, d)
            + addmm_flops(b, d, c, alpha=2 * self.scale, beta=-self.scale)
            + cross_entropy_flops(b, c)
        )
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
        weight = self.weight
        if weight.dtype != embeddings.dtype:
            weight = weight.to(embeddings.dtype)
        if not self.has_margin:
            try:
                return cosine_cross_entropy(embeddings, weight, labels, self.scale)
            except LabelRangeError:
                self.check_label_range(labels)  # the error that names the loss and the range
                raise

        # margins edit [B, C] logits
        return with_clamped_fallback(
            embeddings,
            weight,
            self.scale,
            False,
            lambda logits: cross_entropy(self.adjust_target(logits, labels), labels),
        )

    def checks_label_range(self, device_type: str) -> bool:
        # on CPU the NLL kernel of cosine_cross_entropy rejects out-of-range labels itself
        return device_type == "cpu" and not self.has_margin

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

    def device_cost(
        self, batch_size: int, embedding_dim: int, num_classes: int, memory_size: int, device: str
    ) -> dict[str, int]:
        b, d, c = batch_size, embedding_dim, num_classes
        if self.has_margin or not uses_fused_node(device, b, d):
            return self.cost(b, d, c, memory_size)
        # the large-batch node (losses/cosine.py): |x| clamped; the anchors' weight norm;
        # logits / |x|; log_softmax; the mean NLL, which checks the labels
        matmul = 2 * b * c * d
        total = 2 * b * d + 2 * b + weight_norm_flops(c, d) + matmul + b * c
        return {"matmul": matmul, "total": total + cross_entropy_flops(b, c)}

    def cost(
        self, batch_size: int, embedding_dim: int, num_classes: int, memory_size: int = 0
    ) -> dict[str, int]:
        """The weight-norm path's FLOPs (`device_cost` has the large-batch node on CPU)."""
        b, d, c = batch_size, embedding_dim, num_classes
        matmul = 2 * b * c * d
        total = (
            weight_norm_flops(c, d)  # scale * unit anchors
            + weight_norm_flops(b, d)  # unit embeddings
            + matmul
            + self.adjust_target_flops(b, c)
            + cross_entropy_flops(b, c)  # either layout
        )
        return {"matmul": matmul, "total": total}

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, scale={self.scale}"


@register_loss("proxy_nca")
class ProxyNCA(HypersphereAnchorLoss):
    """ProxyNCA (Movshovitz-Attias et al. 2017; softmax incl. the positive, as ProxyNCA++).

    logits_c = -scale * ||x^ - p^_c||^2 = 2 scale cos(x, p_c) - 2 scale: HAL with scale 2*scale
    (the constant cancels in the softmax). Default 9 = the original's embeddings and proxies
    scaled to norm 3; pytorch-metric-learning's ProxyNCALoss(softmax_scale=scale) is the same.
    """

    def __init__(
        self, num_classes: int, embedding_dim: int, *, scale: float = 9.0, **anchor: Any
    ) -> None:
        super().__init__(
            num_classes, embedding_dim, scale=2 * check_positive("scale", scale), **anchor
        )


@register_loss("normface")
class NormFace(HypersphereAnchorLoss):
    """NormFace / normalized softmax (Wang et al. 2017): logits cos(x, w_c) / temperature.

    HAL with scale 1/temperature; default 0.05 as pytorch-metric-learning's
    NormalizedSoftmaxLoss.
    """

    def __init__(
        self, num_classes: int, embedding_dim: int, *, temperature: float = 0.05, **anchor: Any
    ) -> None:
        temperature = check_positive("temperature", temperature)
        super().__init__(num_classes, embedding_dim, scale=1.0 / temperature, **anchor)
