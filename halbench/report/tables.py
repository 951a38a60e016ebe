"""Header, accuracy and cost tables of one suite group.

Accuracy is in percent points (trials store fractions in [0, 1]); every accuracy cell is the mean
over seeds of the ok trials with its 95% t interval.
"""

from __future__ import annotations

import math
import re
import statistics
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import polars as pl

from halbench.report.load import RunGroup
from halbench.report.model import Cell, KeyValues, Table
from halbench.report.stats import Estimate, loglog_slope, mean_ci
from halbench.results import STATUSES

REFERENCE_LOSS = "nca"  # cost ratios are to this registry name, at the same B and d
Row = dict[str, Any]


# ---------------------------------------------------------------- formatting


def fmt_est(est: Estimate | None, digits: int = 2, n_expected: int | None = None) -> str:
    """'87.31 ± 0.42' (mean ± half-width of the 95% CI); '87.31 (n=1)' without a CI."""
    if est is None:
        return "—"
    text = f"{est.mean:.{digits}f}"
    if est.half_width is not None:
        text += f" ± {est.half_width:.{digits}f}"
    if est.half_width is None or (n_expected is not None and est.n != n_expected):
        text += f" (n={est.n})"
    return text


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


def fmt_ratio(r: float | None) -> str:
    return "—" if r is None else f"{r:.3g}×"


def fmt_ms(x: float | None) -> str:
    return "—" if x is None else f"{x:.3g}"


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def norm_name(name: str) -> str:
    """Dataset/loss names compared loosely: 'Fashion-MNIST' == 'fashion_mnist'."""
    return re.sub(r"[^a-z0-9]", "", str(name).lower())


# ---------------------------------------------------------------- data helpers


def ok_rows(group: RunGroup) -> list[Row]:
    return group.trials.filter(pl.col("status") == "ok").to_dicts()


def group_by(rows: Iterable[Row], keys: Sequence[str]) -> dict[tuple, list[Row]]:
    out: dict[tuple, list[Row]] = defaultdict(list)
    for r in rows:
        out[tuple(r[k] for k in keys)].append(r)
    return out


def seed_values(rows: Iterable[Row], column: str, scale: float = 1.0) -> dict[int, float]:
    """seed -> value of column (non-null, finite), scaled."""
    out = {}
    for r in rows:
        v = r.get(column)
        if v is not None and math.isfinite(v):
            out[int(r["seed"])] = float(v) * scale
    return out


def percent_estimate(rows: Iterable[Row], column: str) -> Estimate | None:
    """Mean and 95% CI over seeds of an accuracy column, in percent points."""
    return mean_ci(seed_values(rows, column, 100.0).values())


def median_of(rows: Iterable[Row], column: str) -> float | None:
    vals = [r[column] for r in rows if r.get(column) is not None and math.isfinite(r[column])]
    return float(statistics.median(vals)) if vals else None


def ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or b == 0 else a / b


def loss_order(group: RunGroup, labels: Iterable[str]) -> list[str]:
    """Loss labels in suite order, then any others alphabetically."""
    labels = set(labels)
    suite = [
        str(entry.get("label") or entry.get("name"))
        for entry in group.suite.get("losses", []) or []
        if isinstance(entry, dict)
    ]
    first = [label for label in suite if label in labels]
    return first + sorted(labels - set(first))


def ks_of(group: RunGroup) -> list[int]:
    """The suite's k values that have data, else every knn_acc_<k> column with data."""
    with_data = sorted(
        int(c.rsplit("_", 1)[1])
        for c in group.trials.columns
        if re.fullmatch(r"knn_acc_\d+", c) and group.trials[c].drop_nulls().len() > 0
    )
    suite_ks = (group.suite.get("eval") or {}).get("ks") or []
    chosen = [int(k) for k in suite_ks if int(k) in with_data]
    return chosen or with_data


def primary_k(group: RunGroup, wanted: int | None = None) -> int | None:
    ks = ks_of(group)
    if wanted is not None and wanted in ks:
        return wanted
    return ks[0] if ks else None


