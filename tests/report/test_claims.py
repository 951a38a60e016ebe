import math
import statistics

import numpy as np
import pytest
from scipy import stats
from statsmodels.stats.multitest import multipletests

from halbench.errors import UserError
from halbench.report.claim_tables import accuracy_margin, convergence, cost_ratio, evaluate_claims
from halbench.report.claims import combine, judge, load_claims
from halbench.report.load import load_groups
from halbench.report.stats import Estimate
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
    assert judge(Estimate(0.5, 0.0, 1.0, 3), 1.0) == "contradicted"  # upper bound <= margin
    assert judge(Estimate(1.5, 0.5, 2.5, 3), 1.0) == "inconclusive"
    assert judge(Estimate(9.0, None, None, 1), 1.0) == "inconclusive"
    assert judge(None, 1.0) == "no data"
    assert combine(["supported", "inconclusive", "contradicted"]) == "contradicted"
    assert combine(["supported", "no data", "inconclusive"]) == "no data"
    assert combine(["supported", "inconclusive"]) == "inconclusive"
    assert combine(["supported", "supported"]) == "supported"
    assert combine([]) == "no data"


def test_c1_supported_with_exact_paired_interval(make_run):
    # per-seed differences 5, 6, 4 points: mean 5, sd 1; one dataset: no correction
    result = c1(make_run, [0.85, 0.87, 0.86], [0.80, 0.81, 0.82], datasets=("fashion-mnist",))
    half = stats.t.ppf(0.975, 2) / math.sqrt(3)
    g = 5.0 * math.gamma(1.0) / (math.sqrt(1.0) * math.gamma(0.5))  # Hedges' J(df=2) * d_z
    assert result.verdict == "supported"
    row = next(r for r in result.tables[0].rows if r[4].verdict)
    assert row[3].text == f"+5.00 [{5 - half:+.2f}, {5 + half:+.2f}] (paired, g = {g:+.2f})"
    assert row[3].value == pytest.approx(5.0)
    assert row[0].text.startswith("fashion-mnist, mlp")
    assert result.summary.startswith("supported on fashion-mnist; untested on cifar10")


def test_c1_intervals_over_two_datasets_are_holm_adjusted(make_run):
    # fashion-mnist: differences 5, 6, 4 (p small); cifar10: 1, 4, 1 (p larger)
    rows = accuracy_trials([0.85, 0.87, 0.86], [0.80, 0.81, 0.82], datasets=("fashion-mnist",))
    rows += accuracy_trials([0.81, 0.85, 0.83], [0.80, 0.81, 0.82], datasets=("cifar10",))
    result = accuracy_margin(group(make_run, rows), CLAIMS["C1"], "g")
    cond = {c.dataset: c for c in result_conditions(make_run, rows)}
    p = [stats.ttest_1samp(d, 1.0).pvalue for d in ([5, 6, 4], [1, 4, 1])]
    adjusted = multipletests(p, method="holm")[1]
    assert cond["fashion-mnist"].tested.p_adj == pytest.approx(adjusted[0])
    assert cond["cifar10"].tested.p_adj == pytest.approx(adjusted[1])
    # the smaller p is tested at alpha / 2: its interval is the 97.5% one
    lo, hi = stats.t.interval(0.975, 2, loc=5.0, scale=1.0 / math.sqrt(3))
    assert (cond["fashion-mnist"].diff.lo, cond["fashion-mnist"].diff.hi) == pytest.approx((lo, hi))
    assert cond["cifar10"].tested.level == pytest.approx(0.95)
    assert result.verdict == "inconclusive"  # cifar10: 2 ± 3.2 around a margin of 1


def result_conditions(make_run, rows):
    from halbench.report.claim_eval import evaluate_accuracy_margin

    return evaluate_accuracy_margin(group(make_run, rows), CLAIMS["C1"]).conditions


def test_c1_contradicted_when_the_upper_bound_is_below_one_point(make_run):
    # differences 0.1, 0.2, 0.3 points: upper bound 0.2 + 0.248 < 1
    result = c1(make_run, [0.801, 0.812, 0.823], [0.80, 0.81, 0.82])
    assert result.verdict == "contradicted"
    assert "excludes 0" not in result.tables[0].rows[0][5].text  # HAL is not worse, just < 1


def test_c1_inconclusive_when_the_interval_contains_one_point(make_run):
    # differences 0, 2, 4 points: mean 2, half-width 4.97
    assert c1(make_run, [0.80, 0.83, 0.86], [0.80, 0.81, 0.82]).verdict == "inconclusive"


