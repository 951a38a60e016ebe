import json
import math
import statistics

import pytest
from scipy import stats

from halbench.report.cost_tables import profile_cost_table, slope_table, trial_cost_table
from halbench.report.format import fmt_si, norm_name
from halbench.report.load import load_groups
from halbench.report.stats import t_quantile
from halbench.report.tables import accuracy_tables, best_config_table, header
from halbench.report.views import build_view

from .fixtures import profile_row, trial


def grid_trials():
    """nca best at B=32, hal best at B=128 (fashion); on cifar10 snnl and hal tie at B=32."""
    rows = []
    accs = {
        ("fashion_mnist", "nca", 32): [0.80, 0.82, 0.84],
        ("fashion_mnist", "hal", 32): [0.70, 0.71, 0.72],
        ("fashion_mnist", "nca", 128): [0.75, 0.75, 0.75],
        ("fashion_mnist", "hal", 128): [0.90, 0.91, 0.92],
        ("cifar10", "snnl", 32): [0.60, 0.61, 0.62],
        ("cifar10", "hal", 32): [0.62, 0.60, 0.61],
    }
    for (ds, loss, b), values in accs.items():
        rows += [trial(loss, b, 16, s, a, dataset=ds) for s, a in enumerate(values)]
    rows.append(trial("hal", 128, 16, 9, None, dataset="fashion_mnist", status="oom"))
    return rows


@pytest.fixture
def grid_group(make_run):
    return build_view(load_groups([make_run(grid_trials())])[0])


def by_row(table):
    return {(r[0].text, r[1].text): r for r in table.rows}


def test_accuracy_table_ci_and_best_marks(grid_group):
    table = accuracy_tables(grid_group, "g1")[0]
    assert table.title == "k-NN accuracy (k=1, %)"  # the suite's ks are 1 and 5
    assert table.columns == ["dataset", "loss", "loss params", "B=32 d=16", "B=128 d=16"]
    rows = by_row(table)
    assert rows[("fashion_mnist", "nca")][2].text == "defaults"  # loss_params {}
    half = t_quantile(0.975, 2) * 2.0 / math.sqrt(3)  # values 80, 82, 84: sd 2
    nca32 = rows[("fashion_mnist", "nca")][3]
    assert nca32.text == f"82.00 ± {half:.2f}" and nca32.best
    assert not rows[("fashion_mnist", "hal")][3].best
    assert rows[("fashion_mnist", "hal")][4].best and not rows[("fashion_mnist", "nca")][4].best
    # a tie marks both; an absent configuration is a dash, never marked
    assert rows[("cifar10", "snnl")][3].best and rows[("cifar10", "hal")][3].best
    assert rows[("cifar10", "hal")][4].text == "—" and not rows[("cifar10", "hal")][4].best


def test_best_configuration_table(grid_group):
    rows = by_row(best_config_table(grid_group, "g1"))
    assert [c.text for c in rows[("fashion_mnist", "hal")][2:5]] == ["128", "16", "3"]
    assert [c.text for c in rows[("fashion_mnist", "nca")][2:4]] == ["32", "16"]
    assert rows[("fashion_mnist", "hal")][5].text == "defaults"
    assert rows[("fashion_mnist", "hal")][6].best and not rows[("fashion_mnist", "nca")][6].best


def test_header_counts_trials_by_status(grid_group):
    items = dict(header(grid_group).items)
    assert items["trials (19)"] == "ok 18, oom 1, diverged 0, error 0"
    assert items["torch"] == "2.14.1" and items["gpu"] == "—"  # missing env key tolerated
    assert items["datasets"] == "cifar10, fashion_mnist"
    assert items["batch sizes"] == "32, 128" and items["seeds"] == "0, 1, 2"


def test_trial_cost_ratios_to_nca(make_run):
    rows = []
    for s in range(3):
        rows.append(
            trial(
                "nca",
                64,
                16,
                s,
                0.8,
                loss_call_ms=2.0 + s,
                loss_flops_fwd=1000.0,
                loss_flops_bwd=2000.0,
                loss_peak_mem_bytes=4096.0,
                loss_share_of_step=0.5,
            )
        )
        rows.append(
            trial(
                "hal",
                64,
                16,
                s,
                0.8,
                loss_call_ms=0.5,
                loss_flops_fwd=50.0,
                loss_flops_bwd=100.0,
                loss_peak_mem_bytes=1024.0,
                loss_share_of_step=0.1,
            )
        )
    table = trial_cost_table(build_view(load_groups([make_run(rows)])[0]), "g")
    hal = next(r for r in table.rows if r[0].text == "hal")
    ratios = [c.value for c, name in zip(hal, table.columns, strict=True) if name == "×NCA"]
    assert ratios == pytest.approx([0.05, 0.05, 0.5 / 3.0, 0.25])  # time: 0.5 / median 3
    assert hal[-1].text == "10.0%"


def test_profile_cost_table_and_slopes(make_run):
    profile = []
    for b in (64, 256, 1024):
        profile += [
            profile_row("nca", b, 32, time=1e-4 * b * b, flops=2.0 * b * b * 32, mem=4.0 * b * b),
            profile_row("hal", b, 32, time=1e-3 * b, flops=2.0 * b * 10 * 32, mem=4.0 * b * 10),
        ]
    profile.append(profile_row("nca", 4096, 32, time=0, flops=0, status="oom"))
    group = build_view(load_groups([make_run(profile=profile)])[0])
    table = profile_cost_table(group, "g")
    hal_1024 = next(r for r in table.rows if r[0].text == "hal" and r[1].text == "1024")
    assert hal_1024[7].value == pytest.approx(10 / 1024)  # FLOPs ratio C / B
    assert any("nca B=4096 d=32: oom" in n for n in table.notes)
    slopes = {r[0].text: [c.value for c in r[3:]] for r in slope_table(group, "g").rows}
    assert slopes["nca"] == pytest.approx([2.0, 2.0, 2.0])
    assert slopes["hal"] == pytest.approx([1.0, 1.0, 1.0])


