"""Analytic flops() against an independent op-by-op count of what forward actually runs.

The counter applies the rules of halbench/losses/base.py (docs/losses.md) to every aten op that
reaches the dispatcher; an op it has no rule for fails the test, so a new op in a loss cannot go
uncounted. torch.utils.flop_counter checks the matmul part independently.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode

import halbench.losses as losses

aten = torch.ops.aten

B, D, C, N = 12, 6, 4, 30

FREE = {
    aten._local_scalar_dense, aten._to_copy, aten.stack, aten._unsafe_view, aten.alias, aten.arange,
    aten.as_strided, aten.clone, aten.copy_, aten.detach, aten.diagonal, aten.empty,
    aten.empty_like, aten.expand, aten.fill_, aten.full, aten.full_like, aten.gather,
    aten.index, aten.index_put, aten.index_put_, aten.lift_fresh, aten.masked_fill,
    aten.new_empty, aten.new_full, aten.new_zeros, aten.permute, aten.scalar_tensor, aten.scatter,
    aten.select, aten.slice, aten.squeeze, aten.t, aten.transpose, aten.unsqueeze, aten.view,
    aten.where, aten.zeros, aten.zeros_like, aten.ones_like,
}  # fmt: skip
ELEMENTWISE = {
    aten.add, aten.add_, aten.bitwise_and, aten.bitwise_not, aten.bitwise_or, aten.clamp_min,
    aten.div, aten.div_, aten.mul_, aten.sub_, aten.clamp, aten.clamp_, aten.clamp_min_,
    aten.exp, aten.exp_, aten.log,
    aten.eq, aten.ge, aten.gt, aten.le, aten.logical_and, aten.logical_not, aten.logical_or,
    aten.lt, aten.mul, aten.ne, aten.neg, aten.reciprocal, aten.relu, aten.rsub, aten.sqrt,
    aten.sub,
}  # fmt: skip
REDUCTIONS = {aten.all, aten.amax, aten.amin, aten.any, aten.argmax, aten.sum}


def _numel(x: Any) -> int:
    return x.numel() if isinstance(x, torch.Tensor) else 1


def _addmm(args: tuple, kwargs: dict, out: torch.Tensor) -> int:
    m, k = args[1].shape
    scalings = (kwargs.get("alpha", 1) != 1) + (kwargs.get("beta", 1) != 1)
    return 2 * m * k * args[2].shape[1] + out.numel() * (1 + scalings)


SPECIAL: dict[Any, Callable[[tuple, Any], int]] = {
    aten.mm: lambda a, o: 2 * a[0].shape[0] * a[0].shape[1] * a[1].shape[1],
    aten.aminmax: lambda a, o: 2 * a[0].numel(),  # a min and a max
    aten.linalg_vector_norm: lambda a, o: 2 * a[0].numel() + o.numel(),
    aten.logsumexp: lambda a, o: 4 * a[0].numel() + 2 * o.numel(),
    # one log per softmax row: rows = numel / length of the softmax dim (a[1])
    aten._log_softmax: lambda a, o: 5 * a[0].numel() + a[0].numel() // a[0].shape[a[1]],
    aten.nll_loss_forward: lambda a, o: a[1].numel(),  # one pick per target
    aten.nll_loss2d_forward: lambda a, o: a[1].numel(),
    # v * g / |v| per row: norms (2 per element, a root per row), g / |v|, the product
    aten._weight_norm_interface: lambda a, o: 3 * a[0].numel() + 2 * a[1].numel(),
}


class RuleCounter(TorchDispatchMode):
    """Counts FLOPs op by op with the documented rules; remembers ops without a rule."""

    def __init__(self) -> None:
        super().__init__()
        self.total = 0
        self.unknown: set[str] = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        out = func(*args, **(kwargs or {}))
        packet = func.overloadpacket
        if packet is aten.addmm:
            self.total += _addmm(args, kwargs or {}, out)
        elif packet in SPECIAL:
            self.total += SPECIAL[packet](args, out)
        elif packet in ELEMENTWISE:
            self.total += _numel(out)
        elif packet in REDUCTIONS:
            self.total += _numel(args[0])
        elif packet not in FREE:
            self.unknown.add(str(func))
        return out


def _inputs() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(B, D, generator=g)
    y = torch.randint(0, C, (B,), generator=g)
    return x, y, torch.randperm(N, generator=g)[:B]


def _built(name: str, **params) -> losses.KNNLoss:
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


@pytest.mark.parametrize(("name", "params"), CASES, ids=[f"{n}-{p}" for n, p in CASES])
def test_flops_total_matches_op_by_op_count(name: str, params: dict) -> None:
    loss = _built(name, **params)
    x, y, idx = _inputs()
    x.requires_grad_(True)
    with RuleCounter() as counter:
        loss(x, y, idx)
    assert not counter.unknown, f"ops without a FLOP rule: {sorted(counter.unknown)}"
    assert loss.flops(B, D, C, N)["total"] == counter.total


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


def test_hal_flops_follow_the_path_each_device_takes() -> None:
    """On CPU past FUSED_MIN_ELEMENTS HAL runs the large-batch node and its NLL kernel checks the
    labels; on GPU it always runs the weight-norm path after forward's aminmax check (2B)."""
    from halbench.losses.cosine import FUSED_MIN_ELEMENTS

    hal = losses.build("hal", num_classes=10, embedding_dim=64)
    small, large = FUSED_MIN_ELEMENTS // 64 - 1, FUSED_MIN_ELEMENTS // 64
    for b in (small, large):
        weight_norm_path = hal.cost(b, 64, 10)["total"]
        assert hal.flops(b, 64, 10, device_type="cuda")["total"] == weight_norm_path + 2 * b
    assert hal.flops(small, 64, 10)["total"] == hal.cost(small, 64, 10)["total"]
    # the fused node normalizes nothing of size [B, d]: one norm pass (2Bd) instead of 3Bd
    assert hal.flops(large, 64, 10)["total"] < hal.cost(large, 64, 10)["total"]
    cosface = losses.build("cosface", num_classes=10, embedding_dim=64)
    assert cosface.flops(large, 64, 10)["total"] == cosface.cost(large, 64, 10)["total"] + 2 * large
