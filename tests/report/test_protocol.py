"""The Protocol section: tuned runs (issue 13) and what every report rests on (issue 15)."""

import json

import polars as pl
import pytest

from halbench.report import build_model, build_report
from halbench.report.load import load_groups
from halbench.report.model import Figure, Paragraph, Table, Verdict
from halbench.report.views import build_view

from .fixtures import TUNED_SUITE, trial, tuned_rows, write_tuned_run
from .test_report import training_rows


@pytest.fixture
def tuned_run(tmp_path):
    return write_tuned_run(tmp_path / "tuned")


def blocks(model, section_suffix):
    return [b for s in model.sections if s.id.endswith(section_suffix) for b in s.blocks]


def test_protocol_section_comes_first_in_both_reports(tuned_run, tmp_path):
    paths = build_report([tuned_run], tmp_path / "out")
    md, html = paths["markdown"].read_text(), paths["html"].read_text()
    assert md.index("### Protocol") < md.index("### Claims") < md.index("#### C1")
    assert html.index('id="g1-protocol"') < html.index('id="g1-claims"')
    for text in (
        "train 8,000 / validation 2,000 / test 2,000",
        "budget per loss",
        "4 trials",
        "asha (grace 1 epoch(s))",
        "random, seed 0",
        "loguniform",
        "Search space",
    ):
        assert text in md, text
    assert 'id="g1-fig-tuning"' in html and 'id="g1-fig-sensitivity"' in html


def test_chosen_configuration_and_trials_that_beat_the_default(tuned_run):
    model = build_model([tuned_run])
    table = next(
        b for b in blocks(model, "protocol") if isinstance(b, Table) and b.id.endswith("chosen")
    )
    rows = {r[0].text: [c.text for c in r] for r in table.rows}
    cols = table.columns
    hal = rows["hal B=32 d=16"]
    assert hal[cols.index("validation %")] == "80.00"
    assert hal[cols.index("default's %")] == "75.00"
    assert hal[cols.index("beat the default")] == "2 of 3"  # 0.80 and 0.76 beat 0.75
    assert hal[cols.index("loss.scale")] == "8"  # trial 1: scale 8.0
    assert rows["al B=32 d=16"][cols.index("beat the default")] == "1 of 3"
    assert rows["nca B=32 d=16"][cols.index("loss.scale")] == "—"


def test_c1_picks_by_validation_not_test_when_tuned(tuned_run):
    model = build_model([tuned_run])
    c1 = next(b for b in blocks(model, "claims") if isinstance(b, Table) and b.id == "g1-c1")
    row = next(r for r in c1.rows if r[0].text.startswith("fashion_mnist"))
    # B=128 has the higher test accuracy; validation picks B=32 for both sides.
    assert row[1].text.startswith("hal B=32 d=16") and row[2].text.startswith("nca B=32 d=16")
    assert "validation score" in c1.notes[0]
    assert not any(
        isinstance(b, Paragraph) and "Exploratory" in b.text for b in blocks(model, "claims")
    )


def test_claims_use_final_rows_only(tmp_path):
    _, finals, epochs = tuned_rows()
    # A grid-phase row with a perfect accuracy must not reach the claims or the tables.
    stray = {**trial("hal", 32, 16, 7, 1.0, suite_hash="t1"), "phase": "grid"}
    run = write_tuned_run(tmp_path / "t", trials=[*finals, stray], epochs=epochs)
    view = build_view(load_groups([run])[0])
    assert view.final_phase and view.tuned and view.select_by == "val_score"
    assert all(r["phase"] == "final" for r in view.ok) and len(view.ok) == len(finals)


def test_untuned_report_says_its_verdicts_are_exploratory_above_them(make_run):
    model = build_model([make_run(*training_rows())])
    claims = blocks(model, "claims")
    first_verdict = next(i for i, b in enumerate(claims) if isinstance(b, Verdict))
    notes = [
        i
        for i, b in enumerate(claims)
        if isinstance(b, Paragraph) and "hand-set" in b.text and "test split" in b.text
    ]
    assert notes and notes[0] < first_verdict
    c1 = next(b for b in claims if isinstance(b, Table) and b.id == "g1-c1")
    assert "test accuracy" in c1.notes[0]


def test_setup_and_short_budget_sentence_before_any_verdict(make_run):
    suite = {
        "name": "small",
        "description": "a tiny suite",
        "dataset": {"name": "fashion-mnist", "train_size": 6000, "test_size": 2000},
        "model": {"backbone": "small_cnn"},
        "losses": [{"name": "hal"}, {"name": "nca"}],
        "grid": {"batch_size": [32, 128], "embedding_dim": [16], "seed": [0, 1, 2]},
        "train": {"epochs": 3, "optimizer": "adamw", "lr": 0.002, "max_steps_per_epoch": 100},
        "eval": {"ks": [1]},
    }
    model = build_model([make_run(*training_rows(), suite=suite)])
    items = dict(blocks(model, "protocol")[0].items)
    assert items["description"] == "a tiny suite" and items["model"] == "small_cnn"
    assert items["data (rows)"] == "train 6,000 / test 2,000"
    # 6000 // 32 = 187 capped at 100; 6000 // 128 = 46; trial rows say 3 epochs
    assert items["optimizer steps per trial"] == (
        "B=32: 100 per epoch, 300 in all; B=128: 46 per epoch, 138 in all"
    )
    assert "adamw" in items["optimizer"] and "lr 0.002" in items["optimizer"]
    claims = blocks(model, "claims")
    short = [i for i, b in enumerate(claims) if isinstance(b, Paragraph) and "Short" in b.text]
    assert short and short[0] < min(i for i, b in enumerate(claims) if isinstance(b, Verdict))
    assert "at most 300 optimizer steps" in claims[short[0]].text


