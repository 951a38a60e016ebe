import argparse
import re
from html import escape as html_escape

import pytest

from halbench.cli import main
from halbench.errors import UserError
from halbench.report import build_model, build_report, commands
from halbench.report.model import VERDICT_SYMBOLS, Figure

from .fixtures import epochs_of, profile_row, trial

ACC = {"nca": 0.80, "snnl": 0.79, "al": 0.78, "hal": 0.84}
COST = {"nca": 1.0, "snnl": 1.1, "al": 0.05, "hal": 0.05}


def training_rows(dataset="fashion-mnist", shift=0.0, slow=1.0):
    trials, epochs = [], []
    for loss, acc in ACC.items():
        for b in (32, 128):
            for s in range(3):
                a = acc + 0.01 * s + shift
                row = trial(
                    loss,
                    b,
                    16,
                    s,
                    a,
                    dataset=dataset,
                    loss_call_ms=COST[loss] * b * slow,
                    loss_flops_fwd=COST[loss] * b * b,
                    loss_flops_bwd=2 * COST[loss] * b * b,
                    loss_peak_mem_bytes=COST[loss] * b * 1e3,
                    loss_share_of_step=0.2,
                )
                trials.append(row)
                epochs += epochs_of(
                    row, [a * min(1.0, e / (2 if loss == "hal" else 3)) for e in range(1, 5)]
                )
    return trials, epochs


@pytest.fixture
def training_run(make_run):
    return make_run(*training_rows())


@pytest.fixture
def profile_run(make_run):
    rows = [
        profile_row(loss, b, 64, time=COST[loss] * b * b / 100, flops=COST[loss] * b * b)
        for loss in ("nca", "hal")
        for b in (64, 256, 1024)
    ]
    return make_run(profile=rows, suite_hash="prof")


def test_build_report_writes_both_files_with_the_same_facts(training_run, profile_run, tmp_path):
    paths = build_report([training_run, profile_run], tmp_path / "out")
    md, html = paths["markdown"].read_text(), paths["html"].read_text()
    model = build_model([training_run, profile_run])
    summaries = [b for s in model.sections for b in s.blocks if type(b).__name__ == "Verdict"]
    assert len(summaries) == 7  # C1, C2 in three parts, C3; the profile: C2 FLOPs, call time
    for v in summaries:
        verdict = f"{VERDICT_SYMBOLS[v.verdict]} {v.verdict}"
        assert f"{v.summary}" in md and html_escape(v.summary) in html
        assert f"{v.claim_id}: {v.title} — {verdict}" in md
        assert f"{html_escape(v.title)} — {verdict}" in html
    # each suite has its own section, never merged
    assert md.count("## Suite ") == 2 and "never averaged together" in md
    figures = [b for s in model.sections for b in s.blocks if isinstance(b, Figure)]
    assert figures
    for fig in figures:
        assert f'id="{fig.id}"' in html
        assert f"report.html#{fig.id}" in md or f"figures/{fig.id}.png" in md


def test_html_is_self_contained_with_plotly_once_and_sortable_tables(training_run, tmp_path):
    html = build_report([training_run], tmp_path)["html"].read_text()
    assert html.count("plotly.js v") == 1  # the library's banner: inlined exactly once
    assert not re.search(r'<script[^>]+src="http', html)
    assert 'class="sortable"' in html and "data-v=" in html
    assert "<nav><strong>Contents</strong>" in html


def test_claims_verdicts_on_the_training_run(training_run):
    model = build_model([training_run])
    verdicts = {
        b.claim_id: b.verdict
        for s in model.sections
        for b in s.blocks
        if type(b).__name__ == "Verdict"
    }
    # C1: judged on fashion-mnist, cifar10 untested; C2 FLOPs: HAL/NCA = 0.05 everywhere; the
    # trials record no neighbours, so no isolated call or step times; C3: HAL faster and higher
    assert verdicts == {
        "C1": "supported",
        "C2 FLOPs": "supported",
        "C2 call time": "no data",
        "C2 training step": "no data",
        "C3": "supported",
    }


