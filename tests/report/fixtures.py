"""Hand-made run directories with known values for the report tests."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from halbench.results import EPOCH_SCHEMA, PROFILE_SCHEMA, TRIAL_SCHEMA, frame


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