def datasets_of(rows: Iterable[Row]) -> list[str]:
    return sorted({str(r["dataset"]) for r in rows})


# ---------------------------------------------------------------- header


def header(group: RunGroup) -> KeyValues:
    """Provenance of the group: suite, dates, versions, device, status counts, grid."""

    def env_values(key: str) -> str:
        vals = sorted({str(e[key]) for e in group.envs if e.get(key) not in (None, "")})
        return ", ".join(vals) if vals else "—"

    started = [str(e["started_at"]) for e in group.envs if e.get("started_at")]
    finished = [str(e["finished_at"]) for e in group.envs if e.get("finished_at")]
    counts = group.trials.group_by("status").len().to_dicts() if group.trials.height else []
    by_status = {str(c["status"]): int(c["len"]) for c in counts}
    status_text = ", ".join(f"{s} {by_status.get(s, 0)}" for s in STATUSES)
    extra = sorted(set(by_status) - set(STATUSES))
    status_text += "".join(f", {s} {by_status[s]}" for s in extra)
    items = [
        ("suite", group.name),
        ("suite hash", group.suite_hash or "—"),
        ("run directories", ", ".join(str(d) for d in group.dirs)),
        ("date", f"{min(started) if started else '—'} → {max(finished) if finished else '—'}"),
        ("halbench", env_values("halbench")),
        ("git sha", env_values("git_sha")),
        ("device", env_values("device")),
        ("gpu", env_values("gpu")),
        ("cpu", env_values("cpu")),
        ("python", env_values("python")),
        ("torch", env_values("torch")),
        ("ray", env_values("ray")),
    ]
    if group.trials.height:
        items.append((f"trials ({group.trials.height})", status_text))
    if group.profile.height:
        n_ok = group.profile.filter(pl.col("status") == "ok").height
        items.append(("profile points", f"{group.profile.height} ({n_ok} ok)"))
    items.extend(grid_items(group))
    return KeyValues(items)


def grid_items(group: RunGroup) -> list[tuple[str, str]]:
    """The grid as the suite declares it, completed from the data when there is no suite."""
    grid = group.suite.get("grid") or {}
    t, p = group.trials, group.profile

    def listing(key: str, column: str) -> str:
        vals = grid.get(key)
        if not vals:
            vals = sorted(
                set(t[column].drop_nulls().to_list())
                | (set(p[column].drop_nulls().to_list()) if column in p.columns else set())
            )
        return ", ".join(str(v) for v in vals) or "—"

    # A suite names one "dataset: {name}" or several "datasets: [{name}, ...]".
    declared = [group.suite.get("dataset") or {}, *(group.suite.get("datasets") or [])]
    names = {str(d["name"]) for d in declared if isinstance(d, dict) and d.get("name")}
    datasets = sorted(set(t["dataset"].drop_nulls().to_list()) | names)
    losses = loss_order(
        group, set(t["loss"].drop_nulls().to_list()) | set(p["loss"].drop_nulls().to_list())
    )
    return [
        ("datasets", ", ".join(datasets) or "—"),
        ("losses", ", ".join(losses) or "—"),
        ("batch sizes", listing("batch_size", "batch_size")),
        ("embedding dims", listing("embedding_dim", "embedding_dim")),
        ("seeds", listing("seed", "seed") if t.height else "—"),
        ("k (k-NN)", ", ".join(str(k) for k in ks_of(group)) or "—"),
    ]


# ---------------------------------------------------------------- accuracy


