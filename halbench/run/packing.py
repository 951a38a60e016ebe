"""How many trials run at once on a node, and which resource limits them.

`halbench validate` and `halbench run --dry-run` print `packing_line`: "4 trials at once, 4 per
GPU: limited by GPUs, 0.25 per trial on 1", or, where the CPUs hold the trials below what the
GPU could take, "3 trials at once, 3 per GPU: limited by CPUs, 4 per trial on 15
(cpus_per_trial 3.75 would fit 4)". docs/gpu.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from halbench.run import cluster
from halbench.run.options import RunOptions
from halbench.suite import ResourcesConfig

# Ray accounts resources in fixed point with 4 decimals: 4 x 0.25 GPU fill a GPU exactly.
_RAY_EPS = 1e-4


@dataclass(frozen=True)
class Packing:
    """How many trials of one suite run at once on one node, and what limits them."""

    at_once: int  # 0: a trial does not fit
    per_gpu: int | None  # trials sharing one GPU (None: the trials use no GPU)
    limit: str  # "CPUs, 4 per trial on 15"

    def line(self) -> str:
        """'4 trials at once, 4 per GPU: limited by GPUs, 0.25 per trial on 1'."""
        gpu = f", {self.per_gpu} per GPU" if self.per_gpu is not None else ""
        return (
            f"{self.at_once} trial{'s' * (self.at_once != 1)} at once{gpu}: limited by {self.limit}"
        )


def packing(
    resources: dict[str, float], capacity: dict[str, float], max_concurrent: int | None = None
) -> Packing:
    """Trials at once on a node of `capacity` (trial_resources' keys), as Ray schedules them.

    Ray (2.60) gives each Tune trial one placement-group bundle of exactly its resources
    (tune.execution.placement_groups.resource_dict_to_pg_factory: {CPU, GPU, memory}); it
    reserves nothing for the driver or for Tune, and max_concurrent None sets no limit. A
    fraction of a GPU is a fraction of one GPU: floor(1 / fraction) trials per GPU. So the
    trials at once are the smallest of these counts, and max_concurrent.
    """
    need_gpu = resources.get("gpu", 0.0)
    counts: dict[str, tuple[int, str]] = {}
    cpu, have_cpu = resources.get("cpu", 0.0), capacity.get("cpu", 0.0)
    have_gpu = capacity.get("gpu", 0.0)
    per_gpu_slots = math.floor(1 / need_gpu + _RAY_EPS) if 0 < need_gpu <= 1 else 1
    if need_gpu > 0:  # first: on a tie the GPUs are named, the resource the suite packs
        gpus = math.floor(have_gpu + _RAY_EPS)
        slots = (
            gpus * per_gpu_slots if need_gpu <= 1 else math.floor(have_gpu / need_gpu + _RAY_EPS)
        )
        counts["GPUs"] = (slots, f"{need_gpu:g} per trial on {have_gpu:g}")
    if cpu > 0:
        counts["CPUs"] = (
            math.floor(have_cpu / cpu + _RAY_EPS),
            f"{cpu:g} per trial on {have_cpu:g}",
        )
    mem = resources.get("memory", 0.0)
    if mem > 0:
        have_mem = capacity.get("memory", 0.0)
        shown = f"{mem / 1024**3:g} GB per trial on {have_mem / 1024**3:.1f} GB"
        counts["memory"] = (math.floor(have_mem / mem + _RAY_EPS), shown)
    if max_concurrent is not None:
        counts["max_concurrent"] = (max_concurrent, f"{max_concurrent}")
    # Ties go to the first named: GPUs, CPUs, memory, max_concurrent.
    name = min(counts, key=lambda k: counts[k][0]) if counts else "CPUs"
    at_once, why = counts.get(name, (1, "nothing requested"))
    limit = f"max_concurrent {why}" if name == "max_concurrent" else f"{name}, {why}"
    per_gpu = None
    if need_gpu > 0:
        # Ray fills one GPU's fractions before the next (tests/run/test_gpu_packing.py).
        per_gpu = min(at_once, per_gpu_slots)
        if name == "CPUs" and at_once < counts["GPUs"][0]:
            # what the GPUs could hold: the CPUs per trial that would let them
            fit = math.floor(have_cpu / counts["GPUs"][0] * 100) / 100
            limit += f" (cpus_per_trial {fit:g} would fit {counts['GPUs'][0]})"
    return Packing(at_once, per_gpu, limit)


def packing_line(res: ResourcesConfig, options: RunOptions, on_gpu: bool = True) -> str:
    """`halbench validate` / `--dry-run`: trials at once on the local Ray this command would
    start (--num-cpus/--num-gpus, else what Ray detects) and which resource limits them."""
    resources = cluster.trial_resources(res)
    if not on_gpu:
        resources["gpu"] = 0.0
    capacity = cluster.local_capacity(options.num_cpus, options.num_gpus)
    found = packing(resources, capacity, options.max_concurrent or res.max_concurrent)
    return found.line()
