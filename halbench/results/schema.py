"""Every table halbench writes, declared once: column names and types, and `frame`.

The runner, the profiler and the report agree on columns through these schemas.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import polars as pl

STATUSES = ("ok", "oom", "diverged", "error")

# k values that always have a column, so that reports and comparisons can rely on them;
# other k from a suite get extra knn_acc_<k> columns.
STANDARD_KS = (1, 5, 10, 20)

TRIAL_SCHEMA: dict[str, pl.DataType] = {
    "trial_id": pl.Utf8,
    "suite": pl.Utf8,
    "suite_hash": pl.Utf8,
    "dataset": pl.Utf8,
    "model": pl.Utf8,
    "loss": pl.Utf8,  # the loss label (name, or name with a distinguishing label)
    "loss_name": pl.Utf8,  # the registry name
    "loss_params": pl.Utf8,  # JSON
    "metric": pl.Utf8,  # k-NN metric used: cosine | l2
    "batch_size": pl.Int64,
    "embedding_dim": pl.Int64,
    "seed": pl.Int64,
    "num_classes": pl.Int64,
    "epochs": pl.Int64,
    "epochs_done": pl.Int64,
    "status": pl.Utf8,
    "error": pl.Utf8,
    **{f"knn_acc_{k}": pl.Float64 for k in STANDARD_KS},
    "p_at_1": pl.Float64,
    "map_at_r": pl.Float64,
    "anchor_acc": pl.Float64,
    "best_epoch": pl.Int64,
    "best_knn_acc": pl.Float64,
    "final_train_loss": pl.Float64,
    "train_time_s": pl.Float64,  # without the warm-up (halbench/trial/epoch.py)
    "images_per_s": pl.Float64,
    "warmup_s": pl.Float64,  # the first steps of epoch 1, off the clock (cuDNN, compile)
    "eval_every": pl.Int64,  # eval.every_n_epochs: the resolution of the convergence columns
    "epochs_to_90": pl.Int64,
    "epochs_to_95": pl.Int64,
    "seconds_to_90": pl.Float64,
    "seconds_to_95": pl.Float64,
    "loss_call_ms": pl.Float64,
    "loss_flops_fwd": pl.Float64,
    "loss_flops_bwd": pl.Float64,
    "loss_peak_mem_bytes": pl.Float64,
    "loss_share_of_step": pl.Float64,
    "gpu_mem_peak_bytes": pl.Float64,
    "gpu_util_mean": pl.Float64,
    "energy_j": pl.Float64,
    "device": pl.Utf8,
    "node": pl.Utf8,  # hostname
    # Where and when (halbench.probes.placement): Ray's node id, the GPU ids Ray assigned
    # (comma-separated), start and end as ISO 8601 UTC; node_id and gpu_ids null without Ray.
    "node_id": pl.Utf8,
    "gpu_ids": pl.Utf8,
    "started_at": pl.Utf8,
    "ended_at": pl.Utf8,
    # Other trials on the trial's device while it ran (placement.neighbours; a CPU node is one
    # device; null when unknown): a timing with neighbours is contended.
    "max_neighbours": pl.Int64,
    # The sub-epoch convergence curve (halbench/trial/curve.py): optimizer steps done at each
    # evaluation and the k-NN accuracy at k = curve_k of curve_subsample evaluation images.
    "curve_steps": pl.List(pl.Int64),
    "curve_acc": pl.List(pl.Float64),
    "curve_k": pl.Int64,
    "curve_subsample": pl.Int64,
    # The protocol (halbench/suite/tune.py): "grid" for a hand-set grid point, "final" for a
    # seed of the best validation configuration of a tuned suite. Final rows also carry the
    # chosen configuration (`config`, JSON, and one cfg_<key> column per tuned key), the tuning
    # trial it came from and that trial's validation score.
    "phase": pl.Utf8,
    # Rows the trial trained on / held out / was scored on, and its optimizer steps per epoch.
    "train_rows": pl.Int64,
    "validation_rows": pl.Int64,
    "test_rows": pl.Int64,
    "steps_per_epoch": pl.Int64,
    "config": pl.Utf8,
    "tuned_from": pl.Utf8,
    "val_score": pl.Float64,
}

# tuning.parquet: one row per tuning trial of a tuned suite (plus cfg_<key> columns). The
# validation metric is `metric` (tune.metric) on the validation split, one value per epoch run.
TUNING_SCHEMA: dict[str, pl.DataType] = {
    "trial_id": pl.Utf8,
    "suite": pl.Utf8,
    "suite_hash": pl.Utf8,
    "group": pl.Utf8,  # dataset/loss/b<B>/d<d>: trials of one group share one budget
    "dataset": pl.Utf8,
    "loss": pl.Utf8,
    "loss_name": pl.Utf8,
    "batch_size": pl.Int64,  # the sampled one when batch_size is tuned
    "embedding_dim": pl.Int64,
    "trial_index": pl.Int64,  # 0 .. budget-1 within the group; 0 is the hand-set default
    "is_default": pl.Boolean,  # the suite's own values (the hand-set configuration)
    "seed": pl.Int64,
    "config": pl.Utf8,  # JSON of the sampled keys
    "metric": pl.Utf8,
    "val_curve": pl.List(pl.Float64),  # the metric after each epoch run
    "last_val": pl.Float64,
    "best_val": pl.Float64,
    "epochs": pl.Int64,  # tune.epochs
    "epochs_run": pl.Int64,
    "stopped_early": pl.Boolean,  # stopped by the scheduler (ASHA) before tune.epochs
    "chosen": pl.Boolean,  # this configuration was retrained for the final seeds
    "status": pl.Utf8,
    "error": pl.Utf8,
    "time_s": pl.Float64,
    "node": pl.Utf8,
}

EPOCH_SCHEMA: dict[str, pl.DataType] = {
    "trial_id": pl.Utf8,
    "epoch": pl.Int64,
    "train_loss": pl.Float64,
    **{f"knn_acc_{k}": pl.Float64 for k in STANDARD_KS},
    "anchor_acc": pl.Float64,
    "epoch_time_s": pl.Float64,
    "elapsed_s": pl.Float64,
    "images_per_s": pl.Float64,
    "lr": pl.Float64,
}

PROFILE_SCHEMA: dict[str, pl.DataType] = {
    "loss": pl.Utf8,
    "loss_name": pl.Utf8,
    "loss_params": pl.Utf8,
    "batch_size": pl.Int64,
    "embedding_dim": pl.Int64,
    "num_classes": pl.Int64,
    "memory_size": pl.Int64,
    "device": pl.Utf8,
    "status": pl.Utf8,
    "error": pl.Utf8,
    "flops_fwd": pl.Float64,
    "flops_bwd": pl.Float64,
    "flops_matmul_fwd": pl.Float64,
    "flops_analytic_fwd": pl.Float64,
    "fvcore_flops": pl.Int64,
    "fvcore_note": pl.Utf8,
    "time_fwd_ms": pl.Float64,
    "time_fwdbwd_ms": pl.Float64,
    "time_fwdbwd_iqr_ms": pl.Float64,
    "peak_mem_bytes": pl.Float64,
    "peak_mem_source": pl.Utf8,
    "unsupported_ops": pl.List(pl.Utf8),
}


def frame(rows: Iterable[Mapping[str, Any]], schema: Mapping[str, pl.DataType]) -> pl.DataFrame:
    """Rows -> DataFrame with every schema column (missing ones null) plus any extra columns.

    Extra columns (e.g. knn_acc_3 for a suite with k=3) are kept after the schema's columns,
    typed by polars' inference.
    """
    rows = [dict(r) for r in rows]
    extra = sorted({k for r in rows for k in r} - set(schema))
    full_schema = dict(schema)
    for key in extra:
        values = [r.get(key) for r in rows if r.get(key) is not None]
        full_schema[key] = (
            pl.Float64 if all(isinstance(v, int | float) for v in values) else pl.Utf8
        )
    data = {k: [r.get(k) for r in rows] for k in full_schema}
    return pl.DataFrame(data, schema=full_schema, strict=False)
