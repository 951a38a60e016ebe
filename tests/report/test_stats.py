import math

import pytest

from halbench.report.stats import diff_ci, loglog_slope, mean_ci, t_cdf, t_quantile

# Two-sided 95% critical values from printed t tables.
TABLE = {1: 12.706, 2: 4.303, 4: 2.776, 10: 2.228, 29: 2.045}


@pytest.mark.parametrize("df,expected", sorted(TABLE.items()))
def test_t_quantile_matches_printed_table(df, expected):
    assert t_quantile(0.975, df) == pytest.approx(expected, abs=5e-4)


def test_t_quantile_tends_to_the_normal_and_inverts_the_cdf():
    assert t_quantile(0.975, 1e7) == pytest.approx(1.959964, abs=1e-5)
    assert t_cdf(t_quantile(0.9, 3.5), 3.5) == pytest.approx(0.9, abs=1e-12)
    assert t_quantile(0.025, 5) == pytest.approx(-t_quantile(0.975, 5))


def test_t_quantile_agrees_with_scipy_for_fractional_df():
    stats = pytest.importorskip("scipy.stats")
    for df in (1.5, 2.7, 7.3, 55.5):
        assert t_quantile(0.975, df) == pytest.approx(stats.t.ppf(0.975, df), rel=1e-9)


def test_t_quantile_rejects_bad_arguments():
    with pytest.raises(ValueError, match="p:"):
        t_quantile(1.0, 3)
    with pytest.raises(ValueError, match="df:"):
        t_cdf(1.0, 0)


def test_mean_ci_is_the_t_interval():
    est = mean_ci([1.0, 2.0, 3.0])  # mean 2, sd 1
    half = t_quantile(0.975, 2) / math.sqrt(3)
    assert (est.mean, est.n) == (2.0, 3)
    assert est.lo == pytest.approx(2.0 - half) and est.hi == pytest.approx(2.0 + half)
    single = mean_ci([5.0])
    assert single.mean == 5.0 and single.lo is None and single.half_width is None
    assert mean_ci([]) is None


def test_diff_ci_pairs_common_seeds():
    est = diff_ci({0: 5.0, 1: 7.0, 2: 6.0}, {0: 1.0, 1: 2.0, 2: 3.0})  # diffs 4, 5, 3
    assert est.method == "paired" and est.mean == pytest.approx(4.0)
    assert est.half_width == pytest.approx(t_quantile(0.975, 2) / math.sqrt(3))


def test_diff_ci_uses_welch_for_different_seeds():
    a, b = {0: 1.0, 1: 2.0, 2: 3.0}, {5: 0.0, 6: 0.0, 7: 1.0, 8: 3.0}
    est = diff_ci(a, b)
    va, vb = 1.0, 2.0  # sample variances
    se2 = va / 3 + vb / 4
    df = se2**2 / ((va / 3) ** 2 / 2 + (vb / 4) ** 2 / 3)
    assert est.method == "welch" and est.mean == pytest.approx(1.0)
    assert est.half_width == pytest.approx(t_quantile(0.975, df) * math.sqrt(se2))
    assert diff_ci({0: 1.0}, {1: 0.0}).lo is None


def test_loglog_slope():
    xs = [32, 64, 128, 256]
    assert loglog_slope(xs, [3 * x**2 for x in xs]) == pytest.approx(2.0)
    assert loglog_slope(xs, [0.5 * x for x in xs]) == pytest.approx(1.0)
    assert loglog_slope([64], [1.0]) is None


def test_replicated_values_are_judged_over_replicate_means():
    from scipy import stats as sps

    from halbench.report.stats import nested_mean_ci

    a = {(r, s): 80.0 + 4 * r + s for r in range(2) for s in range(3)}  # replicate means 81, 85
    est = nested_mean_ci(a)
    lo, hi = sps.t.interval(0.95, 1, loc=83.0, scale=sps.sem([81.0, 85.0]))
    assert (est.mean, est.lo, est.hi, est.n, est.method) == pytest.approx(
        (83.0, lo, hi, 6, "replicate")
    )
    one = {(0, s): v for (r, s), v in a.items() if r == 0}  # one replicate: its seeds
    assert nested_mean_ci(one) == mean_ci(one.values())
    b = {(r, s): v - (0.2 if r == 0 else 1.5) for (r, s), v in a.items()}
    diff = diff_ci(a, b)  # the unit is a replicate's mean difference (0.2, 1.5)
    lo, hi = sps.t.interval(0.95, 1, loc=0.85, scale=sps.sem([0.2, 1.5]))
    assert (diff.mean, diff.lo, diff.hi, diff.method) == pytest.approx((0.85, lo, hi, "replicate"))


def test_equal_replicate_means_are_not_called_equal_runs():
    from halbench.report.format import fmt_est
    from halbench.report.stats import nested_mean_ci

    # runs 105, 90, 60, 75, 150 and 135, 90, 90, 75, 90: both tunings average 96
    a = dict(zip([(0, s) for s in range(5)], [105.0, 90, 60, 75, 150], strict=True))
    a.update(zip([(1, s) for s in range(5)], [135.0, 90, 90, 75, 90], strict=True))
    assert fmt_est(nested_mean_ci(a)) == "96.00 (replicate means equal)"
    assert fmt_est(mean_ci([2.0, 2.0, 2.0])) == "2.00 (all 3 equal)"
