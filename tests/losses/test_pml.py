"""Our losses against pytorch-metric-learning's on the same inputs, and the pml: adapter.

Conventions that differ, and the mapping tested here:
- nca: pml's NCALoss normalizes embeddings by default; our default is raw squared L2, so our
  nca(distance="l2") maps to LpDistance(power=2, normalize_embeddings=False), and our
  nca(distance="cosine") to the default NCALoss. softmax_scale = scale.
- proxy_nca(scale=t) = ProxyNCALoss(softmax_scale=t); pml keeps proxies as they are and
  normalizes them in the distance, so any proxy norm gives the same value.
- hal(scale=s) = NormalizedSoftmaxLoss(temperature=1/s); normface(temperature=T) likewise.
  pml stores W as [d, C]: W = anchors.T.
- arcface: our margin is in radians, pml's in degrees.
- triplet: batch-hard = TripletMarginLoss + BatchHardMiner; pml averages the nonzero terms,
  which is our reduction="nonzero" (our default "mean" averages all valid anchors).
- contrastive: pml's form (non-squared distances, pos and neg terms averaged separately over
  the nonzero pairs) is our default.
"""

from __future__ import annotations

import math

import pytest
import torch

import halbench.losses as losses

pml_losses = pytest.importorskip("pytorch_metric_learning.losses")
pml_miners = pytest.importorskip("pytorch_metric_learning.miners")
pml_distances = pytest.importorskip("pytorch_metric_learning.distances")

C, D = 5, 8


def batch(seed: int, size: int = 24):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(size, D, generator=g, dtype=torch.float64)
    return x, torch.randint(0, C, (size,), generator=g)


def ours(name: str, **params):
    torch.manual_seed(0)
    return losses.build(name, num_classes=C, embedding_dim=D, **params).double()


def with_weight(module, attribute: str, value: torch.Tensor):
    module = module.double()
    getattr(module, attribute).data.copy_(value)
    return module


def assert_same_value_and_gradient(our_loss, their_loss, seeds=range(3)) -> None:
    for seed in seeds:
        x, y = batch(seed)
        x1, x2 = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
        mine, theirs = our_loss(x1, y), their_loss(x2, y)
        mine.backward()
        theirs.backward()
        assert mine.item() == pytest.approx(theirs.item(), rel=1e-6, abs=1e-9)
        assert torch.allclose(x1.grad, x2.grad, rtol=1e-5, atol=1e-9)


@pytest.mark.parametrize("scale", [0.3, 1.0, 2.5])
def test_nca_l2_equals_pml_nca_without_normalization(scale: float) -> None:
    distance = pml_distances.LpDistance(power=2, normalize_embeddings=False)
    assert_same_value_and_gradient(
        ours("nca", scale=scale), pml_losses.NCALoss(softmax_scale=scale, distance=distance)
    )


@pytest.mark.parametrize("scale", [1.0, 8.0])
def test_nca_cosine_equals_pml_nca_default(scale: float) -> None:
    assert_same_value_and_gradient(
        ours("nca", scale=scale, distance="cosine"), pml_losses.NCALoss(softmax_scale=scale)
    )


@pytest.mark.parametrize("scale", [1.0, 9.0])
def test_proxy_nca_equals_pml_proxy_nca(scale: float) -> None:
    mine = ours("proxy_nca", scale=scale)
    theirs = with_weight(
        pml_losses.ProxyNCALoss(C, D, softmax_scale=scale), "proxies", mine.weight.data * 3
    )
    assert_same_value_and_gradient(mine, theirs)


@pytest.mark.parametrize(("name", "params", "temperature"), [
    ("hal", {"scale": 16.0}, 1 / 16),
    ("normface", {"temperature": 0.1}, 0.1),
])  # fmt: skip
def test_hal_and_normface_equal_pml_normalized_softmax(name, params, temperature) -> None:
    mine = ours(name, **params)
    theirs = with_weight(
        pml_losses.NormalizedSoftmaxLoss(C, D, temperature=temperature), "W", mine.weight.data.T
    )
    assert_same_value_and_gradient(mine, theirs)