def accuracy_tables(group: RunGroup, prefix: str) -> list[Table]:
    """One table per k: rows dataset x loss, columns (B, d); best loss per column marked."""
    rows = ok_rows(group)
    if not rows:
        return []
    configs = sorted({(r["batch_size"], r["embedding_dim"]) for r in rows})
    cells_by = group_by(rows, ["dataset", "loss", "batch_size", "embedding_dim"])
    n_seeds = max(len(v) for v in cells_by.values())
    tables = []
    for k in ks_of(group):
        table_rows: list[list[Cell]] = []
        for dataset in datasets_of(rows):
            labels = loss_order(group, {r["loss"] for r in rows if r["dataset"] == dataset})
            ests = {
                (label, cfg): percent_estimate(
                    cells_by.get((dataset, label, *cfg), []), f"knn_acc_{k}"
                )
                for label in labels
                for cfg in configs
            }
            best = {
                cfg: max((e.mean for (lb, c), e in ests.items() if c == cfg and e), default=None)
                for cfg in configs
            }
            for label in labels:
                row = [Cell(dataset), Cell(label)]
                for cfg in configs:
                    est = ests[(label, cfg)]
                    row.append(
                        Cell(
                            fmt_est(est, n_expected=n_seeds),
                            None if est is None else est.mean,
                            est is not None and est.mean == best[cfg],
                        )
                    )
                table_rows.append(row)
        tables.append(
            Table(
                id=f"{prefix}-acc-k{k}",
                title=f"k-NN accuracy (k={k}, %)",
                columns=["dataset", "loss"] + [f"B={b} d={d}" for b, d in configs],
                rows=table_rows,
                notes=[
                    f"Mean ± half-width of the 95% t interval over seeds ({n_seeds} per cell "
                    "unless n is shown); ok trials only. ★ best loss of the column per dataset."
                ],
            )
        )
    return tables


def best_config_table(group: RunGroup, prefix: str) -> Table | None:
    """Each loss's best (B, d) per dataset, by mean k-NN accuracy at the primary k."""
    rows = ok_rows(group)
    k0 = primary_k(group)
    if not rows or k0 is None:
        return None
    ks = ks_of(group)
    metrics = [(f"knn_acc_{k}", f"k-NN@{k}") for k in ks] + [
        ("p_at_1", "P@1"),
        ("map_at_r", "MAP@R"),
        ("anchor_acc", "anchor acc"),
    ]
    metrics = [m for m in metrics if any(r.get(m[0]) is not None for r in rows)]
    cells_by = group_by(rows, ["dataset", "loss", "batch_size", "embedding_dim"])
    out: list[list[Cell]] = []
    for dataset in datasets_of(rows):
        labels = loss_order(group, {r["loss"] for r in rows if r["dataset"] == dataset})
        picks = {}
        for label in labels:
            cands = [
                (percent_estimate(v, f"knn_acc_{k0}"), key)
                for key, v in cells_by.items()
                if key[0] == dataset and key[1] == label
            ]
            cands = [c for c in cands if c[0] is not None]
            if cands:
                picks[label] = max(cands, key=lambda c: c[0].mean)[1]
        ests = {
            (label, col): percent_estimate(cells_by[key], col)
            for label, key in picks.items()
            for col, _ in metrics
        }
        best = {
            col: max((e.mean for (lb, c), e in ests.items() if c == col and e), default=None)
            for col, _ in metrics
        }
        for label, key in picks.items():
            row = [
                Cell(dataset),
                Cell(label),
                Cell(str(key[2]), key[2]),
                Cell(str(key[3]), key[3]),
                Cell(str(len(cells_by[key])), len(cells_by[key])),
            ]
            for col, _ in metrics:
                est = ests[(label, col)]
                row.append(
                    Cell(
                        fmt_est(est),
                        None if est is None else est.mean,
                        est is not None and est.mean == best[col],
                    )
                )
            out.append(row)
    return Table(
        id=f"{prefix}-best-config",
        title=f"Best configuration of each loss (chosen by k-NN@{k0})",
        columns=["dataset", "loss", "B", "d", "seeds"] + [name for _, name in metrics],
        rows=out,
        notes=["Values in %, mean ± 95% CI half-width over seeds. ★ best loss per dataset."],
    )


# ---------------------------------------------------------------- cost


