"""Hand-made run directories with known values for the report tests."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from halbench.results import EPOCH_SCHEMA, PROFILE_SCHEMA, TRIAL_SCHEMA, TUNING_SCHEMA, frame


def trial(
    loss: str,
    b: int,
    d: int,
    seed: int,
    acc: float | None,
    *,
    dataset: str = "fashion_mnist",
    status: str = "ok",
    suite_hash: str = "h1",
    **extra: Any,
) -> dict[str, Any]:
    """One trials.parquet row; acc is the k-NN accuracy (fraction) for every standard k."""
    row = {
        "trial_id": f"{loss}-b{b}-d{d}-s{seed}",
        "suite": "test",
        "suite_hash": suite_hash,
        "dataset": dataset,
        "model": "mlp",
        "loss": loss,
        "loss_name": loss,
        "loss_params": "{}",
        "metric": "cosine",
        "batch_size": b,
        "embedding_dim": d,
        "seed": seed,
        "num_classes": 10,
        "epochs": 3,
        "epochs_done": 3,
        "status": status,
        "error": None if status == "ok" else "boom",
    }
    if acc is not None:
        row.update({f"knn_acc_{k}": acc for k in (1, 5, 10, 20)})
    row.update(extra)
    return row


def epochs_of(row: dict[str, Any], accs: Iterable[float]) -> list[dict[str, Any]]:
    """epochs.parquet rows of one trial: accuracy per epoch, one second per epoch."""
    return [
        {
            "trial_id": row["trial_id"],
            "epoch": e,
            "knn_acc_1": a,
            "knn_acc_5": a,
            "elapsed_s": float(e),
        }
        for e, a in enumerate(accs, start=1)
    ]


def profile_row(
    loss: str, b: int, d: int, *, time: float, flops: float, mem: float = 1e6, status: str = "ok"
) -> dict[str, Any]:
    return {
        "loss": loss,
        "loss_name": loss,
        "loss_params": "{}",
        "batch_size": b,
        "embedding_dim": d,
        "num_classes": 10,
        "memory_size": 0,
        "device": "cpu",
        "status": status,
        "flops_fwd": flops,
        "flops_bwd": 2 * flops,
        "flops_analytic_fwd": flops,
        "time_fwd_ms": time / 3,
        "time_fwdbwd_ms": time,
        "time_fwdbwd_iqr_ms": time / 10,
        "peak_mem_bytes": mem,
        "peak_mem_source": "test",
        "unsupported_ops": [],
    }


SUITE = {
    "name": "test",
    "dataset": {"name": "fashion_mnist"},
    "losses": [{"name": n, "label": n, "params": {}} for n in ("nca", "snnl", "al", "hal")],
    "grid": {"batch_size": [32, 128], "embedding_dim": [16], "seed": [0, 1, 2]},
    "eval": {"ks": [1, 5], "metric": "cosine"},
}


def write_run(
    path: Path,
    trials: list[dict] | None = None,
    epochs: list[dict] | None = None,
    profile: list[dict] | None = None,
    *,
    suite_hash: str | None = "h1",
    suite: dict | None = None,
    env: dict | None = None,
) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    if trials is not None:
        frame(trials, TRIAL_SCHEMA).write_parquet(path / "trials.parquet")
        frame(epochs or [], EPOCH_SCHEMA).write_parquet(path / "epochs.parquet")
    if profile is not None:
        frame(profile, PROFILE_SCHEMA).write_parquet(path / "profile.parquet")
    base_env = {
        "halbench": "0.1.0",
        "python": "3.12",
        "torch": "2.14.1",
        "ray": "2.60.0",
        "device": "cpu-test",
        "git_sha": "abc123",
        "suite": "test",
        "started_at": "2026-11-28T10:00:00",
        "finished_at": "2026-11-28T11:00:00",
    }
    if suite_hash is not None:
        base_env["suite_hash"] = suite_hash
    (path / "env.json").write_text(json.dumps({**base_env, **(env or {})}))
    (path / "suite.yaml").write_text(yaml.safe_dump(suite if suite is not None else SUITE))
    return path


# ---------------------------------------------------------------- a tuned run (issue 13)

TUNED_SUITE = {
    "name": "tuned",
    "description": "a tuned test suite",
    "dataset": {"name": "fashion_mnist", "train_size": 10000, "test_size": 2000},
    "model": {"backbone": "small_cnn", "params": {}},
    "losses": [{"name": n, "label": n, "params": {}} for n in ("nca", "al", "hal")],
    "grid": {"batch_size": [32, 128], "embedding_dim": [16], "seed": [0]},
    "train": {"epochs": 4, "optimizer": "adamw", "lr": 0.001, "weight_decay": 0.0005},
    "eval": {"ks": [1, 5]},
    "tune": {
        "validation": 0.2,
        "budget": 4,
        "epochs": 3,
        "scheduler": "asha",
        "grace_epochs": 1,
        "search": "random",
        "metric": "knn_acc_1",
        "seed": 0,
        "space": {
            "lr": {"loguniform": [1.0e-4, 1.0e-2]},
            "hal": {"scale": {"uniform": [4, 64]}},
        },
    },
    "final": {"seeds": [0, 1, 2], "epochs": 4, "train_on": "train"},
}

# Validation scores per (loss, B): trial 0 is the hand-set default. At B=32 every loss's best
# validation score is higher than at B=128, while the test accuracy is higher at B=128: a pick
# by test accuracy would choose B=128, the protocol's pick is B=32.
TUNED_VAL = {
    ("nca", 32): [0.70, 0.72, 0.65, 0.78],
    ("nca", 128): [0.66, 0.60, 0.70, 0.69],
    ("al", 32): [0.60, 0.58, 0.62, 0.55],
    ("al", 128): [0.50, 0.52, 0.51, 0.49],
    ("hal", 32): [0.75, 0.80, 0.74, 0.76],
    ("hal", 128): [0.70, 0.71, 0.72, 0.73],
}
TUNED_TEST = {
    "nca": {32: 0.80, 128: 0.90},
    "al": {32: 0.70, 128: 0.75},
    "hal": {32: 0.83, 128: 0.95},
}


def tuned_rows() -> tuple[list[dict], list[dict], list[dict]]:
    """(tuning rows, final trial rows, epoch rows) of a tuned suite with known scores."""
    tuning, finals, epochs = [], [], []
    for (loss, b), scores in TUNED_VAL.items():
        group = f"fashion_mnist/{loss}/b{b}/d16"
        for i, val in enumerate(scores):
            config = {"lr": 0.001 if i == 0 else 10 ** (-4 + 0.5 * i)}
            if loss == "hal":
                config["loss.scale"] = 16.0 if i == 0 else 8.0 * i
            stopped = val < 0.6
            tuning.append(
                {
                    "trial_id": f"tune-{loss}-b{b}-{i}",
                    "suite": "tuned",
                    "suite_hash": "t1",
                    "group": group,
                    "dataset": "fashion_mnist",
                    "loss": loss,
                    "loss_name": loss,
                    "batch_size": b,
                    "embedding_dim": 16,
                    "trial_index": i,
                    "is_default": i == 0,
                    "seed": 0,
                    "config": json.dumps(config),
                    "metric": "knn_acc_1",
                    "val_curve": [val - 0.05, val] if stopped else [val - 0.1, val - 0.05, val],
                    "last_val": val,
                    "best_val": val,
                    "epochs": 3,
                    "epochs_run": 2 if stopped else 3,
                    "stopped_early": stopped,
                    "chosen": val == max(scores),
                    "status": "ok",
                    "error": None,
                    "time_s": 1.0,
                }
            )
        best = max(range(len(scores)), key=lambda i: scores[i])
        chosen = tuning[-len(scores) + best]
        for seed in (0, 1, 2):
            acc = TUNED_TEST[loss][b] + 0.01 * seed
            row = trial(
                loss,
                b,
                16,
                seed,
                acc,
                suite_hash="t1",
                phase="final",
                config=chosen["config"],
                tuned_from=chosen["trial_id"],
                val_score=chosen["last_val"],
                epochs=4,
                epochs_done=4,
            )
            row["suite"] = "tuned"
            finals.append(row)
            epochs += epochs_of(row, [acc * min(1.0, e / 2) for e in range(1, 5)])
    return tuning, finals, epochs


def write_tuned_run(path: Path, tuning: list[dict] | None = None, **kwargs: Any) -> Path:
    """A tuned run directory: suite.json with tune/final, tuning.parquet, final rows."""
    rows, finals, epochs = tuned_rows()
    write_run(path, kwargs.pop("trials", finals), kwargs.pop("epochs", epochs), suite_hash="t1")
    (path / "suite.yaml").unlink()
    (path / "suite.json").write_text(json.dumps(kwargs.pop("suite", TUNED_SUITE)))
    frame(tuning if tuning is not None else rows, TUNING_SCHEMA).write_parquet(
        path / "tuning.parquet"
    )
    return path
