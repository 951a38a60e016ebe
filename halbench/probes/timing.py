"""The one timing harness: warm-up, repeats, median and interquartile range.

Every time halbench reports or benchmarks/ prints comes from here: the probes
(`profile_loss_call`, `TrialProbe`), the profile sweep's rounds (probes/sweep.py) and the
benchmark scripts (benchmarks/harness.py).

A sample is the mean time per call of ``number`` back-to-back calls (1 unless a benchmark asks
for more to fill a minimum time). On CUDA the device is synchronized before the samples and each
sample is bracketed by CUDA events, so it is the GPU's time for the queued work, not the launch
time; on CPU it is ``perf_counter_ns`` (or, with ``clock="cpu"``, the process's CPU time, which
leaves out time other processes take on a shared machine).
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import torch

from halbench.checks import check_int

CLOCKS = ("wall", "cpu")

Call = Callable[[], object]


@dataclass
class Timing:
    """Samples in milliseconds per call, with their median and interquartile range."""

    median_ms: float
    iqr_ms: float
    samples_ms: list[float]

    @classmethod
    def of(cls, samples_ms: Sequence[float]) -> Timing:
        """The summary of samples pooled from any number of rounds."""
        samples = list(samples_ms)
        if not samples:
            raise ValueError("a timing needs at least one sample")
        return cls(statistics.median(samples), iqr(samples), samples)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_call(
    fn: Call,
    *,
    device: torch.device,
    warmup: int,
    repeats: int,
    number: int = 1,
    clock: str = "wall",
) -> Timing:
    """Run ``fn`` ``warmup`` times untimed, then take ``repeats`` samples of ``number`` calls."""
    check_int("warmup", warmup, minimum=0)
    check_int("repeats", repeats, minimum=1)
    for _ in range(warmup):
        fn()
    return Timing.of(_samples(fn, device, repeats, number, clock))


def time_interleaved(
    calls: Mapping[str, Call],
    *,
    device: torch.device,
    warmup: int,
    repeats: int,
    min_time_s: float = 0.0,
    clock: str = "wall",
) -> dict[str, Timing]:
    """Time several calls in ``repeats`` rounds, each round one sample of every call in turn,
    so that a change of the machine's load hits them all alike; sample i of every call comes
    from round i (see `paired_ratio`).

    Each call is warmed up ``warmup`` times, then a sample is as many back-to-back calls as fill
    ``min_time_s`` (at least one; `calls_per_sample`).
    """
    check_int("warmup", warmup, minimum=0)
    check_int("repeats", repeats, minimum=1)
    numbers = {}
    for name, fn in calls.items():
        for _ in range(warmup):
            fn()
        numbers[name] = calls_per_sample(fn, device=device, min_time_s=min_time_s, clock=clock)
    samples: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(repeats):
        for name, fn in calls.items():
            samples[name].extend(_samples(fn, device, 1, numbers[name], clock))
    return {name: Timing.of(values) for name, values in samples.items()}


def calls_per_sample(
    fn: Call, *, device: torch.device, min_time_s: float, clock: str = "wall"
) -> int:
    """How many back-to-back calls fill ``min_time_s``, from one timed call (at least 1)."""
    if min_time_s <= 0:
        return 1
    (once_ms,) = _samples(fn, device, 1, 1, clock)
    return max(1, math.ceil(min_time_s * 1e3 / max(once_ms, 1e-4)))


def paired_ratio(top: Timing, bottom: Timing) -> float:
    """Median of the per-round ratios top / bottom (samples paired by round, as
    `time_interleaved` takes them): paired samples cancel slow drifts in the machine's load."""
    pairs = zip(top.samples_ms, bottom.samples_ms, strict=True)
    return statistics.median(a / b for a, b in pairs)


def iqr(samples: Sequence[float]) -> float:
    """Interquartile range (0 for a single sample)."""
    if len(samples) < 2:
        return 0.0
    q1, _, q3 = statistics.quantiles(samples, n=4, method="inclusive")
    return q3 - q1


def _samples(fn: Call, device: torch.device, repeats: int, number: int, clock: str) -> list[float]:
    check_int("repeats", repeats, minimum=1)
    check_int("number", number, minimum=1)
    if clock not in CLOCKS:
        raise ValueError(f"clock must be one of {', '.join(CLOCKS)}, got {clock!r}")
    if device.type == "cuda":
        if clock != "wall":
            raise ValueError("clock='cpu' measures host CPU time; CUDA calls are timed by events")
        return _time_cuda(fn, device, repeats, number)
    return _time_cpu(fn, repeats, number, time.process_time_ns if clock == "cpu" else None)


def _time_cpu(
    fn: Call, repeats: int, number: int, now: Callable[[], int] | None = None
) -> list[float]:
    now = now or time.perf_counter_ns
    samples = []
    for _ in range(repeats):
        start = now()
        for _ in range(number):
            fn()
        samples.append((now() - start) / 1e6 / number)
    return samples


def _time_cuda(fn: Call, device: torch.device, repeats: int, number: int) -> list[float]:
    pairs = []
    with torch.cuda.device(device):
        torch.cuda.synchronize()
        for _ in range(repeats):
            start = torch.cuda.Event(enable_timing=True)
            end = torch.cuda.Event(enable_timing=True)
            start.record()
            for _ in range(number):
                fn()
            end.record()
            pairs.append((start, end))
        torch.cuda.synchronize()
    return [start.elapsed_time(end) / number for start, end in pairs]


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
