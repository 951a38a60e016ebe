"""Plotly figures of one suite group. Each function returns None when the data is absent."""

from __future__ import annotations

from typing import Any

import plotly.graph_objects as go
from plotly.colors import qualitative
from plotly.subplots import make_subplots

from halbench.report.load import RunGroup
from halbench.report.stats import mean_ci
from halbench.report.tables import (
    COST_METRICS,
    REFERENCE_LOSS,
    Row,
    cost_points,
    group_by,
    loss_order,
    median_of,
    ok_rows,
    percent_estimate,
    primary_k,
    ratio,
    reference_label,
    slopes,
)

PALETTE = qualitative.Plotly + qualitative.D3
DASHES = ["solid", "dash", "dot", "dashdot", "longdash"]  # one per embedding dim
LAYOUT = dict(
    template="plotly_white",
    height=420,
    margin=dict(l=60, r=20, t=60, b=50),
    legend=dict(orientation="h", y=-0.18),
)


def colors(group: RunGroup, labels: set[str]) -> dict[str, str]:
    """One colour per loss label, stable across the figures of a group."""
    everything = loss_order(
        group,
        set(group.trials["loss"].drop_nulls().to_list())
        | set(group.profile["loss"].drop_nulls().to_list())
        | labels,
    )
    return {label: PALETTE[i % len(PALETTE)] for i, label in enumerate(everything)}


def accuracy_vs(group: RunGroup, dataset: str, x: str) -> go.Figure | None:
    """k-NN accuracy (mean ± 95% CI) against batch size or embedding dim, one panel per value of
    the other parameter."""
    k = primary_k(group)
    rows = [r for r in ok_rows(group) if r["dataset"] == dataset]
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
    labels = loss_order(group, {r["loss"] for r in rows})
    color = colors(group, set(labels))
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
                    error_y=dict(type="data", array=[p[1].half_width or 0 for p in pts]),
                ),
                row=1,
                col=col,
            )
        fig.update_xaxes(
            type="log",
            title_text={"batch_size": "batch size", "embedding_dim": "embedding dim"}[x],
            row=1,
            col=col,
        )
    fig.update_yaxes(title_text=f"k-NN@{k} accuracy (%)", row=1, col=1)
    fig.update_layout(**LAYOUT)
    return fig