def test_c1_inconclusive_with_one_seed(make_run):
    result = c1(make_run, [0.95], [0.80], seeds=(0,))
    assert result.verdict == "inconclusive"
    assert "no CI, n=1" in result.tables[0].rows[0][3].text
    assert "no interval" in result.tables[0].rows[0][5].text


def test_c1_uses_welch_when_seeds_differ(make_run):
    result = c1(make_run, [0.85, 0.87, 0.86], [0.80, 0.81, 0.82], nca_seeds=(3, 4, 5))
    assert "(welch, g = " in result.tables[0].rows[0][3].text
    assert result.verdict == "supported"


def test_c1_no_data_without_hal_and_untested_without_a_dataset(make_run):
    no_hal = [r for r in accuracy_trials([0.9] * 3, [0.8] * 3) if r["loss"] != "hal"]
    assert accuracy_margin(group(make_run, no_hal), CLAIMS["C1"], "g").verdict == "no data"
    one_dataset = c1(make_run, [0.85, 0.87, 0.86], [0.80, 0.81, 0.82], datasets=("cifar10",))
    assert one_dataset.verdict == "supported"  # judged on the dataset the suite has
    assert one_dataset.summary.startswith("supported on cifar10; untested on fashion-mnist")
    rows = {r[0].text.split(",")[0]: r for r in one_dataset.tables[0].rows}
    assert rows["fashion-mnist"][5].text == "dataset not in this suite"
    assert rows["fashion-mnist"][4].text.endswith("untested")
    assert rows["cifar10"][4].text == "✓ supported"


def test_c1_picks_each_loss_best_configuration(make_run):
    rows = accuracy_trials([0.85, 0.87, 0.86], [0.80, 0.81, 0.82])
    rows += accuracy_trials([0.70] * 3, [0.845, 0.865, 0.855], b=256)  # nca better at B=256
    result = accuracy_margin(group(make_run, rows), CLAIMS["C1"], "g")
    assert result.verdict == "contradicted"  # 0.5 point over nca's best, sd 0
    assert "nca B=256 d=16" in result.tables[0].rows[0][2].text


def cost_profile(ratios, *, b_values=(64, 256, 1024), d=16):
    rows = []
    for b, r in zip(b_values, ratios, strict=True):
        rows += [
            profile_row("nca", b, d, time=10.0, flops=1e6),
            profile_row("hal", b, d, time=10.0 * r, flops=1e6 * r),
        ]
    return rows


def c2(make_run, **kwargs):
    """{part name: result} of the three C2 parts."""
    return {r.id: r for r in cost_ratio(group(make_run, **kwargs), CLAIMS["C2"], "g")}


def test_c2_is_three_rows_named_exactly():
    assert CLAIMS["C2"].metrics == ["flops", "time", "step"]


def test_c2_flops_where_it_holds_and_b_star(make_run):
    parts = c2(make_run, profile=cost_profile([0.2, 0.05, 0.01]))
    assert list(parts) == ["C2 FLOPs", "C2 call time"]  # a profile: no training step
    flops = parts["C2 FLOPs"]
    assert flops.verdict == "contradicted"
    slope, icpt = np.polyfit(np.log([64, 256, 1024]), np.log([0.2, 0.05, 0.01]), 1)
    b_star = math.exp((math.log(0.1) - icpt) / slope)  # where the fitted ratio is 0.1
    assert flops.summary == f"holds at 2 of 3 points, fails at 1; d=16 vs nca: B* ≈ {b_star:,.0f}"
    assert [r[4].value for r in flops.tables[0].rows] == pytest.approx([0.2, 0.05, 0.01])
    assert [r[5].value for r in flops.tables[0].rows] == pytest.approx([0.2, 0.05, 0.01])
    # isolated call times from the profile
    assert parts["C2 call time"].verdict == "contradicted"


def test_c2_supported_when_every_point_holds(make_run):
    parts = c2(make_run, profile=cost_profile([0.09, 0.05, 0.01]))
    assert parts["C2 FLOPs"].verdict == "supported"
    assert parts["C2 call time"].summary == "holds at 3 of 3 points"


def cost_trials(ratios, neighbours):
    rows = []
    for s, (r, n) in enumerate(zip(ratios, neighbours, strict=True)):
        common = {"loss_flops_fwd": 1e6, "max_neighbours": n, "gpu_mem_peak_bytes": 1e9}
        rows += [
            trial("nca", 64, 16, s, 0.8, loss_call_ms=10.0, images_per_s=6400.0, **common),
            trial(
                "hal",
                64,
                16,
                s,
                0.8,
                loss_call_ms=10.0 * r,
                images_per_s=7000.0,
                **{**common, "loss_flops_fwd": 1e4},
            ),
        ]
    return rows


