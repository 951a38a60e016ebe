"""What every table, claim and figure of one suite group reads, computed once per report.

`build_view(group)` turns the group's frames into the views the report needs: the ok rows as
dicts, the evaluated ks and the one primary k, the loss order and colours, the cost points and
their slopes. Tables, claims, figures and compare take the view instead of recomputing these.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import polars as pl
from plotly.colors import qualitative

from halbench.report.load import RunGroup
from halbench.report.rows import Row, group_by, median_of, percent_estimate
from halbench.report.stats import loglog_slope
from halbench.results import primary_k

REFERENCE_LOSS = "nca"  # cost ratios are to this registry name, at the same B and d
PALETTE = qualitative.Plotly + qualitative.D3
COST_METRICS = [("time", "time"), ("flops_fwd", "FLOPs fwd"), ("mem", "peak memory")]
Slope = tuple[str, int, Any, dict[str, float | None]]  # (loss, d, key, {metric: slope})


@dataclass
class ReportView:
    """One suite group, read once: see the module docstring."""

    group: RunGroup
    ok: list[Row]  # ok trial rows (of the final phase when the run has one)
    failed: list[Row]  # the other trial rows of that phase: status and error
    ok_epochs: list[Row]  # epoch rows of ok trials (with the trial keys)
    profile_rows: list[Row]  # every profile point, ok or not
    ks: list[int]  # the suite's ks that have data, else every knn_acc_<k> with data
    k: int | None  # the primary k (results.primary_k)
    losses: list[str]  # every loss label: suite order, then the others alphabetically
    colors: dict[str, str]  # one colour per loss label, the same in every figure
    datasets: list[str]  # datasets of the ok trials, as the rows name them
    cost: list[Row]  # uniform cost points (see cost_points)
    cost_source: str  # "profile" or "trials"
    slopes: list[Slope] = field(default_factory=list)
    tuning: list[Row] = field(default_factory=list)  # tuning.parquet rows (tuned suites)
    final_phase: bool = False  # ok/failed are the phase = "final" rows of a tuned run

    @property
    def tuned(self) -> bool:
        """Whether configurations were chosen on a validation split (a `tune:` protocol)."""
        return bool(self.tuning) or self.final_phase or isinstance(self.suite.get("tune"), dict)

    @property
    def select_by(self) -> str | None:
        """The column that picks a loss's best (B, d): its validation score when tuned, never
        the test accuracy; None (pick by test accuracy, exploratory) otherwise."""
        if self.tuned and any(r.get("val_score") is not None for r in self.ok):
            return "val_score"
        return None

    @property
    def suite(self) -> dict[str, Any]:
        return self.group.suite

    def order(self, labels: Iterable[str]) -> list[str]:
        """These labels in the report's loss order."""
        wanted = set(labels)
        return [label for label in self.losses if label in wanted]

    def k_for(self, wanted: int | None) -> int | None:
        """The k a claim asks for when it was evaluated, else the primary k."""
        return primary_k(self.ks, wanted)


def suite_list(suite: dict[str, Any], *path: str) -> list[Any]:
    """suite[path[0]][path[1]]... when it is a list, else []: the suite is the run directory's
    file read as plain data, so any part of it may have any shape."""
    node: Any = suite
    for key in path:
        node = node.get(key) if isinstance(node, dict) else None
    return node if isinstance(node, list) else []


def suite_loss_labels(suite: dict[str, Any]) -> list[str]:
    """Loss labels in suite order (entries given as mappings; a label defaults to the name)."""
    return [
        str(entry.get("label") or entry.get("name"))
        for entry in suite_list(suite, "losses")
        if isinstance(entry, dict)
    ]


def ks_of(group: RunGroup) -> list[int]:
    """The suite's k values that have data, else every knn_acc_<k> column with data."""
    with_data = sorted(
        int(c.rsplit("_", 1)[1])
        for c in group.trials.columns
        if re.fullmatch(r"knn_acc_\d+", c) and group.trials[c].drop_nulls().len() > 0
    )
    suite_ks = suite_list(group.suite, "eval", "ks")
    chosen = sorted({k for k in suite_ks if isinstance(k, int) and k in with_data})
    return chosen or with_data


def reference_label(names: dict[str, str]) -> str | None:
    """The label of the reference loss (NCA) among label -> registry name: the label 'nca'
    itself, else the first with that registry name."""
    candidates = sorted(lb for lb, name in names.items() if name == REFERENCE_LOSS)
    if REFERENCE_LOSS in candidates:
        return REFERENCE_LOSS
    return candidates[0] if candidates else None


def cost_points(ok: list[Row], profile_rows: list[Row]) -> tuple[list[Row], str]:
    """Uniform cost rows (loss, loss_name, B, d, time, flops_fwd, flops_bwd, mem, key), and their
    source: the profile when the group has one (controlled measurement), else the trials."""
    prof = [r for r in profile_rows if r["status"] == "ok"]
    if prof:
        return [
            {
                "loss": r["loss"],
                "loss_name": r["loss_name"],
                "batch_size": r["batch_size"],
                "embedding_dim": r["embedding_dim"],
                "time": r["time_fwdbwd_ms"],
                "time_iqr": r.get("time_fwdbwd_iqr_ms"),
                "flops_fwd": r["flops_fwd"],
                "flops_bwd": r["flops_bwd"],
                "mem": r["peak_mem_bytes"],
                "key": (r["num_classes"], r["memory_size"], r["device"]),
            }
            for r in prof
        ], "profile"
    return [
        {
            "loss": r["loss"],
            "loss_name": r["loss_name"],
            "batch_size": r["batch_size"],
            "embedding_dim": r["embedding_dim"],
            "time": r["loss_call_ms"],
            "flops_fwd": r["loss_flops_fwd"],
            "flops_bwd": r["loss_flops_bwd"],
            "mem": r["loss_peak_mem_bytes"],
            "key": (r["dataset"],),
            "seed": r["seed"],
        }
        for r in ok
    ], "trials"