def test_formatting_helpers():
    assert fmt_si(1.5e9) == "1.5 G"
    assert fmt_si(3 * 1024**2, "B") == "3 MiB"
    assert norm_name("Fashion-MNIST") == norm_name("fashion_mnist") == "fashionmnist"


def test_grid_lists_every_dataset_a_suite_declares(make_run):
    suite = {"name": "two", "datasets": [{"name": "cifar10"}, {"name": "fashion-mnist"}]}
    run = make_run([trial("hal", 64, 16, 0, 0.9, dataset="cifar10")], suite=suite)
    group = build_view(load_groups([run])[0])
    assert dict(header(group).items)["datasets"] == "cifar10, fashion-mnist"


def test_profile_cost_table_shows_fvcore_where_it_was_counted(make_run):
    rows = [
        profile_row("nca", 64, 32, time=1.0, flops=1000.0),
        profile_row("hal", 64, 32, time=0.5, flops=100.0),
    ]
    rows[0]["fvcore_flops"] = 1000
    rows[1]["fvcore_note"] = "the tracer cannot see inside _CosineCrossEntropy"
    table = profile_cost_table(build_view(load_groups([make_run(profile=rows)])[0]), "g")
    assert "fvcore FLOPs fwd" in table.columns
    col = table.columns.index("fvcore FLOPs fwd")
    cells = {r[0].text: r[col].value for r in table.rows}
    assert cells == {"nca": 1000, "hal": None}
    assert any("hal: the tracer cannot see inside _CosineCrossEntropy" in n for n in table.notes)
    # A profile written before the column existed shows no such column.
    old = [profile_row("nca", 64, 32, time=1.0, flops=1000.0)]
    table = profile_cost_table(build_view(load_groups([make_run(profile=old)])[0]), "g")
    assert "fvcore FLOPs fwd" not in table.columns


def test_the_chosen_scale_reaches_the_accuracy_tables(make_run):
    """A tuned loss.scale lands in loss_params of the final rows: the tables show it, per
    (B, d) when each group chose its own."""
    rows = [
        trial("hal", b, 16, s, 0.8, loss_params=json.dumps({"scale": scale}))
        for b, scale in ((32, 8.0), (128, 24.5))
        for s in range(2)
    ] + [
        trial("nca", b, 16, s, 0.7, loss_params='{"scale": 1.0}') for b in (32, 128) for s in (0, 1)
    ]
    view = build_view(load_groups([make_run(rows)])[0])
    acc = by_row(accuracy_tables(view, "g1")[0])
    assert acc[("fashion_mnist", "hal")][2].text == "B=32 d=16: scale=8; B=128 d=16: scale=24.5"
    assert acc[("fashion_mnist", "nca")][2].text == "scale=1"
    best = by_row(best_config_table(view, "g1"))
    assert best[("fashion_mnist", "hal")][5].text in ("scale=8", "scale=24.5")


def test_replicated_cells_pool_every_tuning_and_widen_by_its_variance(make_run):
    # 2 tuning replicates x 3 final seeds (the seeds repeat across replicates). Replicate 1 tuned
    # 4 points better than replicate 0; nca beats hal by 0.2 points in replicate 0 and 1.5 in 1.
    rows = []
    for rep, base, gap in ((0, 80.0, 0.2), (1, 84.0, 1.5)):
        for s in range(3):
            for loss, acc in (("hal", base + s), ("nca", base + s + gap)):
                rows.append(
                    trial(
                        loss,
                        32,
                        16,
                        s,
                        acc / 100,
                        replicate=rep,
                        trial_id=f"final-{loss}-r{rep}-s{s}",
                    )  # fmt: skip
                )
    view = build_view(load_groups([make_run(rows)])[0])
    table = accuracy_tables(view, "g1")[0]
    hal, nca = (
        by_row(table)[("fashion_mnist", "hal")][3],
        by_row(table)[("fashion_mnist", "nca")][3],
    )
    # every run counts (keyed by seed alone, replicate 1 once hid replicate 0: 85.00 ± ...)
    assert hal.value == pytest.approx(83.0) and nca.value == pytest.approx(83.0 + 0.85)
    # the interval is over the replicates' means (81, 85), independent computation by scipy
    half = stats.t.ppf(0.975, 1) * statistics.stdev([81.0, 85.0]) / math.sqrt(2)
    assert hal.text.startswith("83.00 ± ") and float(hal.text.split("± ")[1]) == pytest.approx(
        half, abs=0.06
    )
    # nca's lead: 0.2 and 1.5 points by replicate; its interval over 2 replicate differences
    # reaches 0 (6 (replicate, seed) pairs taken as independent would give it a star)
    assert nca.best and nca.within_noise
    assert any("over the replicates' means" in note for note in table.notes)
    best = by_row(best_config_table(view, "g1"))[("fashion_mnist", "hal")]
    assert best[4].text == "6"  # runs of both replicates
