"""Result schemas, atomic parquet I/O and environment capture.

Every table halbench writes is declared here, so that the runner, the profiler and the report
agree on column names and types. report/ reads these files and nothing else.
"""

from __future__ import annotations

import errno
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, BinaryIO

import polars as pl

from halbench.errors import UserError

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
    # Where and when (halbench.placement): Ray's node id, the GPU ids Ray assigned
    # (comma-separated), start and end as ISO 8601 UTC; node_id and gpu_ids null without Ray.
    "node_id": pl.Utf8,
    "gpu_ids": pl.Utf8,
    "started_at": pl.Utf8,
    "ended_at": pl.Utf8,
    # The protocol (halbench/suite_tune.py): "grid" for a hand-set grid point, "final" for a
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


def write_parquet_atomic(df: pl.DataFrame, path: Path) -> None:
    """Write to a temporary file in the same directory, then rename over the target.

    A kill at any moment leaves either the old file or the new one, never a truncated file.
    """
    write_bytes_atomic(path, lambda f: df.write_parquet(f))


def write_json_atomic(path: Path, obj: Any) -> None:
    write_bytes_atomic(path, lambda f: f.write(json.dumps(obj, indent=2, default=str).encode()))


def write_text_atomic(path: Path, text: str) -> None:
    """A text file (a report, a comparison) written like the parquet files: all or nothing."""
    write_bytes_atomic(path, lambda f: f.write(text.encode()))


# A full disk, a read-only filesystem or missing permissions is the user's to fix: one line
# naming the path (what finished is on disk and resumable), not a traceback.
_WRITE_ERRNOS = {errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EPERM, errno.EDQUOT}


def write_error(path: Path, err: OSError) -> UserError | OSError:
    """The UserError for a failed write of `path` (or `err` itself when it is not the user's)."""
    if err.errno not in _WRITE_ERRNOS:
        return err
    return UserError(f"{path}: cannot write ({os.strerror(err.errno)}); what finished is kept")


def write_bytes_atomic(path: Path, writer: Callable[[BinaryIO], object]) -> None:
    """Write through a temporary file and a rename; a failed write is one line (write_error)."""
    path = Path(path)
    try:
        _write_bytes_atomic(path, writer)
    except OSError as err:
        raise write_error(path, err) from None
    except Exception as err:  # noqa: BLE001 - pyarrow wraps ENOSPC in its own error types
        if "No space left" in str(err):
            raise UserError(
                f"{path}: cannot write ({os.strerror(errno.ENOSPC)}); what finished is kept"
            ) from None
        raise


def _write_bytes_atomic(path: Path, writer: Callable[[BinaryIO], object]) -> None:
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


# ---------------------------------------------------------------- the k that matters


def primary_k(ks: Iterable[int], wanted: int | None = None) -> int | None:
    """The k that ranks epochs, picks best configurations and judges claims: `wanted` when it was
    evaluated, else the smallest evaluated k (the suite's first, since a suite sorts its ks)."""
    ks = sorted({int(k) for k in ks})
    if wanted is not None and int(wanted) in ks:
        return int(wanted)
    return ks[0] if ks else None


def convergence(
    epochs: Sequence[Mapping[str, Any]], k: int, fractions: Sequence[float] = (0.9, 0.95)
) -> dict[str, Any]:
    """Best epoch and accuracy at k, and per fraction f the first epoch (and its `elapsed_s`)
    whose accuracy reaches f x the final epoch's: keys best_epoch, best_knn_acc,
    epochs_to_<100 f>, seconds_to_<100 f>. Epochs without an accuracy at k are skipped; {} when
    none has one. The trainer's columns and the report's C3 both come from here."""
    column = f"knn_acc_{k}"
    rows = sorted(
        (e for e in epochs if e.get(column) is not None and math.isfinite(e[column])),
        key=lambda e: e["epoch"],
    )
    if not rows:
        return {}
    accs = [float(e[column]) for e in rows]
    best = max(range(len(accs)), key=lambda i: accs[i])  # first of equal maxima
    out: dict[str, Any] = {"best_epoch": rows[best]["epoch"], "best_knn_acc": accs[best]}
    for fraction in fractions:
        pct = round(100 * fraction)
        hit = next((e for e, a in zip(rows, accs, strict=True) if a >= fraction * accs[-1]), None)
        out[f"epochs_to_{pct}"] = None if hit is None else hit["epoch"]
        out[f"seconds_to_{pct}"] = None if hit is None else hit.get("elapsed_s")
    return out


# ---------------------------------------------------------------- reading a run directory

SUITE_JSON = "suite.json"  # the normalized suite, Suite.model_dump(mode="json")
SUITE_YAML = "suite.yaml"  # the suite file as given (older run directories have only this)


def _dtype_fits(actual: pl.DataType, expected: pl.DataType) -> bool:
    """Whether a column read from disk may be cast to its schema type without guessing."""
    if actual == pl.Null or actual == expected:
        return True
    if expected.is_numeric():
        return actual.is_numeric() and (expected.is_float() or actual.is_integer())
    if expected == pl.Utf8:
        return actual in (pl.Utf8, pl.Categorical)
    return isinstance(expected, pl.List) and isinstance(actual, pl.List)


def read_table(
    path: Path, schema: Mapping[str, pl.DataType], required: Sequence[str] = ()
) -> pl.DataFrame:
    """A results parquet file checked against its schema; UserError naming the file and column.

    Columns of `required` must exist without nulls; every schema column present must have the
    schema's type (an integer where a float is expected is fine, a string where a number is
    expected is not); absent optional columns are added as nulls, so that older files read like
    new ones.
    """
    try:
        df = pl.read_parquet(path)
    except Exception as exc:  # noqa: BLE001 - pyarrow/polars raise many types for a bad file
        raise UserError(f"{path}: cannot read parquet file ({exc.__class__.__name__})") from exc
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise UserError(f"{path}: missing column(s) {', '.join(missing)}")
    for name, dtype in schema.items():
        if name in df.columns and not _dtype_fits(df.schema[name], dtype):
            raise UserError(f"{path}: column {name}: expected {dtype}, got {df.schema[name]}")
    for name in required:  # key columns: a null cannot be grouped or joined on
        if nulls := df[name].null_count():
            raise UserError(f"{path}: column {name}: {nulls} null value(s) in a key column")
    return df.with_columns(
        [pl.col(c).cast(t) for c, t in schema.items() if c in df.columns]
        + [pl.lit(None, dtype=t).alias(c) for c, t in schema.items() if c not in df.columns]
    )


def read_suite_record(run_dir: Path) -> dict[str, Any]:
    """The suite a run directory keeps, as plain data: suite.json (normalized) when present,
    else suite.yaml as the user wrote it; {} when neither. UserError naming a bad file."""
    import yaml

    for name, parse in ((SUITE_JSON, json.loads), (SUITE_YAML, yaml.safe_load)):
        path = Path(run_dir) / name
        if not path.is_file():
            continue
        try:
            data = parse(path.read_text())
        except (OSError, ValueError, yaml.YAMLError) as exc:  # ValueError: also bad UTF-8
            raise UserError(f"{path}: cannot read the suite ({exc.__class__.__name__})") from exc
        if not isinstance(data, dict):
            raise UserError(f"{path}: expected a mapping, got {type(data).__name__}")
        return data
    return {}


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
