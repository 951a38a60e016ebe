"""Cost tables of one suite group: per loss call from the profile and from the trials, and the
growth of the cost with batch size."""

from __future__ import annotations

from collections.abc import Callable

from halbench.report.format import fmt_bytes, fmt_ms, fmt_ratio, fmt_share, fmt_si
from halbench.report.model import Cell, Table
from halbench.report.ratios import median_ratio
from halbench.report.rows import Row, group_by, median_of, point_order
from halbench.report.views import COST_METRICS, ReportView, reference_label

SHARE = "loss_share_of_step"
IQR = "time_fwdbwd_iqr_ms"
NO_RATIO = (SHARE, IQR)  # a ratio of shares of different steps, or of spreads, means nothing
CostColumn = tuple[str, str, Callable[[float | None], str]]
TRIAL_COST: list[CostColumn] = [
    ("loss_flops_fwd", "FLOPs fwd", fmt_si),
    ("loss_flops_bwd", "FLOPs bwd", fmt_si),
    ("loss_call_ms", "time/call ms", fmt_ms),
    ("loss_peak_mem_bytes", "peak mem", fmt_bytes),
]
PROFILE_COST: list[CostColumn] = [
    ("flops_fwd", "FLOPs fwd", fmt_si),
    ("flops_bwd", "FLOPs bwd", fmt_si),
    ("time_fwdbwd_ms", "time fwd+bwd ms", fmt_ms),
    (IQR, "time IQR ms", fmt_ms),
    ("peak_mem_bytes", "peak mem", fmt_bytes),
]


def _cost_rows(
    view: ReportView, rows: list[Row], keys: list[str], columns: list[CostColumn]
) -> tuple[list[list[Cell]], bool]:
    """Median per point of each cost column, with its ratio to NCA at the same point."""
    ref = reference_label({r["loss"]: r["loss_name"] for r in rows})
    cells = group_by(rows, ["loss", *keys])
    points = sorted({key[1:] for key in cells}, key=point_order)
    out = []
    for point in points:
        ref_rows = cells.get((ref, *point), [])
        for label in view.order({key[0] for key in cells if key[1:] == point}):
            these = cells[(label, *point)]
            row = [Cell(label)] + [
                Cell(str(x), x if isinstance(x, int | float) else None) for x in point
            ]
            for col, _, fmt in columns:
                value = median_of(these, col)
                row.append(Cell(fmt(value), value))
                if col not in NO_RATIO:
                    r = median_ratio(these, ref_rows, col)
                    row.append(Cell(fmt_ratio(r), r))
            out.append(row)
    return out, ref is not None


def trial_cost_table(view: ReportView, prefix: str) -> Table | None:
    rows = [
        r
        for r in view.ok
        if r.get("loss_call_ms") is not None or r.get("loss_flops_fwd") is not None
    ]
    if not rows:
        return None
    cols = TRIAL_COST + [(SHARE, "share of step", fmt_share)]
    body, has_ref = _cost_rows(view, rows, ["dataset", "batch_size", "embedding_dim"], cols)
    headers = ["loss", "dataset", "B", "d"]
    for col, name, _ in cols:
        headers += [name] if col == SHARE else [name, "×NCA"]
    return Table(
        id=f"{prefix}-cost-trials",
        title="Cost per loss call during training (median over seeds)",
        columns=headers,
        rows=body,
        notes=[
            "Measured by the trial probe on sampled training steps. ×NCA: ratio of the median "
            "over seeds to the NCA loss's median at the same dataset, B and d (the C2 table's "
            "time ratio is the geometric mean of per-seed ratios: the two can differ)."
            + ("" if has_ref else " No NCA in this suite: no ratios.")
        ],
    )


FVCORE: CostColumn = ("fvcore_flops", "fvcore FLOPs fwd", fmt_si)


def profile_cost_table(view: ReportView, prefix: str) -> Table | None:
    if not view.profile_rows:
        return None
    ok = [r for r in view.profile_rows if r["status"] == "ok"]
    keys = ["batch_size", "embedding_dim", "num_classes", "memory_size", "device"]
    # fvcore's independent count, where the profile recorded one (older profiles did not).
    has_fvcore = any(r.get("fvcore_flops") is not None or r.get("fvcore_note") for r in ok)
    columns = PROFILE_COST + ([FVCORE] if has_fvcore else [])
    body, has_ref = _cost_rows(view, ok, keys, columns)
    headers = ["loss", "B", "d", "C", "M", "device"]
    for col, name, _ in columns:
        headers += [name] if col in NO_RATIO else [name, "×NCA"]
    failed = [r for r in view.profile_rows if r["status"] != "ok"]
    fvcore_notes = []
    if has_fvcore:
        blind = sorted({f"{r['loss']}: {r['fvcore_note']}" for r in ok if r.get("fvcore_note")})
        fvcore_notes.append(
            "fvcore FLOPs fwd: fvcore's own trace of one forward call, 2 FLOPs per multiply-add "
            "(the cross-check of FLOPs fwd); empty where fvcore cannot see the ops"
            + (" (" + "; ".join(blind) + ")." if blind else ".")
        )
    notes = [
        "`halbench profile`: FLOPs counted on one forward and one backward, time = median "
        "of repeated forward+backward calls with its interquartile range (IQR) over the "
        "repeats, peak memory of one call (source per row in profile.parquet). ×NCA: ratio of "
        "the medians to NCA's at the same B, d, C and device."
        + ("" if has_ref else " No NCA in this profile: no ratios."),
        *fvcore_notes,
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


def slope_table(view: ReportView, prefix: str) -> Table | None:
    fits = list(view.slopes)
    if not any(v is not None for *_, f in fits for v in f.values()):
        return None
    labels = view.order({f[0] for f in fits})
    fits.sort(key=lambda f: (labels.index(f[0]), str(f[2]), f[1]))
    rows = [
        [Cell(label), Cell(str(d), d), Cell(", ".join(str(x) for x in key))]
        + [Cell("—" if f[m] is None else f"{f[m]:.2f}", f[m]) for m, _ in COST_METRICS]
        for label, d, key, f in fits
    ]
    source = view.cost_source
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
