"""Plotly figures of one suite group. Each function returns None when the data is absent."""

from __future__ import annotations

from typing import Any

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from halbench.report.rows import Row, group_by, median_of, percent_estimate, ratio
from halbench.report.stats import mean_ci
from halbench.report.views import (
    COST_METRICS,
    REFERENCE_LOSS,
    ReportView,
    best_configs,
    key_text,
    reference_label,
)

DASHES = ["solid", "dash", "dot", "dashdot", "longdash", "longdashdot"]  # per (d, key)
SYMBOLS = ["circle", "square", "diamond", "triangle-up", "x", "star"]  # one per key (C, M)
INTEGER_TICKS = dict(tickformat="d", tick0=1, dtick=1)  # epochs: no fractional ticks


# Log axes label decades only (no "2", "5" minor labels crowding the panels); batch-size and
# embedding-size axes label the measured values.
DECADES = dict(type="log", dtick=1)


def _measured(values: set) -> dict:
    return dict(type="log", tickvals=sorted(values), ticktext=[str(v) for v in sorted(values)])


def _clip(value: float) -> float:
    """An accuracy bound within [0, 100]%: a t interval may run past either end."""
    return min(100.0, max(0.0, value))


LAYOUT = dict(
    template="plotly_white",
    height=420,
    margin=dict(l=60, r=20, t=60, b=50),
    legend=dict(orientation="h", y=-0.18),
)


def accuracy_vs(view: ReportView, dataset: str, x: str) -> go.Figure | None:
    """k-NN accuracy (mean ± 95% CI) against batch size or embedding dim, one panel per value of
    the other parameter."""
    k = view.k
    rows = [r for r in view.ok if r["dataset"] == dataset]
    other = "embedding_dim" if x == "batch_size" else "batch_size"
    panels = sorted({r[other] for r in rows})
    if k is None or not rows or len({r[x] for r in rows}) < 2:
        return None
    short = {"batch_size": "B", "embedding_dim": "d"}
    fig = make_subplots(
        rows=1,
        cols=len(panels),
        shared_yaxes=True,
        subplot_titles=[f"{short[other]}={p}" for p in panels],
    )
    labels, color = view.order({r["loss"] for r in rows}), view.colors
    for col, panel in enumerate(panels, start=1):
        for label in labels:
            cells = group_by([r for r in rows if r["loss"] == label and r[other] == panel], [x])
            pts = [(xv, percent_estimate(c, f"knn_acc_{k}")) for (xv,), c in sorted(cells.items())]
            pts = [(xv, e) for xv, e in pts if e is not None]
            if not pts:
                continue
            fig.add_trace(
                go.Scatter(
                    x=[p[0] for p in pts],
                    y=[p[1].mean for p in pts],
                    name=label,
                    legendgroup=label,
                    showlegend=col == 1,
                    mode="lines+markers",
                    line=dict(color=color[label]),
                    error_y=dict(
                        type="data",
                        symmetric=False,
                        array=[
                            _clip(p[1].hi) - p[1].mean if p[1].hi is not None else 0 for p in pts
                        ],
                        arrayminus=[
                            p[1].mean - _clip(p[1].lo) if p[1].lo is not None else 0 for p in pts
                        ],
                    ),
                ),
                row=1,
                col=col,
            )
        fig.update_xaxes(
            **_measured({r[x] for r in rows}),
            title_text={"batch_size": "batch size", "embedding_dim": "embedding dim"}[x],
            row=1,
            col=col,
        )
    fig.update_yaxes(title_text=f"k-NN@{k} accuracy (%)", row=1, col=1)
    fig.update_layout(**LAYOUT)
    return fig


def accuracy_per_epoch(view: ReportView, dataset: str) -> go.Figure | None:
    """Accuracy per epoch of each loss at its best configuration: mean line, 95% CI band."""
    k = view.k
    column = f"knn_acc_{k}"
    if k is None or column not in view.group.epochs.columns:
        return None
    epochs = [r for r in view.ok_epochs if r["dataset"] == dataset and r.get(column) is not None]
    if not epochs:
        return None
    fig = go.Figure()
    labels, color = view.order({r["loss"] for r in epochs}), view.colors
    picks = best_configs(view, dataset, column)
    for label in labels:
        if label not in picks:
            continue
        b, d = picks[label]
        per_epoch = group_by(
            [
                r
                for r in epochs
                if r["loss"] == label and r["batch_size"] == b and r["embedding_dim"] == d
            ],
            ["epoch"],
        )
        xs, mean, lo, hi = [], [], [], []
        for (epoch,), rs in sorted(per_epoch.items()):
            est = mean_ci([100.0 * r[column] for r in rs])
            xs.append(epoch)
            mean.append(est.mean)
            lo.append(_clip(est.lo) if est.lo is not None else est.mean)
            hi.append(_clip(est.hi) if est.hi is not None else est.mean)
        fig.add_trace(
            go.Scatter(
                x=xs + xs[::-1],
                y=hi + lo[::-1],
                fill="toself",
                mode="lines",
                fillcolor=color[label],
                opacity=0.2,
                line=dict(width=0),
                hoverinfo="skip",
                legendgroup=label,
                showlegend=False,
            )
        )
        fig.add_trace(
            go.Scatter(
                x=xs,
                y=mean,
                name=f"{label} (B={b}, d={d})",
                legendgroup=label,
                mode="lines+markers",
                line=dict(color=color[label]),
            )
        )
    fig.update_layout(xaxis_title="epoch", yaxis_title=f"k-NN@{k} accuracy (%)", **LAYOUT)
    fig.update_xaxes(**INTEGER_TICKS)
    return fig


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
    fig.update_xaxes(**_measured({p["batch_size"] for p in points}), title_text="batch size B")
    fig.update_yaxes(**DECADES)
    for col, unit in enumerate(["ms", "FLOPs", "bytes"], start=1):
        fig.update_yaxes(title_text=unit, row=1, col=col)
    fig.update_layout(
        **{**LAYOUT, "height": 520, "legend": dict(orientation="h", y=-0.25)},
        title_text=f"from the {source}"
        + ("; time bars: interquartile range of the repeats" if source == "profile" else ""),
    )
    return fig


