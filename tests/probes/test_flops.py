"""FLOP rules on modules with known counts, both counters, and every built-in loss."""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from halbench import losses, models
from halbench.losses.base import FLOP_TOLERANCE
from halbench.losses.kernels_cosine import uses_fused_node
from halbench.probes.flops import DispatchCounter, count_fvcore, count_loss_flops


class Call(nn.Module):
    """Wraps a function of (x, y) so both counters can run it as a module."""

    def __init__(self, fn, weight: torch.Tensor | None = None) -> None:  # noqa: ANN001
        super().__init__()
        self.fn = fn
        self.weight = nn.Parameter(weight) if weight is not None else None

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.fn(self, x, y)


B, D, C = 6, 5, 3

# (name, function, expected forward FLOPs for x [B, D], y [B] in [0, C), weight [C, D])
KNOWN = [
    ("mm", lambda m, x, y: x @ m.weight.T, 2 * B * D * C),
    ("linear+bias", lambda m, x, y: F.linear(x, m.weight, torch.ones(C)), 2 * B * D * C + B * C),
    (
        "addmm scaled",
        lambda m, x, y: torch.addmm(torch.ones(C), x, m.weight.T, beta=2, alpha=3),
        2 * B * D * C + 3 * B * C,
    ),  # fmt: skip
    ("einsum", lambda m, x, y: torch.einsum("bd,cd->bc", x, m.weight), 2 * B * D * C),
    ("exp+sum", lambda m, x, y: x.exp().sum(), 2 * B * D),
    ("relu+max", lambda m, x, y: x.relu().amax(dim=1), 2 * B * D),
    ("softmax", lambda m, x, y: x.softmax(dim=1), 5 * B * D),
    ("log_softmax", lambda m, x, y: x.log_softmax(dim=1), 5 * B * D + B),
    ("logsumexp", lambda m, x, y: x.logsumexp(dim=1), 4 * B * D + 2 * B),
    (
        "cross_entropy",
        lambda m, x, y: F.cross_entropy(x @ m.weight.T, y),
        2 * B * D * C + 5 * B * C + 2 * B,
    ),  # fmt: skip
    ("normalize", lambda m, x, y: F.normalize(x, dim=1), 3 * B * D + 2 * B),
    ("cdist direct", lambda m, x, y: torch.cdist(x, m.weight), B * C * (3 * D + 1)),
    ("views are free", lambda m, x, y: x.t().reshape(-1).unsqueeze(0).expand(2, -1).clone(), 0),
]


@pytest.mark.parametrize(("name", "fn", "expected"), KNOWN, ids=[k[0] for k in KNOWN])
def test_known_forward_counts_in_both_counters(name, fn, expected) -> None:  # noqa: ANN001
    module = Call(fn, torch.randn(C, D))
    x, y = torch.randn(B, D), torch.randint(0, C, (B,))
    with DispatchCounter() as counter:
        module(x, y)
    dispatched = counter.result()
    traced = count_fvcore(module, (x, y))
    assert dispatched.unsupported == [] and traced.unsupported == []
    assert dispatched.total == expected
    assert traced.total == expected


def test_cdist_matmul_path_matches_the_kernel_torch_runs() -> None:
    # above 25 rows torch computes p=2 distances through one matmul; both counters must agree
    x, w = torch.randn(40, 7), torch.randn(30, 7)
    module = Call(lambda m, x, y: torch.cdist(x, m.weight), w)
    with DispatchCounter() as counter:
        module(x, None)
    result = counter.result()
    assert result.by_op["_euclidean_dist"] == result.total
    assert result.total == count_fvcore(module, (x, None)).total
    # the [40, 7+2] x [7+2, 30] product, |x|^2, |w|^2, -2x, clamp and sqrt
    assert result.total == 2 * 40 * 30 * 9 + 3 * 40 * 7 + 2 * 30 * 7 + 2 * 40 * 30


