"""Analytic flops() against the dispatcher-level counter (probes/flops.py), which applies the
one rulebook (probes/flop_rules.py) to every aten op that forward actually runs.

The rule (docs/probes.md): the matmul term is exact; the total of the readable formula
(impl="reference") and of the fast kernels (impl="fast") is within FLOP_TOLERANCE of flops()
(the kernels differ in lower-order terms: HAL's weight-norm node has no label check and no
separate scale multiply). torch.utils.flop_counter checks the matmul part independently.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

import halbench.losses as losses
from halbench.losses.base import FLOP_TOLERANCE
from halbench.losses.kernels_cosine import FUSED_MIN_ELEMENTS
from halbench.probes.flops import DispatchCounter

B, D, C, N = 12, 6, 4, 30


def _inputs() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(B, D, generator=g)
    y = torch.randint(0, C, (B,), generator=g)
    return x, y, torch.randperm(N, generator=g)[:B]


def _built(name: str, **params) -> losses.KNNLoss:  # noqa: ANN003
    torch.manual_seed(0)
    loss = losses.build(name, num_classes=C, embedding_dim=D, memory_size=N, **params)
    x, y, idx = _inputs()
    loss(x, y, idx)  # a first call, so that nca_memory has a bank and a pending write
    return loss


# Every loss with its defaults, and the options that change what forward runs.
CASES = [(name, {}) for name in losses.available()] + [
    ("nca", {"distance": "cosine"}),
    ("nca", {"scale": 0.5}),  # alpha = 2 scale = 1: addmm without that scaling
    ("al", {"scale": 0.5}),
    ("triplet", {"normalize": False, "reduction": "nonzero"}),
    ("contrastive", {"reduction": "mean"}),
    ("softmax", {"bias": False}),
]


def _counted(loss: losses.KNNLoss, b: int, d: int, c: int, n: int):  # noqa: ANN202
    g = torch.Generator().manual_seed(1)
    x = torch.randn(b, d, generator=g, requires_grad=True)
    y, idx = torch.randint(0, c, (b,), generator=g), torch.randperm(n, generator=g)[:b]
    with DispatchCounter() as counter:
        loss(x, y, idx)
    return counter.result()


@pytest.mark.parametrize("impl", ["reference", "fast"])
@pytest.mark.parametrize(("name", "params"), CASES, ids=[f"{n}-{p}" for n, p in CASES])
def test_flops_match_the_counter_matmul_exact_total_within_tolerance(
    name: str, params: dict, impl: str
) -> None:
    loss = _built(name, impl=impl, **params)
    counted = _counted(loss, B, D, C, N)
    assert counted.unsupported == [], f"ops without a FLOP rule: {counted.unsupported}"
    analytic = loss.flops(B, D, C, N)
    assert counted.matmul == analytic["matmul"]
    if impl == "reference":  # the formula of the readable expression, term by term
        assert counted.total == pytest.approx(analytic["total"], rel=FLOP_TOLERANCE)
    else:  # tiny sizes: lower-order terms are most of the total; see the test below
        assert counted.total == pytest.approx(analytic["total"], rel=2 * FLOP_TOLERANCE)


# grid-like sizes, HAL's large-batch node (B * d >= FUSED_MIN_ELEMENTS) included
GRID_SHAPES = [(64, 64, 10), (256, 128, 100), (FUSED_MIN_ELEMENTS // 64, 64, 10)]


@pytest.mark.parametrize("shape", GRID_SHAPES, ids=lambda s: "B{}-d{}-C{}".format(*s))
@pytest.mark.parametrize("name", losses.available())
def test_fast_kernels_are_within_the_tolerance_at_grid_sizes(name: str, shape: tuple) -> None:
    b, d, c = shape
    torch.manual_seed(0)
    n = 2 * b
    loss = losses.build(name, num_classes=c, embedding_dim=d, memory_size=n)
    counted = _counted(loss, b, d, c, n)
    analytic = loss.flops(b, d, c, n)
    assert counted.matmul == analytic["matmul"]
    assert counted.total == pytest.approx(analytic["total"], rel=FLOP_TOLERANCE)


@pytest.mark.parametrize("name", losses.available())
def test_flops_matmul_matches_torch_flop_counter(name: str) -> None:
    loss = _built(name)
    x, y, idx = _inputs()
    counter = FlopCounterMode(display=False)
    with counter:
        loss(x, y, idx)
    assert loss.flops(B, D, C, N)["matmul"] == counter.get_total_flops()


@pytest.mark.parametrize("name", losses.available())
def test_flops_are_positive_ints_growing_with_batch(name: str) -> None:
    loss = _built(name)
    small, large = loss.flops(64, D, C, N), loss.flops(128, D, C, N)
    for cost in (small, large):
        assert set(cost) == {"matmul", "total"}
        assert all(isinstance(v, int) for v in cost.values())
        assert 0 < cost["matmul"] < cost["total"]
    assert large["total"] > small["total"]


@pytest.mark.parametrize(
    ("name", "growth"), [("hal", 2), ("al", 2), ("nca", 4), ("triplet", 4), ("nca_memory", 2)]
)
def test_matmul_term_scales_as_documented(name: str, growth: int) -> None:
    """Anchor losses are linear in B, pairwise losses quadratic, the memory bank linear."""
    loss = _built(name)
    ratio = loss.flops(2048, D, C, N)["matmul"] / loss.flops(1024, D, C, N)["matmul"]
    assert math.isclose(ratio, growth)


def test_flops_state_one_formula_on_every_path() -> None:
    """flops() is the readable formula, whichever kernel path a size takes (it has no device
    argument), and the label check (aminmax, 2B) is always in the total."""
    hal = losses.build("hal", num_classes=10, embedding_dim=64)
    for b in (FUSED_MIN_ELEMENTS // 64 - 1, FUSED_MIN_ELEMENTS // 64):
        flops = hal.flops(b, 64, 10)
        assert flops == hal.flops(b, 64, 10, 0)
        assert flops["total"] == hal.cost(b, 64, 10)["total"] + 2 * b
    with pytest.raises(TypeError):
        hal.flops(8, 64, 10, device_type="cuda")  # type: ignore[call-arg]
