"""verdict_stats against independent computations (scipy.stats, statsmodels, printed formulas)."""

import math

import numpy as np
import pytest
from scipy import stats
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.power import TTestIndPower, TTestPower

from halbench.report.verdict_stats import (
    MAX_UNITS,
    assess_all,
    hedges_g,
    holm,
    interval,
    min_detectable,
    p_value,
    units_needed,
    units_of,
)

A = {0: 85.0, 1: 87.0, 2: 86.0, 3: 88.5}
B = {0: 80.0, 1: 81.5, 2: 82.0, 3: 81.0}
DIFFS = np.array([A[s] - B[s] for s in A])


def test_paired_units_interval_and_p_match_scipy():
    u = units_of(A, B)
    assert u.kind == "paired" and u.n == 4
    est = interval(u, 0.9)
    lo, hi = stats.t.interval(0.9, 3, loc=DIFFS.mean(), scale=stats.sem(DIFFS))
    assert (est.lo, est.hi) == pytest.approx((lo, hi))
    assert p_value(u, 1.0) == pytest.approx(
        stats.ttest_rel(list(A.values()), [b + 1 for b in B.values()]).pvalue
    )


def test_welch_units_match_scipy():
    b = {10 + k: v for k, v in B.items()}  # other seeds: not paired
    u = units_of(A, b)
    assert u.kind == "welch"
    a_vals, b_vals = np.array(list(A.values())), np.array(list(B.values()))
    res = stats.ttest_ind(a_vals, b_vals + 2.0, equal_var=False)
    assert p_value(u, 2.0) == pytest.approx(res.pvalue)
    ci = stats.ttest_ind(a_vals, b_vals, equal_var=False).confidence_interval(0.95)
    est = interval(u, 0.95)
    assert (est.lo, est.hi) == pytest.approx((ci.low, ci.high))


def test_hedges_g_against_the_t_statistic_and_the_gamma_correction():
    u = units_of(A, B)
    d_z = stats.ttest_1samp(DIFFS, 0.0).statistic / math.sqrt(4)
    j = math.gamma(1.5) / (math.sqrt(1.5) * math.gamma(1.0))  # df = 3
    assert hedges_g(u) == pytest.approx(j * d_z)
    b = {10 + k: v for k, v in B.items()}
    a_vals, b_vals = list(A.values()), list(B.values())
    d = stats.ttest_ind(a_vals, b_vals).statistic * math.sqrt(1 / 4 + 1 / 4)  # pooled, Cohen
    j6 = math.gamma(3) / (math.sqrt(3) * math.gamma(2.5))
    assert hedges_g(units_of(A, b)) == pytest.approx(j6 * d)


def test_min_detectable_effect_has_the_stated_power():
    u = units_of(A, B)
    mde = min_detectable(u, 0.05, 0.8)
    sd = DIFFS.std(ddof=1)
    # a one-sample t test with 4 units detects mde/sd with 80% power (noncentral t)
    nc = mde / sd * math.sqrt(4)
    crit = stats.t.ppf(0.975, 3)
    power = stats.nct.sf(crit, 3, nc) + stats.nct.cdf(-crit, 3, nc)
    assert power == pytest.approx(0.8, abs=1e-4)
    assert TTestPower().power(mde / sd, 4, 0.05) == pytest.approx(0.8, abs=1e-4)


def test_units_needed_reaches_the_power_and_one_fewer_does_not():
    u = units_of({0: 1.0, 1: 3.0, 2: 2.0}, {0: 0.0, 1: 0.0, 2: 0.0})  # diffs 1, 3, 2: sd 1
    n = units_needed(u, 0.7, 0.05, 0.8)
    assert TTestPower().power(0.7, n, 0.05) >= 0.8 > TTestPower().power(0.7, n - 1, 0.05)
    assert units_needed(u, 0.0, 0.05, 0.8) is None
    assert units_needed(u, 1e-4, 0.05, 0.8) == MAX_UNITS + 1
    w = units_of({0: 1.0, 1: 3.0}, {5: 0.0, 6: 2.0})
    n = units_needed(w, 1.0, 0.05, 0.8)
    assert TTestIndPower().power(1.0 / math.sqrt(2), n, 0.05) >= 0.8


def test_holm_levels_and_adjusted_p_values():
    p = [0.04, 0.001, 0.03]
    adjusted, levels = holm(p, 0.05)
    assert adjusted == pytest.approx(list(multipletests(p, method="holm")[1]))
    assert levels == pytest.approx([1 - 0.05 / 1, 1 - 0.05 / 3, 1 - 0.05 / 2])


def test_replicate_units_give_the_random_effects_interval_of_a_nested_design():
    # 3 replicates x 3 seeds; the interval of the grand mean from one-way ANOVA's MS_between
    diffs = np.array([[1.0, 2.0, 1.5], [3.0, 2.5, 3.5], [0.5, 1.0, 0.0]])
    a = {(r, s): 80 + diffs[r, s] for r in range(3) for s in range(3)}
    b = {(r, s): 80.0 for r in range(3) for s in range(3)}
    u = units_of(a, b)
    assert u.kind == "replicate" and u.n == 3
    n = 3
    grand = diffs.mean()
    ms_between = n * ((diffs.mean(axis=1) - grand) ** 2).sum() / (3 - 1)
    se = math.sqrt(ms_between / (3 * n))
    est = interval(u, 0.95)
    half = stats.t.ppf(0.975, 2) * se
    assert est.mean == pytest.approx(grand)
    assert (est.lo, est.hi) == pytest.approx((grand - half, grand + half))
    # one replicate: the seeds are the units again
    one = units_of(
        {(0, s): v for (r, s), v in a.items() if r == 0}, {(0, s): 80.0 for s in range(3)}
    )
    assert one.kind == "paired" and one.n == 3


def test_assess_all_corrects_only_when_asked_and_carries_power():
    pairs = [(A, B), ({0: 1.0, 1: 2.0, 2: 4.0}, {0: 0.0, 1: 0.0, 2: 0.0})]
    holm_ = assess_all(pairs, 0.0, 0.05, 0.9, "holm")
    plain = assess_all(pairs, 0.0, 0.05, 0.9, "none")
    assert [t.level for t in plain] == [0.95, 0.95]
    assert sorted(t.level for t in holm_) == pytest.approx([0.95, 0.975])
    assert all(t.power == 0.9 for t in holm_)
    assert holm_[0].p_adj == pytest.approx(
        multipletests([holm_[0].p, holm_[1].p], method="holm")[1][0]
    )