def ratio_vs_batch(view: ReportView, threshold: float | None) -> go.Figure | None:
    """Cost ratio of every loss to NCA against B (log-log), with the claim's threshold line
    (none without a cost-ratio claim)."""
    points = view.cost
    names = {p["loss"]: p["loss_name"] for p in points}
    ref = reference_label(names)
    if ref is None:
        return None
    cells = group_by(points, ["loss", "batch_size", "embedding_dim", "key"])
    metrics = [("time", "time"), ("flops_fwd", "FLOPs fwd")]
    fig = make_subplots(
        rows=1, cols=2, subplot_titles=[f"{n} / {REFERENCE_LOSS}" for _, n in metrics]
    )
    labels, color = [lb for lb in view.order(names) if lb != ref], view.colors
    keys = sorted({p["key"] for p in points}, key=str)
    styles = sorted({(p["embedding_dim"], p["key"]) for p in points}, key=str)
    dims = sorted({p["embedding_dim"] for p in points})
    drawn = False
    for label in labels:
        for d in dims:
            for key in sorted({k[3] for k in cells if k[0] == label and k[2] == d}, key=str):
                bs = sorted({k[1] for k in cells if k[0] == label and k[2] == d and k[3] == key})
                name = f"{label} d={d}" + (
                    f" {key_text(key, view.cost_source)}" if len(keys) > 1 else ""
                )
                for col, (metric, _) in enumerate(metrics, start=1):
                    ys = [
                        ratio(
                            median_of(cells[(label, b, d, key)], metric),
                            median_of(cells.get((ref, b, d, key), []), metric),
                        )
                        for b in bs
                    ]
                    if all(y is None for y in ys):
                        continue
                    drawn = True
                    fig.add_trace(
                        _batch_line(
                            bs,
                            ys,
                            name,
                            col,
                            color[label],
                            DASHES[styles.index((d, key)) % len(DASHES)],
                            SYMBOLS[keys.index(key) % len(SYMBOLS)],
                        ),
                        row=1,
                        col=col,
                    )
    if not drawn:
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
    fig.update_xaxes(**_measured({p["batch_size"] for p in points}), title_text="batch size B")
    fig.update_yaxes(**DECADES, title_text=f"ratio to {ref}", col=1)
    fig.update_yaxes(**DECADES, col=2)
    fig.update_layout(**{**LAYOUT, "height": 460})
    return fig


def pareto(view: ReportView, dataset: str) -> go.Figure | None:
    """Accuracy against loss-call time per (loss, B, d), with the Pareto front."""
    k = view.k
    rows = [r for r in view.ok if r["dataset"] == dataset]
    pts: list[dict[str, Any]] = []
    for (label, b, d), cell in group_by(rows, ["loss", "batch_size", "embedding_dim"]).items():
        est = percent_estimate(cell, f"knn_acc_{k}")
        ms = median_of(cell, "loss_call_ms")
        if est is not None and ms:
            pts.append({"loss": label, "b": b, "d": d, "ms": ms, "acc": est.mean})
    if k is None or len(pts) < 2:
        return None
    fig = go.Figure()
    labels, color = view.order({p["loss"] for p in pts}), view.colors
    for label in labels:
        mine = [p for p in pts if p["loss"] == label]
        fig.add_trace(
            go.Scatter(
                x=[p["ms"] for p in mine],
                y=[p["acc"] for p in mine],
                name=label,
                mode="markers",
                marker=dict(color=color[label], size=10),
                text=[f"B={p['b']} d={p['d']}" for p in mine],
                hovertemplate="%{text}<br>%{x:.3g} ms<br>%{y:.2f}%<extra>" + label + "</extra>",
            )
        )
    front = pareto_front(pts)
    fig.add_trace(
        go.Scatter(
            x=[p["ms"] for p in front],
            y=[p["acc"] for p in front],
            name="Pareto front",
            mode="lines",
            line=dict(color="black", dash="dot", shape="hv"),
        )
    )
    fig.update_layout(
        xaxis_type="log",
        xaxis_title="loss-call time (ms, median)",
        yaxis_title=f"k-NN@{k} accuracy (%)",
        **LAYOUT,
    )
    return fig


def pareto_front(points: list[Row]) -> list[Row]:
    """Points not beaten by another that is both faster and at least as accurate, by time."""
    front: list[Row] = []
    for p in sorted(points, key=lambda p: (p["ms"], -p["acc"])):
        if not front or p["acc"] > front[-1]["acc"]:
            front.append(p)
    return front


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
