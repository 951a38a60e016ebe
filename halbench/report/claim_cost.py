"""Evaluation of C2-type claims (a cost ratio) in three parts, each its own verdict:

- flops: forward FLOPs, counted and analytic, and B*, the batch size from which the ratio falls
  under the threshold (a power law fitted to the ratio against B: the cost formulas of
  docs/losses.md are polynomials in B, e.g. HAL 2BCd against NCA 2B^2 d, a ratio ∝ C/B);
- time: isolated loss calls: the profile's rows (warm, the device to themselves), else trials'
  probe rows from trials that had their device to themselves (max_neighbours == 0);
- step: the training step a user pays (step time from images_per_s, and peak memory), only
  from trials with max_neighbours == 0.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field

from halbench.report.claim_eval import with_name
from halbench.report.claims import (
    CONTRADICTED,
    INCONCLUSIVE,
    NO_DATA,
    SUPPORTED,
    CostRatioClaim,
    combine,
    judge,
    judge_value,
)
from halbench.report.rows import Row, finite, group_by, median_of, ratio
from halbench.report.stats import Estimate, loglog_slope, mean_ci
from halbench.report.views import ReportView

PARTS = {"flops": "C2 FLOPs", "time": "C2 call time", "step": "C2 training step"}
HOW_TO_ISOLATE = (
    "run with `resources.exclusive_gpu: true` (one trial per device) or add a profile pass "
    "(`halbench profile`)"
)


@dataclass
class CostPoint:
    """subject / one competitor at one (B, d, key)."""

    batch_size: int
    embedding_dim: int
    key: tuple
    competitor: str
    ratio: float | None
    lo: float | None = None  # 95% interval of the geometric mean of per-seed ratios
    hi: float | None = None
    spread: str = ""  # e.g. the medians' IQRs, or the analytic ratio
    extra: float | None = None  # flops: analytic ratio; step: peak-memory ratio
    verdict: str = NO_DATA


@dataclass
class CostPart:
    claim: CostRatioClaim
    part: str  # flops | time | step
    source: str  # profile | trials
    points: list[CostPoint] = field(default_factory=list)
    verdict: str = NO_DATA
    why: str = ""  # no data: why, and how to get data
    b_star: dict[tuple, float | None] = field(default_factory=dict)  # (d, key, competitor)

    @property
    def name(self) -> str:
        return PARTS[self.part]


def exclusive(rows: list[Row]) -> tuple[list[Row], str]:
    """(rows of trials that had their device to themselves, why none when empty)."""
    if not rows:
        return [], "no ok trials"
    if all(r.get("max_neighbours") is None for r in rows):
        return [], "the trials did not record how many trials shared their device"
    alone = [r for r in rows if r.get("max_neighbours") == 0]
    return alone, "" if alone else "every trial shared its device with another trial"


def per_seed_ratio(subj: list[Row], comp: list[Row], col: str, thr: float) -> CostPoint:
    """Geometric mean of per-seed subject/competitor ratios with its 95% interval (>= 2 common
    seeds), else the ratio of medians judged as is."""
    s = {r["seed"]: r[col] for r in subj if r.get("seed") is not None and finite(r.get(col))}
    c = {r["seed"]: r[col] for r in comp if r.get("seed") is not None and finite(r.get(col))}
    common = sorted(x for x in set(s) & set(c) if s[x] > 0 and c[x] > 0)
    point = CostPoint(0, 0, (), "", None)
    if len(common) >= 2:
        est = mean_ci([math.log(s[x] / c[x]) for x in common])
        assert est is not None and est.lo is not None and est.hi is not None
        point.verdict = judge(Estimate(-est.mean, -est.hi, -est.lo, est.n), -math.log(thr))
        point.ratio, point.lo, point.hi = math.exp(est.mean), math.exp(est.lo), math.exp(est.hi)
        return point
    point.ratio = ratio(median_of(subj, col), median_of(comp, col))
    point.verdict = judge_value(point.ratio, thr)
    return point


def _pairs(subject: list[Row], competitors: list[Row], key_of) -> list[tuple]:
    """(B, d, key, competitor label, subject rows, competitor rows) at shared points."""
    subj = group_by(
        [{**r, "_key": key_of(r)} for r in subject], ["batch_size", "embedding_dim", "_key"]
    )
    comp = group_by(
        [{**r, "_key": key_of(r)} for r in competitors],
        ["batch_size", "embedding_dim", "_key", "loss"],
    )
    out = []
    for (b, d, key, label), rows in sorted(
        comp.items(), key=lambda kv: (str(kv[0][2]), kv[0][1], kv[0][0], kv[0][3])
    ):
        if (b, d, key) in subj:
            out.append((b, d, key, label, subj[(b, d, key)], rows))
    return out


def _profile_key(r: Row) -> tuple:
    return (r.get("num_classes"), r.get("memory_size"), r.get("device"))


def _trial_key(r: Row) -> tuple:
    return (r.get("dataset"),)


def b_star(points: list[CostPoint], thr: float, use_analytic: bool) -> dict[tuple, float | None]:
    """(d, key, competitor) -> the B from which the fitted power law of the ratio is < thr
    (None: the fit does not fall, or fewer than 2 batch sizes)."""
    out: dict[tuple, float | None] = {}
    for (d, key, comp), pts in group_by(
        [{"p": p, "d": p.embedding_dim, "k": p.key, "c": p.competitor} for p in points],
        ["d", "k", "c"],
    ).items():
        xy = [
            (p["p"].batch_size, p["p"].extra if use_analytic else p["p"].ratio)
            for p in pts
            if (p["p"].extra if use_analytic else p["p"].ratio)
        ]
        slope = loglog_slope([x for x, _ in xy], [y for _, y in xy]) if len(xy) >= 2 else None
        if slope is None or slope >= 0:
            out[(d, key, comp)] = None
            continue
        lx = sum(math.log(x) for x, _ in xy) / len(xy)
        ly = sum(math.log(y) for _, y in xy) / len(xy)
        out[(d, key, comp)] = math.exp(lx + (math.log(thr) - ly) / slope)
    return out


def evaluate_flops(view: ReportView, claim: CostRatioClaim) -> CostPart:
    thr, profile = claim.threshold, [r for r in view.profile_rows if r["status"] == "ok"]
    if profile:
        source, cols, key_of = "profile", ("flops_fwd", "flops_analytic_fwd"), _profile_key
        rows = profile
    else:
        source, cols, key_of = "trials", ("loss_flops_fwd", ""), _trial_key
        rows = view.ok
    part = CostPart(claim, "flops", source)
    for b, d, key, label, subj, comp in _pairs(
        with_name(rows, [claim.subject]), with_name(rows, claim.competitors), key_of
    ):
        counted = ratio(median_of(subj, cols[0]), median_of(comp, cols[0]))
        analytic = ratio(median_of(subj, cols[1]), median_of(comp, cols[1])) if cols[1] else None
        verdict = combine([judge_value(v, thr) for v in (counted, analytic) if v is not None])
        part.points.append(CostPoint(b, d, key, label, counted, extra=analytic, verdict=verdict))
    if not part.points:
        part.why = f"no {claim.subject} and competitor FLOPs at the same (B, d)"
    use_analytic = any(p.extra is not None for p in part.points)
    part.b_star = b_star(part.points, thr, use_analytic)
    part.verdict = combine([p.verdict for p in part.points]) if part.points else NO_DATA
    return part


def evaluate_call_time(view: ReportView, claim: CostRatioClaim) -> CostPart:
    thr, profile = claim.threshold, [r for r in view.profile_rows if r["status"] == "ok"]
    if profile:
        part = CostPart(claim, "time", "profile")
        for b, d, key, label, subj, comp in _pairs(
            with_name(profile, [claim.subject]), with_name(profile, claim.competitors), _profile_key
        ):
            p = per_seed_ratio(subj, comp, "time_fwdbwd_ms", thr)
            p.batch_size, p.embedding_dim, p.key, p.competitor = b, d, key, label
            s_med, c_med = median_of(subj, "time_fwdbwd_ms"), median_of(comp, "time_fwdbwd_ms")
            s_iqr, c_iqr = (
                median_of(subj, "time_fwdbwd_iqr_ms"),
                median_of(comp, "time_fwdbwd_iqr_ms"),
            )
            p.spread = _spread(s_med, s_iqr, c_med, c_iqr, "IQR")
            part.points.append(p)
    else:
        alone, why = exclusive(view.ok)
        part = CostPart(claim, "time", "trials")
        for b, d, key, label, subj, comp in _pairs(
            with_name(alone, [claim.subject]), with_name(alone, claim.competitors), _trial_key
        ):
            p = per_seed_ratio(subj, comp, "loss_call_ms", thr)
            p.batch_size, p.embedding_dim, p.key, p.competitor = b, d, key, label
            p.spread = _spread(
                median_of(subj, "loss_call_ms"),
                _iqr(subj, "loss_call_ms"),
                median_of(comp, "loss_call_ms"),
                _iqr(comp, "loss_call_ms"),
                "IQR over seeds",
            )
            part.points.append(p)
        if not part.points:
            part.why = (
                (why or f"no {claim.subject} and competitor call times")
                + "; "
                + ("no isolated loss calls: " + HOW_TO_ISOLATE)
            )
    part.verdict = combine([p.verdict for p in part.points]) if part.points else NO_DATA
    return part


def evaluate_step(view: ReportView, claim: CostRatioClaim) -> CostPart:
    alone, why = exclusive(view.ok)
    rows = [
        {**r, "step_ms": 1000.0 * r["batch_size"] / r["images_per_s"]}
        for r in alone
        if finite(r.get("images_per_s")) and r["images_per_s"] > 0
    ]
    part = CostPart(claim, "step", "trials")
    for b, d, key, label, subj, comp in _pairs(
        with_name(rows, [claim.subject]), with_name(rows, claim.competitors), _trial_key
    ):
        p = per_seed_ratio(subj, comp, "step_ms", claim.threshold)
        p.batch_size, p.embedding_dim, p.key, p.competitor = b, d, key, label
        p.extra = ratio(
            median_of(subj, "gpu_mem_peak_bytes"), median_of(comp, "gpu_mem_peak_bytes")
        )
        p.spread = _spread(
            median_of(subj, "step_ms"),
            _iqr(subj, "step_ms"),
            median_of(comp, "step_ms"),
            _iqr(comp, "step_ms"),
            "IQR over seeds",
        )
        part.points.append(p)
    if not part.points:
        part.why = (
            (why or "no step times of trials alone on their device")
            + "; "
            + ("to judge the training step, " + HOW_TO_ISOLATE.split(" or ")[0])
        )
    part.verdict = combine([p.verdict for p in part.points]) if part.points else NO_DATA
    return part


def _iqr(rows: list[Row], col: str) -> float | None:
    vals = sorted(float(r[col]) for r in rows if finite(r.get(col)))
    if len(vals) < 2:
        return None
    q = statistics.quantiles(vals, n=4, method="inclusive")
    return q[2] - q[0]


def _spread(s_med, s_iqr, c_med, c_iqr, what: str) -> str:
    def one(med, iqr):
        if med is None:
            return "—"
        return f"{med:.3g} ms" + (f" ± {iqr / 2:.2g}" if iqr is not None else "")

    return f"{one(s_med, s_iqr)} / {one(c_med, c_iqr)} (median ± half {what})"


def evaluate_cost_parts(view: ReportView, claim: CostRatioClaim) -> list[CostPart]:
    """One CostPart per part the claim names (claims file `metrics`); a profile without trials
    has no training step to judge, so it gets no step part (not a row of "no data")."""
    fns = {"flops": evaluate_flops, "time": evaluate_call_time, "step": evaluate_step}
    profile_only = not view.ok and not view.failed and bool(view.profile_rows)
    return [fns[m](view, claim) for m in claim.metrics if not (profile_only and m == "step")]


def summary(part: CostPart) -> str:
    """'holds at 2 of 3 points, fails at 1; ...' without 'inconclusive' beside '0 of 1'."""
    if not part.points:
        return f"no data: {part.why}"
    counts = {
        v: sum(p.verdict == v for p in part.points) for v in (SUPPORTED, CONTRADICTED, INCONCLUSIVE)
    }
    n = len(part.points)
    text = f"holds at {counts[SUPPORTED]} of {n} point{'s' if n != 1 else ''}"
    if counts[CONTRADICTED]:
        text += f", fails at {counts[CONTRADICTED]}"
    if counts[INCONCLUSIVE]:
        text += f", undecided at {counts[INCONCLUSIVE]}"
    return text
