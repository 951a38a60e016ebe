"""Peak memory of one call, as the increase over what was allocated before it.

CUDA: the caching allocator's counters (``reset_peak_memory_stats``, then
``max_memory_allocated`` minus ``memory_allocated`` before the call). CPU: the torch profiler's
memory events (every allocation and free of torch's CPU allocator, in order); tracemalloc and
RSS do not see torch's allocations.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import torch

from halbench.probes.timing import synchronize

SOURCE_CUDA = "cuda_allocator"
SOURCE_CPU = "torch_profiler"


def peak_memory(fn: Callable[[], object], *, device: torch.device) -> tuple[int, str]:
    """(peak bytes allocated by ``fn`` above the level before it, how it was measured)."""
    if device.type == "cuda":
        return _peak_cuda(fn, device), SOURCE_CUDA
    return _peak_cpu(fn), SOURCE_CPU


def _peak_cuda(fn: Callable[[], object], device: torch.device) -> int:
    synchronize(device)
    before = torch.cuda.memory_allocated(device)
    # Resets the process-wide peak counter: nothing else in halbench reads it.
    torch.cuda.reset_peak_memory_stats(device)
    fn()
    synchronize(device)
    return max(0, torch.cuda.max_memory_allocated(device) - before)


def _peak_cpu(fn: Callable[[], object]) -> int:
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    # kineto logs harmless device-probe errors on machines without a GPU
    logging.getLogger("torch.profiler").setLevel(logging.ERROR)
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events = sorted(
        (e.start_ns(), e.nbytes())
        for e in prof.profiler.kineto_results.events()
        if e.name() == "[memory]" and e.device_type() == DeviceType.CPU
    )
    live = peak = 0
    for _, nbytes in events:
        live += nbytes
        peak = max(peak, live)
    return peak
