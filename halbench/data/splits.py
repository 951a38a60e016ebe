"""Stratified subsets and the validation split carved from the training split.

All choices are class-stratified (largest remainders) and seeded, so a data seed gives the
same rows on every machine, in every phase: the validation rows a tuning run scores on are
exactly the rows a final run with `train_on="train"` leaves out.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from halbench.checks import MAX_INT, check_int, check_real


def stratified_indices(labels: np.ndarray, size: int, seed: int) -> np.ndarray:
    """`size` row indices whose class proportions match `labels` (largest remainders).

    Rows within each class are a seeded random choice; the result is sorted.
    """
    n = len(labels)
    if size >= n:
        return np.arange(n)
    classes, counts = np.unique(labels, return_counts=True)
    exact = counts * size / n
    quota = np.floor(exact).astype(int)
    # Hand the rows lost to rounding to the classes with the largest remainders.
    extra = np.argsort(-(exact - quota), kind="stable")[: size - quota.sum()]
    quota[extra] += 1
    rng = np.random.default_rng(seed)
    picked = [
        rng.permutation(np.flatnonzero(labels == c))[:q]
        for c, q in zip(classes, quota, strict=True)
    ]
    return np.sort(np.concatenate(picked))


def subset(
    x: np.ndarray, y: np.ndarray, size: int | None, seed: int, what: str
) -> tuple[np.ndarray, np.ndarray]:
    """A stratified subset of `size` rows (all rows when None); `what` names the parameter."""
    if size is None:
        return x, y
    if size > len(y):
        raise ValueError(f"{what} must be at most the split size {len(y)}, got {size}")
    idx = stratified_indices(y, size, seed)
    return x[idx], y[idx]


def check_validation(value: Any) -> float | int:
    """A validation size: a fraction in (0, 1) or a row count >= 1 (bools refused)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return check_int("validation", value, minimum=1, maximum=MAX_INT)
    try:
        fraction = check_real("validation", value)
    except ValueError:
        raise ValueError(
            f"validation must be a fraction in (0, 1) or a row count >= 1, got {value!r:.60}"
        ) from None
    if not 0 < fraction < 1:
        raise ValueError(
            f"validation must be a fraction in (0, 1) or a row count >= 1, got {value!r}"
        )
    return fraction


def validation_count(validation: float | int, n: int) -> int:
    """Rows of an `n`-row training split that `validation` (fraction or count) asks for.

    At least one row must be left on each side; otherwise a one-line ValueError.
    """
    validation = check_validation(validation)
    count = validation if isinstance(validation, int) else round(validation * n)
    if not 1 <= count <= n - 1:
        raise ValueError(
            f"validation must leave at least one row in each of the training ({n} rows) and "
            f"validation parts; {validation!r} gives {count} validation rows"
        )
    return count


def validation_split_seed(data_seed: int, validation_seed: int = 0) -> int:
    """The seed the validation split is drawn with: `data_seed + 2` for validation seed 0 (the
    split of every run before replicates existed), another stream for each other one."""
    return data_seed + 2 + 1_000_003 * validation_seed


def validation_indices(
    labels: np.ndarray, validation: float | int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """`(train_rows, validation_rows)`: a stratified, seeded, disjoint partition of the rows.

    Both are sorted; together they are every row of `labels` exactly once.
    """
    held_out = stratified_indices(labels, validation_count(validation, len(labels)), seed)
    keep = np.ones(len(labels), dtype=bool)
    keep[held_out] = False
    return np.flatnonzero(keep), held_out
