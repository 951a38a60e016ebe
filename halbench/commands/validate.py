"""`halbench validate`: everything knowable without training, in the order `run` checks it."""

from __future__ import annotations

from pathlib import Path

from halbench.errors import UserError
from halbench.run import cluster
from halbench.run.dryrun import plan
from halbench.run.executor import preflight
from halbench.run.options import RunOptions
from halbench.run.packing import packing_line
from halbench.run.runner import check_data
from halbench.suite import Suite, load_suite


def validate(path: Path, address: str | None, num_cpus: int | None, num_gpus: int | None) -> str:
    """Check the suite at `path` as `run` would before any trial; return the one-line summary.

    The data check is run's own (runner.check_data): each dataset is read, or downloaded when
    the suite says `download: true`, so a missing CIFAR-10 fails here. On a cluster the data
    lives on the workers and is not checked, as in `run`.
    """
    suite = load_suite(path)
    if num_gpus is not None and num_gpus < 0:
        raise UserError(f"--num-gpus: expected a non-negative integer, got {num_gpus}")
    options = RunOptions(address=address, num_cpus=num_cpus, num_gpus=num_gpus)
    preflight(suite, path, options)
    if address:
        capacity = cluster.cluster_capacity(address)
        resources = cluster.trial_resources(suite.resources)
        cluster.check_capacity(resources, capacity, path, f"the cluster at {address}")
    else:
        check_data(suite.trials(), suite)
        # trials at once on the local Ray, and which resource limits them (run/packing.py)
        return f"{summary(suite, path)}\n  {packing_line(suite.resources, options)}"
    return summary(suite, path)


def summary(suite: Suite, path: Path) -> str:
    """Trials, groups and training epochs, as the run would plan them (tuned suites too)."""
    planned = plan(suite)
    trials = sum(p.count for p in planned)
    losses, epochs = len(suite.losses), sum(p.count * p.epochs for p in planned)
    return (
        f"{path}: valid: suite {suite.name!r}, {trials} trial{'s' * (trials != 1)} of "
        f"{losses} loss{'es' * (losses != 1)}, at most {epochs} training epochs in all; "
        "`halbench run --dry-run` estimates the time"
    )
