"""Layout of the claims: each evaluation (claim_eval.py) as a verdict, a summary, its rule in
words and its tables."""

from __future__ import annotations

from dataclasses import dataclass, field

from halbench.report.claim_eval import (
    ConvergenceEvaluation,
    MarginEvaluation,
    Pick,
    RatioEvaluation,
    evaluate_accuracy_margin,
    evaluate_convergence,
    evaluate_cost_ratio,
    where_it_holds,
)
from halbench.report.claims import (
    SUPPORTED,
    AccuracyMarginClaim,
    Claim,
    ConvergenceClaim,
    CostRatioClaim,
)
from halbench.report.format import fmt_est, fmt_interval, fmt_ratio
from halbench.report.model import VERDICT_SYMBOLS, Cell, Table
from halbench.report.stats import mean_ci
from halbench.report.views import ReportView
from halbench.report.views import key_text as point_text


@dataclass
class ClaimResult:
    id: str
    title: str
    statement: str
    rule: str
    verdict: str
    summary: str
    tables: list[Table] = field(default_factory=list)


def _v(verdict: str) -> Cell:
    return Cell(f"{VERDICT_SYMBOLS[verdict]} {verdict}", verdict=verdict)


def _describe(p: Pick) -> str:
    return f"{p.loss} B={p.batch_size} d={p.embedding_dim}: {fmt_est(mean_ci(p.values.values()))}"


def _result(claim: Claim, rule: str, verdict: str, summary: str, tables: list[Table]):
    return ClaimResult(claim.id, claim.title, claim.statement, rule, verdict, summary, tables)


# ---------------------------------------------------------------- C1


def margin_result(ev: MarginEvaluation, prefix: str) -> ClaimResult:
    claim, k, margin = ev.claim, ev.k, ev.claim.threshold
    rows, parts = [], []
    for c in ev.conditions:
        diff = c.diff
        rows.append(
            [
                Cell(c.dataset or c.wanted),
                Cell(_describe(c.subject) if c.subject else "—"),
                Cell(_describe(c.competitor) if c.competitor else "—"),
                Cell(
                    fmt_interval(diff) + (f" ({diff.method})" if diff else ""),
                    None if diff is None else diff.mean,
                ),
                _v(c.verdict),
                Cell(c.why),
            ]
        )
        parts.append(
            f"{c.dataset or c.wanted}: "
            + (f"{fmt_interval(diff)} points" if diff else c.why or "no data")
        )
    table = Table(
        id=f"{prefix}-{claim.id.lower()}",
        title=f"{claim.id}: {claim.subject} minus the best competitor, k-NN@{k} (points)",
        columns=[
            "dataset",
            f"{claim.subject} (best config)",
            "best competitor (best config)",
            "difference [95% CI]",
            "verdict",
            "why",
        ],
        rows=rows,
        notes=[
            f"Competitors: {', '.join(claim.competitors)}. Each loss at its own best (B, d) "
            + (
                "by mean validation score (the tuning split; the test split never picks), "
                if ev.select_by
                else "by mean test accuracy (hand-set configurations: exploratory), "
            )
            + "the competitor is the one ranked highest by the same rule."
        ],
    )
    tables = [table] if ev.has_rows else []
    if ev.configs:
        tables.append(
            Table(
                id=f"{prefix}-{claim.id.lower()}-configs",
                title=f"{claim.id} at each (B, d): where the margin holds "
                "(not used for the verdict)",
                columns=[
                    "dataset",
                    "B",
                    "d",
                    claim.subject,
                    "best competitor at this (B, d)",
                    "difference [95% CI]",
                    "margin verdict",
                ],
                rows=[
                    [
                        Cell(str(c.key[0])),
                        Cell(str(c.key[1]), c.key[1]),
                        Cell(str(c.key[2]), c.key[2]),
                        Cell(f"{c.subject.loss}: {fmt_est(mean_ci(c.subject.values.values()))}"),
                        Cell(
                            f"{c.competitor.loss}: {fmt_est(mean_ci(c.competitor.values.values()))}"
                        ),
                        Cell(fmt_interval(c.diff), None if c.diff is None else c.diff.mean),
                        _v(c.verdict),
                    ]
                    for c in ev.configs
                ],
            )
        )
    rule = (
        f"Per dataset: 95% CI of ({claim.subject} − best competitor) accuracy, in points "
        f"(paired t over seeds when both have the same seeds, else Welch). Supported when the "
        f"lower bound > {margin:g} on every listed dataset; not supported when the upper "
        f"bound ≤ {margin:g} on one; inconclusive otherwise or with < 2 seeds; no data when "
        "a dataset, the subject or every competitor is missing."
    )
    return _result(claim, rule, ev.verdict, "; ".join(parts), tables)


# ---------------------------------------------------------------- C2


