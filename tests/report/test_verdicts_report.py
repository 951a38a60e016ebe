"""`halbench report` on copies of a run directory with HAL's accuracies shifted against NCA's:
the C1 verdict line says contradicted, supported or inconclusive, and why."""

import re
import shutil

import polars as pl
import pytest

from halbench.cli import main

from .fixtures import trial

SEEDS = range(5)
NCA = [0.80, 0.82, 0.81, 0.83, 0.79]
SMALL_NOISE = [-0.3, 0.2, 0.1, -0.1, 0.1]  # points
LARGE_NOISE = [-1.5, 1.2, 0.8, -0.6, 1.1]


@pytest.fixture
def base_run(make_run):
    rows = [
        trial(loss, 64, 16, s, NCA[s], dataset="fashion-mnist")
        for loss in ("hal", "nca")
        for s in SEEDS
    ]
    for r in rows:
        r.update(steps_per_epoch=40)
    return make_run(rows, [])


def shifted_copy(base, dest, shift, noise):
    """A copy of base whose HAL accuracies are NCA's + shift + noise (points), per seed."""
    shutil.copytree(base, dest)
    trials = pl.read_parquet(dest / "trials.parquet")
    accs = [c for c in trials.columns if re.fullmatch(r"knn_acc_\d+", c)]
    new = {s: NCA[s] + (shift + noise[s]) / 100 for s in SEEDS}
    hal = pl.col("loss") == "hal"
    seed_acc = pl.col("seed").replace_strict(new, return_dtype=pl.Float64, default=None)
    trials = trials.with_columns(
        [pl.when(hal).then(seed_acc).otherwise(pl.col(c)).alias(c) for c in accs]
    )
    trials.write_parquet(dest / "trials.parquet")
    return dest


def c1_line(tmp_path, base, name, shift, noise):
    run = shifted_copy(base, tmp_path / name, shift, noise)
    assert main(["report", str(run), "--output", str(tmp_path / f"{name}-out")]) == 0
    md = (tmp_path / f"{name}-out" / "report.md").read_text()
    glance = next(line for line in md.splitlines() if line.startswith("| C1:"))
    row = next(line for line in md.splitlines() if line.startswith("| fashion-mnist, mlp"))
    return glance, row


def test_c1_contradicted_supported_and_inconclusive_on_shifted_copies(base_run, tmp_path):
    glance, row = c1_line(tmp_path, base_run, "minus3", -3.0, SMALL_NOISE)
    assert (
        "✗ contradicted" in glance
        and "contradicted on fashion-mnist; untested on cifar10" in glance
    )
    assert "excludes 1 and excludes 0 (the subject is worse)" in row
    assert "fashion-mnist, mlp, 120 optimizer steps" in row  # the regime: 3 epochs x 40 steps

    glance, row = c1_line(tmp_path, base_run, "plus3", 3.0, SMALL_NOISE)
    assert "✓ supported" in glance and "supported on fashion-mnist" in glance
    assert "clears 1" in row and "g = +" in row

    glance, row = c1_line(tmp_path, base_run, "plus02", 0.2, LARGE_NOISE)
    assert "? inconclusive" in glance
    mde = re.search(r"minimum detectable effect at 80% power with 5 seeds: (\d+\.\d+) points", row)
    assert mde and float(mde.group(1)) > 1.0
    assert re.search(r"about \d+ seeds would resolve it", row)
