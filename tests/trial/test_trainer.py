"""The trainer: learning, seeding, statuses of failed trials, schedules and convergence."""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Any

import pytest
import torch
from fixtures_data import write_fake_cifar10

from halbench import results
from halbench.suite import Suite, parse_suite
from halbench.trial import evaluation
from halbench.trial import trainer as trial
from halbench.trial.epoch import WARMUP_STEPS

# 10 classes with noise 2.0: an untrained small CNN's 10-NN accuracy is ~50%, so a high
# accuracy after training means the trainer trained.
SYNTHETIC = {
    "name": "synthetic",
    "train_size": 512,
    "test_size": 256,
    "params": {"num_classes": 10, "image_size": 16, "channels": 1, "noise": 2.0},
}


def make_suite(**overrides: Any) -> Suite:
    doc: dict[str, Any] = {
        "name": "t",
        "dataset": SYNTHETIC,
        "model": {"backbone": "small_cnn", "params": {"width": 8}},
        "losses": [{"name": "hal"}, {"name": "nca"}],
        "grid": {"batch_size": [32], "embedding_dim": [16], "seed": [0]},
        "train": {"epochs": 3, "optimizer": "adamw", "lr": 3e-3, "device": "cpu"},
        "eval": {"ks": [1, 5, 10]},
        "probes": {"enabled": False},
    }
    for key, value in overrides.items():
        # Recipe sections are patched; anything else (e.g. the dataset) is replaced.
        doc[key] = {**doc[key], **value} if key in ("train", "eval", "grid") else value
    return parse_suite(doc, Path("test.yaml"))


@pytest.mark.parametrize("loss", ["hal", "nca"])
def test_trial_learns_and_fills_its_rows(loss: str) -> None:
    suite = make_suite()
    spec = next(s for s in suite.trials() if s.loss.name == loss)
    reported: list[dict] = []
    result = trial.run_trial(suite, spec, report=reported.append)
    row = result.row
    assert row["status"] == "ok", row["error"]
    assert set(results.TRIAL_SCHEMA) <= set(row)
    assert row["knn_acc_10"] >= 0.85 and row["knn_acc_20"] is None  # 20 not in eval.ks
    assert row["metric"] == ("cosine" if loss == "hal" else "l2")
    assert (row["anchor_acc"] is not None) == (loss == "hal")
    assert row["epochs_done"] == 3 and len(result.epochs) == 3 and reported == result.epochs
    assert row["p_at_1"] == row["knn_acc_1"] and 0 < row["map_at_r"] <= 1
    assert row["suite_hash"] == suite.hash() and row["device"] == "cpu"
    # What the trial trained and was scored on, for the report's setup table.
    n_train, n_test = suite.datasets[0].train_size, suite.datasets[0].test_size
    assert (row["train_rows"], row["test_rows"]) == (n_train, n_test)
    assert row["validation_rows"] is None and row["steps_per_epoch"] == n_train // spec.batch_size
    for epoch in result.epochs:
        assert set(results.EPOCH_SCHEMA) <= set(epoch)
    losses = [e["train_loss"] for e in result.epochs]
    assert losses[-1] < losses[0]
    assert row["final_train_loss"] == losses[-1]
    assert row["train_time_s"] == pytest.approx(sum(e["epoch_time_s"] for e in result.epochs))
    # ks [1, 5, 10]: epochs are ranked at the primary k, the smallest (results.primary_k).
    assert row["best_knn_acc"] == max(e["knn_acc_1"] for e in result.epochs)
    assert result.epochs[-1]["lr"] == pytest.approx(0.0, abs=1e-9)  # cosine to zero
    # The rows go through the parquet schema.
    assert results.frame([row], results.TRIAL_SCHEMA).height == 1


def test_same_seed_same_trial_other_seed_differs() -> None:
    suite = make_suite(train={"epochs": 1}, grid={"seed": [0, 1]})
    hal = [s for s in suite.trials() if s.loss.name == "hal"]
    a, b, c = (trial.run_trial(suite, s) for s in (hal[0], hal[0], hal[1]))
    assert a.epochs[0]["train_loss"] == b.epochs[0]["train_loss"]
    assert a.row["knn_acc_1"] == b.row["knn_acc_1"]
    assert a.epochs[0]["train_loss"] != c.epochs[0]["train_loss"]


def test_fake_cifar10_trial_with_sgd_and_augmentation(tmp_path: Path) -> None:
    write_fake_cifar10(tmp_path, per_batch=20, n_test=30)
    suite = make_suite(
        dataset={"name": "cifar10", "root": str(tmp_path)},
        train={"epochs": 2, "optimizer": "sgd", "lr": 0.05, "warmup_epochs": 1, "augment": True},
        eval={"ks": [1, 5], "metric": "l2"},
    )
    result = trial.run_trial(suite, suite.trials()[0])
    assert result.row["status"] == "ok", result.row["error"]
    assert result.row["num_classes"] == 10 and result.row["metric"] == "l2"
    assert result.row["best_knn_acc"] == max(e["knn_acc_1"] for e in result.epochs)


