"""Benchmarks as asv declares them, timed by halbench's one harness (probes/timing.py).

A benchmark is a named, parameterized function: ``params`` (name -> values; every combination
is one point), ``setup(**point)`` (builds the state, untimed) and ``function(state)`` (the timed
call). The harness does the timing: benchmarks compared by a ratio share one grid, and at each
point their calls are interleaved round by round (`probes.timing.time_interleaved`), so a
ratio is the median of per-round ratios measured under the same load.

    cases = run([Benchmark("mine", setup, call, params), ...], **timing_options(args))
    for case in cases:
        case.point, case.timings["mine"].median_ms, case.ratio("mine", "baseline")
"""

from __future__ import annotations

import argparse
import functools
import itertools
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from halbench.probes.timing import CLOCKS, Timing, paired_ratio, time_interleaved


@dataclass(frozen=True)
class Benchmark:
    """``function(setup(**point))`` timed at every point of the ``params`` grid."""

    name: str
    setup: Callable[..., Any]
    function: Callable[[Any], object]
    params: Mapping[str, Sequence[Any]] = field(default_factory=dict)


@dataclass
class Case:
    """The timings of every benchmark at one point of the grid."""

    point: dict[str, Any]
    timings: dict[str, Timing]

    def ms(self, name: str) -> float:
        """Median milliseconds per call of one benchmark."""
        return self.timings[name].median_ms

    def ratio(self, top: str, bottom: str) -> float:
        """Median of the per-round ratios top / bottom."""
        return paired_ratio(self.timings[top], self.timings[bottom])


def grid(params: Mapping[str, Sequence[Any]]) -> list[dict[str, Any]]:
    """Every combination of the parameter values, the last parameter varying fastest."""
    names = list(params)
    return [dict(zip(names, values, strict=True)) for values in itertools.product(*params.values())]


def run(
    benchmarks: Sequence[Benchmark],
    *,
    device: torch.device,
    warmup: int,
    repeats: int,
    min_time_s: float = 0.0,
    clock: str = "wall",
) -> Iterator[Case]:
    """Time the benchmarks point by point (they must share one grid), interleaved."""
    params = benchmarks[0].params
    if any(b.params != params for b in benchmarks):
        raise ValueError("benchmarks timed together must share one params grid")
    for point in grid(params):
        calls = {b.name: functools.partial(b.function, b.setup(**point)) for b in benchmarks}
        timings = time_interleaved(
            calls,
            device=device,
            warmup=warmup,
            repeats=repeats,
            min_time_s=min_time_s,
            clock=clock,
        )
        yield Case(point, timings)


def timing_arguments(parser: argparse.ArgumentParser, *, repeats: int = 7) -> None:
    """The harness's command line options, the same in every benchmark script."""
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--warmup", type=int, default=3, help="untimed calls first")
    parser.add_argument("--repeats", type=int, default=repeats, help="timing rounds")
    parser.add_argument("--min-time", type=float, default=0.02, help="seconds per sample")
    parser.add_argument(
        "--clock",
        choices=CLOCKS,
        default="wall",
        help="cpu: process CPU time, which leaves out time other processes take on a shared "
        "machine (CPU device only; with --threads 1 it equals the call's latency)",
    )


def timing_options(args: argparse.Namespace) -> dict[str, Any]:
    """``run``'s keyword arguments from `timing_arguments` (sets the torch threads)."""
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if args.clock == "cpu" and device.type != "cpu":
        raise SystemExit("--clock cpu measures host CPU time; use it with --device cpu")
    return {
        "device": device,
        "warmup": args.warmup,
        "repeats": args.repeats,
        "min_time_s": args.min_time,
        "clock": args.clock,
    }
