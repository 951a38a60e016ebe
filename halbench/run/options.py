"""RunOptions: how a suite runs (not what it measures: that is the suite)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class RunOptions:
    """The command line's run options, checked by the CLI.

    `address`: an existing Ray cluster ("auto", "host:port", "ray://..."); None starts a local
    Ray for the run (`num_cpus`, `num_gpus`, `dashboard`, `ray_temp_dir` apply to it).
    `storage`: Tune's storage_path (a shared path or a cloud URI on a multi-node cluster);
    default `<output>/ray`. `use_ray=False` runs every task in this process, one by one.
    `log_to`: experiment trackers fed by Ray Tune's logger callbacks (halbench/run/loggers.py).
    """

    output: Path | None = None
    resume: bool = False
    max_concurrent: int | None = None
    address: str | None = None
    num_cpus: int | None = None
    num_gpus: int | None = None
    dashboard: bool = False
    use_ray: bool = True
    datasets: tuple[str, ...] | None = None
    ray_temp_dir: Path | None = None
    storage: str | None = None
    log_to: tuple[str, ...] = ()  # Tune logger callbacks (run/loggers.py): tensorboard, ...
