"""Figures of a tuned group: tuning curves and per-key sensitivity. None when there is no data."""

from __future__ import annotations

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from halbench.report.figures import LAYOUT
from halbench.report.tuning import config_of, groups_of, score, suite_space
from halbench.report.views import ReportView

DASHES = ["solid", "dash", "dot", "dashdot"]  # one per tuning group of one loss


def tuning_curves(view: ReportView) -> go.Figure | None:
    """Best validation score so far against the tuning trial index, one line per group."""
    groups = groups_of(view)
    if not any(score(r) is not None for _, rows in groups for r in rows):
        return None
    fig = go.Figure()
    seen: dict[str, int] = {}
    for label, rows in groups:
        loss = str(rows[0]["loss"])
        best, xs, ys = None, [], []
        for r in rows:
            s = score(r)
            if s is not None and (best is None or s > best):
                best = s
            if best is not None:
                xs.append(int(r["trial_index"]))
                ys.append(100 * best)
        n = seen[loss] = seen.get(loss, -1) + 1
        fig.add_trace(
            go.Scatter(
                x=xs,
                y=ys,
                name=label,
                mode="lines+markers",
                line=dict(color=view.colors.get(loss), shape="hv", dash=DASHES[n % len(DASHES)]),
            )
        )
    fig.update_layout(
        xaxis_title="tuning trial (0 = hand-set default)",
        yaxis_title="best validation score so far (%)",
        **LAYOUT,
    )
    fig.update_xaxes(tickformat="d", dtick=1 if len(view.tuning) <= 40 else None)
    return fig


def sensitivity(view: ReportView) -> go.Figure | None:
    """Validation score against the value of each tuned key (one panel per key), one marker
    colour per loss; log x for keys sampled log-uniformly."""
    keys = sorted({k for r in view.tuning for k in config_of(r)})
    if not keys or all(score(r) is None for r in view.tuning):
        return None
    entries = suite_space(view.suite)
    logs = {
        key
        for key in keys
        if (kinds := {e.kind for e in entries if e.key == key}) and kinds == {"loguniform"}
    }
    fig = make_subplots(rows=1, cols=len(keys), shared_yaxes=True, subplot_titles=keys)
    for col, key in enumerate(keys, start=1):
        for label in view.order({r["loss"] for r in view.tuning}):
            pts = [
                (config_of(r)[key], 100 * s)
                for r in view.tuning
                if r["loss"] == label and key in config_of(r) and (s := score(r)) is not None
            ]
            if not pts:
                continue
            fig.add_trace(
                go.Scatter(
                    x=[p[0] for p in pts],
                    y=[p[1] for p in pts],
                    name=label,
                    legendgroup=label,
                    showlegend=col == 1,
                    mode="markers",
                    marker=dict(color=view.colors.get(label), size=8, opacity=0.8),
                ),
                row=1,
                col=col,
            )
        fig.update_xaxes(type="log" if key in logs else None, title_text=key, row=1, col=col)
    fig.update_yaxes(title_text="validation score (%)", row=1, col=1)
    fig.update_layout(**{**LAYOUT, "height": 380})
    return fig
