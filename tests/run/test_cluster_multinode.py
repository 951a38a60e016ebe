"""A real two-node Ray cluster on this machine: trials spread over both nodes, results on the
driver, and a node without the data set gives error rows that name it and where it looked."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest

from tests.fixtures_data import write_fake_cifar10
from tests.run.cluster_fixtures import Cluster, halbench, ray_cluster, run_cli, tiny_suite

pytestmark = [pytest.mark.slow, pytest.mark.ray]


@pytest.fixture(scope="module")
def two_nodes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Cluster, Path, Path]]:
    """Head and worker with one CPU each; CIFAR-10 only under the head's HALBENCH_DATA."""
    base = tmp_path_factory.mktemp("data")
    head_data, worker_data = base / "head", base / "worker"
    write_fake_cifar10(head_data)
    worker_data.mkdir()
    with ray_cluster(HALBENCH_DATA=str(head_data)) as cluster:
        cluster.add_node(HALBENCH_DATA=str(worker_data))
        yield cluster, head_data, worker_data


def run(cluster: Cluster, suite: Path, out: Path) -> subprocess.CompletedProcess:
    cmd = halbench(suite, "--address", cluster.address, "--output", out, "--no-report")
    return run_cli(cmd, cluster.env, 600, ok=False)


def test_trials_spread_over_both_nodes_and_land_on_the_driver(two_nodes, tmp_path) -> None:
    cluster, _, _ = two_nodes
    # Four trials, one CPU each, two nodes of one CPU: two run at a time, one per node.
    suite = tiny_suite(tmp_path, "spread", losses=("hal", "nca"), seeds=(0, 1))
    out = tmp_path / "run"
    done = run(cluster, suite, out)
    assert done.returncode == 0, done.stderr[-3000:]
    trials = pl.read_parquet(out / "trials.parquet")
    assert trials["status"].to_list() == ["ok"] * 4
    assert trials["node_id"].n_unique() == 2, trials.select("trial_id", "node_id")
    assert trials["node_id"].str.len_chars().to_list() == [56] * 4  # Ray's hex node ids
    assert len(set(trials["node"])) == 1  # one hostname: only the node id tells them apart
    assert sorted(p.stem for p in (out / "trials").glob("*.json")) == sorted(trials["trial_id"])
    assert (out / "epochs.parquet").exists()


def test_a_node_without_the_data_gives_error_rows_naming_it(two_nodes, tmp_path) -> None:
    cluster, head_data, worker_data = two_nodes
    suite = tiny_suite(
        tmp_path,
        "nodata",
        losses=("hal", "nca"),
        seeds=(0, 1),
        dataset={"name": "cifar10", "params": {}, "train_size": 100, "test_size": 30},
    )
    out = tmp_path / "run"
    done = run(cluster, suite, out)
    assert done.returncode == 0, done.stderr[-3000:]  # failed trials are rows
    trials = pl.read_parquet(out / "trials.parquet")
    failed = trials.filter(pl.col("status") == "error")
    ok = trials.filter(pl.col("status") == "ok")
    assert failed.height >= 1 and ok.height >= 1, trials.select("trial_id", "status", "node_id")
    assert set(failed["node_id"]).isdisjoint(ok["node_id"])  # the worker failed, the head not
    for row in failed.iter_rows(named=True):
        message = row["error"]
        assert "not found" in message, message
        assert str(worker_data / "cifar-10-batches-py") in message  # every path looked in
        assert f"Ray node {row['node_id']}" in message  # ... and which node looked
        assert str(head_data) not in message
