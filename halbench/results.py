"""Result schemas, atomic parquet I/O and environment capture.

Every table halbench writes is declared here, so that the runner, the profiler and the report
agree on column names and types. report/ reads these files and nothing else.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
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
    "train_time_s": pl.Float64,
    "images_per_s": pl.Float64,
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
    # Where and when (halbench.placement): Ray's node id, the GPU ids Ray assigned
    # (comma-separated), start and end as ISO 8601 UTC; node_id and gpu_ids null without Ray.
    "node_id": pl.Utf8,
    "gpu_ids": pl.Utf8,
    "started_at": pl.Utf8,
    "ended_at": pl.Utf8,
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


def write_parquet_atomic(df: pl.DataFrame, path: Path) -> None:
    """Write to a temporary file in the same directory, then rename over the target.

    A kill at any moment leaves either the old file or the new one, never a truncated file.
    """
    write_bytes_atomic(path, lambda f: df.write_parquet(f))


def write_json_atomic(path: Path, obj: Any) -> None:
    write_bytes_atomic(path, lambda f: f.write(json.dumps(obj, indent=2, default=str).encode()))


def write_bytes_atomic(path: Path, writer) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        # mkstemp creates 0600; a results file is as readable as any other file we write.
        os.chmod(tmp, 0o644)
        with os.fdopen(fd, "wb") as f:
            writer(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def git_sha(cwd: Path | None = None) -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=cwd or Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=5,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def environment() -> dict[str, Any]:
    """Versions and hardware of the machine that ran the driver (trials add their own device)."""
    import torch

    from halbench import __version__

    env: dict[str, Any] = {
        "halbench": __version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu": _cpu_name(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "cuda_available": torch.cuda.is_available(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "gpu_count": torch.cuda.device_count() if torch.cuda.is_available() else 0,
        "git_sha": git_sha(),
        "argv": sys.argv,
    }
    for mod in ("ray", "polars", "fvcore", "faiss", "torchvision", "plotly"):
        try:
            env[mod] = __import__(mod).__version__
        except Exception:  # noqa: BLE001 - an absent optional package is a null, not a failure
            env[mod] = None
    env["device"] = env["gpu"] or env["cpu"]
    return env


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
