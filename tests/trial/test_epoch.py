"""The epoch loop: warm-up off the clock, no host syncs in a step, the convergence curve."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import torch

from halbench import losses, results
from halbench.probes import TrialProbe
from halbench.probes.torch_compat import HostSyncCounter, optimizer_host_tensors
from halbench.suite import Suite, parse_suite
from halbench.trial import curve as curve_mod
from halbench.trial import epoch
from halbench.trial import trainer as trial

SYNTHETIC = {
    "name": "synthetic",
    "train_size": 512,
    "test_size": 256,
    "params": {"num_classes": 10, "image_size": 16, "channels": 1, "noise": 2.0},
}


def make_suite(loss: str = "hal", **overrides: Any) -> Suite:
    doc: dict[str, Any] = {
        "name": "t",
        "dataset": SYNTHETIC,
        "model": {"backbone": "small_cnn", "params": {"width": 8}},
        "losses": [{"name": loss}],
        "grid": {"batch_size": [32], "embedding_dim": [16], "seed": [0]},
        "train": {"epochs": 2, "optimizer": "adamw", "lr": 3e-3, "device": "cpu"},
        "eval": {"ks": [1, 5]},
        "probes": {"enabled": False},
    }
    for key, value in overrides.items():
        doc[key] = {**doc[key], **value}
    return parse_suite(doc, Path("test.yaml"))


def run(suite: Suite) -> trial.TrialResult:
    result = trial.run_trial(suite, suite.trials()[0])
    assert result.row["status"] == "ok", result.row["error"]
    return result


def test_warmup_steps_are_training_steps_off_the_clock(monkeypatch) -> None:  # noqa: ANN001
    suite = make_suite()
    warm = run(suite)
    monkeypatch.setattr(epoch, "WARMUP_STEPS", 0)
    cold = run(suite)
    # The same updates in the same order: the warm-up changes only the clock.
    assert warm.row["final_train_loss"] == cold.row["final_train_loss"]
    assert warm.row["knn_acc_1"] == cold.row["knn_acc_1"]
    assert warm.row["curve_acc"] == cold.row["curve_acc"]
    assert warm.row["warmup_s"] > 0 and cold.row["warmup_s"] == 0


def test_a_slow_first_step_is_warm_up_not_epoch_time(monkeypatch) -> None:  # noqa: ANN001
    """The first step sleeps 1 s (as a GPU's first step initializes): warmup_s has it and
    epoch 1's time and train_time_s do not."""
    calls = []
    real = TrialProbe.loss_call

    def slow_first(self, *args):  # noqa: ANN001, ANN002, ANN202
        calls.append(1)
        if len(calls) == 1:
            time.sleep(1.0)
        return real(self, *args)

    monkeypatch.setattr(TrialProbe, "loss_call", slow_first)
    result = run(make_suite(train={"epochs": 1}))
    assert result.row["warmup_s"] >= 1.0
    assert result.epochs[0]["epoch_time_s"] < 1.0
    assert result.row["train_time_s"] == result.epochs[0]["epoch_time_s"] < 1.0


def test_warmup_leaves_epoch_one_a_timed_step() -> None:
    assert [epoch.warmup_steps(s) for s in (1, 2, 3, 4, 100)] == [0, 1, 2, 3, 3]


# Every built-in loss: the trainer's losses read no device value per call
# (KNNLoss.skip_host_reads), so a step syncs only at probe steps.
@pytest.mark.parametrize("loss", sorted(losses.LOSSES.names()))
def test_host_syncs_per_step_within_the_probe_intervals_share(loss: str) -> None:
    suite = make_suite(loss, probes={"enabled": False, "every_n_steps": 4})
    spec = suite.trials()[0]
    run_ = trial.setup_run(suite, spec, trial.base_row(suite, spec))
    probe = TrialProbe(every_n_steps=4, enabled=False)
    per_step = epoch.host_syncs_per_step(run_, spec.batch_size, probe)
    assert per_step <= 1 / 4, per_step


def test_the_sync_counter_sees_item_masks_and_device_copies() -> None:
    x = torch.arange(6.0)
    opt = torch.optim.AdamW([torch.nn.Parameter(torch.ones(2))])
    opt.param_groups[0]["params"][0].grad = torch.ones(2)
    opt.step()
    with HostSyncCounter(optimizer_host_tensors(opt)) as counter:
        x.sum().item()
        x[x > 2]
        torch.nonzero(x)
        opt.step()  # AdamW's step counter lives on the host: no device wait
        x + 1
    assert dict(counter.counts) == {"_local_scalar_dense": 1, "index": 1, "nonzero": 1}


def test_the_curve_starts_at_zero_and_samples_every_quarter_epoch() -> None:
    suite = make_suite(eval={"curve_subsample": 100, "curve_reference": 200})
    row = run(suite).row
    steps = row["curve_steps"]
    per_epoch = row["steps_per_epoch"]  # 16
    assert steps[0] == 0 and steps[-1] == 2 * per_epoch
    assert all(b - a <= per_epoch / 4 for a, b in zip(steps, steps[1:], strict=False))
    assert len(row["curve_acc"]) == len(steps)
    assert all(0.0 <= a <= 1.0 for a in row["curve_acc"])
    assert row["curve_k"] == 1 and row["curve_subsample"] == 100
    # the trained model beats the untrained one on the fixed subsample
    assert row["curve_acc"][-1] > row["curve_acc"][0]


def test_the_curve_changes_nothing_of_the_training() -> None:
    on = run(make_suite()).row
    off = run(make_suite(eval={"curve_subsample": 0})).row
    assert off["curve_steps"] is None and on["curve_steps"]
    for key in ("final_train_loss", "knn_acc_1", "knn_acc_5", "map_at_r"):
        assert on[key] == off[key], key


def test_the_curve_subsets_are_fixed_and_shared_by_trials() -> None:
    a = curve_mod.fixed_rows(1000, 100, 0)
    assert torch.equal(a, curve_mod.fixed_rows(1000, 100, 0))
    assert len(a.unique()) == 100 and bool((a[1:] > a[:-1]).all())
    assert torch.equal(curve_mod.fixed_rows(50, 100, 0), torch.arange(50))
    assert curve_mod.curve_interval(78, 0.25) == 19 and curve_mod.curve_interval(2, 0.25) == 1


def test_new_columns_survive_a_parquet_frame(tmp_path) -> None:  # noqa: ANN001
    row = run(make_suite(train={"epochs": 1})).row
    frame = results.frame([row], results.TRIAL_SCHEMA)
    frame.write_parquet(tmp_path / "t.parquet")
    back = pl.read_parquet(tmp_path / "t.parquet")
    assert back.schema["curve_steps"] == pl.List(pl.Int64)
    assert back["curve_steps"][0].to_list() == row["curve_steps"]
    assert back["warmup_s"][0] == row["warmup_s"]


def test_curve_keys_at_their_defaults_keep_the_suite_hash() -> None:
    plain = make_suite()
    explicit = make_suite(eval={"curve_every": 0.25, "curve_subsample": 1000})
    assert plain.hash() == explicit.hash()
    assert make_suite(eval={"curve_subsample": 10}).hash() != plain.hash()
    assert "curve_every" not in plain.science()["eval"]
