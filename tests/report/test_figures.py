"""Readable figures (issue 15): legends, classes, log axes, CI bands, epoch ticks."""

from halbench.report import figures
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
    for fig in (figures.cost_vs_batch(view), figures.ratio_vs_batch(view, 0.1)):
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
    cost = figures.cost_vs_batch(view)
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
