"""k-NN evaluation: exact search (faiss when installed, else chunked torch) and voting.

Reference set = training-split embeddings, queries = test split. Both backends do one exact
search, so they find the same neighbours (up to float rounding on exact ties). Conventions
(docs/knn.md), where they differ from other implementations:

- Tie rule of the vote: among the classes with the most votes (or the largest summed weight),
  the class of the nearest neighbour wins. scikit-learn's KNeighborsClassifier takes the
  smallest label instead; the two agree whenever no classes tie (e.g. two classes, odd k).
- The optional distance-weighted vote gives each neighbour weight 1 / (distance + 1e-6), with
  distance = 1 - cos for cosine and the Euclidean distance for l2.
- A query whose class has no reference is a miss (k-NN accuracy) and has AP 0 (MAP@R); it stays
  in the denominator.
- The queries are never removed from the reference set: a set searched against itself finds
  each query at distance 0. `exclude_self=True` is leave-one-out of one set against itself:
  query i never finds reference i (its duplicates in other rows stay candidates), k is at most
  N - 1 and MAP@R's R is the class count minus one. It needs the queries (and for accuracies
  the labels) to be the reference set itself.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from halbench.checks import check_bool, check_choice, check_int

METRICS = ("cosine", "l2")
# Bound on one chunk's query x reference score block; 256 MiB keeps 50k x 10k searches small.
CHUNK_BYTES = 256 * 2**20
_EPS = 1e-6

try:
    import faiss
except ImportError:  # the torch path is exact too, only slower on large sets
    faiss = None


def search(
    reference: torch.Tensor,
    queries: torch.Tensor,
    k: int,
    metric: str,
    *,
    backend: str = "auto",
    exclude_self: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact k nearest references of each query: `(distances [Q, k], indices [Q, k])`.

    Nearest first. `backend` is "faiss", "torch" or "auto": faiss when importable, except for
    CUDA tensors with a CPU-only faiss, where a torch search on the GPU is faster.
    `exclude_self`: queries are the reference set, and query i never finds reference i.
    """
    check_choice("metric", metric, METRICS)
    check_choice("backend", backend, ("auto", "faiss", "torch"))
    check_bool("exclude_self", exclude_self)
    if exclude_self:
        _check_same_set(reference, queries)
    limit = reference.shape[0] - int(exclude_self)
    if not 1 <= k <= limit:
        what = (
            "the reference size minus one (exclude_self)" if exclude_self else "the reference size"
        )
        raise ValueError(f"k must be between 1 and {what} {limit}, got {k}")
    if backend == "faiss" and faiss is None:
        raise ValueError("backend 'faiss' needs the faiss package (pip install faiss-cpu)")
    reference = reference.detach().float()
    queries = queries.detach().float()
    if metric == "cosine":
        reference = F.normalize(reference, dim=1)
        queries = F.normalize(queries, dim=1)
    if backend == "auto":
        gpu_faiss = faiss is not None and hasattr(faiss, "StandardGpuResources")
        usable = faiss is not None and (not reference.is_cuda or gpu_faiss)
        backend = "faiss" if usable else "torch"
    if backend == "torch":
        return _torch_search(reference, queries, k, metric, exclude_self)
    if exclude_self:
        return _without_self(*_faiss_search(reference, queries, k + 1, metric), k)
    return _faiss_search(reference, queries, k, metric)


def _check_same_set(reference: torch.Tensor, queries: torch.Tensor) -> None:
    """exclude_self is leave-one-out: row i of the queries must be row i of the reference."""
    same = reference.shape == queries.shape and torch.equal(reference, queries.to(reference))
    if not same:
        raise ValueError(
            "exclude_self needs the queries to be the reference set itself, got "
            f"{list(queries.shape)} queries that differ from the {list(reference.shape)} references"
        )


