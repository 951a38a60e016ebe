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
    EPS,
    KNNLoss,
    addmm_flops,
    as_float32,
    check_bool,
    check_choice,
    check_positive,
    class_major,
    cross_entropy,
    cross_entropy_flops,
    no_autocast,
    normalize,
    normalize_flops,
    register_loss,
    squared_norms,
    squared_norms_flops,
)

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


class _CosineCrossEntropy(torch.autograd.Function):
    """mean_i -log softmax_c(scale * cos(x_i, w_c))[y_i] in one node, with a hand-written backward.

    At the grid's sizes (C = 10, B <= 4096) a loss call is a few dozen small ops, and their
    dispatch, not their arithmetic, sets its time (benchmarks/loss_calls.py). So this is one
    autograd node instead of a dozen, and the [B, C] logits are divided by |x_i| rather than
    x [B, d] being normalized. With G = dL/dlogits = (softmax - onehot) / B, P_ic = G_ic / |x_i|
    and a_c = scale w_c / |w_c|:
    dx_i = sum_c P_ic a_c - x_i sum_c P_ic logits_ic / |x_i|, and
    dw_c = (sum_i P_ic x_i - a_c sum_i G_ic logits_ic / scale^2) scale / |w_c|:
    beyond the two products of a bare linear layer, one pass over [B, d]. Softmax statistics
    are fp32 for low-precision inputs.
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any, x: Tensor, weight: Tensor, labels: Tensor, scale: float, class_major: bool
    ) -> Tensor:
        # logits are [C, B] class-major, else [B, C]; `dim` is their class axis, and the norms
        # of x broadcast along it
        dim = 0 if class_major else 1
        with no_autocast(x):
            x_norm = torch.linalg.vector_norm(x, dim=1).clamp_min_(EPS).unsqueeze(dim)
            w_div = torch.linalg.vector_norm(weight, dim=1, keepdim=True).clamp_min_(EPS)
            w_div = w_div.div_(scale)
            anchors = weight / w_div  # scale * unit anchors
            logits = torch.mm(anchors, x.T) if class_major else torch.mm(x, anchors.T)
            logits = logits.div_(x_norm)
        log_p = torch.log_softmax(as_float32(logits), dim=dim)
        index = labels.unsqueeze(dim)
        loss = log_p.gather(dim, index).sum().mul_(-1.0 / x.shape[0])
        ctx.save_for_backward(x, weight, labels)
        # intermediates, not inputs or outputs: plain attributes skip save_for_backward's checks
        ctx.parts = (x_norm, w_div, anchors, logits, log_p, index)
        ctx.scale, ctx.class_major = scale, class_major
        return loss

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        # The formulas treat the saved parts as constants: not differentiable twice. The
        # once_differentiable wrapper, which makes a second differentiation an error, costs
        # about a small op, so it is paid only where it matters: under create_graph.
        if torch.is_grad_enabled():
            return _cosine_cross_entropy_grads_once(ctx, grad)
        return _cosine_cross_entropy_grads(ctx, grad)


def _cosine_cross_entropy_grads(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
    x, _, _ = ctx.saved_tensors
    x_norm, w_div, anchors, logits, log_p, index = ctx.parts
    class_major = ctx.class_major
    dim = 0 if class_major else 1
    minus_one = torch.full_like(index, -1, dtype=log_p.dtype)
    g = log_p.exp().scatter_add_(dim, index, minus_one)  # softmax - onehot
    g = g.mul_(grad / x.shape[0]).to(logits.dtype)
    p = g / x_norm
    dx = dw = None
    if ctx.needs_input_grad[0]:
        radial = (p * logits).sum(dim=dim).unsqueeze(1).div_(x_norm.view(-1, 1))
        dx = torch.mm(p.T, anchors) if class_major else torch.mm(p, anchors)
        dx = dx.addcmul_(x, radial, value=-1)
    if ctx.needs_input_grad[1]:
        along = (g * logits).sum(dim=1 - dim).unsqueeze(1)
        dw = torch.mm(p, x) if class_major else torch.mm(p.T, x)
        dw = dw.addcmul_(anchors, along, value=-1 / ctx.scale**2).div_(w_div)
    return dx, dw, None, None, None


_cosine_cross_entropy_grads_once = torch.autograd.function.once_differentiable(
    _cosine_cross_entropy_grads
)


def cosine_cross_entropy(x: Tensor, weight: Tensor, labels: Tensor, scale: float) -> Tensor:
    """HAL's loss value: cross-entropy of softmax(scale * cos(x, w_c)) at the labels."""
    return _CosineCrossEntropy.apply(
        x, weight, labels, scale, class_major(x.device, weight.shape[0])
    )