def accuracy_per_epoch(group: RunGroup, dataset: str) -> go.Figure | None:
    """Accuracy per epoch of each loss at its best configuration: mean line, 95% CI band."""
    k = primary_k(group)
    column = f"knn_acc_{k}"
    if k is None or column not in group.epochs.columns:
        return None
    epochs = [
        r
        for r in group.epochs.to_dicts()
        if r["dataset"] == dataset and r["status"] == "ok" and r.get(column) is not None
    ]
    if not epochs:
        return None
    finals = ok_rows(group)
    fig = go.Figure()
    labels = loss_order(group, {r["loss"] for r in epochs})
    color = colors(group, set(labels))
    for label in labels:
        configs = group_by(
            [r for r in finals if r["dataset"] == dataset and r["loss"] == label],
            ["batch_size", "embedding_dim"],
        )
        scored = [(percent_estimate(c, column), key) for key, c in configs.items()]
        scored = [s for s in scored if s[0] is not None]
        if not scored:
            continue
        b, d = max(scored, key=lambda s: s[0].mean)[1]
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
            lo.append(est.lo if est.lo is not None else est.mean)
            hi.append(est.hi if est.hi is not None else est.mean)
        fig.add_trace(
            go.Scatter(
                x=xs + xs[::-1],
                y=hi + lo[::-1],
                fill="toself",
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
    return fig


def cost_vs_batch(group: RunGroup) -> go.Figure | None:
    """Loss-call time, FLOPs and memory against B on log-log axes, slopes in the legend."""
    points, source = cost_points(group)
    if len({p["batch_size"] for p in points}) < 2:
        return None
    dims = sorted({p["embedding_dim"] for p in points})
    fits = {(label, d, key): f for label, d, key, f in slopes(group)}
    fig = make_subplots(
        rows=1, cols=len(COST_METRICS), subplot_titles=[name for _, name in COST_METRICS]
    )
    labels = loss_order(group, {p["loss"] for p in points})
    color = colors(group, set(labels))
    keys = sorted({str(p["key"]) for p in points})
    for (label, d, key), rows in sorted(
        group_by(points, ["loss", "embedding_dim", "key"]).items(),
        key=lambda kv: (labels.index(kv[0][0]), kv[0][1]),
    ):
        per_b = group_by(rows, ["batch_size"])
        bs = sorted(b for (b,) in per_b)
        fit = fits[(label, d, key)]
        name = f"{label} d={d}" + (f" {key}" if len(keys) > 1 else "")
        slope_text = ", ".join(
            f"{m} ∝ B^{fit[m]:.2f}" for m, _ in COST_METRICS if fit[m] is not None
        )
        for col, (metric, _) in enumerate(COST_METRICS, start=1):
            ys = [median_of(per_b[(b,)], metric) for b in bs]
            fig.add_trace(
                go.Scatter(
                    x=bs,
                    y=ys,
                    name=f"{name} ({slope_text})" if slope_text else name,
                    legendgroup=name,
                    showlegend=col == 1,
                    mode="lines+markers",
                    line=dict(color=color[label], dash=DASHES[dims.index(d) % len(DASHES)]),
                    hovertemplate=f"{name}<br>B=%{{x}}<br>%{{y:.3g}}<extra></extra>",
                ),
                row=1,
                col=col,
            )
    fig.update_xaxes(type="log", title_text="batch size B")
    fig.update_yaxes(type="log")
    for col, unit in enumerate(["ms", "FLOPs", "bytes"], start=1):
        fig.update_yaxes(title_text=unit, row=1, col=col)
    fig.update_layout(
        **{**LAYOUT, "height": 520, "legend": dict(orientation="h", y=-0.25)},
        title_text=f"from the {source}",
    )
    return fig


def ratio_vs_batch(group: RunGroup, threshold: float = 0.1) -> go.Figure | None:
    """Cost ratio of every loss to NCA against B (log-log), with the threshold line."""
    points, _ = cost_points(group)
    names = {p["loss"]: p["loss_name"] for p in points}
    ref = reference_label(names, names)
    if ref is None:
        return None
    cells = group_by(points, ["loss", "batch_size", "embedding_dim", "key"])
    metrics = [("time", "time"), ("flops_fwd", "FLOPs fwd")]
    fig = make_subplots(
        rows=1, cols=2, subplot_titles=[f"{n} / {REFERENCE_LOSS}" for _, n in metrics]
    )
    labels = [lb for lb in loss_order(group, set(names)) if lb != ref]
    color = colors(group, set(labels))
    dims = sorted({p["embedding_dim"] for p in points})
    drawn = False
    for label in labels:
        for d in dims:
            for key in sorted({k[3] for k in cells if k[0] == label and k[2] == d}, key=str):
                bs = sorted({k[1] for k in cells if k[0] == label and k[2] == d and k[3] == key})
                name = f"{label} d={d}"
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
                        go.Scatter(
                            x=bs,
                            y=ys,
                            name=name,
                            legendgroup=name,
                            showlegend=col == 1,
                            mode="lines+markers",
                            line=dict(color=color[label], dash=DASHES[dims.index(d) % len(DASHES)]),
                        ),
                        row=1,
                        col=col,
                    )
    if not drawn:
        return None
    for col in (1, 2):
        fig.add_hline(
            y=threshold,
            line=dict(color="crimson", dash="dash"),
            row=1,
            col=col,
            annotation_text=f"{threshold:g}",
            annotation_position="bottom right",
        )
    fig.update_xaxes(type="log", title_text="batch size B")
    fig.update_yaxes(type="log", title_text=f"ratio to {ref}", col=1)
    fig.update_yaxes(type="log", col=2)
    fig.update_layout(**{**LAYOUT, "height": 460})
    return fig


def pareto(group: RunGroup, dataset: str) -> go.Figure | None:
    """Accuracy against loss-call time per (loss, B, d), with the Pareto front."""
    k = primary_k(group)
    rows = [r for r in ok_rows(group) if r["dataset"] == dataset]
    pts: list[dict[str, Any]] = []
    for (label, b, d), cell in group_by(rows, ["loss", "batch_size", "embedding_dim"]).items():
        est = percent_estimate(cell, f"knn_acc_{k}")
        ms = median_of(cell, "loss_call_ms")
        if est is not None and ms:
            pts.append({"loss": label, "b": b, "d": d, "ms": ms, "acc": est.mean})
    if k is None or len(pts) < 2:
        return None
    fig = go.Figure()
    labels = loss_order(group, {p["loss"] for p in pts})
    color = colors(group, set(labels))
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
