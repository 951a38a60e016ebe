"""Cost figures of one suite group: loss-call cost and its ratio to NCA against batch size.

Each function returns None when the data is absent. Ratios come from report/ratios.py, the
same numbers the cost tables and the C2 verdict use.
"""

from __future__ import annotations

from typing import Any

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from halbench.report.axes import (
    fmt_bytes_tick,
    fmt_flops_tick,
    fmt_ms_tick,
    fmt_ratio_tick,
    log_axis,
)
from halbench.report.figures import LAYOUT, measured_axis
from halbench.report.ratios import RatioEstimate, median_ratio, seed_ratio
from halbench.report.rows import group_by, median_of
from halbench.report.views import (
    COST_METRICS,
    REFERENCE_LOSS,
    ReportView,
    key_text,
    reference_label,
)

DASHES = ["solid", "dash", "dot", "dashdot", "longdash", "longdashdot"]  # per (d, key)
SYMBOLS = ["circle", "square", "diamond", "triangle-up", "x", "star"]  # one per key (C, M)
UNITS = {"time": fmt_ms_tick, "flops_fwd": fmt_flops_tick, "mem": fmt_bytes_tick}
RATIO_METRICS = [("time", "time"), ("flops_fwd", "FLOPs fwd")]


def cost_vs_batch(view: ReportView) -> go.Figure | None:
    """Loss-call time, FLOPs and memory against B on log-log axes, slopes in the legend."""
    points, source = view.cost, view.cost_source
    if len({p["batch_size"] for p in points}) < 2:
        return None
    fits = {(label, d, key): f for label, d, key, f in view.slopes}
    fig = make_subplots(
        rows=1, cols=len(COST_METRICS), subplot_titles=[name for _, name in COST_METRICS]
    )
    labels, color = view.order({p["loss"] for p in points}), view.colors
    keys = sorted({p["key"] for p in points}, key=str)
    styles = sorted({(p["embedding_dim"], p["key"]) for p in points}, key=str)
    drawn: dict[str, list[float]] = {metric: [] for metric, _ in COST_METRICS}
    for (label, d, key), rows in sorted(
        group_by(points, ["loss", "embedding_dim", "key"]).items(),
        key=lambda kv: (labels.index(kv[0][0]), kv[0][1]),
    ):
        per_b = group_by(rows, ["batch_size"])
        bs = sorted(b for (b,) in per_b)
        fit = fits[(label, d, key)]
        name = f"{label} d={d}" + (f" {key_text(key, source)}" if len(keys) > 1 else "")
        slope_text = ", ".join(
            f"{m} ∝ B^{fit[m]:.2f}" for m, _ in COST_METRICS if fit[m] is not None
        )
        for col, (metric, _) in enumerate(COST_METRICS, start=1):
            ys = [median_of(per_b[(b,)], metric) for b in bs]
            iqr = [median_of(per_b[(b,)], "time_iqr") for b in bs] if metric == "time" else []
            drawn[metric] += [y for y in ys if y is not None]
            fig.add_trace(
                _batch_line(
                    bs,
                    ys,
                    name,
                    col,
                    color[label],
                    DASHES[styles.index((d, key)) % len(DASHES)],
                    SYMBOLS[keys.index(key) % len(SYMBOLS)],
                    shown=f"{name} ({slope_text})" if slope_text else name,
                    error_y=dict(type="data", array=[(q or 0) / 2 for q in iqr], thickness=1)
                    if any(q for q in iqr if q)
                    else None,
                    hovertemplate=f"{name}<br>B=%{{x}}<br>%{{y:.3g}}<extra></extra>",
                ),
                row=1,
                col=col,
            )
    fig.update_xaxes(**measured_axis({p["batch_size"] for p in points}), title_text="batch size B")
    for col, (metric, _) in enumerate(COST_METRICS, start=1):
        title = {"time": "time per call", "flops_fwd": "FLOPs", "mem": "bytes"}[metric]
        fig.update_yaxes(**log_axis(drawn[metric], UNITS[metric]), title_text=title, col=col)
    fig.update_layout(
        **{**LAYOUT, "height": 520, "legend": dict(orientation="h", y=-0.25)},
        title_text=f"from the {source}"
        + ("; time bars: interquartile range of the repeats" if source == "profile" else ""),
    )
    return fig