class _ScaledCosine(torch.autograd.Function):
    """logits_ic = scale * cos(x_i, w_c), with a hand-written backward (the margin losses).

    Dividing the [B, C] product by the norms is cheaper than normalizing x [B, d], and the
    backward adds one pass over x to the two products of a bare linear layer, where autograd
    through the norms and divisions would add several passes and a dozen small ops. The scale is
    folded into the [C, d] unit anchors.
    """

    @staticmethod
    def forward(ctx: Any, x: Tensor, weight: Tensor, scale: float) -> Tensor:  # type: ignore[override]
        weight_norm = torch.linalg.vector_norm(weight, dim=1, keepdim=True).clamp_min(EPS)
        anchor_scale = scale / weight_norm
        anchors = weight * anchor_scale
        x_norm = torch.linalg.vector_norm(x, dim=1, keepdim=True).clamp_min(EPS)
        with no_autocast(x):
            logits = torch.mm(x, anchors.T).div_(x_norm)
        ctx.save_for_backward(x, anchors, x_norm, anchor_scale, logits)
        ctx.scale = scale
        return logits

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        # Like F.normalize, the norms' clamp is not special-cased: it only matters for vectors
        # shorter than EPS, and for an exactly zero x the radial term below is zero anyway.
        x, anchors, x_norm, anchor_scale, logits = ctx.saved_tensors
        scaled = grad / x_norm
        dx = dw = None
        if ctx.needs_input_grad[0]:
            # d logits_ic / d x_i = anchors_c / |x_i| - logits_ic x_i / |x_i|^2
            radial = (scaled * logits).sum(dim=1, keepdim=True) / x_norm
            dx = torch.mm(scaled, anchors).addcmul_(x, radial, value=-1)
        if ctx.needs_input_grad[1]:
            # anchors = s w^ with w^ = w / |w|: dw = (s / |w|) (I - w^ w^T) d anchors
            danchors = torch.mm(scaled.T, x)
            along = (danchors * anchors).sum(dim=1, keepdim=True)
            dw = danchors.addcmul_(anchors, along, value=-1 / ctx.scale**2).mul_(anchor_scale)
        return dx, dw, None


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
        weight = self.weight.to(embeddings.dtype)
        if not self.has_margin:
            return cosine_cross_entropy(embeddings, weight, labels, self.scale)
        logits = _ScaledCosine.apply(embeddings, weight, self.scale)
        return cross_entropy(self.adjust_target(logits, labels), labels)

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
        matmul = 2 * b * c * d
        if not self.has_margin:  # the fused path, _CosineCrossEntropy
            # |x| clamped; |w| clamped and / scale, w / that; logits / |x|; log_softmax; the sum
            # of the B picked log-probabilities; the mean
            total = 2 * b * d + 2 * b + normalize_flops(c, d) + c + matmul + b * c
            return {"matmul": matmul, "total": total + 5 * b * c + b + b + 1}
        total = (
            3 * c * d + 4 * c  # anchors: norms, clamp, scale / norm (2 ops), product
            + 2 * b * d + 2 * b  # ||x||, clamped
            + matmul
            + b * c  # divide by ||x||
            + self.adjust_target_flops(b, c)
            + cross_entropy_flops(b, c)
        )  # fmt: skip
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