def test_c2_call_time_from_trials_alone_on_their_device(make_run):
    parts = c2(make_run, trials=cost_trials([0.05, 0.2, 0.08], [0, 0, 0]))
    call = parts["C2 call time"]
    assert call.verdict == "inconclusive"
    assert "inconclusive" not in call.summary and "undecided at 1" in call.summary
    logs = np.log([0.05, 0.2, 0.08])
    lo, hi = stats.t.interval(0.95, 2, loc=logs.mean(), scale=stats.sem(logs))
    row = call.tables[0].rows[0]
    assert row[4].value == pytest.approx(math.exp(logs.mean()))
    assert f"[{math.exp(lo):.3g}, {math.exp(hi):.3g}]" in row[4].text
    # the training step: 64 images at 7000/s against 6400/s, identical on every seed
    step = parts["C2 training step"]
    assert step.tables[0].rows[0][4].value == pytest.approx(6400 / 7000)
    assert step.verdict == "contradicted"


def test_c2_call_time_and_step_need_trials_alone_on_their_device(make_run):
    shared = c2(make_run, trials=cost_trials([0.05, 0.05, 0.05], [3, 2, 3]))
    for name in ("C2 call time", "C2 training step"):
        assert shared[name].verdict == "no data"
        assert "every trial shared its device" in shared[name].summary
        assert "exclusive_gpu: true" in shared[name].summary
    unknown = c2(make_run, trials=cost_trials([0.05] * 3, [None] * 3))
    assert "did not record" in unknown["C2 call time"].summary
    assert unknown["C2 FLOPs"].verdict == "supported"  # FLOPs do not depend on neighbours


def test_c2_no_data_without_a_competitor(make_run):
    only_hal = [profile_row("hal", 64, 16, time=1.0, flops=1.0)]
    assert {r.verdict for r in c2(make_run, profile=only_hal).values()} == {"no data"}


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
    assert row[2].text == "+2.0 [+2.0, +2.0] (paired)"  # AL needs 2 more epochs to reach 90%
    assert row[5].value == pytest.approx(5.667, abs=1e-3)


def test_c3_not_supported_when_al_is_faster(make_run):
    result = convergence(
        group(make_run, *convergence_run(4, 2, [0.85, 0.86, 0.87], [0.80, 0.80, 0.81])),
        CLAIMS["C3"],
        "g",
    )
    assert result.verdict == "contradicted"


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
    assert [(r.id, r.verdict) for r in results] == [
        ("C1", "no data"),
        ("C2 FLOPs", "supported"),
        ("C2 call time", "supported"),
        ("C3", "no data"),
    ]


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
    assert convergence(group(make_run, *run), CLAIMS["C3"], "g").verdict == "contradicted"


def with_curves(run, curves):
    """Add curve_steps / curve_acc (List columns, the gputrial contract) to run's trials."""
    import polars as pl

    trials = pl.read_parquet(run / "trials.parquet")
    steps = [curves[t][0] for t in trials["trial_id"]]
    accs = [curves[t][1] for t in trials["trial_id"]]
    trials = trials.with_columns(
        pl.Series("curve_steps", steps, dtype=pl.List(pl.Int64)),
        pl.Series("curve_acc", accs, dtype=pl.List(pl.Float64)),
    )
    trials.write_parquet(run / "trials.parquet")
    return run


def test_c3_in_optimizer_steps_from_sub_epoch_curves(make_run):
    # accuracy ramps linearly to its final value: HAL by step `speed`, evaluated every 10 steps
    trials, curves = [], {}
    for loss, speeds, finals in (
        ("hal", [20, 20, 30], [0.85, 0.86, 0.87]),
        ("al", [60, 50, 70], [0.80, 0.80, 0.81]),
    ):
        for s, (speed, final) in enumerate(zip(speeds, finals, strict=True)):
            row = trial(loss, 64, 16, s, final)
            trials.append(row)
            steps = list(range(0, 101, 10))
            curves[row["trial_id"]] = (steps, [final * min(1.0, x / speed) for x in steps])
    run = with_curves(make_run(trials, []), curves)
    result = convergence(build_view(load_groups([run])[0]), CLAIMS["C3"], "g")
    # target: AL's mean final 80.33 - 2 = 78.33 points; steps to it per seed
    target = statistics.fmean([80.0, 80.0, 81.0]) - 2.0
    to_t = {
        tid: next(x for x, a in zip(*curves[tid], strict=True) if 100 * a >= target)
        for tid in curves
    }
    diffs = [to_t[f"al-b64-d16-s{s}"] - to_t[f"hal-b64-d16-s{s}"] for s in range(3)]
    lo, hi = stats.t.interval(0.95, 2, loc=np.mean(diffs), scale=stats.sem(diffs))
    row = result.tables[0].rows[0]
    assert row[0].text.endswith(f"(target {target:.1f}%)")
    assert row[2].text.startswith(f"{np.mean(diffs):+.1f} [{lo:+.1f}, {hi:+.1f}] (paired")
    # area under accuracy vs steps / step range, as numpy integrates it
    auc = {
        tid: np.trapezoid(100 * np.array(a), s) / (s[-1] - s[0]) for tid, (s, a) in curves.items()
    }
    auc_diff = np.mean([auc[f"hal-b64-d16-s{s}"] - auc[f"al-b64-d16-s{s}"] for s in range(3)])
    assert row[3].value == pytest.approx(auc_diff)
    assert result.verdict == "supported" and "judged in steps" in result.summary


