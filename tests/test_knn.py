"""k-NN evaluation against naive per-query loops, and faiss against torch."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from halbench import knn

BACKENDS = ["torch"] + (["faiss"] if knn.faiss is not None else [])


def _data(n: int = 300, q: int = 80, d: int = 8, c: int = 4, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    centers = torch.randn(c, d, generator=g) * 2
    ytr = torch.randint(0, c, (n,), generator=g)
    yte = torch.randint(0, c, (q,), generator=g)
    xtr = centers[ytr] + torch.randn(n, d, generator=g) * 1.5
    xte = centers[yte] + torch.randn(q, d, generator=g) * 1.5
    return xtr, ytr, xte, yte


def _naive_order(xtr: torch.Tensor, query: torch.Tensor, metric: str) -> np.ndarray:
    a, b = xtr.double().numpy(), query.double().numpy()
    if metric == "cosine":
        dist = 1 - a @ b / (np.linalg.norm(a, axis=1) * np.linalg.norm(b))
    else:
        dist = np.linalg.norm(a - b, axis=1)
    return np.argsort(dist, kind="stable"), dist


def _naive_predict(labels: list[int], dists: list[float] | None) -> int:
    """Majority (or 1/(d+1e-6)-weighted) vote; ties go to the nearest tied class."""
    score: dict[int, float] = {}
    for i, y in enumerate(labels):
        score[y] = score.get(y, 0.0) + (1.0 if dists is None else 1.0 / (dists[i] + 1e-6))
    best = max(score.values())
    return next(y for y in labels if score[y] == best)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("metric", ["cosine", "l2"])
@pytest.mark.parametrize("weighted", [False, True])
def test_accuracy_matches_a_naive_loop(backend: str, metric: str, weighted: bool) -> None:
    xtr, ytr, xte, yte = _data()
    ks = [1, 4, 7, 10]
    got = knn.knn_accuracy(
        xtr, ytr, xte, yte, ks=ks, metric=metric, weighted=weighted, backend=backend
    )
    for k in ks:
        correct = 0
        for query, label in zip(xte, yte.tolist(), strict=True):
            order, dist = _naive_order(xtr, query, metric)
            nb = order[:k]
            pred = _naive_predict(ytr[nb].tolist(), dist[nb].tolist() if weighted else None)
            correct += pred == label
        assert got[k] == pytest.approx(correct / len(yte)), f"k={k}"


@pytest.mark.skipif(knn.faiss is None, reason="faiss is not installed")
@pytest.mark.parametrize("metric", ["cosine", "l2"])
def test_faiss_and_torch_find_the_same_neighbours(metric: str) -> None:
    g = torch.Generator().manual_seed(1)
    ref, queries = torch.randn(3000, 32, generator=g), torch.randn(500, 32, generator=g)
    d_f, i_f = knn.search(ref, queries, 20, metric, backend="faiss")
    d_t, i_t = knn.search(ref, queries, 20, metric, backend="torch")
    assert torch.equal(i_f, i_t)
    torch.testing.assert_close(d_f, d_t, atol=1e-4, rtol=1e-4)
    assert (d_t[:, 1:] >= d_t[:, :-1]).all(), "nearest first"


def test_chunked_search_equals_one_block(monkeypatch: pytest.MonkeyPatch) -> None:
    xtr, _, xte, _ = _data(n=500, q=90)
    whole = knn.search(xtr, xte, 5, "l2", backend="torch")
    monkeypatch.setattr(knn, "CHUNK_BYTES", 4 * 500 * 7)  # 7 queries per chunk
    assert knn._chunk_rows(500) == 7
    chunked = knn.search(xtr, xte, 5, "l2", backend="torch")
    assert torch.equal(whole[1], chunked[1])


def test_vote_tie_goes_to_the_nearest_tied_class() -> None:
    labels = torch.tensor([[3, 1, 1, 3, 2], [2, 0, 0, 2, 0]])
    assert knn.vote(labels[:, :4]).tolist() == [3, 2]  # 2-2 ties, class of neighbour 0
    assert knn.vote(labels).tolist() == [3, 0]  # [3,1,1,3,2]: still a 3/1 tie; 0 wins 3-2
    dist = torch.tensor([[1.0, 0.1, 0.1, 1.0, 1.0]])
    assert knn.vote(labels[:1], dist).tolist() == [1]  # close neighbours outweigh the count


def test_cosine_and_l2_rank_differently() -> None:
    ref = torch.tensor([[1.0, 0.0], [10.0, 1.0]])
    query = torch.tensor([[9.0, 1.0]])
    assert knn.search(ref, query, 1, "cosine")[1].item() == 1
    assert knn.search(ref, query, 1, "l2", backend="torch")[1].item() == 1
    query = torch.tensor([[2.0, 0.0]])
    assert knn.search(ref, query, 1, "cosine")[1].item() == 0
    assert knn.search(ref, torch.tensor([[3.0, 2.0]]), 1, "l2")[1].item() == 0
    assert knn.search(ref, torch.tensor([[3.0, 2.0]]), 1, "cosine")[1].item() == 1


def _naive_map_at_r(xtr, ytr, xte, yte, metric: str) -> float:
    aps = []
    for query, label in zip(xte, yte.tolist(), strict=True):
        order, _ = _naive_order(xtr, query, metric)
        r = int((ytr == label).sum())
        rel = (ytr[order[:r]] == label).numpy()
        precision = np.cumsum(rel) / np.arange(1, r + 1)
        aps.append((precision * rel).sum() / r)
    return float(np.mean(aps))


@pytest.mark.parametrize("metric", ["cosine", "l2"])
def test_map_at_r_matches_the_definition(metric: str, monkeypatch: pytest.MonkeyPatch) -> None:
    xtr, ytr, xte, yte = _data(n=200, q=50, c=3)
    expected = _naive_map_at_r(xtr, ytr, xte, yte, metric)
    assert knn.map_at_r(xtr, ytr, xte, yte, metric=metric) == pytest.approx(expected)
    monkeypatch.setattr(knn, "CHUNK_BYTES", 4 * 200 * 9)
    assert knn.map_at_r(xtr, ytr, xte, yte, metric=metric) == pytest.approx(expected)


def test_map_at_r_is_one_for_separated_classes() -> None:
    ytr = torch.arange(30) % 3
    xtr = torch.nn.functional.one_hot(ytr, 3).float() + 0.01 * torch.randn(30, 3)
    assert knn.map_at_r(xtr, ytr, xtr[:6], ytr[:6], metric="cosine") == pytest.approx(1.0)


def test_anchor_accuracy_uses_the_nearest_anchor() -> None:
    anchors = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    emb = torch.tensor([[5.0, 0.1], [0.2, 3.0], [-0.5, 0.0], [0.0, -1.0]])
    labels = torch.tensor([0, 1, 2, 2])
    assert knn.anchor_accuracy(anchors, emb, labels, metric="cosine") == 0.75
    # By L2, [5, 0.1] is nearer anchor 0 and [-0.5, 0] nearer anchor 2, as by cosine.
    assert knn.anchor_accuracy(anchors, emb, labels, metric="l2") == 0.75
    with pytest.raises(ValueError, match="anchors"):
        knn.anchor_accuracy(torch.zeros(3, 5), emb, labels, metric="l2")


def test_evaluate_reports_every_metric() -> None:
    xtr, ytr, xte, yte = _data()
    out = knn.embedding_metrics(xtr, ytr, xte, yte, ks=[5, 10], metric="l2")
    accs = knn.knn_accuracy(xtr, ytr, xte, yte, ks=[1, 5, 10], metric="l2")
    assert out["knn_acc_5"] == accs[5] and out["knn_acc_10"] == accs[10]
    assert out["p_at_1"] == accs[1] and "knn_acc_1" not in out
    assert 0 < out["map_at_r"] <= 1 and out["anchor_acc"] is None
    centers = torch.stack([xtr[ytr == c].mean(0) for c in range(4)])
    with_anchors = knn.embedding_metrics(xtr, ytr, xte, yte, ks=[5], metric="l2", anchors=centers)
    assert with_anchors["anchor_acc"] > 0.5


def test_bad_arguments_raise_value_errors() -> None:
    xtr, ytr, xte, yte = _data(n=20, q=5)
    with pytest.raises(ValueError, match="metric"):
        knn.knn_accuracy(xtr, ytr, xte, yte, ks=[1], metric="dot")
    with pytest.raises(ValueError, match="ks"):
        knn.knn_accuracy(xtr, ytr, xte, yte, ks=[21], metric="l2")
    with pytest.raises(ValueError, match="ks"):
        knn.knn_accuracy(xtr, ytr, xte, yte, ks=[], metric="l2")
    with pytest.raises(ValueError, match="same d"):
        knn.knn_accuracy(xtr, ytr, xte[:, :3], yte, ks=[1], metric="l2")
    with pytest.raises(ValueError, match="one label per"):
        knn.knn_accuracy(xtr, ytr[:5], xte, yte, ks=[1], metric="l2")
    with pytest.raises(ValueError, match="backend"):
        knn.search(xtr, xte, 1, "l2", backend="annoy")
    with pytest.raises(ValueError, match=r"ks\[1\] must be an integer >= 1, got True"):
        knn.knn_accuracy(xtr, ytr, xte, yte, ks=[1, True], metric="l2")
    with pytest.raises(ValueError, match=r"ks\[0\] must be an integer >= 1, got 2.0"):
        knn.knn_accuracy(xtr, ytr, xte, yte, ks=[2.0], metric="l2")
    with pytest.raises(ValueError, match="metric must be one of cosine, l2"):
        knn.map_at_r(xtr, ytr, xte, yte, metric="dot")


# Leave-one-out (exclude_self) and the documented conventions (docs/knn.md).


def _with_duplicates(n: int = 120, c: int = 4, seed: int = 3):
    """One set, rows n-10..n-1 copies of rows 0..9 (same labels): a query's duplicate is a
    neighbour at distance 0, tied with the query itself."""
    x, y, _, _ = _data(n=n, q=1, c=c, seed=seed)
    x[-10:], y[-10:] = x[:10], y[:10]
    return x, y


def _naive_loo_order(x: torch.Tensor, i: int, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """Order and distances of the other rows (as indices into x), row i left out."""
    others = [j for j in range(len(x)) if j != i]
    order, dist = _naive_order(x[others], x[i], metric)
    return np.array(others)[order], dist[order]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("metric", ["cosine", "l2"])
def test_search_exclude_self_never_finds_the_query(backend: str, metric: str) -> None:
    x, _ = _with_duplicates()
    dist, idx = knn.search(x, x, 6, metric, backend=backend, exclude_self=True)
    rows = torch.arange(len(x)).unsqueeze(1)
    assert not (idx == rows).any()
    assert (dist[:, 1:] >= dist[:, :-1] - 1e-6).all(), "nearest first"
    # Without exclude_self, the set searched against itself finds each query first.
    _, with_self = knn.search(x, x, 1, metric, backend="torch")
    assert torch.equal(with_self.squeeze(1)[10:-10], torch.arange(10, len(x) - 10))
    # A duplicated row finds its copy, at distance 0, first.
    assert idx[:10, 0].tolist() == list(range(len(x) - 10, len(x)))
    # l2 distances come from |q|^2 - 2 q.r + |r|^2 in float32: 0 up to the sqrt of rounding
    assert dist[:10, 0].abs().max() < (1e-5 if metric == "cosine" else 1e-2)
    for i in (0, 17, 55):  # copies tie, so which of them comes first is not compared
        order, naive = _naive_loo_order(x, i, metric)
        np.testing.assert_allclose(dist[i].numpy(), naive[:6], rtol=1e-4, atol=1e-5)
        assert set(idx[i].tolist()) <= set(order[:7].tolist())


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("metric", ["cosine", "l2"])
@pytest.mark.parametrize("weighted", [False, True])
def test_leave_one_out_accuracy_matches_a_naive_loop(
    backend: str, metric: str, weighted: bool
) -> None:
    x, y = _with_duplicates()
    ks = [1, 2, 5, 8]
    got = knn.knn_accuracy(
        x, y, x, y, ks=ks, metric=metric, weighted=weighted, backend=backend, exclude_self=True
    )
    for k in ks:
        correct = 0
        for i in range(len(x)):
            order, dist = _naive_loo_order(x, i, metric)
            nb = order[:k]
            pred = _naive_predict(y[nb].tolist(), dist[:k].tolist() if weighted else None)
            correct += pred == int(y[i])
        assert got[k] == pytest.approx(correct / len(x)), f"k={k}"


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("metric", ["cosine", "l2"])
def test_leave_one_out_accuracy_matches_scikit_learn(backend: str, metric: str) -> None:
    """Two classes and odd k: no class ties, where the tie rules differ (smallest label)."""
    neighbors = pytest.importorskip("sklearn.neighbors")
    model_selection = pytest.importorskip("sklearn.model_selection")
    x, y, _, _ = _data(n=90, q=1, c=2, seed=5)
    ks = [1, 3, 7]
    got = knn.knn_accuracy(x, y, x, y, ks=ks, metric=metric, backend=backend, exclude_self=True)
    for k in ks:
        clf = neighbors.KNeighborsClassifier(
            n_neighbors=k, metric="cosine" if metric == "cosine" else "euclidean", algorithm="brute"
        )
        pred = model_selection.cross_val_predict(
            clf, x.double().numpy(), y.numpy(), cv=model_selection.LeaveOneOut()
        )
        assert got[k] == pytest.approx(float((pred == y.numpy()).mean())), f"k={k}"


@pytest.mark.parametrize("metric", ["cosine", "l2"])
def test_leave_one_out_map_at_r_matches_the_definition(
    metric: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    x, y = _with_duplicates(n=90, c=3)
    y[20] = 3  # the only sample of class 3: R = 0 once it is left out, AP 0
    aps = []
    for i in range(len(x)):
        order, _ = _naive_loo_order(x, i, metric)
        r = int((y == y[i]).sum()) - 1
        if r == 0:
            aps.append(0.0)
            continue
        rel = (y[order[:r]] == y[i]).numpy()
        aps.append(float((np.cumsum(rel) / np.arange(1, r + 1) * rel).sum() / r))
    expected = float(np.mean(aps))
    assert knn.map_at_r(x, y, x, y, metric=metric, exclude_self=True) == pytest.approx(expected)
    monkeypatch.setattr(knn, "CHUNK_BYTES", 4 * 90 * 7)  # chunks of 7 queries: offsets move
    assert knn.map_at_r(x, y, x, y, metric=metric, exclude_self=True) == pytest.approx(expected)


def test_evaluate_passes_exclude_self_to_every_knn_metric() -> None:
    x, y = _with_duplicates()
    out = knn.embedding_metrics(x, y, x, y, ks=[3], metric="l2", exclude_self=True)
    loo = knn.knn_accuracy(x, y, x, y, ks=[1, 3], metric="l2", exclude_self=True)
    assert out["knn_acc_3"] == loo[3] and out["p_at_1"] == loo[1] < 1.0
    assert out["map_at_r"] == knn.map_at_r(x, y, x, y, metric="l2", exclude_self=True)
    assert knn.embedding_metrics(x, y, x, y, ks=[3], metric="l2")["p_at_1"] == 1.0  # finds itself


def test_exclude_self_needs_one_set() -> None:
    x, y = _with_duplicates(n=30)
    with pytest.raises(ValueError, match="exclude_self needs the queries to be the reference"):
        knn.search(x, x[:20], 1, "l2", exclude_self=True)
    with pytest.raises(ValueError, match="exclude_self needs the queries to be the reference"):
        knn.knn_accuracy(x, y, x + 1, y, ks=[1], metric="l2", exclude_self=True)
    with pytest.raises(ValueError, match="exclude_self needs test_labels equal"):
        knn.map_at_r(x, y, x, (y + 1) % 4, metric="l2", exclude_self=True)
    with pytest.raises(ValueError, match=r"reference size minus one \(exclude_self\) 29"):
        knn.knn_accuracy(x, y, x, y, ks=[30], metric="l2", exclude_self=True)
    with pytest.raises(ValueError, match=r"reference size minus one \(exclude_self\) 29"):
        knn.search(x, x, 30, "cosine", exclude_self=True)
    with pytest.raises(ValueError, match="exclude_self must be true or false"):
        knn.search(x, x, 1, "l2", exclude_self="yes")
    assert knn.search(x, x, 30, "cosine")[1].shape == (30, 30)  # without it, k = N is fine


def test_queries_of_a_class_without_references_are_misses() -> None:
    xtr, ytr, xte, yte = _data(n=60, q=20, c=3)
    yte[:5] = 7  # a class the references do not have
    acc = knn.knn_accuracy(xtr, ytr, xte, yte, ks=[1, 5], metric="l2")
    kept = knn.knn_accuracy(xtr, ytr, xte[5:], yte[5:], ks=[1, 5], metric="l2")
    for k in (1, 5):
        assert acc[k] == pytest.approx(kept[k] * 15 / 20)
    map_all = knn.map_at_r(xtr, ytr, xte, yte, metric="l2")
    map_kept = knn.map_at_r(xtr, ytr, xte[5:], yte[5:], metric="l2")
    assert map_all == pytest.approx(map_kept * 15 / 20)


def test_vote_tie_rule_differs_from_scikit_learns_smallest_label() -> None:
    neighbors = pytest.importorskip("sklearn.neighbors")
    # Query at 0; references: class 2 at 1 (nearest), class 0 at 2; k = 2 ties 1-1.
    ref, labels = np.array([[1.0], [2.0]]), np.array([2, 0])
    clf = neighbors.KNeighborsClassifier(n_neighbors=2, algorithm="brute").fit(ref, labels)
    assert clf.predict(np.array([[0.0]])).tolist() == [0]  # smallest tied label
    assert knn.vote(torch.tensor([[2, 0]])).tolist() == [2]  # nearest tied neighbour's class


@pytest.mark.parametrize("metric", ["cosine", "l2"])
def test_leave_one_out_equals_pml_accuracy_calculator(metric: str) -> None:
    """pml's ref_includes_query drops the query's own index as exclude_self does (no lone
    queries here: pml drops those from its means, halbench counts them as misses)."""
    calculator = pytest.importorskip("pytorch_metric_learning.utils.accuracy_calculator")
    x, y, _, _ = _data(n=150, q=1, c=4, seed=3)
    xx = torch.nn.functional.normalize(x, dim=1) if metric == "cosine" else x  # pml: L2 index
    theirs = calculator.AccuracyCalculator(
        include=("mean_average_precision_at_r", "precision_at_1"), k="max_bin_count"
    ).get_accuracy(xx, y, xx, y, ref_includes_query=True)
    ours = knn.embedding_metrics(x, y, x, y, ks=[1], metric=metric, exclude_self=True)
    assert ours["map_at_r"] == pytest.approx(theirs["mean_average_precision_at_r"])
    assert ours["p_at_1"] == pytest.approx(theirs["precision_at_1"])
