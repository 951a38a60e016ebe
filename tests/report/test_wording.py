"""Report wording a reader would misread (issue 25 item 6): marks, spreads, paths, scope."""

from __future__ import annotations

from halbench.report import build_model, build_report
from halbench.report.format import fmt_est
from halbench.report.load import load_groups
from halbench.report.model import Verdict
from halbench.report.protocol import verdict_notes
from halbench.report.rows import mark_best
from halbench.report.stats import mean_ci
from halbench.report.views import build_view

from .fixtures import profile_row, trial


def test_no_star_on_the_only_entry_and_no_within_noise_on_one_seed():
    assert mark_best({"hal": {0: 80.0, 1: 81.0}}) == {"hal": (False, False)}
    one_seed = mark_best({"hal": {0: 80.0}, "nca": {0: 70.0}})
    assert one_seed == {"hal": (False, False), "nca": (False, False)}
    clear = mark_best({"hal": {0: 90.0, 1: 90.5, 2: 90.2}, "nca": {0: 70.0, 1: 70.4, 2: 70.1}})
    assert clear == {"hal": (True, False), "nca": (False, False)}


def test_a_spread_is_never_printed_as_zero():
    assert fmt_est(mean_ci([1.0, 1.0])) == "1.00 (all 2 equal)"
    assert fmt_est(mean_ci([82.0, 82.0001])) == "82.00 ± 0.0006"  # not ± 0.00
    assert fmt_est(mean_ci([81.0, 83.0, 82.0])) == "82.00 ± 2.48"


def test_short_training_note_does_not_say_the_paper_trained_under_2000_steps(make_run):
    rows = [
        trial(loss, 64, 16, s, 0.8, steps_per_epoch=10) for loss in ("hal", "nca") for s in (0, 1)
    ]
    notes = verdict_notes(build_view(load_groups([make_run(rows)])[0]))
    short = next(n for n in notes if "Short training" in n)
    assert "under 2,000" not in short and "fewer than 2,000" in short
    assert "paper trains to convergence" in short


def test_run_directory_is_printed_relative_to_the_report(make_run, tmp_path):
    run = make_run([trial("hal", 64, 16, 0, 0.8)])
    inside = build_report([run], run)["markdown"].read_text()
    assert "| run directories | . |" in inside
    beside = build_report([run], tmp_path / "out")["markdown"].read_text()
    assert f"| run directories | ../{run.name} |" in beside
    assert str(tmp_path) not in beside


def test_a_profile_report_has_only_the_cost_claim(make_run):
    rows = [
        profile_row(loss, b, 64, time=t * b, flops=f * b * b)
        for loss, t, f in (("nca", 1.0, 1.0), ("hal", 0.05, 0.05))
        for b in (64, 256)
    ]
    model = build_model([make_run(profile=rows, suite_hash="p")])
    verdicts = [b for s in model.sections for b in s.blocks if isinstance(b, Verdict)]
    assert [v.claim_id for v in verdicts] == ["C2 FLOPs", "C2 call time"]  # no trials: no step
    text = str(model)
    assert "C1" not in text and "C3" not in text