def test_c1_interval_covers_replicates_when_rows_carry_them(make_run):
    rows = []
    for rep, shift in enumerate([0.03, 0.01]):  # replicate 1's tuning chose a worse config
        for s in range(3):
            rows.append(
                trial(
                    "hal",
                    64,
                    16,
                    s,
                    0.80 + shift + 0.002 * s,
                    replicate=rep,
                    dataset="fashion-mnist",
                )
            )
            rows.append(trial("nca", 64, 16, s, 0.80, replicate=rep, dataset="fashion-mnist"))
    for r in rows:
        r["trial_id"] += f"-r{r['replicate']}"
    result = accuracy_margin(group(make_run, rows), CLAIMS["C1"], "g")
    cell = next(r for r in result.tables[0].rows if r[4].verdict)[3]
    rep_means = [3.2, 1.2]  # points: each replicate's mean difference over its seeds
    lo, hi = stats.t.interval(0.95, 1, loc=np.mean(rep_means), scale=stats.sem(rep_means))
    assert cell.text.startswith(f"+2.20 [{lo:+.2f}, {hi:+.2f}] (replicate")
    assert result.verdict == "inconclusive"
    assert "replicates would resolve it" in result.tables[0].rows[1][5].text or any(
        "replicates" in r[5].text for r in result.tables[0].rows
    )


@pytest.mark.parametrize(
    "extra,field",
    [
        ("alpha: 0.7", "alpha"),
        ("power: 0.3", "power"),
        ("correction: bonferroni", "correction"),
        ("equivalence_margin: -1", "equivalence_margin"),
        ("target_margin: -2", "target_margin"),
    ],
)
def test_load_claims_validates_the_verdict_settings(tmp_path, extra, field):
    bad = tmp_path / "claims.yaml"
    bad.write_text(
        "claims:\n  - {id: C3, title: t, statement: s, kind: convergence, subject: hal}\n".replace(
            "}", f", {extra}}}"
        )
    )
    with pytest.raises(UserError, match=rf"^{bad}: claims\[0\]\.{field}: "):
        load_claims(bad)


def test_bundled_claims_carry_their_verdict_settings():
    c1, c3 = CLAIMS["C1"], CLAIMS["C3"]
    assert (c1.alpha, c1.power, c1.correction) == (0.05, 0.8, "holm")
    assert c3.target_margin == 2.0


def test_the_metric_is_the_tunings_unless_the_claims_file_names_another(tmp_path):
    from halbench.report import build_model
    from halbench.report.model import Paragraph

    from .fixtures import write_tuned_run

    run = write_tuned_run(tmp_path / "tuned")  # tune.metric: knn_acc_1
    claims = tmp_path / "claims.yaml"
    claims.write_text(
        "claims:\n  - {id: C1, title: t, statement: s, kind: accuracy_margin, subject: hal,\n"
        "     competitors: [nca], k: 5}\n"
    )
    texts = [
        b.text
        for s in build_model([run], claims).sections
        for b in s.blocks
        if isinstance(b, Paragraph)
    ]
    assert any(
        "C1 judges k-NN@5" in t and "selected configurations on knn_acc_1" in t for t in texts
    )
    default = build_model([run]).sections
    assert not any(
        isinstance(b, Paragraph) and "judges k-NN@" in b.text for s in default for b in s.blocks
    )


def test_c3_steps_to_target_never_count_the_untrained_model():
    from halbench.report.claim_convergence import steps_to

    # the untrained model scores 75 (k-NN on random embeddings), training first lowers it
    steps, acc = [0, 10, 20, 30, 40], [75.0, 70.0, 72.0, 74.5, 76.0]
    assert steps_to(steps, acc, 74.0) == (30, True)
    assert steps_to(steps, acc, 80.0) == (40, False)  # censored: its last step
    assert steps_to([0, 10], [80.0, 81.0], 74.0) == (10, True)  # the first step it trained
