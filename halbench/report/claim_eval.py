"""Evaluation of each kind of claim on one report view: estimates and verdicts, no layout.

Each `evaluate_*` returns a small record of what was measured per condition; claim_tables.py
lays it out. The thresholds are the claim's (see claims.py for the verdict rule).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from halbench.report.claims import (
    INCONCLUSIVE,
    NO_DATA,
    SUPPORTED,
    AccuracyMarginClaim,
    ConvergenceClaim,
    CostRatioClaim,
    combine,
    judge,
    judge_value,
)
from halbench.report.format import norm_name
from halbench.report.rows import Row, group_by, median_of, ratio, seed_values
from halbench.report.stats import Estimate, diff_ci, mean_ci
from halbench.report.views import ReportView
from halbench.results import convergence


def with_name(rows: list[Row], names: list[str]) -> list[Row]:
    """Rows whose registry name is one of names (compared without case or punctuation)."""
    wanted = {norm_name(n) for n in names}
    return [r for r in rows if norm_name(r["loss_name"]) in wanted]


@dataclass(frozen=True)
class Pick:
    """A (loss, B, d) chosen by its mean accuracy, and its per-seed values in points."""

    loss: str
    batch_size: int
    embedding_dim: int
    values: dict[int, float]


def best_pick(rows: list[Row], column: str, by: str | None = None) -> Pick | None:
    """The (loss, B, d) with the highest mean over seeds of `by` (the validation score of a
    tuned run; default: column itself), with its per-seed values of column (first of equals)."""
    best: tuple[float, Pick] | None = None
    for (loss, b, d), cell in group_by(rows, ["loss", "batch_size", "embedding_dim"]).items():
        vals = seed_values(cell, column, 100.0)
        est = mean_ci(seed_values(cell, by).values()) if by else mean_ci(vals.values())
        if vals and est is not None and (best is None or est.mean > best[0]):
            best = (est.mean, Pick(loss, b, d, vals))
    return None if best is None else best[1]


# ---------------------------------------------------------------- C1: accuracy margin


@dataclass
class MarginCondition:
    """One listed dataset: subject and best competitor at their best (B, d), and the difference."""

    wanted: str  # the dataset as the claim names it
    dataset: str | None  # as the rows name it; None when absent
    subject: Pick | None
    competitor: Pick | None
    diff: Estimate | None
    verdict: str
    why: str


@dataclass
class ConfigMargin:
    """Subject minus the best competitor at one (dataset, B, d): shown, not judged."""

    key: tuple[str, int, int]
    subject: Pick
    competitor: Pick
    diff: Estimate | None
    verdict: str


@dataclass
class MarginEvaluation:
    claim: AccuracyMarginClaim
    k: int | None
    has_rows: bool
    select_by: str | None  # val_score when picks used the validation split, else None (test)
    conditions: list[MarginCondition]
    configs: list[ConfigMargin]
    verdict: str


def evaluate_accuracy_margin(view: ReportView, claim: AccuracyMarginClaim) -> MarginEvaluation:
    k = view.k_for(claim.k)
    column, margin, by = f"knn_acc_{k}", claim.threshold, view.select_by
    rows = view.ok
    subject = with_name(rows, [claim.subject])
    competitors = with_name(rows, claim.competitors)
    present = sorted({r["dataset"] for r in rows})
    by_norm = {norm_name(d): d for d in present}
    datasets = [(str(d), by_norm.get(norm_name(d))) for d in (claim.datasets or present)]
    conditions = []
    for wanted, dataset in datasets:
        s = (
            best_pick([r for r in subject if r["dataset"] == dataset], column, by)
            if dataset
            else None
        )
        c = (
            best_pick([r for r in competitors if r["dataset"] == dataset], column, by)
            if dataset
            else None
        )
        diff = diff_ci(s.values, c.values) if s and c else None
        if not dataset:
            why = _absent(view, wanted)
        elif not s or not c:
            why = f"no ok {claim.subject if not s else 'competitor'} trials"
        else:
            why = "fewer than 2 seeds" if diff is None or diff.lo is None else ""
        conditions.append(MarginCondition(wanted, dataset, s, c, diff, judge(diff, margin), why))
    listed = {d for _, d in datasets if d is not None}
    keys = ["dataset", "batch_size", "embedding_dim"]
    subj = group_by([r for r in subject if r["dataset"] in listed], keys)
    comp = group_by([r for r in competitors if r["dataset"] in listed], keys)
    configs = []
    for key in sorted(set(subj) & set(comp)):
        s, c = best_pick(subj[key], column, by), best_pick(comp[key], column, by)
        if s and c:
            diff = diff_ci(s.values, c.values)
            configs.append(ConfigMargin(key, s, c, diff, judge(diff, margin)))
    return MarginEvaluation(
        claim,
        k,
        bool(rows),
        by,
        conditions,
        configs,
        combine([c.verdict for c in conditions]),
    )


def _absent(view: ReportView, wanted: str) -> str:
    """Why a listed dataset has no ok rows: not in the suite, or every trial of it failed."""
    failed = [r for r in view.failed if norm_name(r["dataset"]) == norm_name(wanted)]
    if not failed:
        return "dataset not in this suite"
    statuses = sorted({str(r["status"]) for r in failed})
    return f"all {len(failed)} trial(s) failed ({', '.join(statuses)})"


# ---------------------------------------------------------------- C2: cost ratio


@dataclass
class RatioPoint:
    """subject / one competitor at one point; time with its interval when per-seed."""

    batch_size: int
    embedding_dim: int
    key: tuple
    competitor: str
    flops: float | None
    time: float | None
    time_lo: float | None  # 95% interval of the geometric mean of per-seed ratios
    time_hi: float | None
    verdict: str


@dataclass
class RatioEvaluation:
    claim: CostRatioClaim
    source: str
    points: list[RatioPoint]
    verdict: str


def _time_ratio(
    subj: list[Row], comp: list[Row], thr: float
) -> tuple[float | None, float | None, float | None, str]:
    """(ratio, lo, hi, verdict) of subject/competitor time at one point.

    With per-seed times on both sides (trials, >= 2 common seeds) the ratio is the geometric mean
    of per-seed ratios with its 95% interval; otherwise the ratio of medians, judged as is.
    """
    s = {r["seed"]: r["time"] for r in subj if r.get("seed") is not None and r.get("time")}
    c = {r["seed"]: r["time"] for r in comp if r.get("seed") is not None and r.get("time")}
    common = sorted(set(s) & set(c))
    if len(common) >= 2:
        est = mean_ci([math.log(s[x] / c[x]) for x in common])
        assert est is not None and est.lo is not None and est.hi is not None
        verdict = judge(Estimate(-est.mean, -est.hi, -est.lo, est.n), -math.log(thr))
        return math.exp(est.mean), math.exp(est.lo), math.exp(est.hi), verdict
    r = ratio(median_of(subj, "time"), median_of(comp, "time"))
    return r, None, None, judge_value(r, thr)


def evaluate_cost_ratio(view: ReportView, claim: CostRatioClaim) -> RatioEvaluation:
    thr = claim.threshold
    subject = group_by(
        with_name(view.cost, [claim.subject]), ["batch_size", "embedding_dim", "key"]
    )
    competitors = group_by(
        with_name(view.cost, claim.competitors), ["batch_size", "embedding_dim", "key", "loss"]
    )
    points = []
    for (b, d, key, label), comp in sorted(
        competitors.items(), key=lambda kv: (str(kv[0][2]), kv[0][1], kv[0][0], kv[0][3])
    ):
        subj = subject.get((b, d, key))
        if not subj:
            continue
        verdicts, flops, time, lo, hi = [], None, None, None, None
        if "flops" in claim.metrics:
            flops = ratio(median_of(subj, "flops_fwd"), median_of(comp, "flops_fwd"))
            verdicts.append(judge_value(flops, thr))
        if "time" in claim.metrics:
            time, lo, hi, v = _time_ratio(subj, comp, thr)
            verdicts.append(v)
        points.append(RatioPoint(b, d, key, label, flops, time, lo, hi, combine(verdicts)))
    return RatioEvaluation(claim, view.cost_source, points, combine([p.verdict for p in points]))


def where_it_holds(points: list[tuple[int, Any, int, str]]) -> str:
    """'d=64: B ≥ 256; d=128: nowhere' — per d, the smallest B from which every point holds."""
    parts = []
    several_keys = len({str(p[1]) for p in points}) > 1
    for d, key in sorted({(p[0], str(p[1])) for p in points}):
        these = sorted((b, v) for dd, kk, b, v in points if dd == d and str(kk) == key)
        from_b = None
        for b, _ in reversed(these):
            if all(v == SUPPORTED for bb, v in these if bb >= b):
                from_b = b
        label = f"d={d}" + (f" {key}" if several_keys else "")
        if from_b is None:
            parts.append(f"{label}: nowhere")
        elif from_b == these[0][0]:
            parts.append(f"{label}: every B")
        else:
            parts.append(f"{label}: B ≥ {from_b}")
    return "; ".join(parts)


# ---------------------------------------------------------------- C3: convergence


@dataclass
class ConvergenceCondition:
    """subject vs baseline at one (dataset, B, d): per-seed epochs/seconds to the fraction of
    the final accuracy, final accuracies, and the differences."""

    key: tuple[str, int, int]
    epochs: tuple[dict[int, float], dict[int, float]]  # (subject, baseline)
    finals: tuple[dict[int, float], dict[int, float]]
    faster: Estimate | None  # baseline − subject epochs
    seconds: Estimate | None  # baseline − subject seconds (shown, not judged)
    higher: Estimate | None  # subject − baseline final accuracy, points
    verdict: str


@dataclass
class ConvergenceEvaluation:
    claim: ConvergenceClaim
    k: int | None
    missing: list[str]  # subject / baseline names without ok trials
    conditions: list[ConvergenceCondition] = field(default_factory=list)
    verdict: str = NO_DATA


TrialKey = tuple[str, str, int, int, int]  # dataset, loss, B, d, seed


def per_trial_convergence(view: ReportView, k: int, fraction: float) -> dict[TrialKey, dict]:
    """Trial -> results.convergence of its epoch rows at k (the one computation the trainer
    also uses); trials without epoch rows at k have none."""
    keys = ["dataset", "loss", "batch_size", "embedding_dim", "seed"]
    out = {}
    for key, rows in group_by(view.ok_epochs, keys).items():
        conv = convergence(rows, k, (fraction,))
        if conv:
            out[key] = conv
    return out


def evaluate_convergence(view: ReportView, claim: ConvergenceClaim) -> ConvergenceEvaluation:
    k = view.k_for(claim.k)
    pct = round(100 * claim.fraction)
    conv = per_trial_convergence(view, k, claim.fraction) if k is not None else {}
    keys = ["dataset", "batch_size", "embedding_dim"]
    subj = group_by(with_name(view.ok, [claim.subject]), keys)
    base = group_by(with_name(view.ok, [claim.baseline]), keys)
    missing = [n for n, g in ((claim.subject, subj), (claim.baseline, base)) if not g]

    def values(cell: list[Row], what: str) -> dict[int, float]:
        out = {}
        for r in cell:
            c = conv.get((r["dataset"], r["loss"], r["batch_size"], r["embedding_dim"], r["seed"]))
            if c and c[f"{what}_to_{pct}"] is not None:
                out[int(r["seed"])] = float(c[f"{what}_to_{pct}"])
        return out

    first_epoch = min(view.group.epochs["epoch"].drop_nulls().to_list(), default=1)
    result = ConvergenceEvaluation(claim, k, missing)
    for key in sorted(set(subj) & set(base)):
        s_ep, b_ep = values(subj[key], "epochs"), values(base[key], "epochs")
        s_sec, b_sec = values(subj[key], "seconds"), values(base[key], "seconds")
        s_acc = seed_values(subj[key], f"knn_acc_{k}", 100.0)
        b_acc = seed_values(base[key], f"knn_acc_{k}", 100.0)
        faster = diff_ci(b_ep, s_ep)  # baseline minus subject epochs: > 0 when subject faster
        higher = diff_ci(s_acc, b_acc)
        # Reached within the first epoch on every seed: the epoch count cannot order the two.
        censored = bool(s_ep) and {*s_ep.values(), *b_ep.values()} == {first_epoch}
        faster_verdict = INCONCLUSIVE if censored else judge(faster, 0.0)
        verdict = combine([faster_verdict, judge(higher, claim.threshold)])
        result.conditions.append(
            ConvergenceCondition(
                key, (s_ep, b_ep), (s_acc, b_acc), faster, diff_ci(b_sec, s_sec), higher, verdict
            )
        )
    result.verdict = combine([c.verdict for c in result.conditions])
    return result