class CountingLoss(torch.nn.Module):
    """Mean squared norm of the embeddings; NaN from call `nan_at` on; counts calls."""

    metric = "l2"
    has_anchors = False

    def __init__(self, nan_at: int | None = None) -> None:
        super().__init__()
        self.calls, self.nan_at = 0, nan_at

    def forward(self, emb: torch.Tensor, labels: torch.Tensor, indices: torch.Tensor):
        self.calls += 1
        loss = emb.pow(2).mean()
        return loss * math.nan if self.nan_at is not None and self.calls >= self.nan_at else loss

    def param_groups(self, lr: float) -> list:
        return []


def _patch_loss(monkeypatch: pytest.MonkeyPatch, loss: CountingLoss) -> None:
    monkeypatch.setattr(trial.losses, "build", lambda *a, **kw: loss)


def test_nan_loss_stops_the_trial_as_diverged(monkeypatch: pytest.MonkeyPatch) -> None:
    loss = CountingLoss(nan_at=6)
    _patch_loss(monkeypatch, loss)
    suite = make_suite(probes={"enabled": False, "every_n_steps": 4})
    result = trial.run_trial(suite, suite.trials()[0])
    assert result.row["status"] == "diverged"
    assert "NaN" in result.row["error"] and result.row["epochs_done"] == 0
    # Finiteness is read at the warm-up's end (step 3) and on the probe schedule after it:
    # steps 5, 9, ... NaN from step 6 on: stopped at step 9, in epoch 1 of 3.
    assert WARMUP_STEPS == 3
    assert loss.calls == 9


def test_max_steps_per_epoch_caps_the_steps(monkeypatch: pytest.MonkeyPatch) -> None:
    loss = CountingLoss()
    _patch_loss(monkeypatch, loss)
    suite = make_suite(train={"epochs": 2, "max_steps_per_epoch": 3})
    result = trial.run_trial(suite, suite.trials()[0])
    assert result.row["status"] == "ok" and loss.calls == 6


def test_out_of_memory_is_a_status(monkeypatch: pytest.MonkeyPatch) -> None:
    def oom(*args: object, **kwargs: object) -> None:
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(trial.models, "build", oom)
    suite = make_suite()
    row = trial.run_trial(suite, suite.trials()[0]).row
    assert row["status"] == "oom" and row["error"].startswith("OutOfMemoryError: CUDA out of")


def test_other_failures_are_error_rows(tmp_path: Path) -> None:
    suite = make_suite(dataset={"name": "cifar10", "root": str(tmp_path)})
    row = trial.run_trial(suite, suite.trials()[0]).row
    assert row["status"] == "error"
    assert row["error"].startswith("UserError: dataset 'cifar10' not found")
    assert row["loss"] == "hal" and row["epochs_done"] == 0


def test_interrupts_propagate(monkeypatch: pytest.MonkeyPatch) -> None:
    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(trial.data, "load", interrupted)
    suite = make_suite()
    with pytest.raises(KeyboardInterrupt):
        trial.run_trial(suite, suite.trials()[0])


def test_deterministic_setting_is_restored() -> None:
    suite = make_suite(train={"epochs": 1, "deterministic": True, "max_steps_per_epoch": 1})
    before = torch.are_deterministic_algorithms_enabled()
    assert trial.run_trial(suite, suite.trials()[0]).row["status"] == "ok"
    assert torch.are_deterministic_algorithms_enabled() == before


def test_convergence_columns() -> None:
    epochs = [
        {"epoch": i + 1, "knn_acc_10": acc, "elapsed_s": 10.0 * (i + 1)}
        for i, acc in enumerate([0.5, 0.86, 0.92, 0.95, 0.94])
    ]
    out = trial.convergence(epochs, 10)
    # Final 0.94: 90% of it is 0.846 (first reached at epoch 2), 95% is 0.893 (epoch 3).
    assert out == {
        "best_epoch": 4,
        "best_knn_acc": 0.95,
        "epochs_to_90": 2,
        "seconds_to_90": 20.0,
        "epochs_to_95": 3,
        "seconds_to_95": 30.0,
    }


def test_select_k() -> None:
    # One k policy with the report (results.primary_k): the smallest k evaluated.
    assert trial.select_k([1, 5, 10, 20]) == 1
    assert trial.select_k([10, 5]) == 5