def test_matmul_counts_agree_with_torch_flop_counter() -> None:
    a, b = torch.randn(9, 13, requires_grad=True), torch.randn(13, 4, requires_grad=True)
    with FlopCounterMode(display=False) as reference:
        (a @ b).sum().backward()
    a.grad = b.grad = None
    with DispatchCounter() as fwd:
        out = (a @ b).sum()
    with DispatchCounter() as bwd:
        out.backward()
    ours = fwd.result().matmul + bwd.result().matmul
    assert ours == reference.get_total_flops() == 3 * 2 * 9 * 13 * 4


def test_op_without_rule_is_reported_not_counted_as_zero() -> None:
    module = Call(lambda m, x, y: torch.special.erf(x).sum())
    x = torch.randn(B, D)
    with DispatchCounter() as counter:
        module(x, None)
    assert counter.result().unsupported == ["aten::erf"]
    assert "aten::erf" in count_fvcore(module, (x, None)).unsupported


def test_op_fvcore_skips_silently_is_reported_by_the_cross_check() -> None:
    # fvcore counts floor as 0 FLOPs without saying so; the rulebook has no rule for it
    module = Call(lambda m, x, y: torch.floor(x).sum())
    x = torch.randn(B, D)
    traced = count_fvcore(module, (x, None))
    assert traced.unsupported == ["aten::floor"]
    assert traced.total == B * D  # the sum, counted by our rule


def test_backward_is_counted_separately_from_forward() -> None:
    w = torch.randn(C, D, requires_grad=True)
    x = torch.randn(B, D, requires_grad=True)
    with DispatchCounter() as fwd:
        out = (x @ w.T).exp().sum()
    with DispatchCounter() as bwd:
        out.backward()
    assert fwd.result().total == 2 * B * D * C + 2 * B * C
    # grad of exp (mul) per element; two matmuls for the grads of x and w; expand is free
    assert bwd.result().total == B * C + 2 * (2 * B * D * C)
    assert bwd.result().matmul == 2 * (2 * B * D * C)


# the last shape takes HAL's large-batch path on CPU (losses/kernels_cosine.py uses_fused_node)
SHAPES = [(32, 64, 10), (64, 128, 10), (128, 64, 100), (256, 32, 10), (1024, 512, 10)]
# The analytic backward: each loss's backward runs this many products of the forward's size
# (anchor losses: gradients of the embeddings and of the anchors; nca/snnl: one, from the
# symmetric Gram matrix, see losses/kernels.py) ...
BACKWARD_PRODUCTS = {"hal": 2, "al": 2, "nca": 1, "snnl": 1}


# ... plus this elementwise work, in closed form for the hand-written backward passes
# (losses/kernels.py _NeighbourNLL and _GramScores) and for HAL's weight-norm nodes. It is not
# the forward's elementwise work: NCA's backward reuses the exps saved by the forward. A change to a
# backward pass that changes its cost must change its formula here.
def _hal(b: int, d: int, c: int) -> int:
    # the NLL backward (b) and log-softmax backward (4bc) give dL/dlogits; the weight-norm
    # backward of the embeddings (5bd + 3b) and of the anchors (5cd + 3c)
    return 4 * b * c + 5 * b * d + 5 * c * d + 4 * b + 3 * c


def _hal_fused(b: int, d: int, c: int) -> int:
    # _CosineCrossEntropy: the NLL and log-softmax backward (b + 4bc) give G; P = G / |x|,
    # P * cos and its sum over classes (3bc); the radial division (b); one correction pass over
    # x (bd); the anchors' weight-norm backward (5cd + 3c)
    return 7 * b * c + b * d + 5 * c * d + 2 * b + 3 * c


BACKWARD_ELEMENTWISE = {
    "hal": lambda b, d, c: _hal_fused(b, d, c) if uses_fused_node("cpu", b, d) else _hal(b, d, c),
    "al": lambda b, d, c: 6 * b * c + b * d + 5 * c * d + b,
    "nca": lambda b, d, c: 4 * b * b + 2 * b * d + 4 * b + 1,
    "snnl": lambda b, d, c: 4 * b * b + 2 * b * d + 4 * b + 1,
}


