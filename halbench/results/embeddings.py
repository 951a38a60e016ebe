"""Saved test embeddings (eval.save_embeddings: true): one parquet file per final trial.

    <run>/embeddings/<task file stem>.parquet   (the trial file's name: trials/<stem>.json)

Columns: `row` (the position in the evaluation split the trial scored: the test split, in the
dataset's order, or its subset), `label`, `embedding` (a fixed-size float32 array of the
embedding dimension, as the model output it in eval mode, before any normalization).
Key-value metadata: trial_id, loss, metric (the k-NN metric the trial used), embedding_dim.

The trial serializes its table where it runs (`to_parquet_bytes`) and the bytes travel with its
result, as its row does, so this works on any node of a cluster; the driver writes the file
before the trial's row (run/store.py), so a trial with a row has its embeddings.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import polars as pl

EMBEDDINGS_DIR = "embeddings"


def to_parquet_bytes(
    embeddings: np.ndarray, labels: np.ndarray, *, trial_id: str, loss: str, metric: str
) -> bytes:
    """One trial's embeddings [n, d] and labels [n] as the bytes of its parquet file."""
    embeddings = np.ascontiguousarray(embeddings, dtype=np.float32)
    if embeddings.ndim != 2 or len(labels) != len(embeddings):
        raise ValueError(
            f"embeddings must be [n, d] with n labels, got {embeddings.shape} and {len(labels)}"
        )
    frame = pl.DataFrame(
        {
            "row": np.arange(len(embeddings), dtype=np.int64),
            "label": np.asarray(labels, dtype=np.int64),
            "embedding": embeddings,
        }
    )
    metadata = {
        "trial_id": trial_id,
        "loss": loss,
        "metric": metric,
        "embedding_dim": str(embeddings.shape[1]),
    }
    buffer = io.BytesIO()
    frame.write_parquet(buffer, metadata=metadata)
    return buffer.getvalue()


def file_name(task_file: str) -> str:
    """The embeddings file of a trial whose task file is `task_file` (run/rundir.task_file_name)."""
    return f"{Path(task_file).stem}.parquet"


def read_embeddings(path: Path | str) -> tuple[np.ndarray, np.ndarray, dict[str, str]]:
    """(embeddings [n, d] float32, labels [n] int64, metadata) of one saved file."""
    frame = pl.read_parquet(path)
    metadata = {
        k: v for k, v in pl.read_parquet_metadata(path).items() if not k.startswith("ARROW:")
    }
    return frame["embedding"].to_numpy(), frame["label"].to_numpy(), metadata
