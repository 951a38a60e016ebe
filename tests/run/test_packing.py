"""Trials at once on a node as Ray packs them, and the line validate and --dry-run print."""

from __future__ import annotations

import pytest

from halbench.run import cluster, packing
from halbench.run.options import RunOptions
from halbench.suite import ResourcesConfig


def pack(cpu: float, gpu: float, cpus: float, gpus: float, **kw) -> packing.Packing:  # noqa: ANN003
    return packing.packing({"cpu": cpu, "gpu": gpu}, {"cpu": cpus, "gpu": gpus}, **kw)


def test_four_quarter_gpu_trials_fill_one_gpu_on_16_cpus() -> None:
    found = pack(4, 0.25, 16, 1)
    assert (found.at_once, found.per_gpu) == (4, 4)
    assert found.line() == "4 trials at once, 4 per GPU: limited by GPUs, 0.25 per trial on 1"


def test_cpus_that_hold_the_trials_below_the_gpu_are_named_with_a_fix() -> None:
    found = pack(4, 0.25, 15, 1)  # Ray registered 15 CPUs (a container quota of 15.5)
    assert (found.at_once, found.per_gpu) == (3, 3)
    assert found.line() == (
        "3 trials at once, 3 per GPU: limited by CPUs, 4 per trial on 15 "
        "(cpus_per_trial 3.75 would fit 4)"
    )


@pytest.mark.parametrize(
    ("cpu", "gpu", "cpus", "gpus", "at_once", "per_gpu"),
    [
        (1, 0.3, 16, 1, 3, 3),  # floor(1 / 0.3) fractions per GPU
        (1, 0.25, 4, 4, 4, 4),  # Ray fills one GPU's quarters before the next
        (2, 1, 16, 2, 2, 1),
        (2, 2, 16, 4, 2, 1),
        (4, 0, 16, 0, 4, None),
        (3, 0, 2, 0, 0, None),  # does not fit
    ],
)
def test_packing_counts(cpu, gpu, cpus, gpus, at_once, per_gpu) -> None:  # noqa: ANN001
    found = pack(cpu, gpu, cpus, gpus)
    assert (found.at_once, found.per_gpu) == (at_once, per_gpu)


def test_max_concurrent_and_memory_limit_too() -> None:
    assert pack(1, 0.25, 16, 1, max_concurrent=2).line() == (
        "2 trials at once, 2 per GPU: limited by max_concurrent 2"
    )
    gb = 1024**3
    found = packing.packing({"cpu": 1, "memory": 10 * gb}, {"cpu": 16, "memory": 35 * gb})
    assert found.at_once == 3 and found.limit == "memory, 10 GB per trial on 35.0 GB"


def test_packing_line_uses_the_local_rays_size() -> None:
    res = ResourcesConfig(cpus_per_trial=4, gpus_per_trial=0.25)
    line = packing.packing_line(res, RunOptions(num_cpus=16, num_gpus=1))
    assert line.startswith("4 trials at once, 4 per GPU")
    exclusive = ResourcesConfig(cpus_per_trial=4, gpus_per_trial=0.25, exclusive_gpu=True)
    assert packing.packing_line(exclusive, RunOptions(num_cpus=16, num_gpus=1)).startswith(
        "1 trial at once, 1 per GPU"
    )


def test_ray_detected_cpus_is_rays_count() -> None:
    from ray._private.utils import get_num_cpus  # what ray.init itself calls

    assert cluster.ray_detected_cpus() == int(get_num_cpus())
    assert cluster.local_capacity(None, 0)["cpu"] == cluster.ray_detected_cpus()
