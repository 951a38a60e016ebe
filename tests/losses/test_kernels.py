"""Each fast kernel (losses/kernels*.py) against the readable formula it replaces, and every
registered loss with impl="fast" against impl="reference": value and gradient, float64."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import halbench.losses as losses
from halbench.losses import anchor, kernels, kernels_cosine, nca, pair
from halbench.losses.base import as_float32
from halbench.losses.kernels import CLASS_MAJOR_MAX_CLASSES
from halbench.losses.kernels_cosine import FUSED_MIN_ELEMENTS

F64 = torch.float64


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _same(fast: torch.Tensor, reference: torch.Tensor, inputs: tuple[torch.Tensor, ...]) -> None:
    """Equal values and equal gradients with respect to every input (float64 tolerances)."""
    assert fast.item() == pytest.approx(reference.item(), rel=1e-10, abs=1e-12)
    ours = torch.autograd.grad(fast, inputs, allow_unused=True)
    theirs = torch.autograd.grad(reference, inputs, allow_unused=True)
    for a, b in zip(ours, theirs, strict=True):
        assert torch.allclose(a, b, rtol=1e-9, atol=1e-12)


# both layouts (class-major: few classes on CPU) and both HAL paths (weight-norm, fused node)
COSINE_SHAPES = [
    (9, 6, 5),
    (9, 6, CLASS_MAJOR_MAX_CLASSES + 3),
    (FUSED_MIN_ELEMENTS // 8, 8, 5),
    (FUSED_MIN_ELEMENTS // 8, 8, CLASS_MAJOR_MAX_CLASSES + 3),
]


@pytest.mark.parametrize("shape", COSINE_SHAPES, ids=lambda s: "B{}-d{}-C{}".format(*s))
@pytest.mark.parametrize("margin", [False, True], ids=["hal", "margin"])
def test_cosine_cross_entropy_kernel_is_the_readable_formula(shape, margin: bool) -> None:  # noqa: ANN001
    b, d, c = shape
    g = _gen(3)
    x = torch.randn(b, d, generator=g, dtype=F64, requires_grad=True)
    w = torch.randn(c, d, generator=g, dtype=F64, requires_grad=True)
    y = torch.randint(0, c, (b,), generator=g)
    adjust = None
    if margin:  # CosFace's margin (the hook margin.py uses)
        adjust = losses.build("cosface", num_classes=c, embedding_dim=d).adjust_target
    fast = kernels_cosine.cosine_cross_entropy(x, w, y, 7.0, adjust)
    _same(fast, anchor.cosine_cross_entropy(x, w, y, 7.0, adjust), (x, w))


@pytest.mark.parametrize("classes", [4, CLASS_MAJOR_MAX_CLASSES + 1], ids=["cm", "bm"])
def test_cross_entropy_kernel_is_f_cross_entropy(classes: int) -> None:
    g = _gen(5)
    logits = torch.randn(7, classes, generator=g, dtype=F64, requires_grad=True)
    y = torch.randint(0, classes, (7,), generator=g)
    ref = F.cross_entropy(as_float32(logits), y)
    _same(kernels.cross_entropy(logits, y), ref, (logits,))


def test_euclidean_logits_kernel_is_the_readable_formula() -> None:
    g = _gen(6)
    x = torch.randn(8, 5, generator=g, dtype=F64, requires_grad=True)
    a = torch.randn(4, 5, generator=g, dtype=F64, requires_grad=True)
    probe = torch.randn(8, 4, generator=g, dtype=F64)  # a random linear read-out of the logits
    fast = (kernels.euclidean_logits(x, a, 1.5) * probe).sum()
    _same(fast, (anchor.euclidean_logits(x, a, 1.5) * probe).sum(), (x, a))


@pytest.mark.parametrize("distance", ["l2", "cosine"])
def test_neighbour_logits_kernel_is_the_readable_formula(distance: str) -> None:
    g = _gen(7)
    x = torch.randn(8, 5, generator=g, dtype=F64, requires_grad=True)
    fast, ref = kernels.neighbour_logits(x, 0.7, distance), nca.neighbour_logits(x, 0.7, distance)
    assert torch.equal(fast.diagonal(), ref.diagonal())  # both masked with lowest(float64)
    off = ~torch.eye(8, dtype=torch.bool)
    probe = torch.randn(8, 8, generator=g, dtype=F64)
    _same((fast[off] * probe[off]).sum(), (ref[off] * probe[off]).sum(), (x,))


def test_squared_distances_kernel_is_the_readable_formula() -> None:
    g = _gen(8)
    x = torch.randn(8, 5, generator=g, dtype=F64, requires_grad=True)
    probe = torch.randn(8, 8, generator=g, dtype=F64)
    fast = (kernels.squared_distances(x) * probe).sum()
    _same(fast, (pair.squared_distances(x) * probe).sum(), (x,))


@pytest.mark.parametrize("empty_row", [False, True], ids=["all-rows", "a-row-without-positive"])
def test_neighbour_nll_kernel_is_the_readable_formula(empty_row: bool) -> None:
    g = _gen(9)
    logits = torch.randn(6, 10, generator=g, dtype=F64)
    logits[:, 0] = torch.finfo(F64).min  # a masked candidate (self-pair, empty slot)
    logits.requires_grad_(True)
    positive = torch.rand(6, 10, generator=g) < 0.4
    positive[:, 0] = False
    positive[0, 1] = True
    if empty_row:
        positive[2] = False
    _same(kernels.neighbour_nll(logits, positive), nca.neighbour_nll(logits, positive), (logits,))


def _built(name: str, impl: str, d: int, c: int, n: int) -> losses.KNNLoss:
    torch.manual_seed(0)  # the same anchors / head / bank for both implementations
    loss = losses.build(name, num_classes=c, embedding_dim=d, memory_size=n, impl=impl).double()
    g = _gen(1)
    for _ in range(2):  # nca_memory: fill the bank (written at the next call)
        loss(torch.randn(n, d, generator=g, dtype=F64), torch.randint(0, c, (n,), generator=g),
             torch.arange(n))  # fmt: skip
    return loss.eval()


@pytest.mark.parametrize("name", losses.available())
def test_fast_and_reference_give_the_same_value_and_gradient(name: str) -> None:
    d, c, n = 6, 4, 24
    fast, reference = _built(name, "fast", d, c, n), _built(name, "reference", d, c, n)
    assert (fast.impl, reference.impl) == ("fast", "reference")
    g = _gen(2)
    x = torch.randn(12, d, generator=g, dtype=F64, requires_grad=True)
    y = torch.randint(0, c, (12,), generator=g)
    idx = torch.randperm(n, generator=g)[:12]
    ours, theirs = fast(x, y, idx), reference(x, y, idx)
    _same(ours, theirs, (x,))
    # the loss's own parameters (anchors, head) get the same gradient too
    for p, q in zip(fast.parameters(), reference.parameters(), strict=True):
        (gp,) = torch.autograd.grad(fast(x, y, idx), p)
        (gq,) = torch.autograd.grad(reference(x, y, idx), q)
        assert torch.allclose(gp, gq, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("name", ["hal", "cosface"])
def test_reference_hal_differentiates_twice(name: str) -> None:
    """The readable formula has no weight-norm kernel: create_graph works with impl=reference
    (the fast path refuses it, test_properties.py)."""
    loss = losses.build(name, num_classes=4, embedding_dim=5, impl="reference")
    x = torch.randn(6, 5, requires_grad=True)
    (dx,) = torch.autograd.grad(loss(x, torch.arange(6) % 4), x, create_graph=True)
    dx.pow(2).sum().backward()
    assert x.grad is not None and x.grad.isfinite().all()


def test_only_the_fast_cpu_hal_path_checks_labels_in_its_kernel() -> None:
    assert kernels_cosine.checks_labels("cpu", None)
    assert not kernels_cosine.checks_labels("cuda", None)
    assert not kernels_cosine.checks_labels("cpu", lambda logits, labels: logits)
    ref = losses.build("hal", num_classes=4, embedding_dim=5, impl="reference")
    with pytest.raises(ValueError, match=r"hal: labels must be in \[0, 4\)"):
        ref(torch.randn(3, 5), torch.tensor([0, 1, 4]))


def test_private_torch_calls_live_only_in_the_kernels_and_the_probes() -> None:
    """The design rule: torch._* and aten.* only in losses/kernels*.py and probes/."""
    import re
    from pathlib import Path

    import halbench

    private = re.compile(r"torch\._(?!_)|\baten\.|_ignored_ops")  # torch.__version__ is public
    root = Path(halbench.__file__).parent
    offenders = [
        str(path.relative_to(root))
        for path in root.rglob("*.py")
        if not (path.parent.name == "probes" or path.name.startswith("kernels"))
        and private.search(path.read_text())
    ]
    assert offenders == []


def test_fast_path_pairs_each_formula_with_its_kernel() -> None:
    """The table of docs/losses.md: each @fast_path formula names its kernel."""
    pairs = {
        anchor.cosine_cross_entropy: kernels_cosine.cosine_cross_entropy,
        anchor.euclidean_logits: kernels.euclidean_logits,
        anchor.cross_entropy: kernels.cross_entropy,
        nca.neighbour_logits: kernels.neighbour_logits,
        nca.neighbour_nll: kernels.neighbour_nll,
        pair.squared_distances: kernels.squared_distances,
    }
    for formula, kernel in pairs.items():
        assert formula.kernel is kernel
        assert formula.reference.__name__ == formula.__name__ == kernel.__name__


def test_kernels_run_only_inside_a_fast_forward(monkeypatch: pytest.MonkeyPatch) -> None:
    """impl="fast" switches the formulas to their kernels for one forward call, and only then:
    a formula called outside it (also after a call that raised) is its readable self."""
    calls: list[str] = []

    def spy(logits, positive):  # noqa: ANN001, ANN202
        calls.append("kernel")
        if len(calls) == 2:
            raise RuntimeError("boom")
        return kernels.neighbour_nll(logits, positive)

    monkeypatch.setattr(nca.neighbour_nll, "kernel", spy)
    x, y = torch.randn(6, 5), torch.tensor([0, 1, 0, 1, 2, 2])
    losses.build("nca", num_classes=3, embedding_dim=5, impl="reference")(x, y)
    assert calls == []
    fast = losses.build("nca", num_classes=3, embedding_dim=5)
    fast(x, y)
    assert calls == ["kernel"]
    with pytest.raises(RuntimeError, match="boom"):
        fast(x, y)
    nca.neighbour_nll(nca.neighbour_logits(x, 1.0, "l2"), y.unsqueeze(1) == y.unsqueeze(0))
    assert calls == ["kernel", "kernel"]
