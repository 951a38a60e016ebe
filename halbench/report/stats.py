"""Confidence intervals over seeds: Student t intervals, paired or Welch (t_quantile is exact:
regularized incomplete beta + bisection). The verdict statistics (p-values, Holm correction,
effect sizes, power, replicate x seed intervals) are in verdict_stats.py, on scipy/statsmodels.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

LEVEL = 0.95


def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the incomplete beta function (modified Lentz)."""
    tiny = 1e-300
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 500):
        m2 = 2 * m
        for aa in (
            m * (b - m) * x / ((qam + m2) * (a + m2)),
            -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2)),
        ):
            d = 1.0 + aa * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + aa / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < 1e-15:
            break
    return h


def betainc(a: float, b: float, x: float) -> float:
    """Regularized incomplete beta I_x(a, b)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = (
        math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    )
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(log_front) * _betacf(a, b, x) / a
    return 1.0 - math.exp(log_front) * _betacf(b, a, 1.0 - x) / b


def t_cdf(t: float, df: float) -> float:
    """P(T <= t) for Student's t with df degrees of freedom (df may be fractional)."""
    if df <= 0:
        raise ValueError(f"df: expected a positive number, got {df}")
    tail = 0.5 * betainc(df / 2.0, 0.5, df / (df + t * t))
    return 1.0 - tail if t > 0 else tail


def t_quantile(p: float, df: float) -> float:
    """Inverse of t_cdf: the t with P(T <= t) = p."""
    if not 0.0 < p < 1.0:
        raise ValueError(f"p: expected a probability in (0, 1), got {p}")
    if p < 0.5:
        return -t_quantile(1.0 - p, df)
    lo, hi = 0.0, 1.0
    while t_cdf(hi, df) < p:
        lo, hi = hi, hi * 2.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if t_cdf(mid, df) < p:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-12 * max(1.0, hi):
            break
    return 0.5 * (lo + hi)


@dataclass(frozen=True)
class Estimate:
    """A mean with its two-sided t interval; lo/hi are None when fewer than 2 values."""

    mean: float
    lo: float | None
    hi: float | None
    n: int
    method: str = "t"  # t | paired | welch

    @property
    def half_width(self) -> float | None:
        return None if self.hi is None else self.hi - self.mean


def _mean_var(values: Sequence[float]) -> tuple[float, float]:
    n = len(values)
    mean = math.fsum(values) / n
    var = math.fsum((v - mean) ** 2 for v in values) / (n - 1) if n > 1 else 0.0
    return mean, var


def _interval(
    mean: float, se: float, df: float, n: int, method: str, level: float = LEVEL
) -> Estimate:
    if se == 0.0:
        return Estimate(mean, mean, mean, n, method)
    half = t_quantile(0.5 + level / 2.0, df) * se
    return Estimate(mean, mean - half, mean + half, n, method)


def mean_ci(values: Iterable[float], level: float = LEVEL) -> Estimate | None:
    """Mean and t interval (95% unless level says) of independent values (None when empty)."""
    values = [float(v) for v in values]
    n = len(values)
    if n == 0:
        return None
    mean, var = _mean_var(values)
    if n < 2:
        return Estimate(mean, None, None, n)
    return _interval(mean, math.sqrt(var / n), n - 1, n, "t", level)


def replicate_means(values: Mapping[Any, float]) -> dict[Any, float] | None:
    """replicate -> mean over its seeds, for values keyed (replicate, seed) with at least 2
    replicates (independent tunings); None otherwise (plain seeds, or one replicate)."""
    per: dict[Any, list[float]] = {}
    for key, v in values.items():
        if not isinstance(key, tuple):
            return None
        per.setdefault(key[0], []).append(float(v))
    if len(per) < 2:
        return None
    return {rep: sum(vs) / len(vs) for rep, vs in sorted(per.items())}


def nested_mean_ci(values: Mapping[Any, float], level: float = LEVEL) -> Estimate | None:
    """Mean and t interval of values keyed by seed, or by (replicate, seed).

    With tuning replicates the interval is over the replicates' means (R - 1 degrees of
    freedom): the random-effects interval of a balanced nested design, which covers the
    variance between tunings as well as between seeds, as the verdicts' intervals do
    (verdict_stats). Seeds of one tuning share its chosen configuration; counted as
    independent they would give an interval far too narrow when the tunings disagree. n stays
    the number of runs. Plain seeds: mean_ci.
    """
    reps = replicate_means(values)
    if reps is None:
        return mean_ci(values.values(), level)
    est = mean_ci(reps.values(), level)
    assert est is not None
    return Estimate(est.mean, est.lo, est.hi, len(values), "replicate")


def diff_ci(
    a: Mapping[Any, float], b: Mapping[Any, float], level: float = LEVEL
) -> Estimate | None:
    """Mean of a - b with a 95% interval (or level); a and b map seed (or any key) -> value.

    Paired t interval over seeds when both sides have the same seeds (same data order and
    initialisation, so the pairing removes seed noise); Welch's interval otherwise. n is the
    number of pairs (paired) or the smaller sample size (Welch).
    """
    if not a or not b:
        return None
    ra, rb = replicate_means(a), replicate_means(b)
    if ra is not None and rb is not None:
        # tuning replicates: a replicate's mean difference is the unit (as verdict_stats does)
        if set(ra) == set(rb):
            est = mean_ci([ra[r] - rb[r] for r in ra], level)
            assert est is not None
            return Estimate(est.mean, est.lo, est.hi, est.n, "replicate")
        a, b = ra, rb
    if set(a) == set(b) and len(a) >= 2:
        est = mean_ci([a[s] - b[s] for s in sorted(a)], level)
        assert est is not None
        return Estimate(est.mean, est.lo, est.hi, est.n, "paired")
    ma, va = _mean_var(list(a.values()))
    mb, vb = _mean_var(list(b.values()))
    n = min(len(a), len(b))
    if n < 2:
        return Estimate(ma - mb, None, None, n, "welch")
    qa, qb = va / len(a), vb / len(b)
    se2 = qa + qb
    if se2 == 0.0:
        return Estimate(ma - mb, ma - mb, ma - mb, n, "welch")
    df = se2 * se2 / (qa * qa / (len(a) - 1) + qb * qb / (len(b) - 1))
    return _interval(ma - mb, math.sqrt(se2), df, n, "welch", level)


def loglog_slope(xs: Sequence[float], ys: Sequence[float]) -> float | None:
    """Least-squares slope of log(y) against log(x); None with fewer than 2 distinct x > 0."""
    pts = [
        (math.log(x), math.log(y))
        for x, y in zip(xs, ys, strict=True)
        if x and y and x > 0 and y > 0
    ]
    if len({p[0] for p in pts}) < 2:
        return None
    mx = math.fsum(p[0] for p in pts) / len(pts)
    my = math.fsum(p[1] for p in pts) / len(pts)
    sxx = math.fsum((p[0] - mx) ** 2 for p in pts)
    sxy = math.fsum((p[0] - mx) * (p[1] - my) for p in pts)
    return sxy / sxx