def test_cosface_equals_pml_cosface() -> None:
    mine = ours("cosface", scale=30.0, margin=0.2)
    theirs = with_weight(pml_losses.CosFaceLoss(C, D, margin=0.2, scale=30.0), "W", mine.weight.T)
    assert_same_value_and_gradient(mine, theirs)


@pytest.mark.parametrize("margin", [0.5, 1.3])  # 1.3 rad: many targets use the fallback
def test_arcface_equals_pml_arcface_with_margin_in_degrees(margin: float) -> None:
    mine = ours("arcface", scale=10.0, margin=margin)
    theirs = pml_losses.ArcFaceLoss(C, D, margin=math.degrees(margin), scale=10.0)
    assert_same_value_and_gradient(mine, with_weight(theirs, "W", mine.weight.T))


class MinedTriplet(torch.nn.Module):
    def __init__(self, margin: float, normalize: bool) -> None:
        super().__init__()
        distance = pml_distances.LpDistance(normalize_embeddings=normalize)
        self.miner = pml_miners.BatchHardMiner(distance=distance)
        self.loss = pml_losses.TripletMarginLoss(margin=margin, distance=distance)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.loss(x, y, self.miner(x, y))


@pytest.mark.parametrize(("margin", "normalize"), [(0.2, True), (1.0, True), (3.0, False)])
def test_triplet_nonzero_equals_pml_triplet_with_batch_hard_miner(margin, normalize) -> None:
    assert_same_value_and_gradient(
        ours("triplet", margin=margin, normalize=normalize, reduction="nonzero"),
        MinedTriplet(margin, normalize),
    )


@pytest.mark.parametrize(("pos", "neg"), [(0.0, 1.0), (0.3, 1.4)])
def test_contrastive_equals_pml_contrastive(pos: float, neg: float) -> None:
    assert_same_value_and_gradient(
        ours("contrastive", pos_margin=pos, neg_margin=neg),
        pml_losses.ContrastiveLoss(pos_margin=pos, neg_margin=neg),
    )


def test_pml_adapter_builds_any_loss_with_its_parameters() -> None:
    loss = losses.build("pml:NCALoss:softmax_scale=2.5", num_classes=C, embedding_dim=D)
    assert loss.name == "pml:NCALoss:softmax_scale=2.5"
    assert loss.inner.softmax_scale == 2.5
    assert loss.metric == "cosine" and not loss.has_anchors and loss.anchors() is None
    x, y = batch(0)
    assert loss(x, y).item() == pytest.approx(pml_losses.NCALoss(softmax_scale=2.5)(x, y).item())


def test_pml_adapter_merges_suite_parameters_and_trains_proxies() -> None:
    loss = losses.build("pml:ProxyNCALoss", num_classes=C, embedding_dim=D, softmax_scale=3)
    assert loss.inner.softmax_scale == 3
    assert loss.has_anchors and loss.anchors().shape == (C, D)
    (proxies,) = loss.parameters()
    x, y = batch(1)
    loss(x.float(), y).backward()
    assert proxies.grad is not None and proxies.grad.abs().sum() > 0
    assert loss.param_groups(0.1)[0]["params"] == [proxies]


def test_pml_adapter_drops_memory_size_and_has_no_cost_formula() -> None:
    loss = losses.build("pml:CosFaceLoss", num_classes=C, embedding_dim=D, memory_size=100)
    assert loss.has_anchors and loss.anchors().shape == (C, D)
    with pytest.raises(NotImplementedError, match="no analytic cost formula"):
        loss.flops(8, D, C)


@pytest.mark.parametrize(
    ("name", "params", "message"),
    [
        ("pml:NCALos", {}, "has no loss NCALos .*did you mean NCALoss"),
        ("pml:NCALoss:bogus=1", {}, "loss 'pml:NCALoss:bogus=1': .*bogus"),
        ("pml:NCALoss:softmax_scale=1", {"softmax_scale": 2}, "softmax_scale given twice"),
    ],
)
def test_pml_adapter_errors(name: str, params: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        losses.build(name, num_classes=C, embedding_dim=D, **params)
