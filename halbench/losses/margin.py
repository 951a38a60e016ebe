"""Additive-margin softmax losses on the sphere: CosFace and ArcFace (HAL plus a target margin)."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from halbench.losses.anchor import HypersphereAnchorLoss
from halbench.losses.base import check_nonnegative, register_loss


def _replace_target(logits: Tensor, labels: Tensor, target: Tensor) -> Tensor:
    """`logits` with its target column (labels) replaced by `target` [B], out of place."""
    return logits.scatter(1, labels.unsqueeze(1), target.unsqueeze(1))


@register_loss("cosface")
class CosFace(HypersphereAnchorLoss):
    """CosFace / AM-softmax (Wang et al. 2018): target logit scale * (cos - margin).

    Defaults scale 64, margin 0.35 are the paper's and pytorch-metric-learning's CosFaceLoss.
    """

    def __init__(
        self,
        num_classes: int,
        embedding_dim: int,
        *,
        scale: float = 64.0,
        margin: float = 0.35,
        **anchor: Any,
    ) -> None:
        super().__init__(num_classes, embedding_dim, scale=scale, **anchor)
        self.margin = check_nonnegative("margin", margin)

    def adjust_target(self, logits: Tensor, labels: Tensor) -> Tensor:
        target = logits.gather(1, labels.unsqueeze(1)).squeeze(1)
        return _replace_target(logits, labels, target - self.scale * self.margin)

    def adjust_target_flops(self, batch_size: int, num_classes: int) -> int:
        return batch_size  # one subtraction per target

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, margin={self.margin}"


@register_loss("arcface")
class ArcFace(HypersphereAnchorLoss):
    """ArcFace (Deng et al. 2019): target logit scale * cos(theta + margin), margin in radians.

    Past theta > pi - margin, cos(theta + m) would increase again; there the target becomes
    cos(theta) - m sin(m), which keeps the logit decreasing in theta (as the paper's code and
    pytorch-metric-learning do). cos(theta + m) is expanded as cos t cos m - sin t sin m so that
    no acos (with an infinite derivative at +-1) is needed. Defaults 64 and 0.5 rad (28.6 degrees);
    pytorch-metric-learning's ArcFaceLoss takes the margin in degrees.
    """

    def __init__(
        self,
        num_classes: int,
        embedding_dim: int,
        *,
        scale: float = 64.0,
        margin: float = 0.5,
        **anchor: Any,
    ) -> None:
        super().__init__(num_classes, embedding_dim, scale=scale, **anchor)
        self.margin = check_nonnegative("margin", margin)
        if self.margin >= math.pi:
            raise ValueError(f"margin must be < pi radians, got {margin!r}")

    def adjust_target(self, logits: Tensor, labels: Tensor) -> Tensor:
        m = self.margin
        target = logits.gather(1, labels.unsqueeze(1)).squeeze(1) / self.scale  # the cosine
        # sin(theta) >= 0 on [0, pi]; the clamp keeps sqrt's derivative finite at |cos| = 1.
        sine = (1.0 - target * target).clamp_min(1e-12).sqrt()
        shifted = torch.where(
            target >= -math.cos(m),  # theta <= pi - m
            target * math.cos(m) - sine * math.sin(m),
            target - m * math.sin(m),
        )
        return _replace_target(logits, labels, self.scale * shifted)

    def adjust_target_flops(self, batch_size: int, num_classes: int) -> int:
        # unscale; square, 1 - ., clamp, sqrt, compare, two products and a difference, a
        # fallback difference; rescale
        return 11 * batch_size

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, margin={self.margin}"
