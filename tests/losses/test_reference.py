"""Every registered loss against a naive re-computation with explicit Python loops.

The references work on Python floats in double precision, one sample (or pair) at a time,
straight from the formulas in docs/losses.md; a registered loss without a reference fails here.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import pytest
import torch

import halbench.losses as losses
from halbench.losses import kernels, pair
from halbench.losses.base import normalize

Vector = Sequence[float]


def dot(u: Vector, v: Vector) -> float:
    return sum(a * b for a, b in zip(u, v, strict=True))


def sqdist(u: Vector, v: Vector) -> float:
    return sum((a - b) ** 2 for a, b in zip(u, v, strict=True))


def unit(u: Vector) -> list[float]:
    """u / |u|; a zero vector stays zero (F.normalize's and pytorch-metric-learning's rule)."""
    norm = math.sqrt(dot(u, u))
    return [a / norm for a in u] if norm > 0 else [0.0] * len(u)


def cos(u: Vector, v: Vector) -> float:
    return dot(unit(u), unit(v))


def neg_log_softmax(logits: Sequence[float], target: int) -> float:
    top = max(logits)
    return top + math.log(sum(math.exp(v - top) for v in logits)) - logits[target]


def anchor_reference(logit: Callable[[list[float], int, int], float]):
    """Mean over samples of -log softmax_c(logit(x_i, c, y_i))[y_i]."""

    def reference(loss, xs, ys, idx):
        per_sample = [
            neg_log_softmax([logit(x, c, y) for c in range(loss.num_classes)], y)
            for x, y in zip(xs, ys, strict=True)
        ]
        return sum(per_sample) / len(per_sample)

    return reference


def rows(t: torch.Tensor) -> list[list[float]]:
    return t.detach().double().tolist()


def ref_al(loss, xs, ys, idx):
    a = rows(loss.weight)
    return anchor_reference(lambda x, c, y: -loss.scale * sqdist(x, a[c]))(loss, xs, ys, idx)


def ref_hal(loss, xs, ys, idx):
    a = rows(loss.weight)
    return anchor_reference(lambda x, c, y: loss.scale * cos(x, a[c]))(loss, xs, ys, idx)


def ref_proxy_nca(loss, xs, ys, idx):
    p, t = rows(loss.weight), loss.scale
    return anchor_reference(lambda x, c, y: -t * sqdist(unit(x), unit(p[c])))(loss, xs, ys, idx)


def ref_normface(loss, xs, ys, idx):
    a, temperature = rows(loss.weight), 1 / loss.scale
    return anchor_reference(lambda x, c, y: cos(x, a[c]) / temperature)(loss, xs, ys, idx)


def ref_cosface(loss, xs, ys, idx):
    a = rows(loss.weight)
    return anchor_reference(
        lambda x, c, y: loss.scale * (cos(x, a[c]) - (loss.margin if c == y else 0.0))
    )(loss, xs, ys, idx)


def ref_arcface(loss, xs, ys, idx):
    a, m = rows(loss.weight), loss.margin

    def logit(x, c, y):
        t = cos(x, a[c])
        if c != y:
            return loss.scale * t
        theta = math.acos(t)
        target = math.cos(theta + m) if theta <= math.pi - m else t - m * math.sin(m)
        return loss.scale * target

    return anchor_reference(logit)(loss, xs, ys, idx)


def ref_softmax(loss, xs, ys, idx):
    w = rows(loss.head.weight)
    b = [0.0] * len(w) if loss.head.bias is None else loss.head.bias.detach().double().tolist()
    return anchor_reference(lambda x, c, y: dot(x, w[c]) + b[c])(loss, xs, ys, idx)


def neighbour_reference(xs, ys, candidates, distance, scale):
    """Mean over samples with a positive of -log sum_{pos} softmax over the candidates."""
    per_sample = []
    for i, (x, y) in enumerate(zip(xs, ys, strict=True)):
        pool = candidates(i)  # [(vector, label)]
        if not any(label == y for _, label in pool):
            continue
        logits = [-scale * distance(x, v) for v, _ in pool]
        top = max(logits)
        total = sum(math.exp(v - top) for v in logits)
        labels = [label for _, label in pool]
        positive = sum(math.exp(v - top) for v, lab in zip(logits, labels, strict=True) if lab == y)
        per_sample.append(-math.log(positive / total))
    return sum(per_sample) / len(per_sample) if per_sample else 0.0


def ref_nca(loss, xs, ys, idx):
    def distance(u, v):
        return sqdist(unit(u), unit(v)) if loss.distance == "cosine" else sqdist(u, v)

    def candidates(i):
        return [(xs[j], ys[j]) for j in range(len(xs)) if j != i]

    return neighbour_reference(xs, ys, candidates, distance, loss.scale)


def ref_nca_memory(loss, xs, ys, idx):
    """The bank as it is after the pending write of the previous call, then NCA against it."""
    bank = rows(loss.memory)
    bank_labels = loss.memory_labels.tolist()
    if loss._pending is not None:
        px, py, pidx = loss._pending
        for v, label, k in zip(rows(px), py.tolist(), pidx.tolist(), strict=True):
            m = loss.momentum if bank_labels[k] >= 0 else 0.0
            bank[k] = unit([m * o + (1 - m) * n for o, n in zip(bank[k], v, strict=True)])
            bank_labels[k] = label

    def candidates(i):
        return [
            (bank[k], bank_labels[k])
            for k in range(loss.memory_size)
            if bank_labels[k] >= 0 and k != idx[i]
        ]

    def distance(u, v):
        return -cos(u, v)  # logits cos / T

    return neighbour_reference(xs, ys, candidates, distance, 1 / loss.temperature)


def euclidean(loss, u, v):
    if loss.normalize_embeddings:
        u, v = unit(u), unit(v)
    return math.sqrt(sqdist(u, v))


def hinge_mean(terms, reduction):
    kept = [t for t in terms if t > 0] if reduction == "nonzero" else terms
    return sum(kept) / len(kept) if kept else 0.0


def ref_triplet(loss, xs, ys, idx):
    terms = []
    for i in range(len(xs)):
        pos = [euclidean(loss, xs[i], xs[j]) for j in range(len(xs)) if j != i and ys[j] == ys[i]]
        neg = [euclidean(loss, xs[i], xs[j]) for j in range(len(xs)) if ys[j] != ys[i]]
        if pos and neg:
            terms.append(max(0.0, max(pos) - min(neg) + loss.margin))
    return hinge_mean(terms, loss.reduction)


def ref_contrastive(loss, xs, ys, idx):
    pos_terms, neg_terms = [], []
    for i in range(len(xs)):
        for j in range(len(xs)):
            if i == j:
                continue
            d = euclidean(loss, xs[i], xs[j])
            if ys[i] == ys[j]:
                pos_terms.append(max(0.0, d - loss.pos_margin))
            else:
                neg_terms.append(max(0.0, loss.neg_margin - d))
    return hinge_mean(pos_terms, loss.reduction) + hinge_mean(neg_terms, loss.reduction)


REFERENCES = {
    "al": ref_al,
    "arcface": ref_arcface,
    "contrastive": ref_contrastive,
    "cosface": ref_cosface,
    "hal": ref_hal,
    "nca": ref_nca,
    "nca_memory": ref_nca_memory,
    "normface": ref_normface,
    "proxy_nca": ref_proxy_nca,
    "snnl": ref_nca,
    "softmax": ref_softmax,
    "triplet": ref_triplet,
}

# Non-default settings checked besides the defaults.
VARIANTS = {
    "al": [{"scale": 0.3}],
    "arcface": [{"scale": 10.0, "margin": 1.2}],  # large margin: exercises the fallback branch
    "contrastive": [{"pos_margin": 0.2, "neg_margin": 1.5, "reduction": "mean"}],
    "cosface": [{"scale": 5.0, "margin": 0.1}],
    "hal": [{"scale": 3.0}, {"init": "simplex"}],
    "nca": [{"scale": 0.2}, {"distance": "cosine", "scale": 4.0}],
    "nca_memory": [{"temperature": 0.5, "momentum": 0.9}],
    "normface": [{"temperature": 0.2}],
    "proxy_nca": [{"scale": 1.0}],
    "snnl": [{"temperature": 3.0}],
    "softmax": [{"bias": False}],
    "triplet": [{"margin": 0.5, "reduction": "nonzero"}, {"normalize": False, "margin": 2.0}],
}

CASES = [(name, params) for name in losses.available() for params in [{}, *VARIANTS.get(name, [])]]


def _batch(seed: int, batch: int = 10, dim: int = 5, classes: int = 4):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, dim, generator=g)
    y = torch.randint(0, classes, (batch,), generator=g)
    idx = torch.randperm(24, generator=g)[:batch]
    return x, y, idx


@pytest.mark.parametrize("name", losses.available())
def test_every_loss_has_a_reference(name: str) -> None:
    assert name in REFERENCES, f"add a naive reference for '{name}' to {__file__}"


@pytest.mark.parametrize(("name", "params"), CASES, ids=[f"{n}-{p}" for n, p in CASES])
def test_loss_matches_naive_reference(name: str, params: dict) -> None:
    torch.manual_seed(1)
    loss = losses.build(name, num_classes=4, embedding_dim=5, memory_size=24, **params)
    for seed in range(3):  # successive batches: nca_memory fills and updates its bank
        x, y, idx = _batch(seed)
        expected = REFERENCES[name](loss, rows(x), y.tolist(), idx.tolist())
        got = loss(x, y, idx)
        assert got.dtype == torch.float32
        assert got.item() == pytest.approx(expected, rel=1e-5, abs=1e-5)


# Identical embeddings: the squared-distance floor (1e-12) and the Gram formula's rounding must
# not make a pair of duplicates "active" at pos_margin 0 (issue 15: 0.67341 instead of 1.01012).
IMPLS = ["reference", "fast"]
DUPLICATE_CASES = [
    ("contrastive", {}),
    ("contrastive", {"normalize": False}),
    ("contrastive", {"pos_margin": 0.2, "neg_margin": 1.5, "reduction": "mean"}),
    ("triplet", {}),
    ("triplet", {"margin": 0.5, "reduction": "nonzero"}),
    ("triplet", {"normalize": False, "margin": 2.0}),
]


def _three_of_one_class() -> tuple[torch.Tensor, torch.Tensor]:
    """x_2 = x_0, and x_1 at distance 1.01012 from both on the unit circle."""
    c = 1 - 1.01012**2 / 2
    x = torch.tensor([[1.0, 0.0], [c, math.sqrt(1 - c * c)], [1.0, 0.0]])
    return x, torch.zeros(3, dtype=torch.long)


def _duplicate_batch() -> tuple[torch.Tensor, torch.Tensor]:
    """12 samples, rows 6-11 copies of rows 0-5: 6-8 in the same class as their originals,
    9-11 in another class (negatives at distance 0). Seed 1: the fp32 Gram formula rounds some
    same-class duplicates above the floor (test_duplicate_batch_exercises_the_rounding)."""
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(12, 5, generator=g), torch.randint(0, 3, (12,), generator=g)
    x[6:], y[6:9] = x[:6], y[:3]
    return x, y


@pytest.mark.parametrize("impl", IMPLS)
def test_contrastive_duplicates_do_not_dilute_the_positive_mean(impl: str) -> None:
    x, y = _three_of_one_class()
    loss = losses.build("contrastive", num_classes=2, embedding_dim=2, impl=impl)
    expected = ref_contrastive(loss, rows(x), y.tolist(), None)
    assert expected == pytest.approx(1.01012, abs=1e-6)
    assert loss(x, y).item() == pytest.approx(expected, rel=1e-6)
    pml_losses = pytest.importorskip("pytorch_metric_learning.losses")
    assert pml_losses.ContrastiveLoss()(x, y).item() == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("impl", IMPLS)
def test_duplicate_batch_exercises_the_rounding(impl: str) -> None:
    x, y = _duplicate_batch()
    squared = (pair.squared_distances if impl == "reference" else kernels.squared_distances)(
        normalize(x)
    )
    i = torch.arange(3)
    assert (squared[i, i + 6] > pair.MIN_SQUARED_DISTANCE).any()
    loss = losses.build("contrastive", num_classes=3, embedding_dim=5, impl=impl)
    assert (loss.distances(x)[i, i + 6] == 0).all()


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize(
    ("name", "params"), DUPLICATE_CASES, ids=[f"{n}-{p}" for n, p in DUPLICATE_CASES]
)
def test_pair_losses_with_duplicate_embeddings_match_naive_references(
    name: str, params: dict, impl: str
) -> None:
    x, y = _duplicate_batch()
    loss = losses.build(name, num_classes=3, embedding_dim=5, impl=impl, **params)
    expected = REFERENCES[name](loss, rows(x), y.tolist(), None)
    assert loss(x, y).item() == pytest.approx(expected, rel=1e-5, abs=1e-6)


@pytest.mark.parametrize("impl", IMPLS)
def test_contrastive_with_duplicates_has_pml_value_and_gradient(impl: str) -> None:
    pml_losses = pytest.importorskip("pytorch_metric_learning.losses")
    x, y = _duplicate_batch()
    mine, theirs = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    loss = losses.build("contrastive", num_classes=3, embedding_dim=5, impl=impl)
    value, reference = loss(mine, y), pml_losses.ContrastiveLoss()(theirs, y)
    value.backward()
    reference.backward()
    assert value.item() == pytest.approx(reference.item(), rel=1e-5)
    torch.testing.assert_close(mine.grad, theirs.grad, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("impl", IMPLS)
def test_triplet_splits_the_gradient_evenly_between_tied_hardest_negatives(impl: str) -> None:
    """Anchors 0 and 1 (class 0) have negatives 2 and 3 (classes 1, 2; no positive, so not
    anchors) at equal distances. Each tied negative gets half the gradient it gets when the
    other is moved away (pytorch-metric-learning's miner would give one of them all of it)."""

    def negative_grads(far: float) -> torch.Tensor:
        x = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 2.0], [0.0, -far]], requires_grad=True)
        loss = losses.build(
            "triplet", num_classes=3, embedding_dim=2, margin=2.0, normalize=False, impl=impl
        )
        loss(x, torch.tensor([0, 0, 1, 2])).backward()
        return x.grad[2:]

    tied, alone = negative_grads(2.0), negative_grads(2.1)
    torch.testing.assert_close(tied[0], alone[0] / 2)
    torch.testing.assert_close(tied[1], alone[0] / 2 * torch.tensor([1.0, -1.0]))  # mirror
    assert alone[1].abs().max() == 0  # not the hardest negative of any anchor


@pytest.mark.parametrize("impl", IMPLS)
def test_pair_distances_stay_float32_under_autocast(impl: str) -> None:
    x, _ = _duplicate_batch()
    loss = losses.build("contrastive", num_classes=3, embedding_dim=5, impl=impl)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = loss.distances(x)
    assert low.dtype == torch.float32
    torch.testing.assert_close(low, loss.distances(x))
