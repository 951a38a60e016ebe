"""Evaluation of C1-type claims (an accuracy margin) on one report view, and what every claim
evaluation shares: the metric a claim judges, the regime of a verdict, the verdict of a tested
difference and its line. No layout (claim_tables.py); C2 is in claim_cost.py, C3 in
claim_convergence.py.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Any

from halbench.report.claims import (
    CONTRADICTED,
    INCONCLUSIVE,
    NO_DATA,
    SUPPORTED,
    AccuracyMarginClaim,
    ConvergenceClaim,
    combine,
)
from halbench.report.format import norm_name
from halbench.report.rows import Row, finite, group_by, seed_values
from halbench.report.stats import Estimate, mean_ci
from halbench.report.verdict_stats import MAX_UNITS, Tested, assess_all
from halbench.report.views import ReportView

UNTESTED = "untested"


def with_name(rows: list[Row], names: list[str]) -> list[Row]:
    """Rows whose registry name is one of names (compared without case or punctuation)."""
    wanted = {norm_name(n) for n in names}
    return [r for r in rows if norm_name(r["loss_name"]) in wanted]


def tuning_metric(view: ReportView) -> str | None:
    """The metric the run's tuning selected on (suite tune.metric), when it records one."""
    tune = view.suite.get("tune")
    metric = tune.get("metric") if isinstance(tune, dict) else None
    return str(metric) if metric else None


def metric_k(
    view: ReportView, claim: AccuracyMarginClaim | ConvergenceClaim
) -> tuple[int | None, str]:
    """(k the claim judges, a note when that is not the metric the tuning selected on).

    Default: the k of the tuning metric (knn_acc_<k>) when the run records one and has it,
    else the primary k. A claims file that names k wins, and the report says so."""
    tuned = tuning_metric(view)
    tuned_k = int(tuned.rsplit("_", 1)[1]) if tuned and tuned.rsplit("_", 1)[-1].isdigit() else None
    if claim.k is None:
        k = tuned_k if tuned_k in view.ks else view.k
        return k, ""
    k = view.k_for(claim.k)
    if tuned and tuned_k != k:
        return k, (
            f"{claim.id} judges k-NN@{k}, as its claims file names, while the tuning selected "
            f"configurations on {tuned}."
        )
    return k, ""


def regime(view: ReportView, dataset: str | None, rows: list[Row]) -> str:
    """'fashion_mnist, small_cnn, 1,250 optimizer steps': where a verdict holds."""
    model = view.suite.get("model")
    backbone = model.get("backbone") if isinstance(model, dict) else None
    backbone = backbone or next((r.get("model") for r in rows if r.get("model")), None)
    steps = [
        int(r["epochs_done"]) * int(r["steps_per_epoch"])
        for r in rows
        if finite(r.get("epochs_done")) and finite(r.get("steps_per_epoch"))
    ]
    epochs = [int(r["epochs_done"]) for r in rows if finite(r.get("epochs_done"))]
    if steps:
        budget = f"{int(statistics.median(steps)):,} optimizer steps"
    elif epochs:
        budget = f"{int(statistics.median(epochs))} epochs (steps not recorded)"
    else:
        budget = "training length not recorded"
    return ", ".join(str(x) for x in (dataset, backbone, budget) if x)


def verdict_of(t: Tested | None, margin: float, alpha: float) -> str:
    """supported / contradicted when the (corrected) test rejects 'difference = margin' on that
    side; inconclusive when it does not or with < 2 units; no data without a difference."""
    if t is None or t.est is None:
        return NO_DATA
    if t.p_adj is None or t.est.lo is None:
        return INCONCLUSIVE
    if t.p_adj < alpha:
        return SUPPORTED if t.est.mean > margin else CONTRADICTED
    return INCONCLUSIVE


def _pts(x: float) -> str:
    return f"{x:+.2f}"


def verdict_line(
    verdict: str, t: Tested | None, margin: float, unit: str = "points", eq: float | None = None
) -> str:
    """The interval, effect size and what the verdict means: see docs/report.md, "Verdicts"."""
    if t is None or t.est is None:
        return ""
    est = t.est
    if est.lo is None or est.hi is None:
        return f"{_pts(est.mean)} {unit} (n={est.n}: no interval; run ≥ 2 seeds)"
    level = f"{100 * t.level:.4g}%"
    text = f"{_pts(est.mean)} [{_pts(est.lo)}, {_pts(est.hi)}] {unit} ({level} CI, {t.kind}"
    text += f", g = {t.g:+.2f})" if t.g is not None else ")"
    if verdict == SUPPORTED:
        text += f": clears {margin:g}"
    elif verdict == CONTRADICTED:
        text += f": excludes {margin:g}"
        if est.hi < 0 <= margin or (margin < 0 and est.hi < 0):
            text += " and excludes 0 (the subject is worse)"
    elif verdict == INCONCLUSIVE:
        if t.mde is not None:
            text += (
                f"; minimum detectable effect at {round(100 * t.power)}% power with {est.n} "
                f"{t.unit}: {t.mde:.2f} {unit}"
            )
        if t.needed is not None:
            more = f"more than {MAX_UNITS:,}" if t.needed > MAX_UNITS else f"about {t.needed}"
            text += f"; {more} {t.unit} would resolve it"
    if eq is not None and est.lo >= -eq and est.hi <= eq:
        text += f"; equivalent within ±{eq:g} {unit}"
    return text


def tested_all(
    pairs: list[tuple[dict, dict]],
    margin: float,
    claim: AccuracyMarginClaim | ConvergenceClaim,
) -> list[Tested]:
    """assess_all with the claim's alpha, power and correction."""
    return assess_all(pairs, margin, claim.alpha, claim.power, claim.correction)


