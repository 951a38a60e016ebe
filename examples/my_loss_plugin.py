"""An example halbench plugin: one loss, one model and one dataset, registered by name.

Load it with $HALBENCH_PLUGINS (a module name, so examples/ must be on the import path):

    PYTHONPATH=examples HALBENCH_PLUGINS=my_loss_plugin halbench validate examples/plugin-suite.yaml
    PYTHONPATH=examples HALBENCH_PLUGINS=my_loss_plugin halbench run examples/plugin-suite.yaml

docs/plugins.md walks through each part.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from halbench.data import DATASETS, DatasetInfo, LoadRequest, RawData
from halbench.losses.base import KNNLoss, check_positive, normalize, register_loss
from halbench.models import MODELS, EmbeddingHead
from halbench.probes.flop_rules import cross_entropy_flops, matmul_flops, normalize_flops


# ----- a loss: forward(embeddings [B, d], labels [B]) -> scalar ------------------------------
@register_loss("centroid_softmax")
class CentroidSoftmax(KNNLoss):
    """Softmax over the batch's class centroids: each embedding should be nearest (cosine) to
    the mean direction of its own class in the batch. No learnable parameters."""

    metric = "cosine"  # what the k-NN evaluation should search with

    def __init__(
        self, num_classes: int, embedding_dim: int, *, scale: float = 10.0, impl: str = "fast"
    ) -> None:
        super().__init__(num_classes, embedding_dim, impl=impl)
        self.scale = check_positive("scale", scale)  # a bad value fails `halbench validate`

    def compute(self, embeddings: Tensor, labels: Tensor, indices: Tensor | None) -> Tensor:
        z = normalize(embeddings)  # [B, d]
        onehot = F.one_hot(labels, self.num_classes).to(z.dtype)  # [B, C]
        centroids = normalize(onehot.T @ z)  # [C, d]; an absent class is a zero row
        logits = self.scale * (z @ centroids.T)  # [B, C]
        present = onehot.sum(0) > 0
        logits = logits.masked_fill(~present, torch.finfo(logits.dtype).min)
        return F.cross_entropy(logits, labels)

    def cost(
        self, batch_size: int, embedding_dim: int, num_classes: int, memory_size: int = 0
    ) -> dict[str, int]:
        # Optional: the analytic FLOPs the probes compare with the counted ones (docs/probes.md).
        b, d, c = batch_size, embedding_dim, num_classes
        matmul = matmul_flops(c, b, d) + matmul_flops(b, d, c)
        total = normalize_flops(b, d) + normalize_flops(c, d) + matmul + b * c  # b * c: scale
        return {"matmul": matmul, "total": total + cross_entropy_flops(b, c)}


# ----- a model: images [B, C, H, W] -> embeddings [B, embedding_dim] -------------------------
@MODELS.register("tiny_mlp")
def tiny_mlp(
    *, in_channels: int, image_size: int, embedding_dim: int, hidden: int = 64
) -> nn.Module:
    """Flatten, one hidden layer, the shared embedding head. `hidden` is a suite param."""
    if hidden < 1:
        raise ValueError(f"hidden must be a positive integer, got {hidden}")
    pixels = in_channels * image_size * image_size
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(pixels, hidden),
        nn.ReLU(inplace=True),
        EmbeddingHead(hidden, embedding_dim, head_bn=False),
    )


# ----- a dataset: a reader returning uint8 [N, C, H, W] images and int64 labels --------------
@DATASETS.register("stripes")
def stripes(request: LoadRequest) -> RawData:
    """Grey 16x16 images of horizontal stripes whose period is the class (2..9 pixels), at a
    random phase, plus noise. Generated, so no files; a real reader reads request.roots."""
    unknown = sorted(set(request.params) - {"noise"})
    if unknown:
        raise ValueError(f"stripes: unknown params {', '.join(unknown)}; expected noise")
    noise = float(request.params.get("noise", 0.3))
    rng = np.random.default_rng(request.seed)

    def draw(n: int) -> tuple[np.ndarray, np.ndarray]:
        labels = rng.integers(0, 8, size=n)
        rows = np.arange(16)[None, :] + rng.integers(0, 16, size=(n, 1))
        wave = np.sin(2 * np.pi * rows / (labels[:, None] + 2))  # [n, 16]
        images = wave[:, None, :, None] + noise * rng.standard_normal((n, 1, 16, 16))
        pixels = np.clip(127.5 + 100 * images, 0, 255).astype(np.uint8)
        return pixels, labels.astype(np.int64)

    info = DatasetInfo(num_classes=8, mean=(0.5,), std=(0.3,))
    train = draw(request.train_size or 2000)
    # Only the splits asked for: a tuning run never reads the test split.
    test = draw(request.test_size or 500) if request.wants("test") else (None, None)
    return RawData(info, *train, *test)
