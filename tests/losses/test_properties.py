"""Contract and numerical properties of every registered loss (parametrized over the registry)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import halbench.losses as losses
from halbench.losses.anchor import init_anchors
from halbench.losses.base import METRICS, KNNLoss
from halbench.losses.kernels import (
    CLASS_MAJOR_MAX_CLASSES,
    class_major,
    cross_entropy,
    gram_scores,
)
from halbench.losses.kernels_cosine import (
    FUSED_MIN_ELEMENTS,
    _CosineCrossEntropy,
    clamped_cosine_logits,
    cosine_logits,
    uses_fused_node,
)

ALL = losses.available()
C, D, N = 4, 5, 24


def build(name: str, **params) -> KNNLoss:
    torch.manual_seed(0)
    return losses.build(name, num_classes=C, embedding_dim=D, memory_size=N, **params)


def batch(seed: int = 0, size: int = 10, dtype: torch.dtype = torch.float32):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(size, D, generator=g, dtype=dtype)
    y = torch.randint(0, C, (size,), generator=g)
    return x, y, torch.randperm(N, generator=g)[:size]


def warm(loss: KNNLoss) -> None:
    """Fill nca_memory's bank (two calls: the first write happens at the second call)."""
    for seed in (10, 11):
        x, y, _ = batch(seed, size=N)
        loss(x, y, torch.arange(N))


@pytest.mark.parametrize("name", ALL)
def test_contract_attributes(name: str) -> None:
    loss = build(name)
    assert isinstance(loss, KNNLoss)
    assert loss.name == name
    assert loss.metric in METRICS
    anchors = loss.anchors()
    if loss.has_anchors:
        assert anchors is not None and anchors.shape == (C, D) and not anchors.requires_grad
    else:
        assert anchors is None


@pytest.mark.parametrize("name", ALL)
def test_gradients_reach_embeddings_and_parameters(name: str) -> None:
    loss = build(name)
    warm(loss)
    x, y, idx = batch(1)
    x.requires_grad_(True)
    loss(x, y, idx).backward()
    assert x.grad is not None and x.grad.isfinite().all() and x.grad.abs().sum() > 0
    for param_name, param in loss.named_parameters():
        assert param.grad is not None, param_name
        assert param.grad.isfinite().all() and param.grad.abs().sum() > 0, param_name


@pytest.mark.parametrize("name", ALL)
def test_gradcheck_float64(name: str) -> None:
    loss = build(name).double()
    warm(loss)
    loss.eval()  # a frozen bank: gradcheck calls forward many times
    x, y, idx = batch(2, size=6, dtype=torch.float64)
    loss(x, y, idx)  # applies the last pending write before checking
    names = [n for n, _ in loss.named_parameters()]

    def f(x: torch.Tensor, *values: torch.Tensor) -> torch.Tensor:
        return torch.func.functional_call(loss, dict(zip(names, values, strict=True)), (x, y, idx))

    values = (p.detach().clone().requires_grad_(True) for p in loss.parameters())
    assert torch.autograd.gradcheck(f, (x.requires_grad_(True), *values))


# Losses whose every term needs a same-class neighbour (contrastive still has negative pairs;
# anchor losses always have their class anchor).
NEED_POSITIVES = {"nca", "snnl", "nca_memory", "triplet"}


@pytest.mark.parametrize("name", ALL)
def test_batch_without_positives_is_finite_and_zero_for_in_batch_losses(name: str) -> None:
    loss = build(name)
    x = torch.randn(C, D, requires_grad=True)
    y = torch.arange(C)  # every sample alone in its class
    value = loss(x, y, torch.arange(C))  # nca_memory: an empty bank, no neighbours at all
    value.backward()
    assert value.isfinite() and x.grad is not None and x.grad.isfinite().all()
    if name in NEED_POSITIVES:
        assert value.item() == 0.0 and value.requires_grad


@pytest.mark.parametrize("name", ALL)
def test_batch_of_one_is_finite(name: str) -> None:
    loss = build(name)
    x = torch.randn(1, D, requires_grad=True)
    value = loss(x, torch.tensor([2]), torch.tensor([3]))
    value.backward()
    assert value.isfinite() and x.grad.isfinite().all()


