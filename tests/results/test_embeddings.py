"""results/embeddings.py: a trial's saved test embeddings round-trip with their metadata."""

from __future__ import annotations

import io

import numpy as np
import pytest

from halbench.results import embeddings


def test_saved_embeddings_round_trip_exactly() -> None:
    rng = np.random.default_rng(0)
    emb = rng.standard_normal((7, 5)).astype(np.float32)
    labels = rng.integers(0, 3, 7)
    blob = embeddings.to_parquet_bytes(emb, labels, trial_id="t-1", loss="hal", metric="cosine")
    got, got_labels, meta = embeddings.read_embeddings(io.BytesIO(blob))
    assert got.dtype == np.float32 and np.array_equal(got, emb)
    assert got_labels.tolist() == labels.tolist()
    assert meta == {"trial_id": "t-1", "loss": "hal", "metric": "cosine", "embedding_dim": "5"}


def test_mismatched_labels_are_refused() -> None:
    with pytest.raises(ValueError, match=r"\[n, d\] with n labels"):
        embeddings.to_parquet_bytes(np.zeros((3, 2)), np.zeros(4), trial_id="t", loss="l",
                                    metric="l2")  # fmt: skip


def test_the_file_is_named_after_the_trial_file() -> None:
    assert embeddings.file_name("final-a-s0.json") == "final-a-s0.parquet"