def _without_self(
    dist: torch.Tensor, idx: torch.Tensor, k: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The k first of k + 1 neighbours without query i's own index i (order kept). A query
    tied at distance 0 with more than k duplicates may not find itself: then its last goes."""
    own = idx == torch.arange(idx.shape[0], device=idx.device).unsqueeze(1)
    drop = own.clone()
    drop[:, -1] |= ~own.any(dim=1)
    # A stable sort of the drop flags moves the one dropped entry per row to the end.
    keep = torch.sort(drop.to(torch.uint8), dim=1, stable=True).indices[:, :k]
    return dist.gather(1, keep), idx.gather(1, keep)


def _faiss_search(
    reference: torch.Tensor, queries: torch.Tensor, k: int, metric: str
) -> tuple[torch.Tensor, torch.Tensor]:
    d = reference.shape[1]
    index = faiss.IndexFlatIP(d) if metric == "cosine" else faiss.IndexFlatL2(d)
    if reference.is_cuda and hasattr(faiss, "StandardGpuResources"):
        index = faiss.index_cpu_to_gpu(_gpu_resources(), reference.device.index or 0, index)
    index.add(np.ascontiguousarray(reference.cpu().numpy()))
    scores, idx = index.search(np.ascontiguousarray(queries.cpu().numpy()), k)
    scores = torch.from_numpy(scores).to(queries.device)
    # Rounding can put 1 - cos a hair below 0; distances are clamped to stay non-negative.
    dist = (1.0 - scores).clamp_min(0) if metric == "cosine" else scores.clamp_min(0).sqrt()
    return dist, torch.from_numpy(idx).to(queries.device)


@functools.cache
def _gpu_resources() -> Any:
    """One faiss GPU resource object per process: each one reserves scratch GPU memory."""
    return faiss.StandardGpuResources()


def _chunk_rows(n_reference: int) -> int:
    """Query rows per chunk so that one float32 score block stays within CHUNK_BYTES."""
    return max(1, CHUNK_BYTES // (4 * max(1, n_reference)))


def _scores(
    chunk: torch.Tensor, reference: torch.Tensor, ref_sq: torch.Tensor | None
) -> torch.Tensor:
    """Higher is nearer: cos for (normalized) cosine, 2 q.r - |r|^2 for l2 (|q|^2 dropped)."""
    s = chunk @ reference.T
    if ref_sq is not None:
        s.mul_(2).sub_(ref_sq)
    return s


def _torch_search(
    reference: torch.Tensor, queries: torch.Tensor, k: int, metric: str, exclude_self: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    ref_sq = reference.pow(2).sum(1) if metric == "l2" else None
    rows = _chunk_rows(reference.shape[0])
    dists, idxs = [], []
    for start, chunk in zip(range(0, queries.shape[0], rows), queries.split(rows), strict=True):
        scores = _scores(chunk, reference, ref_sq)
        if exclude_self:
            _mask_self(scores, start)
        top, idx = scores.topk(k, dim=1)
        if metric == "cosine":
            dists.append((1.0 - top).clamp_min(0))
        else:
            dists.append((chunk.pow(2).sum(1, keepdim=True) - top).clamp_min(0).sqrt())
        idxs.append(idx)
    return torch.cat(dists), torch.cat(idxs)


def _mask_self(scores: torch.Tensor, start: int) -> None:
    """Score -inf for query row start + r against reference start + r (never among the top)."""
    scores.diagonal(offset=start).fill_(float("-inf"))


def vote(
    neighbor_labels: torch.Tensor,
    neighbor_dist: torch.Tensor | None = None,
    *,
    num_classes: int | None = None,
) -> torch.Tensor:
    """Predicted class per row of `neighbor_labels [Q, k]` (nearest first).

    Weighted by 1 / (distance + 1e-6) when `neighbor_dist` is given; ties go to the class of
    the nearest neighbour among the tied classes.
    """
    labels = neighbor_labels.long()
    c = num_classes if num_classes is not None else int(labels.max()) + 1
    if neighbor_dist is None:
        weights = torch.ones(labels.shape, dtype=torch.float64, device=labels.device)
    else:
        weights = 1.0 / (neighbor_dist.double() + _EPS)
    votes = torch.zeros(labels.shape[0], c, dtype=torch.float64, device=labels.device)
    votes.scatter_add_(1, labels, weights)
    best = votes.max(1, keepdim=True).values
    tied = votes.gather(1, labels) == best
    # argmax returns the first maximal position: the nearest neighbour of a winning class.
    first = tied.to(torch.uint8).argmax(1, keepdim=True)
    return labels.gather(1, first).squeeze(1)


def knn_accuracy(
    train_emb: torch.Tensor,
    train_labels: torch.Tensor,
    test_emb: torch.Tensor,
    test_labels: torch.Tensor,
    *,
    ks: Sequence[int],
    metric: str,
    weighted: bool = False,
    backend: str = "auto",
    exclude_self: bool = False,
) -> dict[int, float]:
    """k-NN classification accuracy of the test set against the training set, per k
    (`exclude_self`: leave-one-out of one set, passed as both)."""
    ks = _check_inputs(train_emb, train_labels, test_emb, test_labels, ks, exclude_self)
    dist, idx = search(
        train_emb, test_emb, max(ks), metric, backend=backend, exclude_self=exclude_self
    )
    return _accuracies(dist, idx, train_labels, test_labels, ks, weighted)


def _accuracies(
    dist: torch.Tensor,
    idx: torch.Tensor,
    train_labels: torch.Tensor,
    test_labels: torch.Tensor,
    ks: list[int],
    weighted: bool,
) -> dict[int, float]:
    train_labels = train_labels.to(idx.device).long()
    test_labels = test_labels.to(idx.device).long()
    nb = train_labels[idx]
    c = int(max(train_labels.max(), test_labels.max())) + 1
    out = {}
    for k in ks:
        pred = vote(nb[:, :k], dist[:, :k] if weighted else None, num_classes=c)
        out[k] = (pred == test_labels).double().mean().item()
    return out


def map_at_r(
    train_emb: torch.Tensor,
    train_labels: torch.Tensor,
    test_emb: torch.Tensor,
    test_labels: torch.Tensor,
    *,
    metric: str,
    exclude_self: bool = False,
) -> float:
    """MAP@R (Musgrave et al., "A Metric Learning Reality Check", 2020).

    For a query of class y, R = number of references of class y; AP@R = (1/R) sum over the R
    nearest references of precision@i at each relevant position i; AP = 0 where R = 0.
    Computed chunk by chunk with torch (R is large, e.g. 6000 per class on Fashion-MNIST,
    where faiss' heap is slow). `exclude_self`: leave-one-out, R = class count - 1.
    """
    _check_inputs(train_emb, train_labels, test_emb, test_labels, [1], exclude_self)
    check_choice("metric", metric, METRICS)
    reference = train_emb.detach().float()
    queries = test_emb.detach().float()
    if metric == "cosine":
        reference = F.normalize(reference, dim=1)
        queries = F.normalize(queries, dim=1)
    train_labels = train_labels.to(reference.device).long()
    test_labels = test_labels.to(reference.device).long()
    counts = torch.bincount(train_labels, minlength=int(test_labels.max()) + 1)
    r_all = counts[test_labels] - int(exclude_self)  # a query's own row is not a candidate
    ref_sq = reference.pow(2).sum(1) if metric == "l2" else None
    rows = _chunk_rows(reference.shape[0])
    total, n = 0.0, 0
    for start, chunk, labels, r in zip(
        range(0, queries.shape[0], rows),
        queries.split(rows),
        test_labels.split(rows),
        r_all.split(rows),
        strict=True,
    ):
        r_max = int(r.max())
        if r_max == 0:
            n += chunk.shape[0]
            continue
        scores = _scores(chunk, reference, ref_sq)
        if exclude_self:
            _mask_self(scores, start)
        _, idx = scores.topk(r_max, dim=1)
        positions = torch.arange(1, r_max + 1, device=idx.device)
        within = positions.unsqueeze(0) <= r.unsqueeze(1)
        relevant = (train_labels[idx] == labels.unsqueeze(1)) & within
        precision = relevant.cumsum(1).double() / positions
        ap = (precision * relevant).sum(1) / r.clamp_min(1)
        total += ap.sum().item()
        n += chunk.shape[0]
    return total / n


def anchor_accuracy(
    anchors: torch.Tensor, test_emb: torch.Tensor, test_labels: torch.Tensor, *, metric: str
) -> float:
    """Accuracy of classifying each test embedding by its nearest class anchor (row c = class c)."""
    check_choice("metric", metric, METRICS)
    if anchors.ndim != 2 or anchors.shape[1] != test_emb.shape[1]:
        raise ValueError(
            f"anchors must be [num_classes, {test_emb.shape[1]}], got {list(anchors.shape)}"
        )
    a = anchors.detach().float().to(test_emb.device)
    q = test_emb.detach().float()
    if metric == "cosine":
        a, q = F.normalize(a, dim=1), F.normalize(q, dim=1)
        pred = (q @ a.T).argmax(1)
    else:
        pred = torch.cdist(q, a).argmin(1)
    return (pred == test_labels.to(pred.device)).double().mean().item()


def embedding_metrics(
    train_emb: torch.Tensor,
    train_labels: torch.Tensor,
    test_emb: torch.Tensor,
    test_labels: torch.Tensor,
    *,
    ks: Sequence[int],
    metric: str,
    anchors: torch.Tensor | None = None,
    weighted: bool = False,
    backend: str = "auto",
    exclude_self: bool = False,
) -> dict[str, float | None]:
    """knn_acc_{k} for each k, p_at_1, map_at_r and anchor_acc (None without anchors);
    `exclude_self` (leave-one-out) applies to the k-NN metrics, not to anchor_acc."""
    ks = _check_inputs(train_emb, train_labels, test_emb, test_labels, ks, exclude_self)
    dist, idx = search(
        train_emb, test_emb, max(ks), metric, backend=backend, exclude_self=exclude_self
    )
    accs = _accuracies(dist, idx, train_labels, test_labels, sorted(set(ks) | {1}), weighted)
    out: dict[str, float | None] = {f"knn_acc_{k}": accs[k] for k in ks}
    # Precision@1 is the unweighted 1-NN accuracy (a weighted vote of one is the same).
    out["p_at_1"] = accs[1]
    out["map_at_r"] = map_at_r(
        train_emb, train_labels, test_emb, test_labels, metric=metric, exclude_self=exclude_self
    )
    out["anchor_acc"] = (
        anchor_accuracy(anchors, test_emb, test_labels, metric=metric)
        if anchors is not None
        else None
    )
    return out


def _check_inputs(
    train_emb: torch.Tensor,
    train_labels: torch.Tensor,
    test_emb: torch.Tensor,
    test_labels: torch.Tensor,
    ks: Sequence[int],
    exclude_self: bool = False,
) -> list[int]:
    check_bool("exclude_self", exclude_self)
    if train_emb.ndim != 2 or test_emb.ndim != 2 or train_emb.shape[1] != test_emb.shape[1]:
        raise ValueError(
            "train_emb and test_emb must be [N, d] and [Q, d] with the same d, got "
            f"{list(train_emb.shape)} and {list(test_emb.shape)}"
        )
    if train_labels.shape != (train_emb.shape[0],) or test_labels.shape != (test_emb.shape[0],):
        raise ValueError("train_labels and test_labels must have one label per embedding row")
    ks = list(ks)
    if not ks:
        raise ValueError("ks must be a non-empty list of positive integers, got []")
    for i, k in enumerate(ks):
        check_int(f"ks[{i}]", k, minimum=1)
    if exclude_self:
        _check_same_set(train_emb, test_emb)
        if not torch.equal(train_labels, test_labels.to(train_labels)):
            raise ValueError("exclude_self needs test_labels equal to train_labels (one set)")
    limit = train_emb.shape[0] - int(exclude_self)
    if max(ks) > limit:
        what = (
            "the reference size minus one (exclude_self)" if exclude_self else "the reference size"
        )
        raise ValueError(f"ks must not exceed {what} {limit}, got {ks}")
    return ks