def test_probes_fill_their_columns_without_changing_training() -> None:
    suite_off = make_suite(train={"epochs": 1, "max_steps_per_epoch": 6})
    suite_on = make_suite(
        train={"epochs": 1, "max_steps_per_epoch": 6},
        probes={"enabled": True, "every_n_steps": 2, "repeats": 1},
    )
    off = trial.run_trial(suite_off, suite_off.trials()[0])
    on = trial.run_trial(suite_on, suite_on.trials()[0])
    assert on.row["status"] == "ok", on.row["error"]
    assert on.row["loss_call_ms"] > 0 and on.row["loss_flops_fwd"] > 0
    assert off.row["loss_call_ms"] is None
    assert on.epochs[0]["train_loss"] == off.epochs[0]["train_loss"]


def test_every_n_epochs_evaluates_every_nth_and_the_last_epoch() -> None:
    suite = make_suite(train={"epochs": 5}, eval={"every_n_epochs": 2})
    result = trial.run_trial(suite, suite.trials()[0])
    assert result.row["status"] == "ok", result.row["error"]
    evaluated = [e["epoch"] for e in result.epochs if e["knn_acc_1"] is not None]
    assert evaluated == [2, 4, 5]
    skipped = [e for e in result.epochs if e["epoch"] in (1, 3)]
    assert all(e["knn_acc_10"] is None and e["eval_time_s"] is None for e in skipped)
    assert result.row["eval_every"] == 2
    assert result.row["epochs_to_90"] in (2, 4, 5) and result.row["knn_acc_1"] is not None
    assert [evaluation.evaluates(e, 5, 2) for e in range(1, 6)] == [False, True, False, True, True]


def test_embed_does_not_depend_on_the_batch_size_and_records_no_graph() -> None:
    suite = make_suite()
    spec = suite.trials()[0]
    run = trial.setup_run(suite, spec, trial.base_row(suite, spec))
    small = evaluation.embed(run.model, run.splits, "test", 7)
    auto = evaluation.embed(run.model, run.splits, "test", "auto")
    assert small.shape == (256, 16) and not small.requires_grad
    assert torch.allclose(small, auto, atol=1e-5)
    assert (
        evaluation.eval_batch_size("auto", torch.device("cpu")) == evaluation.AUTO_EVAL_BATCH["cpu"]
    )


def test_embed_halves_the_batch_on_cuda_out_of_memory(monkeypatch) -> None:  # noqa: ANN001
    suite = make_suite()
    spec = suite.trials()[0]
    run = trial.setup_run(suite, spec, trial.base_row(suite, spec))
    model, sizes = run.model, []
    real = run.splits.batches

    def batches(split, batch_size, **kw):  # noqa: ANN001, ANN003, ANN202
        sizes.append(batch_size)
        if batch_size > 64:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory")
        return real(split, batch_size, **kw)

    monkeypatch.setattr(run.splits, "batches", batches)
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: None)
    out = evaluation.embed(model, run.splits, "test", 256)
    assert out.shape[0] == 256 and sizes == [256, 128, 64]
    evaluation.embed(model, run.splits, "train", 256)
    assert sizes[-1] == 64  # the size that fitted is kept for the model's next calls


# ----- eval.save_embeddings -------------------------------------------------------------------


def test_a_finished_trial_keeps_its_test_embeddings_when_asked() -> None:
    from halbench import data
    from halbench.results.embeddings import read_embeddings

    suite = make_suite(eval={"save_embeddings": True}, train={"epochs": 1})
    spec = next(s for s in suite.trials() if s.loss.name == "hal")
    result = trial.run_trial(suite, spec)
    assert result.row["status"] == "ok", result.row["error"]
    emb, labels, meta = read_embeddings(io.BytesIO(result.embeddings))
    splits = data.load("synthetic", train_size=SYNTHETIC["train_size"],
                       test_size=SYNTHETIC["test_size"], seed=trial.DATA_SEED, device="cpu",
                       **SYNTHETIC["params"])  # fmt: skip
    assert emb.shape == (len(splits.eval_y), 16) and labels.tolist() == splits.eval_y.tolist()
    assert meta == {"trial_id": spec.trial_id, "loss": "hal", "metric": "cosine",
                    "embedding_dim": "16"}  # fmt: skip
    # off by default, and never for a tuning trial (its eval split is the validation split)
    assert trial.run_trial(make_suite(train={"epochs": 1}), spec).embeddings is None
    tuning = spec.model_copy(update={"phase": "tune"})
    assert trial.run_trial(suite, tuning).embeddings is None


def test_evaluation_hands_keep_the_evaluation_splits_embeddings() -> None:
    suite = make_suite()
    spec = suite.trials()[0]
    run_ = trial.setup_run(suite, spec, {})
    kept: list[torch.Tensor] = []
    trial.evaluate_run(run_, suite.eval, final=True, keep=kept.append)
    expected = evaluation.embed(run_.model, run_.splits, "eval", suite.eval.batch_size)
    assert len(kept) == 1 and torch.equal(kept[0], expected)
