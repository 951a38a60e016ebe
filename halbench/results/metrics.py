"""Metrics computed from rows, shared by the trainer and the report: the primary k, convergence."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any


def primary_k(ks: Iterable[int], wanted: int | None = None) -> int | None:
    """The k that ranks epochs, picks best configurations and judges claims: `wanted` when it was
    evaluated, else the smallest evaluated k (the suite's first, since a suite sorts its ks)."""
    ks = sorted({int(k) for k in ks})
    if wanted is not None and int(wanted) in ks:
        return int(wanted)
    return ks[0] if ks else None


def convergence(
    epochs: Sequence[Mapping[str, Any]], k: int, fractions: Sequence[float] = (0.9, 0.95)
) -> dict[str, Any]:
    """Best epoch and accuracy at k, and per fraction f the first epoch (and its `elapsed_s`)
    whose accuracy reaches f x the final epoch's: keys best_epoch, best_knn_acc,
    epochs_to_<100 f>, seconds_to_<100 f>. Epochs without an accuracy at k are skipped; {} when
    none has one. The trainer's columns and the report's C3 both come from here."""
    column = f"knn_acc_{k}"
    rows = sorted(
        (e for e in epochs if e.get(column) is not None and math.isfinite(e[column])),
        key=lambda e: e["epoch"],
    )
    if not rows:
        return {}
    accs = [float(e[column]) for e in rows]
    best = max(range(len(accs)), key=lambda i: accs[i])  # first of equal maxima
    out: dict[str, Any] = {"best_epoch": rows[best]["epoch"], "best_knn_acc": accs[best]}
    for fraction in fractions:
        pct = round(100 * fraction)
        hit = next((e for e, a in zip(rows, accs, strict=True) if a >= fraction * accs[-1]), None)
        out[f"epochs_to_{pct}"] = None if hit is None else hit["epoch"]
        out[f"seconds_to_{pct}"] = None if hit is None else hit.get("elapsed_s")
    return out


# ---------------------------------------------------------------- reading a run directory
