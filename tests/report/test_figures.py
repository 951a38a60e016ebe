"""Readable figures (issue 15): legends, classes, log axes, CI bands, epoch ticks."""

import math

import numpy as np
import pytest
from scipy import stats

from halbench.report import cost_figures, figures
from halbench.report.load import load_groups
from halbench.report.views import build_view

from .fixtures import epochs_of, profile_row, trial


def view_of(make_run, *args, **kwargs):
    return build_view(load_groups([make_run(*args, **kwargs)])[0])


def test_cost_legends_are_readable_and_class_counts_are_distinguished(make_run):
    rows = []
    for c in (10, 100):
        for loss in ("nca", "hal"):
            for b in (64, 256):
                row = profile_row(loss, b, 64, time=b / 10, flops=b * b * c)
                rows.append({**row, "num_classes": c})
    view = view_of(make_run, profile=rows, suite_hash="p")
    for fig in (cost_figures.cost_vs_batch(view), cost_figures.ratio_vs_batch(view, 0.1)):
        names = [t.name for t in fig.data if t.showlegend is not False and t.name]
        assert not any("(10," in n or "'cpu'" in n for n in names), names
        assert any("hal d=64 C=10 cpu" in n for n in names)
        assert any("hal d=64 C=100 cpu" in n for n in names)
        styles = {(t.name.split(" (")[0], t.line.dash, t.marker.symbol) for t in fig.data if t.name}
        c10 = next(s for s in styles if s[0] == "hal d=64 C=10 cpu")
        c100 = next(s for s in styles if s[0] == "hal d=64 C=100 cpu")
        assert c10[1:] != c100[1:]  # same colour (the loss), different dash and marker
        # no annotation text on log axes (a stray "0.1" on every panel)
        assert not [a for a in fig.layout.annotations if a.text and a.text.strip() == "0.1"]
    cost = cost_figures.cost_vs_batch(view)
    time_traces = [t for t in cost.data if t.xaxis in (None, "x")]
    assert all(t.error_y.array is not None for t in time_traces)  # the IQR


def test_ci_bands_stay_within_0_and_100_and_epochs_are_integers(make_run):
    trials, epochs = [], []
    for loss in ("hal", "al"):
        for s, acc in enumerate([0.999, 0.95, 0.999]):
            row = trial(loss, 64, 16, s, acc)
            trials.append(row)
            epochs += epochs_of(row, [acc, acc, acc])
    for b in (128,):
        for s in range(3):
            trials.append(trial("hal", b, 16, s, 0.99 - 0.03 * s))
    view = view_of(make_run, trials, epochs)
    fig = figures.accuracy_per_epoch(view, "fashion_mnist")
    ys = [y for t in fig.data for y in t.y if y is not None]
    assert max(ys) <= 100.0 and min(ys) >= 0.0
    assert fig.layout.xaxis.dtick == 1 and fig.layout.xaxis.tickformat == "d"
    acc = figures.accuracy_vs(view, "fashion_mnist", "batch_size")
    for t in acc.data:
        for y, up in zip(t.y, t.error_y.array, strict=True):
            assert y + up <= 100.0 + 1e-9


def test_log_ticks_label_every_decade_in_the_datas_unit():
    from halbench.report.axes import fmt_ms_tick, log_axis, log_ticks

    assert log_ticks([0.003, 40.0]) == [0.001, 0.01, 0.1, 1.0, 10.0, 100.0]
    assert log_ticks([0.2, 1.7]) == [0.2, 0.5, 1.0, 2.0]  # under 2 decades: 1-2-5 steps
    assert len(log_ticks([0.1])) >= 2  # one value still gets a scale
    axis = log_axis([0.2, 0.31], fmt_ms_tick)
    assert axis["ticktext"] == ["0.2 ms", "0.5 ms"]
    assert axis["range"][0] < math.log10(0.2) and axis["range"][1] > math.log10(0.31)


def test_ratio_figure_draws_the_per_seed_time_interval_and_readable_ticks(make_run):
    """The time ratio's error bars are the 95% t interval of the per-seed log ratios."""
    times = {"nca": [2.0, 2.2, 1.9], "hal": [0.30, 0.45, 0.25]}
    rows = [
        trial(loss, 64, 16, s, 0.9, loss_call_ms=ms, loss_flops_fwd=1e6 if loss == "nca" else 5e4)
        for loss, seq in times.items()
        for s, ms in enumerate(seq)
    ]
    view = view_of(make_run, rows)
    fig = cost_figures.ratio_vs_batch(view, 0.1)
    time_trace = next(t for t in fig.data if t.name == "hal d=16" and t.xaxis in (None, "x"))
    logs = np.log(np.array(times["hal"]) / np.array(times["nca"]))
    lo, hi = stats.t.interval(0.95, len(logs) - 1, loc=logs.mean(), scale=stats.sem(logs))
    value = math.exp(logs.mean())
    assert time_trace.y[0] == pytest.approx(value)
    assert time_trace.error_y.array[0] == pytest.approx(math.exp(hi) - value)
    assert time_trace.error_y.arrayminus[0] == pytest.approx(value - math.exp(lo))
    flops_trace = next(t for t in fig.data if t.name == "hal d=16" and t.xaxis == "x2")
    assert flops_trace.y[0] == pytest.approx(0.05) and flops_trace.error_y.array is None
    y = fig.layout.yaxis
    assert y.type == "log" and 0.1 in y.tickvals  # the threshold's decade
    decades = [10.0**e for e in range(-6, 7) if y.range[0] <= e <= y.range[1]]
    assert decades and all(p in y.tickvals for p in decades)
    assert all(t.endswith("×") for t in y.ticktext)
    assert 10 ** y.range[1] >= math.exp(hi) and 10 ** y.range[0] <= 0.1


def test_pareto_axis_is_in_ms_with_a_tick_at_each_labelled_value(make_run):
    rows = [
        trial(loss, b, 16, s, acc, loss_call_ms=ms)
        for loss, b, acc, ms in (("hal", 64, 0.9, 0.2), ("nca", 64, 0.85, 1.5))
        for s in range(2)
    ]
    fig = figures.pareto(view_of(make_run, rows), "fashion_mnist")
    x = fig.layout.xaxis
    assert x.type == "log" and list(x.tickvals) == [0.2, 0.5, 1.0, 2.0]
    assert list(x.ticktext) == ["0.2 ms", "0.5 ms", "1 ms", "2 ms"]


def test_cost_figure_axes_are_labelled_in_ms_flops_and_bytes(make_run):
    rows = [
        profile_row(loss, b, 64, time=b / 100, flops=b * b * 10, mem=b * 1e4)
        for loss in ("nca", "hal")
        for b in (64, 1024)
    ]
    fig = cost_figures.cost_vs_batch(view_of(make_run, profile=rows, suite_hash="p"))
    time_axis, flops_axis, mem_axis = fig.layout.yaxis, fig.layout.yaxis2, fig.layout.yaxis3
    assert time_axis.ticktext[0].endswith(" ms") and "1 ms" in time_axis.ticktext
    assert any(t.endswith(" M") for t in flops_axis.ticktext)
    assert all(t.endswith("B") for t in mem_axis.ticktext)
