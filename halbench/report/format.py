"""How numbers are written in a report: estimates, intervals, SI prefixes, ratios, slugs."""

from __future__ import annotations

import json
import math
import re

from halbench.report.stats import Estimate


def fmt_est(est: Estimate | None, digits: int = 2, n_expected: int | None = None) -> str:
    """'87.31 ± 0.42' (mean ± half-width of the 95% CI); '87.31 (n=1)' without a CI; '1.00 (all 3
    equal)' when every value is the same (a zero-width interval is no measured spread)."""
    if est is None:
        return "—"
    text = f"{est.mean:.{digits}f}"
    if est.half_width is not None and est.half_width == 0:
        if est.method == "replicate":  # the tunings' means agree; their runs need not
            return text + " (replicate means equal)"
        return text + f" (all {est.n} equal)"
    if est.half_width is not None:
        text += f" ± {_spread(est.half_width, digits)}"
    if est.half_width is None or (n_expected is not None and est.n != n_expected):
        text += f" (n={est.n})"
    return text


def _spread(half_width: float, digits: int) -> str:
    """The half-width at the mean's digits, or at 1 significant digit when that reads 0.00: a
    real spread is never shown as zero."""
    fixed = f"{half_width:.{digits}f}"
    return fixed if float(fixed) > 0 else f"{half_width:.1g}"


def fmt_interval(est: Estimate | None, digits: int = 2) -> str:
    """'+1.23 [0.50, 1.96]' for a difference; '+1.23 [no CI, n=1]' without one."""
    if est is None:
        return "—"
    if est.lo is None or est.hi is None:
        return f"{est.mean:+.{digits}f} [no CI, n={est.n}]"
    return f"{est.mean:+.{digits}f} [{est.lo:+.{digits}f}, {est.hi:+.{digits}f}]"


def fmt_si(x: float | None, unit: str = "") -> str:
    """1.5e9 -> '1.50 G' + unit; binary prefixes for bytes."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "—"
    base, prefixes = (
        (1024.0, ["", "Ki", "Mi", "Gi", "Ti"])
        if unit == "B"
        else (1000.0, ["", "k", "M", "G", "T", "P"])
    )
    value, i = float(x), 0
    while abs(value) >= base and i < len(prefixes) - 1:
        value /= base
        i += 1
    return f"{value:.3g} {prefixes[i]}{unit}".rstrip()


def fmt_bytes(x: float | None) -> str:
    return fmt_si(x, "B")


def fmt_ratio(r: float | None) -> str:
    return "—" if r is None else f"{r:.3g}×"


def fmt_ms(x: float | None) -> str:
    return "—" if x is None else f"{x:.3g}"


def fmt_share(x: float | None) -> str:
    return "—" if x is None else f"{100 * x:.1f}%"


def fmt_params(params_json: object) -> str:
    """A loss_params JSON as 'scale=16, margin=0.1'; 'defaults' for {} (the registry's own
    values); the text itself when it is not a JSON mapping."""
    if params_json in (None, ""):
        return "—"
    try:
        params = json.loads(str(params_json))
    except ValueError:
        return str(params_json)
    if not isinstance(params, dict):
        return str(params_json)
    if not params:
        return "defaults"
    return ", ".join(
        f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in sorted(params.items())
    )


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def norm_name(name: object) -> str:
    """Dataset/loss names compared loosely: 'Fashion-MNIST' == 'fashion_mnist'."""
    return re.sub(r"[^a-z0-9]", "", str(name).lower())
