"""Axes of the report's figures: log axes with a labelled tick at every decade (and at 2 and 5
when the data spans less than two decades), labels in the data's unit.

Plotly's own log ticks label the minor steps `2 3 4 ... 9 1 2`, which reads 0.2 ms as 2 ms, and
give a narrow range a single tick; these axes set tickvals and ticktext explicitly.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

from halbench.report.format import fmt_si

Formatter = Callable[[float], str]


def _number(x: float) -> str:
    """0.2, 1, 20, 1e+04: the shortest readable form of a tick value."""
    return f"{x:g}"


def fmt_ms_tick(x: float) -> str:
    return f"{_number(x)} ms"


def fmt_ratio_tick(x: float) -> str:
    return f"{_number(x)}×"


def fmt_flops_tick(x: float) -> str:
    return fmt_si(x)


def fmt_bytes_tick(x: float) -> str:
    """Decimal prefixes (10 kB, 1 MB): the ticks sit at powers of ten, which binary prefixes
    would print as 9.77 KiB."""
    text = fmt_si(x)
    return f"{text} B" if x < 1000 else f"{text}B"


def log_ticks(values: Iterable[float]) -> list[float]:
    """Tick values for a log axis over these positive values: every decade from below the
    smallest to above the largest, with 2 and 5 in between when fewer than 3 decades."""
    vals = [float(v) for v in values if v is not None and math.isfinite(v) and v > 0]
    if not vals:
        return []
    lo, hi = math.floor(math.log10(min(vals))), math.ceil(math.log10(max(vals)))
    hi = max(hi, lo + 1)
    steps = (1, 2, 5) if hi - lo < 3 else (1,)
    ticks = [m * 10.0**e for e in range(lo, hi + 1) for m in steps]
    ticks = [t for t in ticks if t <= 10.0**hi]
    # Keep the ticks around the data: one below the smallest value, one above the largest.
    below = [t for t in ticks if t <= min(vals)]
    above = [t for t in ticks if t >= max(vals)]
    i = ticks.index(below[-1]) if below else 0
    j = ticks.index(above[0]) if above else len(ticks) - 1
    if i == j:  # one value on a tick: its neighbours too, so that the axis has a scale
        i, j = max(i - 1, 0), min(j + 1, len(ticks) - 1)
    return [_round(t) for t in ticks[i : j + 1]]


def _round(x: float) -> float:
    """10**-1 * 2 is 0.20000000000000004: round a tick to its significant digit."""
    return float(f"{x:.1g}")


def log_axis(values: Iterable[float], fmt: Formatter = _number) -> dict[str, Any]:
    """Plotly axis settings: a log axis whose range spans the ticks, each labelled by fmt."""
    ticks = log_ticks(values)
    if not ticks:
        return dict(type="log")
    pad = 0.05 * max(math.log10(ticks[-1] / ticks[0]), 1.0)
    return dict(
        type="log",
        tickvals=ticks,
        ticktext=[fmt(t) for t in ticks],
        range=[math.log10(ticks[0]) - pad, math.log10(ticks[-1]) + pad],
    )
