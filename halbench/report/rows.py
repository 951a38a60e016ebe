"""Small operations on lists of row dicts (one dict per trial, epoch or profile point)."""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from halbench.report.stats import Estimate, diff_ci, nested_mean_ci

Row = dict[str, Any]


def finite(value: Any) -> bool:
    """A number that a statistic may use (not None, NaN or inf)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def group_by(rows: Iterable[Row], keys: Sequence[str]) -> dict[tuple, list[Row]]:
    out: dict[tuple, list[Row]] = defaultdict(list)
    for r in rows:
        out[tuple(r[k] for k in keys)].append(r)
    return out


def seed_values(rows: Iterable[Row], column: str, scale: float = 1.0) -> dict[Any, float]:
    """seed -> value of column (non-null, finite), scaled; (replicate, seed) -> value when the
    rows carry tuning replicates (final runs of R tunings share their seeds: keyed by seed
    alone, one tuning's runs would hide the other's)."""
    rows = list(rows)
    reps = any(r.get("replicate") is not None for r in rows)
    return {
        ((int(r.get("replicate") or 0), int(r["seed"])) if reps else int(r["seed"])): float(
            r[column]
        )
        * scale
        for r in rows
        if finite(r.get(column))
    }


def percent_estimate(rows: Iterable[Row], column: str) -> Estimate | None:
    """Mean and 95% CI over seeds of an accuracy column, in percent points (with tuning
    replicates, over the replicates' means: stats.nested_mean_ci)."""
    return nested_mean_ci(seed_values(rows, column, 100.0))


def median_of(rows: Iterable[Row], column: str) -> float | None:
    vals = [r[column] for r in rows if finite(r.get(column))]
    return float(statistics.median(vals)) if vals else None


def ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or b == 0 else a / b


def point_order(point: tuple) -> tuple:
    """Sort key for mixed tuples: numbers numerically, strings alphabetically, None last."""
    return tuple((x is None, x if isinstance(x, int | float) else 0, str(x)) for x in point)


def mark_best(cands: Mapping[Any, Mapping[int, float]]) -> dict[Any, tuple[bool, bool]]:
    """key -> (best, within noise) among candidates given as seed -> value.

    Best: the highest mean (every key of a tie). Within noise: a tie, or the 95% CI of the
    best minus the runner-up (paired over common seeds, else Welch) reaches 0, so that a star
    is only given to a difference the seeds can tell apart. No mark at all (False, False) when
    there is nothing to beat (one candidate) or the best or the runner-up has one seed: one
    value has no noise estimate to be within.
    """
    means = {k: statistics.fmean(v.values()) for k, v in cands.items() if v}
    unmarked = {k: (False, False) for k in means}
    if len(means) < 2:
        return unmarked
    top = max(means.values())
    best = [k for k, m in means.items() if m == top]
    rest = sorted((m, str(k), k) for k, m in means.items() if m != top)
    runner_up = best[1] if len(best) > 1 else rest[-1][2]
    if len(cands[best[0]]) < 2 or len(cands[runner_up]) < 2:
        return unmarked
    if len(best) > 1:
        noisy = True
    else:
        diff = diff_ci(cands[best[0]], cands[rest[-1][2]])
        noisy = diff is None or diff.lo is None or diff.lo <= 0
    return {k: (k in best, k in best and noisy) for k in means}