def reference_label(labels: Iterable[str], names: dict[str, str]) -> str | None:
    """The label of the reference loss (NCA): the label 'nca' itself, else the first with that
    registry name."""
    candidates = sorted(lb for lb in labels if names.get(lb) == REFERENCE_LOSS)
    if REFERENCE_LOSS in candidates:
        return REFERENCE_LOSS
    return candidates[0] if candidates else None


SHARE = "loss_share_of_step"
CostColumn = tuple[str, str, Callable[[float | None], str]]
TRIAL_COST: list[CostColumn] = [
    ("loss_flops_fwd", "FLOPs fwd", fmt_si),
    ("loss_flops_bwd", "FLOPs bwd", fmt_si),
    ("loss_call_ms", "time/call ms", fmt_ms),
    ("loss_peak_mem_bytes", "peak mem", lambda x: fmt_si(x, "B")),
]
PROFILE_COST: list[CostColumn] = [
    ("flops_fwd", "FLOPs fwd", fmt_si),
    ("flops_bwd", "FLOPs bwd", fmt_si),
    ("time_fwdbwd_ms", "time fwd+bwd ms", fmt_ms),
    ("peak_mem_bytes", "peak mem", lambda x: fmt_si(x, "B")),
]


def point_order(point: tuple) -> tuple:
    """Sort key for mixed tuples: numbers numerically, strings alphabetically, None last."""
    return tuple((x is None, x if isinstance(x, int | float) else 0, str(x)) for x in point)


def _cost_rows(
    rows: list[Row], keys: list[str], columns: list[CostColumn], group: RunGroup
) -> tuple[list[list[Cell]], bool]:
    """Median per point of each cost column, with its ratio to NCA at the same point."""
    names = {r["loss"]: r["loss_name"] for r in rows}
    ref = reference_label(names, names)
    cells = group_by(rows, ["loss", *keys])
    points = sorted({key[1:] for key in cells}, key=point_order)
    out = []
    for point in points:
        ref_rows = cells.get((ref, *point), [])
        for label in loss_order(group, {key[0] for key in cells if key[1:] == point}):
            these = cells[(label, *point)]
            row = [Cell(label)] + [
                Cell(str(x), x if isinstance(x, int | float) else None) for x in point
            ]
            for col, _, fmt in columns:
                value = median_of(these, col)
                row.append(Cell(fmt(value), value))
                if col != SHARE:  # a ratio of shares of different steps means nothing
                    r = ratio(value, median_of(ref_rows, col))
                    row.append(Cell(fmt_ratio(r), r))
            out.append(row)
    return out, ref is not None


def trial_cost_table(group: RunGroup, prefix: str) -> Table | None:
    rows = [
        r
        for r in ok_rows(group)
        if r.get("loss_call_ms") is not None or r.get("loss_flops_fwd") is not None
    ]
    if not rows:
        return None
    cols = TRIAL_COST + [
        (SHARE, "share of step", lambda x: "—" if x is None else f"{100 * x:.1f}%")
    ]
    body, has_ref = _cost_rows(rows, ["dataset", "batch_size", "embedding_dim"], cols, group)
    headers = ["loss", "dataset", "B", "d"]
    for col, name, _ in cols:
        headers += [name] if col == SHARE else [name, "×NCA"]
    return Table(
        id=f"{prefix}-cost-trials",
        title="Cost per loss call during training (median over seeds)",
        columns=headers,
        rows=body,
        notes=[
            "Measured by the trial probe on sampled training steps. ×NCA: ratio to the NCA "
            "loss at the same dataset, B and d."
            + ("" if has_ref else " No NCA in this suite: no ratios.")
        ],
    )


