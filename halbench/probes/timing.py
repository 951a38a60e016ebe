"""Wall time of a call: warm-up, repeats, median and interquartile range.

On CUDA each repeat is bracketed by CUDA events after a device synchronize, so the time is the
GPU's time for the queued work, not the launch time; on CPU it is ``perf_counter_ns``.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from halbench.checks import check_int


@dataclass
class Timing:
    median_ms: float
    iqr_ms: float
    samples_ms: list[float]


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_call(
    fn: Callable[[], object], *, device: torch.device, warmup: int, repeats: int
) -> Timing:
    """Run ``fn`` ``warmup`` times untimed, then ``repeats`` times timed."""
    check_int("warmup", warmup, minimum=0)
    check_int("repeats", repeats, minimum=1)
    for _ in range(warmup):
        fn()
    samples = _time_cuda(fn, device, repeats) if device.type == "cuda" else _time_cpu(fn, repeats)
    return Timing(statistics.median(samples), iqr(samples), samples)


def iqr(samples: list[float]) -> float:
    """Interquartile range (0 for a single sample)."""
    if len(samples) < 2:
        return 0.0
    q1, _, q3 = statistics.quantiles(samples, n=4, method="inclusive")
    return q3 - q1


def _time_cpu(fn: Callable[[], object], repeats: int) -> list[float]:
    samples = []
    for _ in range(repeats):
        start = time.perf_counter_ns()
        fn()
        samples.append((time.perf_counter_ns() - start) / 1e6)
    return samples


def _time_cuda(fn: Callable[[], object], device: torch.device, repeats: int) -> list[float]:
    pairs = []
    with torch.cuda.device(device):
        torch.cuda.synchronize()
        for _ in range(repeats):
            start = torch.cuda.Event(enable_timing=True)
            end = torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            pairs.append((start, end))
        torch.cuda.synchronize()
    return [start.elapsed_time(end) for start, end in pairs]


class Stopwatch:
    """Wall time of a block with the device synchronized at both ends (milliseconds)."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.ms = 0.0

    def __enter__(self) -> Stopwatch:
        synchronize(self.device)
        self._start = time.perf_counter_ns()
        return self

    def __exit__(self, *exc: object) -> None:
        synchronize(self.device)
        self.ms = (time.perf_counter_ns() - self._start) / 1e6
