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


def ours(name: str, impl: str = "fast", **params):
    """Our loss in float64; impl "sync-free" is the fast kernels as the trainer runs them
    (KNNLoss.skip_host_reads: no label check, no finite check, no host read per call)."""
    torch.manual_seed(0)
    kernels = "fast" if impl == "sync-free" else impl
    loss = losses.build(name, num_classes=C, embedding_dim=D, impl=kernels, **params).double()
    if impl == "sync-free":
        loss.skip_host_reads(torch.arange(C))
    return loss


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


def test_pml_entries_are_listed_and_their_parameters_known() -> None:
    names = losses.available("pml*", pml=True)
    assert "pml:NCALoss" in names and "pml:ProxyNCALoss" in names and names == sorted(names)
    assert not any(n.startswith("pml:Base") or n.endswith("Mixin") for n in names)
    assert losses.available("*Proxy*", pml=True) == ["pml:ProxyAnchorLoss", "pml:ProxyNCALoss"]
    assert losses.available("*nca", pml=True) == ["nca", "proxy_nca"]  # case-sensitive
    assert losses.available("pml*") == []  # registered losses only, unless pml=True
    assert set(losses.available(pml=True)) == set(losses.available()) | set(names)
    params = losses.parameters("pml:ProxyNCALoss")
    assert params["softmax_scale"] == 1 and "num_classes" not in params
    assert "embedding_size" not in params


def test_pml_adapter_drops_memory_size_and_has_no_cost_formula() -> None:
    loss = losses.build("pml:CosFaceLoss", num_classes=C, embedding_dim=D, memory_size=100)
    assert loss.has_anchors and loss.anchors().shape == (C, D)
    with pytest.raises(NotImplementedError, match="no analytic cost formula"):
        loss.flops(8, D, C)


