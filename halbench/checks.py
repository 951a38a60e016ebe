"""Shared argument checks: one-line ValueErrors naming the parameter.

Every layer (losses, models, data, k-NN, probes, the CLI's argument types) checks its numbers
through these, so a message reads the same wherever a bad value is caught. Callers that talk
to a user wrap the ValueError into a UserError with the file and field; the text stays.
"""

from __future__ import annotations

import math
from typing import Any

# Bigger than any count a benchmark can need and small enough that products of a few of them
# stay far inside int64 (labels, tensor sizes); a 400-digit int is refused here, not by numpy.
MAX_INT = 2**62


def check_int(name: str, value: Any, *, minimum: int, maximum: int = MAX_INT) -> int:
    """An int in [minimum, maximum] (bools are rejected: YAML `true` is not 1)."""
    if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= maximum:
        bound = f">= {minimum}" if maximum == MAX_INT else f"in [{minimum}, {maximum}]"
        raise ValueError(f"{name} must be an integer {bound}, got {short(value)}")
    return value


def check_real(name: str, value: Any) -> float:
    """A finite int or float (NaN, inf and 1e400 are refused)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name} must be a finite number, got {short(value)}")
    try:
        number = float(value)
    except OverflowError:  # an int too large for a float
        raise ValueError(f"{name} must be a finite number, got {short(value)}") from None
    if not math.isfinite(number):
        raise ValueError(f"{name} must be a finite number, got {short(value)}")
    return number


def check_positive(name: str, value: Any) -> float:
    """A finite float > 0 (scales, temperatures, learning rates)."""
    if check_real(name, value) <= 0:
        raise ValueError(f"{name} must be > 0, got {short(value)}")
    return float(value)


def check_nonnegative(name: str, value: Any) -> float:
    """A finite float >= 0 (margins, weight decay)."""
    if check_real(name, value) < 0:
        raise ValueError(f"{name} must be >= 0, got {short(value)}")
    return float(value)


def check_fraction(name: str, value: Any) -> float:
    """A float in [0, 1) (momenta)."""
    if not 0 <= check_real(name, value) < 1:
        raise ValueError(f"{name} must be in [0, 1), got {short(value)}")
    return float(value)


def check_choice(name: str, value: Any, choices: tuple[str, ...]) -> str:
    """One of a fixed set of strings."""
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(choices)}; got {short(value)}")
    return value


def check_bool(name: str, value: Any) -> bool:
    """A real bool (YAML true/false), not a truthy string."""
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be true or false, got {short(value)}")
    return value


def short(value: Any, limit: int = 60) -> str:
    """repr() bounded in length: a message must stay one short line for any input."""
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > 10**18:
        return f"an integer of {len(str(abs(value)))} digits"
    text = repr(value) if not isinstance(value, (dict, list, tuple)) else type(value).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."