def key_text(key: tuple, source: str) -> str:
    """A cost point's key for a legend or a table: 'C=10 M=0 cpu' (profile), the dataset."""
    if source == "profile" and len(key) == 3:
        c, m, device = key
        return " ".join(
            part
            for part in (
                f"C={c}" if c is not None else "",
                f"M={m}" if m else "",
                str(device or ""),
            )
            if part
        )
    return " ".join(str(x) for x in key if x is not None)


def slopes_of(points: list[Row]) -> list[Slope]:
    """(loss, d, key, {metric: log-log slope against B}) from medians per point."""
    out = []
    for (label, d, key), rows in group_by(points, ["loss", "embedding_dim", "key"]).items():
        per_b = group_by(rows, ["batch_size"])
        bs = sorted(b for (b,) in per_b)
        fits = {}
        for metric, _ in COST_METRICS:
            ys = [median_of(per_b[(b,)], metric) for b in bs]
            xs = [b for b, y in zip(bs, ys, strict=True) if y is not None]
            fits[metric] = loglog_slope(xs, [y for y in ys if y is not None])
        out.append((label, d, key, fits))
    return out


def best_configs(view: ReportView, dataset: str, column: str) -> dict[str, tuple[int, int]]:
    """Each loss's (B, d) with the highest mean over seeds on this dataset: of the validation
    score when the run was tuned (view.select_by), else of column (the test accuracy)."""
    column = view.select_by or column
    cells_by = group_by(
        [r for r in view.ok if r["dataset"] == dataset], ["loss", "batch_size", "embedding_dim"]
    )
    picks = {}
    for label in view.order({key[0] for key in cells_by}):
        cands = [
            (est, (key[1], key[2]))
            for key, cell in cells_by.items()
            if key[0] == label and (est := percent_estimate(cell, column)) is not None
        ]
        if cands:
            picks[label] = max(cands, key=lambda c: c[0].mean)[1]
    return picks


def with_val_scores(ok: list[Row], tuning: list[Row]) -> list[Row]:
    """Final rows with their validation score: their own val_score, else the last_val of the
    tuning trial they came from (tuned_from), else of the chosen trial at their (loss, B, d)."""
    by_id = {r["trial_id"]: r.get("last_val") for r in tuning}
    chosen = {
        (r["dataset"], r["loss"], r["batch_size"], r["embedding_dim"]): r.get("last_val")
        for r in tuning
        if r.get("chosen")
    }
    out = []
    for r in ok:
        if r.get("val_score") is None:
            key = (r["dataset"], r["loss"], r["batch_size"], r["embedding_dim"])
            score = by_id.get(r.get("tuned_from")) if r.get("tuned_from") else None
            r = {**r, "val_score": score if score is not None else chosen.get(key)}
        out.append(r)
    return out


def build_view(group: RunGroup) -> ReportView:
    """Everything the report reads of this group, computed once."""
    trials = group.trials
    # A tuned run's claims rest on its final rows only (phase 1 lives in tuning.parquet).
    final_phase = bool(trials.height) and (trials["phase"] == "final").any()
    if final_phase:
        trials = trials.filter(pl.col("phase") == "final")
    ok = trials.filter(pl.col("status") == "ok").to_dicts()
    tuning = group.tuning.to_dicts()
    if tuning:
        ok = with_val_scores(ok, tuning)
    failed = trials.filter(pl.col("status") != "ok").to_dicts()
    ok_ids = {(r["dataset"], r["trial_id"]) for r in ok}
    epochs = group.epochs
    ok_epochs = (
        [
            r
            for r in epochs.filter(pl.col("status") == "ok").to_dicts()
            if (r["dataset"], r["trial_id"]) in ok_ids
        ]
        if "status" in epochs.columns
        else []
    )
    profile_rows = group.profile.to_dicts()
    labels = set(group.trials["loss"].drop_nulls().to_list()) | set(
        group.profile["loss"].drop_nulls().to_list()
    )
    first = [label for label in suite_loss_labels(group.suite) if label in labels]
    losses = first + sorted(labels - set(first))
    ks = ks_of(group)
    cost, source = cost_points(ok, profile_rows)
    return ReportView(
        group=group,
        ok=ok,
        failed=failed,
        ok_epochs=ok_epochs,
        profile_rows=profile_rows,
        ks=ks,
        k=primary_k(ks),
        losses=losses,
        colors={label: PALETTE[i % len(PALETTE)] for i, label in enumerate(losses)},
        datasets=sorted({str(r["dataset"]) for r in ok}),
        cost=cost,
        cost_source=source,
        slopes=slopes_of(cost),
        tuning=tuning,
        final_phase=final_phase,
    )
