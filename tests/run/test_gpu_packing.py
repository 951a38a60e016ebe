"""Fractional GPUs as Ray schedules them, on a node with four logical GPUs and no real one.

Ray's accounting is the same with or without a GPU behind the ids; the trials compute on the
CPU (`device: cpu`), so a GPU machine changes only what a trial computes on.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import polars as pl
import pytest

from tests.run.cluster_fixtures import (
    Cluster,
    base_env,
    halbench,
    ray_cluster,
    run_cli,
    tiny_suite,
)

pytestmark = [pytest.mark.slow, pytest.mark.ray]

GPUS = {"0", "1", "2", "3"}


@pytest.fixture(scope="module")
def gpu_node() -> Iterator[Cluster]:
    # Four logical CPUs too, so that four quarter-GPU trials can run at once.
    with ray_cluster(num_cpus=4, num_gpus=4) as cluster:
        yield cluster


def max_overlap(rows: list[dict]) -> int:
    """The most trials that ran at the same instant (from their started_at / ended_at)."""
    events = []
    for r in rows:
        events.append((datetime.fromisoformat(r["started_at"]), 1))
        events.append((datetime.fromisoformat(r["ended_at"]), -1))
    running = best = 0
    for _, step in sorted(events, key=lambda e: (e[0], e[1])):  # an end before a start
        running += step
        best = max(best, running)
    return best


def run_packed(cluster: Cluster, tmp_path: Path, name: str, **resources) -> pl.DataFrame:
    suite = tiny_suite(
        tmp_path,
        name,
        losses=("hal", "nca"),
        seeds=(0, 1, 2, 3),
        epochs=6,  # long enough for the trials of four warm actors to overlap
        dataset={"train_size": 512},
        train={"device": "cpu"},
        resources={"cpus_per_trial": 1, **resources},
    )
    out = tmp_path / name
    run_cli(halbench(suite, "--address", cluster.address, "--output", out, "--no-report"),
            cluster.env, 900)  # fmt: skip
    trials = pl.read_parquet(out / "trials.parquet")
    assert trials["status"].to_list() == ["ok"] * 8
    return trials


def test_quarter_gpus_pack_four_trials_on_one_gpu(gpu_node, tmp_path) -> None:
    trials = run_packed(gpu_node, tmp_path, "quarter", gpus_per_trial=0.25)
    rows = trials.to_dicts()
    # A fraction of a GPU is a fraction of one GPU: each trial holds exactly one id of the node.
    assert all(r["gpu_ids"] in GPUS for r in rows), trials.select("trial_id", "gpu_ids")
    by_gpu = {g: [r for r in rows if r["gpu_ids"] == g] for g in GPUS}
    overlaps = {g: max_overlap(rs) for g, rs in by_gpu.items() if rs}
    counts = {g: len(rs) for g, rs in by_gpu.items() if rs}
    print(f"quarter-GPU packing: trials per GPU id {counts}, most at once per id {overlaps}")
    assert max(overlaps.values()) >= 4, (overlaps, trials.select("gpu_ids", "started_at"))
    assert max(overlaps.values()) <= 4  # never more than four quarters on one GPU


def test_exclusive_gpu_gives_each_trial_a_whole_gpu(gpu_node, tmp_path) -> None:
    trials = run_packed(gpu_node, tmp_path, "exclusive", gpus_per_trial=0.25, exclusive_gpu=True)
    rows = trials.to_dicts()
    assert all(r["gpu_ids"] in GPUS for r in rows)
    for gpu in GPUS:
        assert max_overlap([r for r in rows if r["gpu_ids"] == gpu] or []) <= 1
    counts = {g: sum(r["gpu_ids"] == g for r in rows) for g in sorted(GPUS)}
    print(f"exclusive GPUs: trials per GPU id {counts}, most at once {max_overlap(rows)}")
    assert max_overlap(rows) >= 2  # and yet trials ran side by side, on different GPUs


def test_validate_checks_the_clusters_gpus(gpu_node, tmp_path) -> None:
    """`halbench validate --address` asks the cluster, not this machine (which has no GPU)."""

    def validate(gpus: float) -> subprocess.CompletedProcess:
        suite = tiny_suite(
            tmp_path, f"v{gpus:g}".replace(".", "_"), resources={"gpus_per_trial": gpus}
        )
        cmd = [sys.executable, "-m", "halbench.cli", "validate", str(suite)]
        cmd += ["--address", gpu_node.address]
        return run_cli(cmd, gpu_node.env, 300, ok=False)

    fits = validate(0.25)
    assert fits.returncode == 0, fits.stderr[-2000:]
    assert "valid" in fits.stdout
    too_big = validate(8)
    assert too_big.returncode == 2, too_big.stderr[-2000:]
    lines = too_big.stderr.strip().splitlines()
    assert lines[-1].endswith(
        f"resources.gpus_per_trial: a trial needs 8 GPU but the cluster at {gpu_node.address} has 4"
    ), lines
    assert "Traceback" not in too_big.stderr


def test_sixteen_cpus_and_one_gpu_pack_four_4_cpu_quarter_gpu_trials(tmp_path) -> None:
    """The suite of issue 23 (4 CPUs and 0.25 GPU per trial) on a local Ray of 16 logical
    CPUs and 1 logical GPU: validate says 4 per GPU, and 4 trials run at once on GPU 0."""
    suite = tiny_suite(
        tmp_path,
        "sixteen",
        losses=("hal", "nca"),
        seeds=(0, 1, 2, 3),
        epochs=6,  # long enough for four trials to overlap on a loaded machine
        dataset={"train_size": 512},
        train={"device": "cpu"},
        resources={"cpus_per_trial": 4, "gpus_per_trial": 0.25},
    )
    env, size = base_env(), ["--num-cpus", "16", "--num-gpus", "1"]
    cmd = [sys.executable, "-m", "halbench.cli", "validate", str(suite), *size]
    said = run_cli(cmd, env, 120).stdout
    assert "4 trials at once, 4 per GPU: limited by GPUs, 0.25 per trial on 1" in said, said
    out = tmp_path / "out"
    run_cli(halbench(suite, *size, "--output", out, "--no-report"), env, 900)
    trials = pl.read_parquet(out / "trials.parquet")
    assert trials["status"].to_list() == ["ok"] * 8
    assert set(trials["gpu_ids"]) == {"0"}
    assert max_overlap(trials.to_dicts()) == 4, trials.select("started_at", "ended_at")
    assert trials["max_neighbours"].max() == 3