@pytest.mark.parametrize(
    ("name", "params", "message"),
    [
        ("pml:NCALos", {}, "has no loss NCALos .*did you mean NCALoss"),
        ("pml:NCALoss:bogus=1", {}, "loss 'pml:NCALoss:bogus=1': unknown parameter 'bogus'"),
        ("pml:NCALoss", {"softmax_scael": 2}, "softmax_scael'.*did you mean 'softmax_scale'"),
        # built, then one test call: the library accepts this and gives NaN in training
        ("pml:ContrastiveLoss:pos_margin=abc", {}, "pml:ContrastiveLoss:pos_margin=abc'"),
        ("pml:NCALoss:softmax_scale=1", {"softmax_scale": 2}, "softmax_scale given twice"),
    ],
)
def test_pml_adapter_errors(name: str, params: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        losses.build(name, num_classes=C, embedding_dim=D, **params)


# ----- zero-norm inputs and duplicates (issue 24, item 7) --------------------------------------
# A zero vector normalizes to 0 in both libraries (F.normalize): a zero embedding or anchor is
# at squared distance 1 from every unit vector and has cosine 0 with it. Both impls must agree
# with pytorch-metric-learning there, values and gradients (a zero row's gradient is scaled by
# 1 / eps = 1e12 in both, through normalize's clamp).


def odd_batch(kind: str, size: int = 24):
    x, y = batch(7, size)
    if kind == "zero_row":
        x[3] = 0.0
    elif kind == "zero_rows":
        x[3] = x[10] = 0.0
        y[10] = y[3]
    elif kind == "duplicates":  # one with the same label, one with another
        x[5], y[5] = x[4], y[4]
        x[6], y[6] = x[4], (y[4] + 1) % C
    return x, y


# (our name, params, pml module factory, anchor attribute in pml, our anchors -> theirs)
ANCHORED = {
    "proxy_nca": ({"scale": 9.0}, lambda: pml_losses.ProxyNCALoss(C, D, softmax_scale=9.0),
                  "proxies", lambda w: w),
    "hal": ({"scale": 16.0}, lambda: pml_losses.NormalizedSoftmaxLoss(C, D, temperature=1 / 16),
            "W", lambda w: w.T),
    "normface": ({"temperature": 0.1},
                 lambda: pml_losses.NormalizedSoftmaxLoss(C, D, temperature=0.1), "W",
                 lambda w: w.T),
    "cosface": ({"scale": 30.0, "margin": 0.2},
                lambda: pml_losses.CosFaceLoss(C, D, margin=0.2, scale=30.0), "W", lambda w: w.T),
    "arcface": ({"scale": 10.0, "margin": 0.5},
                lambda: pml_losses.ArcFaceLoss(C, D, margin=math.degrees(0.5), scale=10.0), "W",
                lambda w: w.T),
}  # fmt: skip

PAIRWISE = {
    "nca_cosine": ("nca", {"scale": 2.0, "distance": "cosine"},
                   lambda: pml_losses.NCALoss(softmax_scale=2.0)),
    "nca_l2": ("nca", {"scale": 0.5},
               lambda: pml_losses.NCALoss(softmax_scale=0.5, distance=pml_distances.LpDistance(
                   power=2, normalize_embeddings=False))),
    "snnl_cosine": ("snnl", {"temperature": 0.5, "distance": "cosine"},
                    lambda: pml_losses.NCALoss(softmax_scale=2.0)),
    "triplet": ("triplet", {"margin": 0.2, "reduction": "nonzero"},
                lambda: MinedTriplet(0.2, True)),
    # Not the default neg_margin 1: a zero row is at distance exactly 1 from every unit row, so
    # there its hinge term is 0 up to rounding, and whether a mean over the "nonzero" terms
    # counts it is a coin toss in either library.
    "contrastive": ("contrastive", {"pos_margin": 0.3, "neg_margin": 1.4},
                    lambda: pml_losses.ContrastiveLoss(pos_margin=0.3, neg_margin=1.4)),
}  # fmt: skip

IMPLS = ["fast", "reference", "sync-free"]
KINDS = ["zero_row", "zero_rows", "duplicates"]


def compare(mine, theirs, x, y, anchors=None, zero_anchor=None, skip_rows=()) -> None:
    """Same value and same gradients (embeddings; anchors mapped by `anchors`) in float64.

    pml's NormalizedSoftmaxLoss, CosFaceLoss and ArcFaceLoss normalize W twice (F.normalize,
    then the cosine distance), which scales a zero anchor's gradient by 1 / eps^2 where one
    normalization gives 1 / eps: that row (`zero_anchor`) is compared by direction. Gradient
    rows in `skip_rows` are not compared."""
    x1, x2 = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    value, expected = mine(x1, y), theirs(x2, y)
    value.backward()
    expected.backward()
    assert value.item() == pytest.approx(expected.item(), rel=1e-7, abs=1e-10)
    keep = torch.ones(len(x), dtype=torch.bool)
    keep[list(skip_rows)] = False
    torch.testing.assert_close(x1.grad[keep], x2.grad[keep], rtol=1e-6, atol=1e-9)
    if anchors is not None:
        ours_grad, their_grad = anchors()
        if zero_anchor is not None:
            u, v = ours_grad[zero_anchor], their_grad[zero_anchor]
            assert torch.nn.functional.cosine_similarity(u, v, dim=0) > 1 - 1e-9
            keep = torch.arange(len(ours_grad)) != zero_anchor
            ours_grad, their_grad = ours_grad[keep], their_grad[keep]
        torch.testing.assert_close(ours_grad, their_grad, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("kind", [*KINDS, "zero_anchor", "zero_anchor_and_row"])
@pytest.mark.parametrize("name", list(ANCHORED))
def test_anchor_losses_agree_with_pml_on_zero_norms(name: str, kind: str, impl: str) -> None:
    params, their_factory, attribute, mapped = ANCHORED[name]
    mine = ours(name, impl=impl, **params)
    if kind.startswith("zero_anchor"):
        mine.weight.data[2] = 0.0
    theirs = with_weight(their_factory(), attribute, mapped(mine.weight.data))
    x, y = odd_batch("zero_row" if kind == "zero_anchor_and_row" else kind)
    if kind.startswith("zero_anchor"):
        y[:3] = 2  # the zero anchor's class is a target, too
    their_weight = getattr(theirs, attribute)
    transpose = attribute == "W"  # pml's W is [d, C]

    def anchor_grads():
        return mine.weight.grad, their_weight.grad.T if transpose else their_weight.grad

    zero = 2 if kind.startswith("zero_anchor") and transpose else None
    compare(mine, theirs, x, y, anchors=anchor_grads, zero_anchor=zero)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("case", list(PAIRWISE))
def test_pairwise_losses_agree_with_pml_on_zero_norms(case: str, kind: str, impl: str) -> None:
    name, params, their_factory = PAIRWISE[case]
    x, y = odd_batch(kind)
    # Tied hardest pairs: we share the gradient between them, pml gives it to one
    # (BatchHardTriplet's docstring). A zero row is equidistant (1) from all unit rows, and
    # duplicates tie each other, so those rows' gradients are not compared; values are.
    skip = {"zero_row": [3], "zero_rows": [3, 10], "duplicates": [4, 5, 6]}[kind]
    compare(
        ours(name, impl=impl, **params), their_factory(), x, y,
        skip_rows=skip if name == "triplet" else (),
    )  # fmt: skip


@pytest.mark.parametrize("impl", IMPLS)
def test_issue_24_cases(impl: str) -> None:
    """The reported numbers: nca cosine with one zero row (1.7564 by pml), proxy_nca with a
    zero anchor at B = 24 and B = 2048 (7.037 and 8.126 by pml)."""
    x, y = odd_batch("zero_row")
    compare(ours("nca", impl=impl, distance="cosine"), pml_losses.NCALoss(), x, y)
    for size in (24, 2048):
        mine = ours("proxy_nca", impl=impl)
        mine.weight.data[0] = 0.0
        theirs = with_weight(pml_losses.ProxyNCALoss(C, D, softmax_scale=9.0), "proxies",
                             mine.weight.data)  # fmt: skip
        compare(mine, theirs, *batch(11, size))


@pytest.mark.parametrize("impl", IMPLS)
def test_hal_large_batch_path_agrees_with_pml_on_zero_norms(impl: str) -> None:
    """The fused node of kernels_cosine.py (B * d past FUSED_MIN_ELEMENTS on CPU)."""
    from halbench.losses.kernels_cosine import FUSED_MIN_ELEMENTS, uses_fused_node

    size = FUSED_MIN_ELEMENTS // D
    assert uses_fused_node("cpu", size, D)
    mine = ours("hal", impl=impl, scale=16.0)
    mine.weight.data[1] = 0.0
    theirs = with_weight(
        pml_losses.NormalizedSoftmaxLoss(C, D, temperature=1 / 16), "W", mine.weight.data.T
    )
    x, y = batch(12, size)
    x[0] = x[100] = 0.0
    compare(mine, theirs, x, y)


def test_pml_build_test_call_leaves_the_global_rng_alone() -> None:
    torch.manual_seed(1)
    expected = torch.rand(3)
    torch.manual_seed(1)
    losses.build("pml:NCALoss", num_classes=C, embedding_dim=D)  # no parameters to draw
    assert torch.equal(torch.rand(3), expected)