def test_sizes_come_from_a_normalized_suite_json_too(make_run):
    # suite.json (the runner's normalized suite) has `datasets: [...]`, not `dataset:`.
    suite = {
        "name": "norm",
        "datasets": [{"name": "fashion-mnist", "train_size": 6000, "test_size": None}],
        "losses": [{"name": "hal"}, {"name": "nca"}],
        "grid": {"batch_size": [32, 128], "embedding_dim": [16], "seed": [0, 1, 2]},
        "train": {"epochs": 3},
        "eval": {"ks": [1]},
    }
    model = build_model([make_run(*training_rows(), suite=suite)])
    items = dict(blocks(model, "protocol")[0].items)
    assert items["data (rows)"] == "train 6,000 / test full test split"
    assert items["optimizer steps per trial"].startswith("B=32: 187 per epoch")


def test_long_training_has_no_short_budget_sentence(make_run):
    suite = {
        "name": "big",
        "dataset": {"name": "x", "train_size": 60000},
        "train": {"epochs": 3},
        "eval": {"ks": [1]},
    }
    model = build_model([make_run(*training_rows(), suite=suite)])
    assert not any(isinstance(b, Paragraph) and "Short" in b.text for b in blocks(model, "claims"))


def test_all_failed_report_says_so_and_lists_errors_and_ks(make_run, tmp_path):
    rows = [
        trial(
            loss,
            64,
            16,
            s,
            None,
            dataset="fashion-mnist",
            status="error",
            error="RuntimeError: mat1 and mat2 shapes cannot be multiplied\ntraceback",
        )
        for loss in ("hal", "nca")
        for s in range(2)
    ]
    run = make_run(rows)
    md = build_report([run], tmp_path / "o")["markdown"].read_text()
    assert "Every trial failed" in md
    assert "fashion-mnist: all 4 trial(s) failed (error)" in md
    assert "RuntimeError: mat1 and mat2 shapes cannot be multiplied" in md
    assert "traceback" not in md  # the first line only
    assert "| k (k-NN) | 1, 5 (none evaluated) |" in md


def test_tuning_figures_curve_is_best_so_far(tuned_run):
    model = build_model([tuned_run])
    fig = next(
        b for b in blocks(model, "protocol") if isinstance(b, Figure) and b.id.endswith("tuning")
    ).figure
    hal = next(t for t in fig.data if t.name == "hal B=32 d=16")
    assert list(hal.y) == pytest.approx([75.0, 80.0, 80.0, 80.0])
    sens = next(
        b
        for b in blocks(model, "protocol")
        if isinstance(b, Figure) and b.id.endswith("sensitivity")
    ).figure
    assert sens.layout.xaxis.title.text == "loss.scale" and sens.layout.xaxis.type != "log"
    assert sens.layout.xaxis2.title.text == "lr" and sens.layout.xaxis2.type == "log"


def test_tuning_parquet_is_checked_against_its_schema(tmp_path):
    tuning, _, _ = tuned_rows()
    run = write_tuned_run(tmp_path / "t")
    pl.DataFrame(
        {
            "trial_id": ["x"],
            "group": ["g"],
            "loss": ["hal"],
            "trial_index": ["zero"],
            "status": ["ok"],
        }
    ).write_parquet(run / "tuning.parquet")
    from halbench.errors import UserError

    with pytest.raises(UserError, match="tuning.parquet: column trial_index"):
        load_groups([run])
    assert json.loads((run / "suite.json").read_text())["tune"] == TUNED_SUITE["tune"]


def test_validation_scores_come_from_tuning_parquet_when_rows_lack_them(tmp_path):
    _, finals, epochs = tuned_rows()
    bare = [{**r, "val_score": None} for r in finals]
    run = write_tuned_run(tmp_path / "t", trials=bare, epochs=epochs)
    view = build_view(load_groups([run])[0])
    assert view.select_by == "val_score"
    hal32 = [r for r in view.ok if r["loss"] == "hal" and r["batch_size"] == 32]
    assert {r["val_score"] for r in hal32} == {0.80}
    c1 = next(
        b for b in blocks(build_model([run]), "claims") if isinstance(b, Table) and b.id == "g1-c1"
    )
    row = next(r for r in c1.rows if r[0].text.startswith("fashion_mnist"))
    assert row[1].text.startswith("hal B=32 d=16")
