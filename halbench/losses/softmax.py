"""Softmax baseline: cross-entropy on a linear head; k-NN then runs on the embedding."""

from __future__ import annotations

from torch import Tensor, nn
from torch.nn import functional as F

from halbench.losses.anchor import cross_entropy
from halbench.losses.base import KNNLoss, check_bool, check_positive, register_loss
from halbench.probes.flop_rules import cross_entropy_flops, matmul_flops


@register_loss("softmax")
class SoftmaxLoss(KNNLoss):
    """Cross-entropy over x W^T + b (nn.Linear's init).

    The head's rows are not class anchors in the embedding metric (the bias and their norms
    decide the argmax), so `has_anchors` is False. k-NN uses cosine: softmax features are
    compared by angle far better than by raw distance.
    """

    metric = "cosine"

    def __init__(
        self,
        num_classes: int,
        embedding_dim: int,
        *,
        bias: bool = True,
        lr_scale: float = 1.0,
        impl: str = "fast",
    ) -> None:
        super().__init__(num_classes, embedding_dim, impl=impl)
        self.head = nn.Linear(embedding_dim, num_classes, bias=check_bool("bias", bias))
        self.lr_scale = check_positive("lr_scale", lr_scale)

    def compute(self, embeddings: Tensor, labels: Tensor, indices: Tensor | None) -> Tensor:
        weight = self.head.weight.to(embeddings.dtype)
        bias = None if self.head.bias is None else self.head.bias.to(embeddings.dtype)
        return cross_entropy(F.linear(embeddings, weight, bias), labels)

    def cost(
        self, batch_size: int, embedding_dim: int, num_classes: int, memory_size: int = 0
    ) -> dict[str, int]:
        b, d, c = batch_size, embedding_dim, num_classes
        matmul = matmul_flops(b, d, c)
        bias = b * c if self.head.bias is not None else 0
        return {"matmul": matmul, "total": matmul + bias + cross_entropy_flops(b, c)}
