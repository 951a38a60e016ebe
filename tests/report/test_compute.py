"""What a run cost (issue 25 item 7, issue 22 item 4): time per trial, the run's device time,
the tuning each loss got and the seed sets, and the training-loss curves."""

from __future__ import annotations

import pytest

from halbench.report import figures
from halbench.report.compute import device_time, trial_time_table, tuning_cost_table, wall_s
from halbench.report.load import load_groups
from halbench.report.tables import header
from halbench.report.tuning import seed_sets
from halbench.report.views import build_view

from .fixtures import epochs_of, trial, tuned_rows, write_tuned_run


def _timed(loss, seed, train_s, wall):
    start = "2026-11-28T10:00:00+00:00"
    end = f"2026-11-28T10:{int(wall // 60):02d}:{wall % 60:06.3f}+00:00"
    return trial(loss, 64, 16, seed, 0.8, train_time_s=train_s, started_at=start, ended_at=end)


def test_time_per_trial_and_the_runs_device_time(make_run):
    rows = [
        _timed("hal", 0, 10.0, 12.0),
        _timed("hal", 1, 11.0, 14.5),
        _timed("nca", 0, 20.0, 23.0),
    ]
    rows.append(trial("nca", 64, 16, 1, 0.8, train_time_s=21.0))  # no start/end: training time
    view = build_view(load_groups([make_run(rows)])[0])
    assert wall_s(rows[1]) == pytest.approx(14.5)
    table = trial_time_table(view, "g1")
    by_loss = {r[1].text: r for r in table.rows}
    assert by_loss["hal"][5].value == pytest.approx(10.5)  # median training time
    assert by_loss["hal"][6].value == pytest.approx(13.25)  # median wall time
    assert by_loss["hal"][7].value == pytest.approx(26.5)
    assert by_loss["nca"][7].value == pytest.approx(23.0 + 21.0)
    total, how = device_time(view)
    assert total == pytest.approx(12.0 + 14.5 + 23.0 + 21.0) and "4 trial(s)" in how
    assert dict(header(view).items)["device time, all trials"].startswith("70.5 s")


def test_protocol_shows_the_tuning_each_loss_got_and_the_seed_sets(tmp_path):
    rows, finals, _ = tuned_rows()
    rows[0] = {**rows[0], "status": "error", "time_s": 0.5}
    view = build_view(load_groups([write_tuned_run(tmp_path / "t", tuning=rows)])[0])
    table = tuning_cost_table(view, "g1")
    by_loss = {r[0].text: r for r in table.rows}
    for loss in ("nca", "al", "hal"):
        mine = [r for r in rows if r["loss"] == loss]
        assert by_loss[loss][1].value == len(mine)
        assert by_loss[loss][2].value == sum(r["epochs_run"] for r in mine)
        assert by_loss[loss][3].value == pytest.approx(sum(r["time_s"] for r in mine))
    assert "(1 failed)" in by_loss["nca"][1].text
    # Tuning trials train with seed 0; the final seeds are 0, 1, 2 in the fixture: an overlap
    # the report names.
    assert seed_sets(view) == "tuning {0}; final {0, 1, 2} (overlap: {0}: a final seed also tuned)"
    disjoint = [{**r, "seed": 7} for r in rows]
    view = build_view(load_groups([write_tuned_run(tmp_path / "d", tuning=disjoint)])[0])
    assert seed_sets(view) == "tuning {7}; final {0, 1, 2} (disjoint)"


def test_training_loss_curves_are_drawn_from_epochs(make_run):
    trials, epochs = [], []
    for loss in ("hal", "nca"):
        for s in range(2):
            row = trial(loss, 64, 16, s, 0.8)
            trials.append(row)
            epochs += [
                {**e, "train_loss": 2.0 / e["epoch"] + 0.1 * s}
                for e in epochs_of(row, [0.5, 0.7, 0.8])
            ]
    fig = figures.train_loss_per_epoch(
        build_view(load_groups([make_run(trials, epochs)])[0]), "fashion_mnist"
    )
    lines = [t for t in fig.data if t.mode == "lines+markers"]
    assert {t.name.split(" ")[0] for t in lines} == {"hal", "nca"}
    assert list(lines[0].y) == pytest.approx([2.05, 1.05, 2.0 / 3 + 0.05])
    assert fig.layout.yaxis.title.text.startswith("training loss")
