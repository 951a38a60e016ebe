"""The statistics behind a verdict, on scipy.stats and statsmodels: a difference tested against
a claimed margin, Holm's correction over the conditions of one claim, an effect size, the
minimum detectable effect at the claim's power and the seeds that would resolve it.

Units of a difference (see docs/report.md, "Verdicts"):
- paired: both sides share their seeds; the unit is a seed's difference (paired t);
- replicate: rows carry a `replicate` (independent tunings) and both sides share their
  (replicate, seed) keys; the unit is a replicate's mean difference over its seeds. This is the
  random-effects interval of a balanced nested design (replicate, seed within replicate): the
  variance of the grand mean is MS_between / (R n) = var(replicate means) / R, with R - 1
  degrees of freedom, so the interval covers tuning variance as well as seed variance;
- welch: the sides' keys differ; Welch's t over the values.
"""

from __future__ import annotations

import math
import statistics
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import special
from scipy import stats as sps
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.power import TTestIndPower, TTestPower

from halbench.report.stats import Estimate, diff_ci, mean_ci, replicate_means

MAX_UNITS = 10_000  # "more than" this many seeds: no realistic budget resolves it


@dataclass(frozen=True)
class Units:
    """What a difference is computed over (module docstring)."""

    kind: str  # paired | replicate | welch
    values: list[float]  # paired/replicate: the unit differences; welch: side a
    other: list[float]  # welch: side b; else []

    @property
    def n(self) -> int:
        return len(self.values) if self.kind != "welch" else min(len(self.values), len(self.other))


def units_of(a: Mapping[Any, float], b: Mapping[Any, float]) -> Units:
    """a, b map seed, or (replicate, seed), -> value; see the module docstring."""
    if set(a) == set(b) and len(a) >= 2:
        diffs = {key: a[key] - b[key] for key in sorted(a)}
        per_rep = replicate_means(diffs)
        if per_rep is not None:
            return Units("replicate", list(per_rep.values()), [])
        return Units("paired", list(diffs.values()), [])
    return Units("welch", list(a.values()), list(b.values()))


def interval(u: Units, level: float) -> Estimate | None:
    """Mean difference with its t interval at level."""
    if u.kind == "welch":
        return diff_ci(dict(enumerate(u.values)), {-1 - i: v for i, v in enumerate(u.other)}, level)
    est = mean_ci(u.values, level)
    return None if est is None else Estimate(est.mean, est.lo, est.hi, est.n, u.kind)


def _sd(u: Units) -> float | None:
    """The spread the test divides by: of the unit differences, or pooled (welch)."""
    if u.kind != "welch":
        return statistics.stdev(u.values) if len(u.values) > 1 else None
    na, nb = len(u.values), len(u.other)
    if na < 2 or nb < 2:
        return None
    va, vb = statistics.variance(u.values), statistics.variance(u.other)
    return math.sqrt(((na - 1) * va + (nb - 1) * vb) / (na + nb - 2))


def p_value(u: Units, margin: float) -> float | None:
    """Two-sided p of 'difference = margin' (None with < 2 units); 0 or 1 without spread."""
    if u.n < 2:
        return None
    sd = _sd(u)
    if u.kind == "welch":
        spread = statistics.variance(u.values) + statistics.variance(u.other)
        mean = statistics.fmean(u.values) - statistics.fmean(u.other)
        if spread == 0:
            return 1.0 if mean == margin else 0.0
        shifted = [v + margin for v in u.other]
        return float(sps.ttest_ind(u.values, shifted, equal_var=False).pvalue)
    if not sd:
        return 1.0 if statistics.fmean(u.values) == margin else 0.0
    return float(sps.ttest_1samp(u.values, margin).pvalue)


def hedges_g(u: Units) -> float | None:
    """Effect size of the difference: mean / sd (of the unit differences, or pooled), times
    the exact small-sample correction J(df) = Γ(df/2) / (√(df/2) Γ((df-1)/2))."""
    sd = _sd(u)
    if not sd:
        return None
    if u.kind == "welch":
        mean, df = statistics.fmean(u.values) - statistics.fmean(u.other), len(u.values)
        df += len(u.other) - 2
    else:
        mean, df = statistics.fmean(u.values), len(u.values) - 1
    if df < 2:
        return mean / sd
    j = math.exp(special.gammaln(df / 2) - special.gammaln((df - 1) / 2)) / math.sqrt(df / 2)
    return j * mean / sd


