"""Plotly figures of one suite group. Each function returns None when the data is absent."""

from __future__ import annotations

from typing import Any

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from halbench.report.axes import fmt_ms_tick, log_axis
from halbench.report.rows import Row, finite, group_by, median_of, percent_estimate
from halbench.report.stats import mean_ci
from halbench.report.views import ReportView, best_configs

INTEGER_TICKS = dict(tickformat="d", tick0=1, dtick=1)  # epochs: no fractional ticks


def measured_axis(values: set) -> dict:
    """A log axis labelled at the measured values (batch sizes, embedding dims)."""
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
            **measured_axis({r[x] for r in rows}),
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
    if k is None:
        return None
    return per_epoch(view, dataset, f"knn_acc_{k}", 100.0, f"k-NN@{k} accuracy (%)", clip=True)


def train_loss_per_epoch(view: ReportView, dataset: str) -> go.Figure | None:
    """Training loss per epoch of each loss at its best configuration (epochs.parquet's
    train_loss: the mean over the epoch's steps). Each loss has its own scale: read the shape,
    not the level across losses."""
    return per_epoch(view, dataset, "train_loss", 1.0, "training loss (own scale per loss)")


def per_epoch(
    view: ReportView, dataset: str, column: str, scale: float, title: str, clip: bool = False
) -> go.Figure | None:
    """column per epoch of each loss at its best configuration (by accuracy at the primary k,
    or the validation score when tuned): mean over seeds, 95% CI band."""
    k = view.k
    if k is None or column not in view.group.epochs.columns:
        return None
    epochs = [r for r in view.ok_epochs if r["dataset"] == dataset and finite(r.get(column))]
    if not epochs:
        return None
    fig = go.Figure()
    labels, color = view.order({r["loss"] for r in epochs}), view.colors
    picks = best_configs(view, dataset, f"knn_acc_{k}")
    bound = _clip if clip else float
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
            est = mean_ci([scale * r[column] for r in rs])
            xs.append(epoch)
            mean.append(est.mean)
            lo.append(bound(est.lo) if est.lo is not None else est.mean)
            hi.append(bound(est.hi) if est.hi is not None else est.mean)
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
    fig.update_layout(xaxis_title="epoch", yaxis_title=title, **LAYOUT)
    fig.update_xaxes(**INTEGER_TICKS)
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
    fig.update_xaxes(**log_axis([p["ms"] for p in pts], fmt_ms_tick))
    fig.update_layout(
        xaxis_title="loss-call time (median over seeds)",
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