def parse(add, argv):
    parser = argparse.ArgumentParser()
    add(parser)
    return parser.parse_args(argv)


def test_report_command(training_run, profile_run, tmp_path, capsys):
    assert main(["report", str(training_run)]) == 0
    assert (training_run / "report.md").is_file() and (training_run / "report.html").is_file()
    with pytest.raises(UserError, match="--output"):
        commands.report_main(
            parse(commands.add_report_arguments, [str(training_run), str(profile_run)])
        )
    with pytest.raises(UserError, match="missing"):
        commands.report_main(parse(commands.add_report_arguments, [str(tmp_path / "missing")]))


def compare(old, new, *extra):
    return main(["compare", str(old), str(new), *extra])


def test_compare_same_run_is_clean(training_run, profile_run, capsys):
    assert compare(training_run, training_run) == 0
    assert "No regression" in capsys.readouterr().out
    assert compare(profile_run, profile_run) == 0


def test_compare_accuracy_drop_beyond_noise_is_a_regression(training_run, make_run, capsys):
    worse = make_run(*training_rows(shift=-0.02))  # 2 points lower, same seeds: paired, sd 0
    assert compare(training_run, worse) == 3
    out = capsys.readouterr().out
    assert "-2.00 [-2.00, -2.00]" in out and "▼ worse" in out
    assert compare(training_run, worse, "--acc-threshold", "3") == 0


def test_compare_cost_growth_and_failed_trials(training_run, make_run, capsys):
    slower = make_run(*training_rows(slow=1.5))
    assert compare(training_run, slower) == 3
    assert "time × 1.5" in capsys.readouterr().out
    assert compare(training_run, slower, "--threshold", "0.6") == 0
    trials, epochs = training_rows()
    trials[0] = {**trials[0], "status": "oom", "knn_acc_1": None}
    assert compare(training_run, make_run(trials, epochs)) == 3
    assert "status ok → oom" in capsys.readouterr().out


def test_compare_rejects_a_negative_threshold(training_run):
    with pytest.raises(SystemExit):
        parse(
            commands.add_compare_arguments,
            [str(training_run), str(training_run), "--threshold", "-1"],
        )


def test_markdown_figure_is_a_png_with_kaleido_else_a_link(tmp_path, monkeypatch):
    from halbench.report import markdown

    class FakePlot:
        layout = argparse.Namespace(height=300)

        def write_image(self, path, **kwargs):
            path.write_bytes(b"png")

    fig = Figure("g1-fig-x", "X vs Y", FakePlot())
    monkeypatch.setattr(markdown, "_can_export_images", lambda: False)
    assert markdown.figure_markdown(fig, tmp_path, "report.html") == (
        "📈 [X vs Y](report.html#g1-fig-x) (interactive figure in the HTML report)"
    )
    monkeypatch.setattr(markdown, "_can_export_images", lambda: True)
    assert markdown.figure_markdown(fig, tmp_path, "report.html") == (
        "![X vs Y](figures/g1-fig-x.png)"
    )
    assert (tmp_path / "figures" / "g1-fig-x.png").read_bytes() == b"png"


def test_compare_profiles(make_run, capsys):
    def profile(scale, status="ok"):
        return make_run(
            profile=[
                profile_row("hal", 64, 16, time=scale, flops=100.0),
                profile_row("nca", 64, 16, time=1.0, flops=1e4, status=status),
            ],
            suite_hash="p",
        )

    old = profile(1.0)
    assert compare(old, profile(1.1)) == 0  # 10% slower: under the 20% threshold
    assert compare(old, profile(2.0)) == 3
    assert "hal 64 16 10 0 cpu: time × 2" in capsys.readouterr().out
    assert compare(old, profile(1.0, status="oom")) == 3
