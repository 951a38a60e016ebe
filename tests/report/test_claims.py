import math

import pytest

from halbench.errors import UserError
from halbench.report.claim_tables import accuracy_margin, convergence, cost_ratio, evaluate_claims
from halbench.report.claims import combine, judge, load_claims
from halbench.report.load import load_groups
from halbench.report.stats import Estimate, t_quantile
from halbench.report.views import build_view

from .fixtures import epochs_of, profile_row, trial

CLAIMS = {c.id: c for c in load_claims()}
DATASETS = ("fashion-mnist", "cifar10")


def accuracy_trials(hal, nca, *, datasets=DATASETS, seeds=(0, 1, 2), nca_seeds=None, b=64, d=16):
    """hal/nca: accuracy fractions per seed, the same on every dataset."""
    rows = []
    for ds in datasets:
        rows += [trial("hal", b, d, s, a, dataset=ds) for s, a in zip(seeds, hal, strict=True)]
        rows += [
            trial("nca", b, d, s, a, dataset=ds)
            for s, a in zip(nca_seeds or seeds, nca, strict=True)
        ]
    return rows


def group(make_run, trials=None, epochs=None, profile=None):
    return build_view(load_groups([make_run(trials, epochs, profile)])[0])


def c1(make_run, *args, **kwargs):
    return accuracy_margin(group(make_run, accuracy_trials(*args, **kwargs)), CLAIMS["C1"], "g1")


def test_bundled_claims_file_has_c1_c2_c3():
    assert list(CLAIMS) == ["C1", "C2", "C3"]
    assert CLAIMS["C1"].competitors == ["nca", "snnl", "nca_memory"]
    assert CLAIMS["C2"].threshold == 0.10


def test_load_claims_rejects_a_malformed_file(tmp_path):
    bad = tmp_path / "claims.yaml"
    bad.write_text("claims:\n  - id: X\n    kind: vibes\n")
    with pytest.raises(UserError, match=r"claims\[0\]\.kind"):
        load_claims(bad)


def test_judge_and_combine_rules():
    assert judge(Estimate(3.0, 1.5, 4.5, 3), 1.0) == "supported"
    assert judge(Estimate(0.5, 0.0, 1.0, 3), 1.0) == "not supported"  # upper bound <= margin
    assert judge(Estimate(1.5, 0.5, 2.5, 3), 1.0) == "inconclusive"
    assert judge(Estimate(9.0, None, None, 1), 1.0) == "inconclusive"
    assert judge(None, 1.0) == "no data"
    assert combine(["supported", "inconclusive", "not supported"]) == "not supported"
    assert combine(["supported", "no data", "inconclusive"]) == "no data"
    assert combine(["supported", "inconclusive"]) == "inconclusive"
    assert combine(["supported", "supported"]) == "supported"
    assert combine([]) == "no data"


def test_c1_supported_with_exact_paired_interval(make_run):
    # per-seed differences 5, 6, 4 points: mean 5, sd 1
    result = c1(make_run, [0.85, 0.87, 0.86], [0.80, 0.81, 0.82])
    half = t_quantile(0.975, 2) / math.sqrt(3)
    assert result.verdict == "supported"
    row = result.tables[0].rows[0]
    assert row[3].text == f"+5.00 [{5 - half:+.2f}, {5 + half:+.2f}] (paired)"
    assert row[3].value == pytest.approx(5.0)
    assert [r[4].text for r in result.tables[0].rows] == ["✓ supported"] * 2


def test_c1_not_supported_when_the_upper_bound_is_below_one_point(make_run):
    # differences 0.1, 0.2, 0.3 points: upper bound 0.2 + 0.248 < 1
    result = c1(make_run, [0.801, 0.812, 0.823], [0.80, 0.81, 0.82])
    assert result.verdict == "not supported"


def test_c1_inconclusive_when_the_interval_contains_one_point(make_run):
    # differences 0, 2, 4 points: mean 2, half-width 4.97
    assert c1(make_run, [0.80, 0.83, 0.86], [0.80, 0.81, 0.82]).verdict == "inconclusive"


def test_c1_inconclusive_with_one_seed(make_run):
    result = c1(make_run, [0.95], [0.80], seeds=(0,))
    assert result.verdict == "inconclusive"
    assert "no CI, n=1" in result.tables[0].rows[0][3].text
    assert result.tables[0].rows[0][5].text == "fewer than 2 seeds"


def test_c1_uses_welch_when_seeds_differ(make_run):
    result = c1(make_run, [0.85, 0.87, 0.86], [0.80, 0.81, 0.82], nca_seeds=(3, 4, 5))
    assert result.tables[0].rows[0][3].text.endswith("(welch)")
    assert result.verdict == "supported"


def test_c1_no_data_without_hal_or_a_dataset(make_run):
    no_hal = [r for r in accuracy_trials([0.9] * 3, [0.8] * 3) if r["loss"] != "hal"]
    assert accuracy_margin(group(make_run, no_hal), CLAIMS["C1"], "g").verdict == "no data"
    one_dataset = c1(make_run, [0.85, 0.87, 0.86], [0.80, 0.81, 0.82], datasets=("cifar10",))
    assert one_dataset.verdict == "no data"
    rows = {r[0].text: r for r in one_dataset.tables[0].rows}
    assert rows["fashion-mnist"][5].text == "dataset not in this suite"
    assert rows["cifar10"][4].text == "✓ supported"