def rollup(per_condition: list[tuple[str, str]]) -> tuple[str, str]:
    """(verdict, 'contradicted on fashion-mnist; untested on cifar10') over (condition, verdict):
    the verdict of the tested conditions; untested ones are named, never turned into no data."""
    tested = [(c, v) for c, v in per_condition if v != UNTESTED]
    verdict = combine([v for _, v in tested]) if tested else NO_DATA
    parts: dict[str, list[str]] = {}
    for c, v in per_condition:
        parts.setdefault(v, []).append(c)
    order = [CONTRADICTED, INCONCLUSIVE, SUPPORTED, NO_DATA, UNTESTED]
    text = "; ".join(f"{v} on {', '.join(parts[v])}" for v in order if v in parts)
    return verdict, text


@dataclass(frozen=True)
class Pick:
    """A (loss, B, d) chosen by its mean accuracy, and its per-unit values in points."""

    loss: str
    batch_size: int
    embedding_dim: int
    values: dict[Any, float]
    rows: tuple[Row, ...] = ()


def best_pick(rows: list[Row], column: str, by: str | None = None) -> Pick | None:
    """The (loss, B, d) with the highest mean over seeds of `by` (the validation score of a
    tuned run; default: column itself), with its per-seed values of column (first of equals)."""
    best: tuple[float, Pick] | None = None
    for (loss, b, d), cell in group_by(rows, ["loss", "batch_size", "embedding_dim"]).items():
        vals = seed_values(cell, column, 100.0)
        est = mean_ci(seed_values(cell, by).values()) if by else mean_ci(vals.values())
        if vals and est is not None and (best is None or est.mean > best[0]):
            best = (est.mean, Pick(loss, b, d, vals, tuple(cell)))
    return None if best is None else best[1]


# ---------------------------------------------------------------- C1: accuracy margin


@dataclass
class MarginCondition:
    """One listed dataset: subject and best competitor at their best (B, d), and the difference."""

    wanted: str  # the dataset as the claim names it
    dataset: str | None  # as the rows name it; None when absent
    subject: Pick | None
    competitor: Pick | None
    diff: Estimate | None  # at the corrected level
    verdict: str  # UNTESTED for a dataset the suite does not contain
    why: str  # the verdict line (interval, effect size, power) or why there is none
    regime: str = ""
    tested: Tested | None = None


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
    summary: str = ""  # the roll-up: 'contradicted on fashion-mnist; untested on cifar10'
    note: str = ""  # the metric note (metric_k)


def evaluate_accuracy_margin(view: ReportView, claim: AccuracyMarginClaim) -> MarginEvaluation:
    k, note = metric_k(view, claim)
    column, margin, by = f"knn_acc_{k}", claim.threshold, view.select_by
    rows = view.ok
    subject = with_name(rows, [claim.subject])
    competitors = with_name(rows, claim.competitors)
    present = sorted({r["dataset"] for r in rows})
    by_norm = {norm_name(d): d for d in present}
    datasets = [(str(d), by_norm.get(norm_name(d))) for d in (claim.datasets or present)]
    picks = []
    for _, dataset in datasets:
        s = best_pick([r for r in subject if r["dataset"] == dataset], column, by)
        c = best_pick([r for r in competitors if r["dataset"] == dataset], column, by)
        picks.append((s, c) if dataset else (None, None))
    judged = [i for i, (s, c) in enumerate(picks) if s and c]
    tests = dict(
        zip(
            judged,
            tested_all([(picks[i][0].values, picks[i][1].values) for i in judged], margin, claim),
            strict=True,
        )
    )  # type: ignore[union-attr]
    conditions = []
    for i, ((wanted, dataset), (s, c)) in enumerate(zip(datasets, picks, strict=True)):
        t = tests.get(i)
        if not dataset:
            why = _absent(view, wanted)
            verdict = UNTESTED if why == NOT_IN_SUITE else NO_DATA
        elif not s or not c:
            why, verdict = f"no ok {claim.subject if not s else 'competitor'} trials", NO_DATA
        else:
            verdict = verdict_of(t, margin, claim.alpha)
            why = verdict_line(verdict, t, margin, eq=claim.equivalence_margin)
        reg = regime(view, dataset, list(s.rows) if s else []) if dataset else ""
        conditions.append(
            MarginCondition(wanted, dataset, s, c, t.est if t else None, verdict, why, reg, t)
        )
    listed = {d for _, d in datasets if d is not None}
    keys = ["dataset", "batch_size", "embedding_dim"]
    subj = group_by([r for r in subject if r["dataset"] in listed], keys)
    comp = group_by([r for r in competitors if r["dataset"] in listed], keys)
    configs = []
    for key in sorted(set(subj) & set(comp)):
        s, c = best_pick(subj[key], column, by), best_pick(comp[key], column, by)
        if s and c:
            (t,) = tested_all([(s.values, c.values)], margin, claim)
            configs.append(ConfigMargin(key, s, c, t.est, verdict_of(t, margin, claim.alpha)))
    verdict, summary = rollup([(c.dataset or c.wanted, c.verdict) for c in conditions])
    return MarginEvaluation(claim, k, bool(rows), by, conditions, configs, verdict, summary, note)


NOT_IN_SUITE = "dataset not in this suite"


def _absent(view: ReportView, wanted: str) -> str:
    """Why a listed dataset has no ok rows: not in the suite, or every trial of it failed."""
    failed = [r for r in view.failed if norm_name(r["dataset"]) == norm_name(wanted)]
    if not failed:
        return NOT_IN_SUITE
    statuses = sorted({str(r["status"]) for r in failed})
    return f"all {len(failed)} trial(s) failed ({', '.join(statuses)})"