def _solve(solver: TTestPower | TTestIndPower, **kwargs: float | None) -> float:
    """statsmodels' solve_power as a float; nan when its root finder finds none (it warns)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning: returned as nan, handled by callers
        try:
            value = solver.solve_power(**kwargs)
        except (ValueError, RuntimeError):
            return math.nan
    return float(np.ravel(value)[0]) if value is not None else math.nan


def min_detectable(u: Units, alpha: float, power: float) -> float | None:
    """The smallest |difference − margin| a two-sided t test at alpha detects with this power,
    for these units and their spread (statsmodels.stats.power)."""
    sd = _sd(u)
    if not sd or u.n < 2:
        return None
    if u.kind == "welch":
        ratio = len(u.other) / len(u.values)
        d = _solve(TTestIndPower(), nobs1=len(u.values), ratio=ratio, alpha=alpha, power=power)
    else:
        d = _solve(TTestPower(), nobs=len(u.values), alpha=alpha, power=power)
    return d * sd if math.isfinite(d) else None


def units_needed(u: Units, distance: float, alpha: float, power: float) -> int | None:
    """Units (seeds a side, or replicates) that detect the observed |difference − margin| with
    this power; None without spread or distance, MAX_UNITS + 1 for 'more than MAX_UNITS'."""
    sd = _sd(u)
    if not sd or distance == 0:
        return None
    d = abs(distance) / sd
    if u.kind == "welch":
        n = _solve(TTestIndPower(), effect_size=d, ratio=1.0, alpha=alpha, power=power)
    else:
        n = _solve(TTestPower(), effect_size=d, alpha=alpha, power=power)
    return MAX_UNITS + 1 if not math.isfinite(n) or n > MAX_UNITS else max(2, math.ceil(n))


def holm(pvalues: Sequence[float], alpha: float) -> tuple[list[float], list[float]]:
    """(Holm-adjusted p-values, per-condition interval levels): condition of rank r (0 = the
    smallest p) of m gets the level 1 − alpha / (m − r), the step at which Holm tests it."""
    if not pvalues:
        return [], []
    adjusted = multipletests(list(pvalues), alpha=alpha, method="holm")[1]
    m = len(pvalues)
    order = sorted(range(m), key=lambda i: pvalues[i])
    levels = [0.0] * m
    for rank, i in enumerate(order):
        levels[i] = 1 - alpha / (m - rank)
    return [float(p) for p in adjusted], levels


@dataclass(frozen=True)
class Tested:
    """One condition's difference judged against the margin (after the claim's correction)."""

    est: Estimate | None  # at `level`
    level: float
    p: float | None  # unadjusted, of difference = margin
    p_adj: float | None
    g: float | None
    mde: float | None  # minimum detectable |difference − margin|, same units
    needed: int | None  # units that would resolve it (see units_needed)
    unit: str  # "seeds" or "replicates"
    kind: str  # paired | replicate | welch
    power: float = 0.8  # of mde and needed


def assess_all(
    pairs: Sequence[tuple[Mapping[Any, float], Mapping[Any, float]]],
    margin: float,
    alpha: float,
    power: float,
    correction: str,
) -> list[Tested]:
    """Each (a, b) of one claim tested as 'a − b vs margin', Holm-corrected when asked."""
    units = [units_of(a, b) for a, b in pairs]
    ps = [p_value(u, margin) for u in units]
    known = [i for i, p in enumerate(ps) if p is not None]
    adj: list[float | None] = list(ps)
    levels = [1 - alpha] * len(units)
    if correction == "holm" and len(known) > 1:
        padj, lv = holm([ps[i] for i in known], alpha)  # type: ignore[misc]
        for j, i in enumerate(known):
            adj[i], levels[i] = padj[j], lv[j]
    out = []
    for u, p, pa, level in zip(units, ps, adj, levels, strict=True):
        est = interval(u, level)
        dist = 0.0 if est is None else est.mean - margin
        a_level = 1 - level
        out.append(
            Tested(
                est,
                level,
                p,
                pa,
                hedges_g(u),
                min_detectable(u, a_level, power),
                units_needed(u, dist, a_level, power),
                "replicates" if u.kind == "replicate" else "seeds",
                u.kind,
                power,
            )
        )
    return out