def ratio_vs_batch(view: ReportView, threshold: float | None) -> go.Figure | None:
    """Cost ratio of every loss to NCA against B (log-log), with the claim's threshold line
    (none without a cost-ratio claim). The time ratio of trials is the geometric mean of
    per-seed ratios, drawn with its 95% interval: the interval the C2 verdict judges."""
    points = view.cost
    names = {p["loss"]: p["loss_name"] for p in points}
    ref = reference_label(names)
    if ref is None:
        return None
    cells = group_by(points, ["loss", "batch_size", "embedding_dim", "key"])
    fig = make_subplots(
        rows=1, cols=2, subplot_titles=[f"{n} / {REFERENCE_LOSS}" for _, n in RATIO_METRICS]
    )
    labels, color = [lb for lb in view.order(names) if lb != ref], view.colors
    keys = sorted({p["key"] for p in points}, key=str)
    styles = sorted({(p["embedding_dim"], p["key"]) for p in points}, key=str)
    dims = sorted({p["embedding_dim"] for p in points})
    extent: list[float] = [threshold] if threshold is not None else []
    for label in labels:
        for d in dims:
            for key in sorted({k[3] for k in cells if k[0] == label and k[2] == d}, key=str):
                bs = sorted({k[1] for k in cells if k[0] == label and k[2] == d and k[3] == key})
                name = f"{label} d={d}" + (
                    f" {key_text(key, view.cost_source)}" if len(keys) > 1 else ""
                )
                for col, (metric, _) in enumerate(RATIO_METRICS, start=1):
                    ests = [
                        _ratio(cells[(label, b, d, key)], cells.get((ref, b, d, key), []), metric)
                        for b in bs
                    ]
                    if all(e is None for e in ests):
                        continue
                    extent += [v for e in ests if e is not None for v in (e.value, e.lo, e.hi) if v]
                    fig.add_trace(
                        _batch_line(
                            bs,
                            [None if e is None else e.value for e in ests],
                            name,
                            col,
                            color[label],
                            DASHES[styles.index((d, key)) % len(DASHES)],
                            SYMBOLS[keys.index(key) % len(SYMBOLS)],
                            error_y=_interval_bars(ests),
                        ),
                        row=1,
                        col=col,
                    )
    if not fig.data:
        return None
    # The threshold is a legend entry, not an annotation: an annotation's y on a log axis is
    # read as log10(y), which put a stray "0.1" label on every panel.
    for col in (1, 2) if threshold is not None else ():
        fig.add_hline(y=threshold, line=dict(color="crimson", dash="dash"), row=1, col=col)
    if threshold is not None:
        fig.add_trace(
            go.Scatter(
                x=[None],
                y=[None],
                mode="lines",
                name=f"claim threshold {threshold:g}×",
                line=dict(color="crimson", dash="dash"),
            )
        )
    axis = log_axis(extent, fmt_ratio_tick)
    fig.update_xaxes(**measured_axis({p["batch_size"] for p in points}), title_text="batch size B")
    fig.update_yaxes(**axis, title_text=f"ratio to {ref}", col=1)
    fig.update_yaxes(**axis, col=2)
    bars = "; bars: 95% interval of the per-seed time ratio" if view.cost_source == "trials" else ""
    fig.update_layout(**{**LAYOUT, "height": 460}, title_text=f"from the {view.cost_source}{bars}")
    return fig


def _ratio(rows: list, ref_rows: list, metric: str) -> RatioEstimate | None:
    """The time ratio per seed (with its interval); FLOPs as a ratio of medians."""
    if metric == "time":
        return seed_ratio(rows, ref_rows, "time")
    value = median_ratio(rows, ref_rows, metric)
    return None if value is None else RatioEstimate(value, None, None, 0)


def _interval_bars(ests: list[RatioEstimate | None]) -> dict[str, Any] | None:
    """Asymmetric error bars from each ratio's 95% interval; None when no point has one."""
    if not any(e is not None and e.lo is not None for e in ests):
        return None
    return dict(
        type="data",
        symmetric=False,
        array=[e.hi - e.value if e is not None and e.hi is not None else 0 for e in ests],
        arrayminus=[e.value - e.lo if e is not None and e.lo is not None else 0 for e in ests],
        thickness=1.5,
    )


def _batch_line(
    bs: list[Any],
    ys: list[Any],
    name: str,
    col: int,
    color: str,
    dash: str,
    symbol: str,
    *,
    shown: str | None = None,
    **extra: Any,
) -> go.Scatter:
    """One loss's line over batch sizes: its legend entry once (first panel), its dash and
    marker telling apart what shares its colour (d, C, device)."""
    return go.Scatter(
        x=bs,
        y=ys,
        name=shown or name,
        legendgroup=name,
        showlegend=col == 1,
        mode="lines+markers",
        line=dict(color=color, dash=dash),
        marker=dict(symbol=symbol, size=7),
        **extra,
    )