def profile_cost_table(group: RunGroup, prefix: str) -> Table | None:
    p = group.profile
    if p.height == 0:
        return None
    ok = [r for r in p.to_dicts() if r["status"] == "ok"]
    keys = ["batch_size", "embedding_dim", "num_classes", "memory_size", "device"]
    body, has_ref = _cost_rows(ok, keys, PROFILE_COST, group)
    headers = ["loss", "B", "d", "C", "M", "device"]
    for _, name, _ in PROFILE_COST:
        headers += [name, "×NCA"]
    failed = [r for r in p.to_dicts() if r["status"] != "ok"]
    notes = [
        "`halbench profile`: FLOPs counted on one forward and one backward, time = median "
        "of repeated forward+backward calls, peak memory of one call (source per row in "
        "profile.parquet). ×NCA: ratio to NCA at the same B, d, C and device."
        + ("" if has_ref else " No NCA in this profile: no ratios.")
    ]
    if failed:
        notes.append(
            "Not measured: "
            + "; ".join(
                f"{r['loss']} B={r['batch_size']} d={r['embedding_dim']}: {r['status']}"
                for r in failed
            )
        )
    return Table(
        id=f"{prefix}-cost-profile",
        title="Cost per loss call (profile)",
        columns=headers,
        rows=body,
        notes=notes,
    )


def cost_points(group: RunGroup) -> tuple[list[Row], str]:
    """Uniform cost rows (loss, loss_name, B, d, time, flops_fwd, flops_bwd, mem), and their
    source: the profile when the group has one (controlled measurement), else the trials."""
    prof = [r for r in group.profile.to_dicts() if r["status"] == "ok"]
    if prof:
        return [
            {
                "loss": r["loss"],
                "loss_name": r["loss_name"],
                "batch_size": r["batch_size"],
                "embedding_dim": r["embedding_dim"],
                "time": r["time_fwdbwd_ms"],
                "flops_fwd": r["flops_fwd"],
                "flops_bwd": r["flops_bwd"],
                "mem": r["peak_mem_bytes"],
                "key": (r["num_classes"], r["memory_size"], r["device"]),
            }
            for r in prof
        ], "profile"
    rows = ok_rows(group)
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
        for r in rows
    ], "trials"


COST_METRICS = [("time", "time"), ("flops_fwd", "FLOPs fwd"), ("mem", "peak memory")]


def slopes(group: RunGroup) -> list[tuple[str, int, Any, dict[str, float | None]]]:
    """(loss, d, key, {metric: log-log slope against B}) from medians per point."""
    points, _ = cost_points(group)
    by_series = group_by(points, ["loss", "embedding_dim", "key"])
    out = []
    for (label, d, key), rows in by_series.items():
        per_b = group_by(rows, ["batch_size"])
        bs = sorted(b for (b,) in per_b)
        fits = {}
        for metric, _ in COST_METRICS:
            ys = [median_of(per_b[(b,)], metric) for b in bs]
            xs = [b for b, y in zip(bs, ys, strict=True) if y is not None]
            fits[metric] = loglog_slope(xs, [y for y in ys if y is not None])
        out.append((label, d, key, fits))
    return out


def slope_table(group: RunGroup, prefix: str) -> Table | None:
    fits = slopes(group)
    if not any(v is not None for *_, f in fits for v in f.values()):
        return None
    labels = loss_order(group, {f[0] for f in fits})
    fits.sort(key=lambda f: (labels.index(f[0]), str(f[2]), f[1]))
    rows = [
        [Cell(label), Cell(str(d), d), Cell(", ".join(str(x) for x in key))]
        + [Cell("—" if f[m] is None else f"{f[m]:.2f}", f[m]) for m, _ in COST_METRICS]
        for label, d, key, f in fits
    ]
    _, source = cost_points(group)
    return Table(
        id=f"{prefix}-slopes",
        title="Growth of the loss-call cost with batch size (log-log slope)",
        columns=["loss", "d", "C, M, device" if source == "profile" else "dataset"]
        + [f"{name} slope" for _, name in COST_METRICS],
        rows=rows,
        notes=[
            f"Least-squares slope of log(cost) against log(B) over the measured B (from the "
            f"{source}). About 2: cost grows with B² (pairwise losses); about 1: linear "
            "(anchor/proxy losses)."
        ],
    )