def _inputs(loss_name: str, b: int, d: int, c: int):  # noqa: ANN202
    torch.manual_seed(0)
    loss = losses.build(loss_name, num_classes=c, embedding_dim=d, memory_size=4 * b)
    x, y = torch.randn(b, d), torch.randint(0, c, (b,))
    indices = torch.randperm(4 * b)[:b] if type(loss).needs_memory_size else None
    return loss, x, y, indices


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "B{}-d{}-C{}".format(*s))
@pytest.mark.parametrize("name", sorted(BACKWARD_PRODUCTS))
def test_counted_flops_match_the_loss_formula(name: str, shape: tuple[int, int, int]) -> None:
    loss, x, y, indices = _inputs(name, *shape)
    counted = count_loss_flops(loss, x, y, indices)
    analytic = loss.flops(*shape)
    assert counted.matmul_fwd == analytic["matmul"]
    # flops() is the readable formula; the fast kernels differ in lower-order terms only
    assert counted.fwd == pytest.approx(analytic["total"], rel=FLOP_TOLERANCE)
    products = BACKWARD_PRODUCTS[name] * analytic["matmul"]
    assert counted.matmul_bwd == products
    elementwise = BACKWARD_ELEMENTWISE[name](*shape)
    assert counted.bwd == products + elementwise


@pytest.mark.parametrize("name", losses.available())
def test_builtin_losses_have_no_uncounted_ops(name: str) -> None:
    loss, x, y, indices = _inputs(name, 24, 16, 5)
    counted = count_loss_flops(loss, x, y, indices)
    assert counted.unsupported == []
    assert counted.fwd > 0 and counted.bwd > 0
    # the cross-check: fvcore's tracer sees the same forward (it skips the input checks,
    # which the tracer drops as dead code) unless TorchScript cannot trace the loss at all
    if counted.fwd_fvcore is not None:
        assert counted.fwd_fvcore == pytest.approx(counted.fwd, rel=0.05)
        assert counted.fvcore_note is None  # fvcore saw every op
    else:  # the reason, in one line
        assert counted.fvcore_note and "\n" not in counted.fvcore_note
        assert counted.fvcore_error == counted.fvcore_note


def test_fvcore_counts_convolutions_at_two_flops_per_multiply_add() -> None:
    """small_cnn: fvcore's own handles count 1 per multiply-add; count_fvcore gives
    FlopCounterMode's 2 per multiply-add for the convolutions and the head's linear layer."""
    torch.manual_seed(0)
    model = models.build(
        "small_cnn", in_channels=3, image_size=32, embedding_dim=64
    ).eval()  # fmt: skip
    x = torch.randn(2, 3, 32, 32)
    with FlopCounterMode(display=False) as reference:
        model(x)
    traced = count_fvcore(model, (x,))
    assert traced.matmul == reference.get_total_flops()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from fvcore.nn import FlopCountAnalysis

        plain = FlopCountAnalysis(model, (x,)).unsupported_ops_warnings(False).by_operator()
    assert 2 * (plain["conv"] + plain["linear"]) == traced.matmul  # fvcore's own: per MAC
    assert traced.by_op["_convolution"] == 2 * plain["conv"]
    # fvcore's remaining handles (batch_norm, adaptive_avg_pool2d) are doubled, not dropped
    assert traced.by_op["batch_norm"] > 0


def test_profile_loss_call_reports_fvcores_count_or_why_not() -> None:
    from halbench.probes import profile_loss_call

    torch.manual_seed(0)
    x, y = torch.randn(16, 8), torch.randint(0, 4, (16,))
    seen = losses.build("softmax", num_classes=4, embedding_dim=8)
    row = profile_loss_call(seen, x, y, warmup=0, repeats=1)
    assert isinstance(row["fvcore_flops"], int) and row["fvcore_note"] is None
    assert row["fvcore_flops"] == pytest.approx(row["flops_fwd"], rel=0.05)
    opaque = losses.build("nca", num_classes=4, embedding_dim=8)  # custom autograd nodes
    row = profile_loss_call(opaque, x, y, warmup=0, repeats=1)
    assert row["fvcore_flops"] is None
    assert "cannot see inside" in row["fvcore_note"]