@pytest.mark.parametrize("name", ALL)
def test_bfloat16_agrees_with_float32(name: str) -> None:
    loss = build(name)
    warm(loss)
    loss.eval()
    x, y, idx = batch(3, size=20)
    expected = loss(x, y, idx).item()
    low = x.bfloat16().requires_grad_(True)
    value = loss(low, y, idx)
    value.backward()
    assert value.isfinite() and low.grad.isfinite().all()
    assert value.item() == pytest.approx(expected, rel=0.05, abs=0.05)


@pytest.mark.parametrize("name", ALL)
def test_autocast_gives_the_float32_loss(name: str) -> None:
    loss = build(name)
    warm(loss)
    loss.eval()
    x, y, idx = batch(3, size=20)
    expected = loss(x, y, idx).item()
    x.requires_grad_(True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        value = loss(x, y, idx)
    value.backward()
    assert value.dtype == torch.float32 and x.grad.isfinite().all()
    assert value.item() == pytest.approx(expected, rel=0.05, abs=0.05)


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_far_apart_embeddings_stay_finite(name: str, dtype: torch.dtype) -> None:
    """Huge distances: softmax terms underflow, a careless log(0) or inf - inf would show."""
    loss = build(name)
    x, y, idx = batch(4, size=16)
    x = (x * 1e3).to(dtype).requires_grad_(True)
    value = loss(x, y, idx)
    value.backward()
    assert value.isfinite() and x.grad.isfinite().all()


COSINE_LOSSES = [
    ("hal", {}),
    ("proxy_nca", {}),
    ("normface", {}),
    ("cosface", {}),
    ("arcface", {}),
    ("nca", {"distance": "cosine"}),
    ("triplet", {}),
    ("contrastive", {}),
]


@pytest.mark.parametrize(("name", "params"), COSINE_LOSSES)
def test_scaling_embeddings_changes_nothing_on_the_sphere(name: str, params: dict) -> None:
    loss = build(name, **params)
    x, y, idx = batch(5)
    scales = torch.rand(len(x), 1) * 10 + 0.1  # a different positive factor per sample
    assert loss(x * scales, y, idx).item() == pytest.approx(loss(x, y, idx).item(), rel=1e-5)


TRANSLATION_INVARIANT = [
    ("nca", {}),
    ("snnl", {}),
    ("triplet", {"normalize": False}),
    ("contrastive", {"normalize": False}),
]


@pytest.mark.parametrize(("name", "params"), TRANSLATION_INVARIANT)
def test_translating_embeddings_changes_nothing_in_rn(name: str, params: dict) -> None:
    loss = build(name, **params)
    x, y, idx = batch(6)
    shift = torch.randn(1, D)
    assert loss(x + shift, y, idx).item() == pytest.approx(loss(x, y, idx).item(), rel=1e-4)


def test_hal_is_proxy_nca_and_normface_with_mapped_scales() -> None:
    """On the sphere ||x - a||^2 = 2 - 2 cos: ProxyNCA(t) = HAL(2t) for nonzero x and anchors;
    NormFace(T) = HAL(1/T)."""
    x, y, idx = batch(7)
    hal = build("hal", scale=6.0)
    proxy = build("proxy_nca", scale=3.0)
    normface = build("normface", temperature=1 / 6.0)
    for other in (proxy, normface):
        other.weight.data.copy_(hal.weight.data * 2.5)  # anchor norms do not matter
        assert other(x, y, idx).item() == pytest.approx(hal(x, y, idx).item(), rel=1e-6)


def test_snnl_is_nca_with_inverse_temperature() -> None:
    x, y, idx = batch(8)
    snnl, nca = build("snnl", temperature=4.0), build("nca", scale=0.25)
    assert snnl(x, y, idx).item() == pytest.approx(nca(x, y, idx).item(), rel=1e-6)


def test_zero_margins_reduce_cosface_and_arcface_to_hal() -> None:
    x, y, idx = batch(9)
    hal = build("hal", scale=10.0)
    for name in ("cosface", "arcface"):
        other = build(name, scale=10.0, margin=0.0)
        other.weight.data.copy_(hal.weight.data)
        assert other(x, y, idx).item() == pytest.approx(hal(x, y, idx).item(), rel=1e-6)


def test_fixed_anchors_are_buffers() -> None:
    loss = build("hal", learn_anchors=False)
    assert list(loss.parameters()) == []
    assert loss.param_groups(0.1) == []
    assert loss.anchors().shape == (C, D)


def test_param_groups_scale_the_learning_rate() -> None:
    loss = build("hal", lr_scale=10.0)
    (group,) = loss.param_groups(0.01)
    assert group["lr"] == pytest.approx(0.1)
    assert group["params"] == [loss.weight]


@pytest.mark.parametrize("method", ["normal", "orthogonal", "simplex"])
def test_anchor_inits_are_unit_norm_with_the_promised_geometry(method: str) -> None:
    torch.manual_seed(0)
    classes, dim = 6, 5
    anchors = init_anchors(classes, dim if method != "orthogonal" else 8, method)
    assert torch.allclose(anchors.norm(dim=1), torch.ones(classes), atol=1e-6)
    gram = anchors @ anchors.T
    off_diagonal = gram[~torch.eye(classes, dtype=torch.bool)]
    if method == "orthogonal":
        assert torch.allclose(off_diagonal, torch.zeros_like(off_diagonal), atol=1e-6)
    elif method == "simplex":  # C = d + 1: the regular simplex, cos = -1/(C-1)
        expected = torch.full_like(off_diagonal, -1 / (classes - 1))
        assert torch.allclose(off_diagonal, expected, atol=1e-6)


def test_nca_memory_writes_the_bank_with_momentum_after_the_call() -> None:
    loss = build("nca_memory", momentum=0.5)
    x, y, _ = batch(12, size=3)
    idx = torch.tensor([0, 5, 7])
    loss(x, y, idx)
    assert (loss.memory_labels < 0).all()  # written at the next call, after backward
    loss(x, y, idx)
    first = torch.nn.functional.normalize(x, dim=1)
    assert torch.allclose(loss.memory[idx], first, atol=1e-6)
    assert loss.memory_labels[idx].tolist() == y.tolist()
    x2 = torch.randn(3, D)
    loss(x2, y, idx)
    loss(x2, y, idx)
    mixed = torch.nn.functional.normalize(
        0.5 * first + 0.5 * torch.nn.functional.normalize(x2), dim=1
    )
    assert torch.allclose(loss.memory[idx], mixed, atol=1e-6)


def test_nca_memory_does_not_write_in_eval_mode() -> None:
    loss = build("nca_memory").eval()
    x, y, idx = batch(13, size=4)
    loss(x, y, idx)
    loss(x, y, idx)
    assert (loss.memory_labels < 0).all()


def test_arcface_fallback_keeps_the_target_logit_decreasing_in_the_angle() -> None:
    loss = build("arcface", margin=0.5, scale=1.0)
    angles = torch.linspace(0, math.pi, 200, dtype=torch.float64)
    cosine = torch.cos(angles).unsqueeze(1).repeat(1, C)
    target = loss.adjust_target(cosine, torch.zeros(200, dtype=torch.long))[:, 0]
    assert (target.diff() < 0).all()


@pytest.mark.parametrize("dim", [5, 128])
@pytest.mark.parametrize(
    "options",
    [
        {"alpha": 2.0},
        {"alpha": 3.0, "beta": -1.5, "diagonal": -1e3},
        {"alpha": -2.0, "beta": 1.0, "both_sides": True},
    ],
)
def test_gram_scores_values_and_gradcheck(dim: int, options: dict) -> None:
    x = torch.randn(4, dim, dtype=torch.float64, requires_grad=True)
    sq = (x * x).sum(1).detach()
    expected = options["alpha"] * x.detach() @ x.detach().T
    if options.get("beta"):
        bias = sq.unsqueeze(0) + (sq.unsqueeze(1) if options.get("both_sides") else 0)
        expected = expected + options["beta"] * bias
    if "diagonal" in options:
        expected.fill_diagonal_(options["diagonal"])
    assert torch.allclose(gram_scores(x, **options), expected)
    assert torch.autograd.gradcheck(lambda x: gram_scores(x, **options), (x,))


@pytest.mark.parametrize("class_major", [True, False], ids=["class-major", "batch-major"])
@pytest.mark.parametrize("logits_fn", [cosine_logits, clamped_cosine_logits])
def test_cosine_logits_agree_with_f_normalize_in_both_layouts(logits_fn, class_major: bool) -> None:  # noqa: ANN001
    """Both cosine paths (the weight-norm kernel and its clamped fallback), values and gradients,
    against autograd through F.normalize, logits stored [C, B] or [B, C]."""
    g = torch.Generator().manual_seed(3)
    x = torch.randn(9, 6, generator=g, dtype=torch.float64, requires_grad=True)
    w = torch.randn(5, 6, generator=g, dtype=torch.float64, requires_grad=True)
    y = torch.randint(0, 5, (9,), generator=g)
    logits = logits_fn(x, w, 7.0, class_major)
    ours = F.cross_entropy(logits.T if class_major else logits, y)
    dx, dw = torch.autograd.grad(ours, (x, w))
    expected_logits = 7.0 * F.normalize(x, dim=1) @ F.normalize(w, dim=1).T
    expected = F.cross_entropy(expected_logits, y)
    ex, ew = torch.autograd.grad(expected, (x, w))
    assert ours.item() == pytest.approx(expected.item(), rel=1e-12)
    assert torch.allclose(dx, ex, atol=1e-12) and torch.allclose(dw, ew, atol=1e-12)
    assert torch.autograd.gradcheck(lambda x, w: logits_fn(x, w, 7.0, class_major), (x, w))


@pytest.mark.parametrize("class_major", [True, False], ids=["class-major", "batch-major"])
def test_fused_hal_node_agrees_with_autograd_in_both_layouts(class_major: bool) -> None:
    """The large-batch path (one node, hand-written backward) against autograd through
    F.normalize."""
    g = torch.Generator().manual_seed(3)
    x = torch.randn(9, 6, generator=g, dtype=torch.float64, requires_grad=True)
    w = torch.randn(5, 6, generator=g, dtype=torch.float64, requires_grad=True)
    y = torch.randint(0, 5, (9,), generator=g)
    fused = _CosineCrossEntropy.apply(x, w, y, 7.0, class_major)
    dx, dw = torch.autograd.grad(fused, (x, w))
    logits = 7.0 * F.normalize(x, dim=1) @ F.normalize(w, dim=1).T
    expected = F.cross_entropy(logits, y)
    ex, ew = torch.autograd.grad(expected, (x, w))
    assert fused.item() == pytest.approx(expected.item(), rel=1e-12)
    assert torch.allclose(dx, ex, atol=1e-12) and torch.allclose(dw, ew, atol=1e-12)
    fn = _CosineCrossEntropy.apply
    assert torch.autograd.gradcheck(lambda x, w: fn(x, w, y, 7.0, class_major), (x, w))
    # once_differentiable: the first-order gradient carries no graph of its own
    with pytest.raises(RuntimeError, match="differentiate twice|does not require grad"):
        (dx,) = torch.autograd.grad(fn(x, w, y, 7.0, class_major), x, create_graph=True)
        dx.sum().backward()


def test_hal_takes_the_fused_node_for_large_batches_on_cpu_with_the_same_answer() -> None:
    dim = 64
    small, large = FUSED_MIN_ELEMENTS // dim - 1, FUSED_MIN_ELEMENTS // dim
    assert not uses_fused_node("cpu", small, dim)
    assert uses_fused_node("cpu", large, dim)
    assert not uses_fused_node("cuda", large, dim)  # GPU: never
    torch.manual_seed(0)
    hal = losses.build("hal", num_classes=10, embedding_dim=dim)
    x = torch.randn(large, dim, dtype=torch.float64, requires_grad=True)
    y = torch.randint(0, 10, (large,))
    value = hal.double()(x, y)
    assert value.grad_fn.name() == "_CosineCrossEntropyBackward"
    (dx,) = torch.autograd.grad(value, x)
    weight = hal.weight.detach()
    expected = F.cross_entropy(hal.scale * F.normalize(x) @ F.normalize(weight).T, y)
    (ex,) = torch.autograd.grad(expected, x)
    assert value.item() == pytest.approx(expected.item(), rel=1e-12)
    assert torch.allclose(dx, ex, atol=1e-15)


@pytest.mark.parametrize("size", [10, FUSED_MIN_ELEMENTS // D], ids=["small", "large"])
@pytest.mark.parametrize("zero", ["embedding", "anchor"])
def test_hal_with_a_zero_norm_row_falls_back_to_clamped_norms(zero: str, size: int) -> None:
    """The weight-norm kernel has no eps; a zero row must still give F.normalize's answer, on
    either path (the large-batch node normalizes its anchors with that kernel too)."""
    x, y, _ = batch(size=size)
    loss = build("hal")
    with torch.no_grad():
        if zero == "embedding":
            x[3] = 0.0
        else:
            loss.weight[1] = 0.0
    assert not torch.isfinite(cosine_logits(x, loss.weight.detach(), loss.scale, True)).all()
    x.requires_grad_(True)
    value = loss(x, y)
    value.backward()
    expected = F.cross_entropy(
        loss.scale * F.normalize(x.detach()) @ F.normalize(loss.weight.detach()).T, y
    )
    assert value.item() == pytest.approx(expected.item(), rel=1e-6)
    assert x.grad.isfinite().all() and loss.weight.grad.isfinite().all()


def test_hal_propagates_non_finite_embeddings_instead_of_raising() -> None:
    x, y, _ = batch()
    x[2, 1] = float("nan")
    assert math.isnan(build("hal")(x, y).item())


@pytest.mark.parametrize("classes", [4, CLASS_MAJOR_MAX_CLASSES + 1])
def test_shared_cross_entropy_is_f_cross_entropy_in_either_layout(classes: int) -> None:
    g = torch.Generator().manual_seed(5)
    logits = torch.randn(7, classes, generator=g, dtype=torch.float64, requires_grad=True)
    y = torch.randint(0, classes, (7,), generator=g)
    ours, expected = cross_entropy(logits, y), F.cross_entropy(logits, y)
    assert ours.item() == pytest.approx(expected.item(), rel=1e-12)
    (grad,), (expected_grad,) = (torch.autograd.grad(v, logits) for v in (ours, expected))
    assert torch.allclose(grad, expected_grad, atol=1e-12)


def test_hal_layout_follows_device_and_class_count() -> None:
    """Class-major only where it pays: CPU and few classes (see CLASS_MAJOR_MAX_CLASSES)."""
    assert class_major(torch.device("cpu"), 10)
    assert not class_major(torch.device("cpu"), CLASS_MAJOR_MAX_CLASSES + 1)
    assert not class_major(torch.device("cuda", 0), 10)


@pytest.mark.parametrize("name", ["hal", "normface", "cosface", "arcface"])
def test_hal_family_refuses_double_backward_instead_of_a_wrong_answer(name: str) -> None:
    """torch's weight-norm kernel has a wrong second derivative (see losses/anchor.py)."""
    x, y, _ = batch()
    x.requires_grad_(True)
    loss = build(name)(x, y)
    with pytest.raises(RuntimeError, match="cannot be differentiated twice"):
        torch.autograd.grad(loss, x, create_graph=True)
    # without create_graph the same graph differentiates once, as in training
    (dx,) = torch.autograd.grad(build(name)(x, y), x)
    assert dx.isfinite().all()


def test_a_hal_subclass_with_its_own_margin_leaves_the_fused_path() -> None:
    """Overriding adjust_target is enough: plain HAL's path would otherwise skip the margin."""

    class Shifted(losses.LOSSES.get("hal")):  # type: ignore[misc]
        def adjust_target(self, logits, labels):  # noqa: ANN001, ANN202
            return logits.scatter_add(1, labels.unsqueeze(1), torch.full_like(logits[:, :1], -5))

    x, y, _ = batch()
    torch.manual_seed(0)
    shifted = Shifted(C, D)
    assert shifted.has_margin and not build("hal").has_margin
    assert build("cosface").has_margin and build("arcface").has_margin
    assert shifted(x, y).item() > build("hal")(x, y).item() + 1.0
