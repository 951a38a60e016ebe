"""The report view: built once per suite group, one k policy, one convergence computation,
the claim file's thresholds, and a report package that reads only the run directory."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import polars as pl
import pytest

from halbench.report import build, build_model
from halbench.report.claim_tables import convergence
from halbench.report.claims import load_claims
from halbench.report.load import load_groups
from halbench.report.model import Figure
from halbench.report.views import build_view

from .fixtures import SUITE, epochs_of, trial
from .test_report import training_rows


def test_the_view_is_built_once_per_group(make_run, monkeypatch):
    calls = []

    def counting(group):
        calls.append(group.suite_hash)
        return build_view(group)

    monkeypatch.setattr(build, "build_view", counting)
    trials, epochs = training_rows(dataset="cifar10")
    a = make_run(*training_rows())
    b = make_run([{**t, "suite_hash": "other"} for t in trials], epochs, suite_hash="other")
    to_dicts = pl.DataFrame.to_dicts
    n_dicts = []
    monkeypatch.setattr(
        pl.DataFrame, "to_dicts", lambda df: n_dicts.append(df.height) or to_dicts(df)
    )
    build_model([a, b])
    assert calls == ["h1", "other"]
    # Per group: ok and failed trials, ok epochs, profile, tuning (the view) and the header's
    # status counts.
    assert len(n_dicts) == 12


def test_view_order_colours_and_primary_k(make_run):
    view = build_view(load_groups([make_run(*training_rows())])[0])
    assert view.losses == ["nca", "snnl", "al", "hal"]  # the suite's order
    assert view.order({"hal", "nca"}) == ["nca", "hal"]
    assert len(set(view.colors.values())) == 4
    assert (view.ks, view.k) == ([1, 5], 1)  # SUITE evaluates k = 1 and 5
    assert view.k_for(5) == 5 and view.k_for(10) == 1  # 10 not evaluated: the policy's k
    assert len(view.ok) == 24 and view.cost_source == "trials"


def test_c3_never_mixes_trial_columns_with_epoch_rows(make_run):
    """A trial without epoch rows has no convergence value, whatever its epochs_to_90 says."""
    trials, epochs = [], []
    for loss, speed in (("hal", 2), ("al", 4)):
        for s in range(3):
            acc = 0.85 if loss == "hal" else 0.8
            row = trial(loss, 64, 16, s, acc, epochs_to_90=1 if loss == "al" else 9)
            trials.append(row)
            if loss == "hal":
                epochs += epochs_of(row, [acc * min(1.0, e / speed) for e in range(1, 7)])
    claim = {c.id: c for c in load_claims()}["C3"]
    result = convergence(build_view(load_groups([make_run(trials, epochs)])[0]), claim, "g")
    row = result.tables[0].rows[0]
    # "hal / al" epochs to 90%: AL has no epoch rows, so no value
    assert row[1].text.startswith("2.00") and row[1].text.endswith("/ —")
    assert result.verdict == "no data"  # higher, but AL's speed is unknown


def test_thresholds_come_from_the_claim_file(make_run, tmp_path):
    claims = tmp_path / "claims.yaml"
    claims.write_text(
        "claims:\n"
        "  - {id: C2, title: t, statement: s, kind: cost_ratio, subject: hal,\n"
        "     competitors: [nca], threshold: 0.25}\n"
    )
    model = build_model([make_run(*training_rows())], claims)
    figures = {b.id: b for s in model.sections for b in s.blocks if isinstance(b, Figure)}
    ratio = figures["g1-fig-ratio"]
    assert "under 25% of NCA" in ratio.title
    assert [shape.y0 for shape in ratio.figure.layout.shapes] == [0.25, 0.25]
    verdicts = [b for s in model.sections for b in s.blocks if type(b).__name__ == "Verdict"]
    # HAL / NCA FLOPs = 0.05 < 0.25; no trial recorded its neighbours: no call or step times
    assert [(v.claim_id, v.verdict) for v in verdicts] == [
        ("C2 FLOPs", "supported"),
        ("C2 call time", "no data"),
        ("C2 training step", "no data"),
    ]


@pytest.mark.parametrize(
    ("text", "match"),
    [
        (
            "claims:\n  - {id: X, title: t, statement: s, kind: cost_ratio, subject: hal,"
            " colour: red}\n",
            r"claims\[0\]\.colour",
        ),
        (
            "claims:\n  - {id: X, title: t, statement: s, kind: cost_ratio, subject: hal,"
            " threshold: .inf}\n",
            r"claims\[0\]\.threshold",
        ),
        (
            "claims:\n  - {id: X, title: t, statement: s, kind: convergence, subject: hal,"
            " fraction: 2}\n",
            r"claims\[0\]\.fraction",
        ),
        (
            "claims:\n  - {id: X, title: t, kind: convergence, subject: hal}\n",
            r"claims\[0\]\.statement",
        ),
        (
            "claims:\n"
            + "  - {id: X, title: t, statement: s, kind: convergence, subject: h}\n" * 2,
            "each id may appear once",
        ),
    ],
)
def test_a_malformed_claim_names_its_field(tmp_path, text, match):
    from halbench.errors import UserError

    path = tmp_path / "claims.yaml"
    path.write_text(text)
    with pytest.raises(UserError, match=match):
        load_claims(path)


def test_the_report_package_reads_only_the_run_directory():
    """report/ imports nothing above results/: the run, suite, trial and cli modules (each named
    one exists, so that a rename makes this test fail instead of passing vacuously)."""
    above = ["halbench.run", "halbench.run.runner", "halbench.suite", "halbench.trial"]
    above += ["halbench.cli"]
    assert all(importlib.util.find_spec(name) for name in above)
    code = (
        "import sys, halbench.report.build, halbench.report.compare, halbench.report.commands\n"
        f"above = {above!r}\n"
        "bad = [m for m in sys.modules if any(m == a or m.startswith(a + '.') for a in above)]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_header_lists_datasets_of_the_rows_and_of_a_normalized_suite(make_run):
    from halbench.report.tables import header

    row = trial("hal", 64, 16, 0, 0.9, dataset="cifar10")
    singular = make_run([row], suite={**SUITE, "dataset": {"name": "svhn"}})
    listed = make_run([row], suite={**SUITE, "datasets": [{"name": "svhn"}]})
    items = [dict(header(build_view(load_groups([r])[0])).items) for r in (singular, listed)]
    # A raw `dataset:` is not re-interpreted (no alias logic here): the rows name the datasets.
    assert [i["datasets"] for i in items] == ["cifar10", "cifar10, svhn"]
