"""The Tune trainable's reporting: what a trial sends to the driver, and how often."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

import pytest
from ray import tune

from halbench.probes import placement
from halbench.run import ray_tune as hb_tune
from halbench.suite import Suite

EPOCHS = 50
# A tuned suite (its trials may be grid, tune or final ones); not imported from test_protocol.py,
# which pytest imports under its own module name (a second import would register twice).
TUNED = {
    "name": "treport",
    "dataset": {"name": "synthetic"},
    "losses": [{"name": "hal"}],
    "grid": {"batch_size": [8], "embedding_dim": [4], "seed": [0]},
    "train": {"epochs": EPOCHS},
    "tune": {"budget": 2, "epochs": EPOCHS, "space": {"lr": {"loguniform": [1e-5, 1e-1]}}},
    "final": {"seeds": [0], "epochs": EPOCHS},
}


def reports(monkeypatch, phase: str, epoch_s: float) -> list[dict[str, Any]]:
    """What halbench_trial hands tune.report for a trial of EPOCHS epochs of `epoch_s` each."""
    clock = [0.0]
    sent: list[dict[str, Any]] = []
    monkeypatch.setattr(hb_tune, "_clock", lambda: clock[0])
    monkeypatch.setattr(tune, "report", sent.append)
    monkeypatch.setattr(placement, "record", lambda row, started: None)  # no Ray here

    def trial_fn(suite: Suite, spec: Any, *, report: Any) -> SimpleNamespace:
        rows = []
        for epoch in range(1, EPOCHS + 1):
            clock[0] += epoch_s
            rows.append({"epoch": epoch, "train_loss": 1 / epoch, "knn_acc_10": epoch / 100})
            report(rows[-1])
        return SimpleNamespace(row={"trial_id": spec.trial_id, "status": "ok"}, epochs=rows)

    suite = Suite.model_validate(TUNED)
    spec = suite.trials()[0].model_copy(update={"phase": phase})
    hb_tune.halbench_trial({"spec": spec.model_dump(mode="json")}, suite.model_dump(), trial_fn)
    return sent


@pytest.mark.parametrize("phase", ["grid", "final"])
def test_short_epochs_reach_the_driver_at_most_every_report_interval(monkeypatch, phase) -> None:
    sent = reports(monkeypatch, phase, epoch_s=0.1)  # 5 s of epochs: the 1st, 21st and 41st
    epochs = [r["epoch"] for r in sent if "epoch" in r]
    assert epochs == [1, 21, 41]
    # and every epoch row still arrives, with the trial's result
    final = json.loads(sent[-1][hb_tune.FINAL_KEY])
    assert [r["epoch"] for r in final["epochs"]] == list(range(1, EPOCHS + 1))


def test_long_epochs_are_each_reported(monkeypatch) -> None:
    sent = reports(monkeypatch, "grid", epoch_s=hb_tune.REPORT_EVERY_S)
    assert [r["epoch"] for r in sent if "epoch" in r] == list(range(1, EPOCHS + 1))


def test_a_tuning_trial_reports_every_epoch_with_its_score(monkeypatch) -> None:
    sent = reports(monkeypatch, "tune", epoch_s=0.01)  # ASHA and the searcher need each one
    epochs = [r for r in sent if "epoch" in r]
    assert [r["epoch"] for r in epochs] == list(range(1, EPOCHS + 1))
    assert [r[hb_tune.VAL_KEY] for r in epochs] == [e / 100 for e in range(1, EPOCHS + 1)]
    assert sent[-1][hb_tune.VAL_KEY] == EPOCHS / 100


def test_saved_embeddings_travel_with_the_final_result_and_leave_it_at_the_driver(
    monkeypatch,
) -> None:
    """eval.save_embeddings: the trial's parquet bytes go in its final report; the callback
    hands them to the sink and takes them out of the result, which Tune then keeps in memory
    for every trial (its last_result) and in its experiment state."""
    sent: list[dict[str, Any]] = []
    monkeypatch.setattr(tune, "report", sent.append)
    monkeypatch.setattr(placement, "record", lambda row, started: None)

    def trial_fn(suite: Suite, spec: Any, *, report: Any) -> SimpleNamespace:
        row = {"trial_id": spec.trial_id, "status": "ok"}
        return SimpleNamespace(row=row, epochs=[], embeddings=b"PAR1...")

    suite = Suite.model_validate(TUNED)
    spec = suite.trials()[0]
    hb_tune.halbench_trial({"spec": spec.model_dump(mode="json")}, suite.model_dump(), trial_fn)
    result = dict(sent[-1])
    assert result[hb_tune.EMBEDDINGS_KEY] == b"PAR1..."

    got: list[tuple[str, bytes | None]] = []
    sink = SimpleNamespace(
        progress=None, final=lambda task_id, row, epochs, running, emb: got.append((task_id, emb))
    )
    callback = hb_tune.task_callback(sink, hb_tune.Interrupt(None))  # type: ignore[arg-type]
    trial = SimpleNamespace(trial_id="t", config={"spec": {"trial_id": spec.trial_id}}, status="")
    callback.on_trial_result(0, [trial], trial, result)
    assert got == [(spec.trial_id, b"PAR1...")]
    assert hb_tune.EMBEDDINGS_KEY not in result and hb_tune.FINAL_KEY in result