def ratio_result(ev: RatioEvaluation, prefix: str) -> ClaimResult:
    claim, thr = ev.claim, ev.claim.threshold
    rows, holds = [], []
    for p in ev.points:
        key_text = point_text(p.key, ev.source)
        cells = []
        if "flops" in claim.metrics:
            cells.append(Cell(fmt_ratio(p.flops), p.flops))
        if "time" in claim.metrics:
            text = fmt_ratio(p.time)
            if p.time_lo is not None and p.time_hi is not None:
                text += f" [{p.time_lo:.3g}, {p.time_hi:.3g}]"
            cells.append(Cell(text, p.time))
        holds.append((p.embedding_dim, key_text, p.batch_size, p.verdict))
        rows.append(
            [
                Cell(str(p.batch_size), p.batch_size),
                Cell(str(p.embedding_dim), p.embedding_dim),
                Cell(key_text),
                Cell(p.competitor),
                *cells,
                _v(p.verdict),
            ]
        )
    n_ok = sum(v == SUPPORTED for *_, v in holds)
    summary = (
        (f"holds at {n_ok} of {len(holds)} points; " + where_it_holds(holds))
        if holds
        else f"no {claim.subject} and competitor costs at the same (B, d)"
    )
    per_seed = [p.time_lo is not None for p in ev.points if p.time is not None]
    time_name = (
        "time ratio (geo. mean of per-seed ratios [95% CI])"
        if per_seed and all(per_seed)
        else "time ratio (of medians)"
        if not any(per_seed)
        else "time ratio (per-seed geo. mean [CI], else of medians)"
    )
    names = {"flops": "FLOPs fwd ratio", "time": time_name}
    table = Table(
        id=f"{prefix}-{claim.id.lower()}",
        title=f"{claim.id}: cost ratio {claim.subject} / competitor (from the {ev.source})",
        columns=["B", "d", "C, M, device" if ev.source == "profile" else "dataset", "competitor"]
        + [names[m] for m in claim.metrics]
        + ["verdict"],
        rows=rows,
        notes=[
            f"Holds where the ratio < {thr:g}. Time from trials with ≥ 2 common seeds: "
            "geometric mean of per-seed ratios [95% CI]; otherwise ratio of medians."
        ],
    )
    rule = (
        f"At every measured (B, d) and competitor, {claim.subject}'s forward FLOPs and "
        f"time per loss call divided by the competitor's must be < {thr:g}. FLOPs and "
        "single-measurement times are compared as is; per-seed times use their 95% CI "
        "(inconclusive when it contains the threshold). Supported when it holds at every "
        "point, not supported when it fails at one (the table shows where it holds)."
    )
    return _result(claim, rule, ev.verdict, summary, [table] if rows else [])


# ---------------------------------------------------------------- C3


def convergence_result(ev: ConvergenceEvaluation, prefix: str) -> ClaimResult:
    claim, k = ev.claim, ev.k
    subject, baseline = claim.subject, claim.baseline
    pct = f"{round(100 * claim.fraction)}%"
    rows = []
    for c in ev.conditions:
        (s_ep, b_ep), (s_acc, b_acc) = c.epochs, c.finals
        # Paired cells ("hal / al") keep the table within a page's width.
        rows.append(
            [
                Cell(f"{c.key[0]} B={c.key[1]} d={c.key[2]}"),
                Cell(f"{fmt_est(mean_ci(s_ep.values()))} / {fmt_est(mean_ci(b_ep.values()))}"),
                Cell(fmt_interval(c.faster), None if c.faster is None else c.faster.mean),
                Cell(fmt_interval(c.seconds, 1)),
                Cell(f"{fmt_est(mean_ci(s_acc.values()))} / {fmt_est(mean_ci(b_acc.values()))}"),
                Cell(fmt_interval(c.higher), None if c.higher is None else c.higher.mean),
                _v(c.verdict),
            ]
        )
    verdicts = [c.verdict for c in ev.conditions]
    summary = (
        f"no ok {' or '.join(ev.missing)} trials"
        if ev.missing
        else f"{sum(v == SUPPORTED for v in verdicts)} of {len(verdicts)} (dataset, B, d) supported"
        if verdicts
        else f"{subject} and {baseline} never share a (dataset, B, d)"
    )
    table = Table(
        id=f"{prefix}-{claim.id.lower()}",
        title=f"{claim.id}: {subject} vs {baseline} at each (dataset, B, d), k-NN@{k}",
        columns=[
            "dataset, B, d",
            f"epochs to {pct}: {subject} / {baseline}",
            f"{baseline} − {subject} epochs [CI]",
            f"{baseline} − {subject} s [CI]",
            f"final %: {subject} / {baseline}",
            f"{subject} − {baseline} final [CI]",
            "verdict",
        ],
        rows=rows,
        notes=[
            f"Epochs to {pct}: first epoch whose k-NN accuracy reaches {pct} of the trial's "
            "final accuracy. Differences: paired t over seeds when both share seeds, else "
            "Welch. Seconds are shown, not judged. When both losses reach it within the first "
            "epoch on every seed, 'faster' is inconclusive (the epoch count cannot order them)."
        ],
    )
    rule = (
        f"At each (dataset, B, d) with both losses: faster when the 95% CI of "
        f"({baseline} − {subject}) epochs to {pct} of final accuracy is above 0, "
        f"higher when the CI of ({subject} − {baseline}) final accuracy is above "
        f"{claim.threshold:g} points; a configuration supports the claim when both hold and "
        "refutes it when either CI lies at or below its bound. Supported when every "
        "configuration supports it; inconclusive with < 2 seeds."
    )
    return _result(claim, rule, ev.verdict, summary, [table] if rows else [])


# ---------------------------------------------------------------- entry points


def accuracy_margin(view: ReportView, claim: AccuracyMarginClaim, prefix: str) -> ClaimResult:
    return margin_result(evaluate_accuracy_margin(view, claim), prefix)


def cost_ratio(view: ReportView, claim: CostRatioClaim, prefix: str) -> ClaimResult:
    return ratio_result(evaluate_cost_ratio(view, claim), prefix)


def convergence(view: ReportView, claim: ConvergenceClaim, prefix: str) -> ClaimResult:
    return convergence_result(evaluate_convergence(view, claim), prefix)


def evaluate_claims(view: ReportView, claims: list[Claim], prefix: str) -> list[ClaimResult]:
    """Verdict of every claim on this view."""
    out = []
    for claim in claims:
        if isinstance(claim, AccuracyMarginClaim):
            out.append(accuracy_margin(view, claim, prefix))
        elif isinstance(claim, CostRatioClaim):
            out.append(cost_ratio(view, claim, prefix))
        else:
            out.append(convergence(view, claim, prefix))
    return out
