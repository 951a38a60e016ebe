"""Cost ratios of a loss to a competitor (NCA) at one point, computed here only: the cost tables,
the cost-ratio figure and the C2 verdict read these functions.

Two ratios: of medians (FLOPs, memory, a profile's time: one number per side), and of times
seed by seed (trials: each seed's loss timed in its own trial), whose geometric mean has a 95%
interval from the t interval of the per-seed log ratios.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from halbench.report.rows import Row, finite, median_of, ratio
from halbench.report.stats import mean_ci


@dataclass(frozen=True)
class RatioEstimate:
    """A ratio with its 95% interval (lo/hi None: one number per side, no interval)."""

    value: float
    lo: float | None
    hi: float | None
    n: int  # seeds paired (0: a ratio of medians)


def median_ratio(rows: Iterable[Row], ref_rows: Iterable[Row], metric: str) -> float | None:
    """median(rows[metric]) / median(ref_rows[metric]); None when either side has no value."""
    return ratio(median_of(rows, metric), median_of(ref_rows, metric))


def seed_ratio(rows: list[Row], ref_rows: list[Row], metric: str = "time") -> RatioEstimate | None:
    """Geometric mean of per-seed ratios with its 95% interval when >= 2 seeds are on both
    sides; else the ratio of medians without an interval; None when a side has no value."""
    mine = {
        r["seed"]: r[metric] for r in rows if r.get("seed") is not None and _positive(r, metric)
    }
    ref = {
        r["seed"]: r[metric] for r in ref_rows if r.get("seed") is not None and _positive(r, metric)
    }
    common = sorted(set(mine) & set(ref))
    if len(common) >= 2:
        est = mean_ci([math.log(mine[s] / ref[s]) for s in common])
        assert est is not None and est.lo is not None and est.hi is not None
        return RatioEstimate(math.exp(est.mean), math.exp(est.lo), math.exp(est.hi), est.n)
    value = median_ratio(rows, ref_rows, metric)
    return None if value is None else RatioEstimate(value, None, None, 0)


def _positive(row: Row, metric: str) -> bool:
    return finite(row.get(metric)) and row[metric] > 0