def test_c1_picks_each_loss_best_configuration(make_run):
    rows = accuracy_trials([0.85, 0.87, 0.86], [0.80, 0.81, 0.82])
    rows += accuracy_trials([0.70] * 3, [0.845, 0.865, 0.855], b=256)  # nca better at B=256
    result = accuracy_margin(group(make_run, rows), CLAIMS["C1"], "g")
    assert result.verdict == "not supported"  # 0.5 point over nca's best, sd 0
    assert "nca B=256 d=16" in result.tables[0].rows[0][2].text


def cost_profile(ratios, *, b_values=(64, 256, 1024), d=16):
    rows = []
    for b, r in zip(b_values, ratios, strict=True):
        rows += [
            profile_row("nca", b, d, time=10.0, flops=1e6),
            profile_row("hal", b, d, time=10.0 * r, flops=1e6 * r),
        ]
    return rows


def test_c2_where_it_holds(make_run):
    result = cost_ratio(group(make_run, profile=cost_profile([0.2, 0.05, 0.01])), CLAIMS["C2"], "g")
    assert result.verdict == "not supported"
    assert result.summary == "holds at 2 of 3 points; d=16: B ≥ 256"
    assert [r[4].value for r in result.tables[0].rows] == pytest.approx([0.2, 0.05, 0.01])


def test_c2_supported_when_every_point_holds(make_run):
    result = cost_ratio(
        group(make_run, profile=cost_profile([0.09, 0.05, 0.01])), CLAIMS["C2"], "g"
    )
    assert result.verdict == "supported"
    assert result.summary.endswith("d=16: every B")


def test_c2_from_trials_is_inconclusive_when_the_time_interval_straddles(make_run):
    rows = []
    for s, ratio in enumerate([0.05, 0.2, 0.08]):
        rows += [
            trial("nca", 64, 16, s, 0.8, loss_call_ms=10.0, loss_flops_fwd=1e6),
            trial("hal", 64, 16, s, 0.8, loss_call_ms=10.0 * ratio, loss_flops_fwd=1e4),
        ]
    result = cost_ratio(group(make_run, rows), CLAIMS["C2"], "g")
    assert result.verdict == "inconclusive"
    geo = math.exp(sum(math.log(r) for r in [0.05, 0.2, 0.08]) / 3)
    assert result.tables[0].rows[0][5].value == pytest.approx(geo)


def test_c2_no_data_without_a_competitor(make_run):
    only_hal = [profile_row("hal", 64, 16, time=1.0, flops=1.0)]
    assert cost_ratio(group(make_run, profile=only_hal), CLAIMS["C2"], "g").verdict == "no data"


def convergence_run(hal_speed, al_speed, hal_final, al_final, seeds=(0, 1, 2)):
    """Accuracy ramps linearly to its final value by epoch `speed`, over 6 epochs."""
    trials, epochs = [], []
    for loss, speed, final in (("hal", hal_speed, hal_final), ("al", al_speed, al_final)):
        for s, acc in zip(seeds, final, strict=True):
            row = trial(loss, 64, 16, s, acc)
            trials.append(row)
            epochs += epochs_of(row, [acc * min(1.0, e / speed) for e in range(1, 7)])
    return trials, epochs


def test_c3_supported_when_hal_is_faster_and_higher(make_run):
    result = convergence(
        group(make_run, *convergence_run(2, 4, [0.85, 0.86, 0.87], [0.80, 0.80, 0.81])),
        CLAIMS["C3"],
        "g",
    )
    assert result.verdict == "supported"
    row = result.tables[0].rows[0]
    assert row[2].text == "+2.00 [+2.00, +2.00]"  # AL needs 2 more epochs to reach 90%
    assert row[5].value == pytest.approx(5.667, abs=1e-3)


def test_c3_not_supported_when_al_is_faster(make_run):
    result = convergence(
        group(make_run, *convergence_run(4, 2, [0.85, 0.86, 0.87], [0.80, 0.80, 0.81])),
        CLAIMS["C3"],
        "g",
    )
    assert result.verdict == "not supported"


def test_c3_inconclusive_with_one_seed_and_no_data_without_al(make_run):
    one = convergence_run(2, 4, [0.85], [0.80], seeds=(0,))
    assert convergence(group(make_run, *one), CLAIMS["C3"], "g").verdict == "inconclusive"
    trials, epochs = convergence_run(2, 4, [0.85] * 3, [0.8] * 3)
    no_al = [t for t in trials if t["loss"] != "al"]
    result = convergence(group(make_run, no_al, epochs), CLAIMS["C3"], "g")
    assert (result.verdict, result.summary) == ("no data", "no ok al trials")


def test_evaluate_claims_on_a_profile_only_run(make_run):
    results = evaluate_claims(
        group(make_run, profile=cost_profile([0.09, 0.05, 0.01])), list(CLAIMS.values()), "g"
    )
    assert [r.verdict for r in results] == ["no data", "supported", "no data"]


def test_c1_per_configuration_table_lists_only_the_claimed_datasets(make_run):
    rows = accuracy_trials(
        [0.85, 0.87, 0.86], [0.80, 0.81, 0.82], datasets=("cifar10", "synthetic")
    )
    result = accuracy_margin(group(make_run, rows), CLAIMS["C1"], "g")
    assert [r[0].text for r in result.tables[1].rows] == ["cifar10"]


def test_c3_faster_is_inconclusive_when_both_converge_in_the_first_epoch(make_run):
    run = convergence_run(1, 1, [0.85, 0.86, 0.87], [0.80, 0.80, 0.81])
    result = convergence(group(make_run, *run), CLAIMS["C3"], "g")
    assert result.verdict == "inconclusive"  # higher, but the speed cannot be told apart
    run = convergence_run(1, 1, [0.80, 0.80, 0.81], [0.85, 0.86, 0.87])
    assert convergence(group(make_run, *run), CLAIMS["C3"], "g").verdict == "not supported"
