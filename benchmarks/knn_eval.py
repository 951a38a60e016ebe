"""k-NN evaluation at benchmark scale: halbench against raw faiss and scikit-learn.

    PYTHONPATH=. python benchmarks/knn_eval.py [--n-ref 50000 --n-query 10000 --dim 128 -k 10]

All three do one exact search whose cost is the query x reference matrix product,
2 * n_query * n_ref * dim FLOPs (128 GFLOP at the defaults); GFLOP/s below counts that product
only. halbench = `knn.knn_accuracy` (search + majority vote); raw faiss = IndexFlatL2.search
alone (no vote, no accuracy); scikit-learn = KNeighborsClassifier(algorithm="brute").fit +
score. Each is timed `--repeats` times, interleaved, and the median is reported.
Goal: halbench within 1.1x of raw faiss (so >= 1.2x faster than scikit-learn).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch


def _timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-ref", type=int, default=50_000)
    parser.add_argument("--n-query", type=int, default=10_000)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("-k", type=int, default=10)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch/faiss/BLAS threads")
    args = parser.parse_args()

    import faiss
    from sklearn.neighbors import KNeighborsClassifier
    from threadpoolctl import threadpool_limits

    from halbench import knn

    threads = args.threads or torch.get_num_threads()
    torch.set_num_threads(threads)
    faiss.omp_set_num_threads(threads)
    g = torch.Generator().manual_seed(0)
    # Overlapping classes (10-NN accuracy well below 1), as with real embeddings.
    centers = 0.15 * torch.randn(args.classes, args.dim, generator=g)
    y_ref = torch.randint(0, args.classes, (args.n_ref,), generator=g)
    y_query = torch.randint(0, args.classes, (args.n_query,), generator=g)
    ref = centers[y_ref] + torch.randn(args.n_ref, args.dim, generator=g)
    query = centers[y_query] + torch.randn(args.n_query, args.dim, generator=g)
    ref_np, query_np = ref.numpy(), query.numpy()

    def halbench_faiss() -> float:
        return knn.knn_accuracy(ref, y_ref, query, y_query, ks=[args.k], metric="l2")[args.k]

    def halbench_torch() -> float:
        return knn.knn_accuracy(
            ref, y_ref, query, y_query, ks=[args.k], metric="l2", backend="torch"
        )[args.k]

    def raw_faiss() -> None:
        index = faiss.IndexFlatL2(args.dim)
        index.add(ref_np)
        index.search(query_np, args.k)

    def sklearn() -> float:
        clf = KNeighborsClassifier(n_neighbors=args.k, algorithm="brute", n_jobs=threads)
        return clf.fit(ref_np, y_ref.numpy()).score(query_np, y_query.numpy())

    contenders = {
        "halbench (faiss)": halbench_faiss,
        "halbench (torch)": halbench_torch,
        "raw faiss search": raw_faiss,
        "scikit-learn brute": sklearn,
    }
    times: dict[str, list[float]] = {name: [] for name in contenders}
    with threadpool_limits(threads):
        for fn in contenders.values():
            fn()  # warm-up: thread pools, BLAS handles, first-touch of the arrays
        for _ in range(args.repeats):
            for name, fn in contenders.items():
                times[name].append(_timed(fn))
        accuracy = {"halbench": halbench_faiss(), "scikit-learn": sklearn()}

    gflop = 2 * args.n_query * args.n_ref * args.dim / 1e9
    median = {name: statistics.median(t) for name, t in times.items()}
    print(
        f"k-NN {args.n_ref} x {args.n_query}, d={args.dim}, k={args.k}, {threads} threads "
        f"({gflop:.0f} GFLOP per search)"
    )
    for name, t in median.items():
        spread = max(times[name]) - min(times[name])
        print(f"  {name:20s} {t:7.3f} s  (spread {spread:.3f})  {gflop / t:6.1f} GFLOP/s")
    vs_faiss = median["halbench (faiss)"] / median["raw faiss search"]
    vs_sklearn = median["scikit-learn brute"] / median["halbench (faiss)"]
    print(f"halbench / raw faiss time: {vs_faiss:.3f} (goal <= 1.1)")
    print(f"scikit-learn / halbench time: {vs_sklearn:.3f} (goal >= 1.2)")
    print(
        f"accuracy at k={args.k}: halbench {accuracy['halbench']:.4f}, "
        f"scikit-learn {accuracy['scikit-learn']:.4f}"
    )
    print(
        json.dumps(
            {
                "benchmark": "knn_eval",
                "params": vars(args) | {"threads": threads},
                "median_s": median,
                "ratio_halbench_over_faiss": vs_faiss,
                "ratio_sklearn_over_halbench": vs_sklearn,
                "torch": torch.__version__,
                "faiss": faiss.__version__,
                "machine": platform.machine(),
                "numpy": np.__version__,
            }
        )
    )


if __name__ == "__main__":
    main()
