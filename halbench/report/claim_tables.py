"""Layout of the claims: each evaluation (claim_eval.py) as a verdict, a summary, its rule in
words and its tables."""

from __future__ import annotations

from dataclasses import dataclass, field

from halbench.report.claim_convergence import ConvergenceEvaluation, evaluate_convergence
from halbench.report.claim_cost import CostPart, evaluate_cost_parts
from halbench.report.claim_cost import summary as cost_summary
from halbench.report.claim_eval import UNTESTED, MarginEvaluation, Pick, evaluate_accuracy_margin
from halbench.report.claims import (
    SUPPORTED,
    AccuracyMarginClaim,
    Claim,
    ConvergenceClaim,
    CostRatioClaim,
)
from halbench.report.format import fmt_est, fmt_ratio
from halbench.report.model import VERDICT_SYMBOLS, Cell, Table
from halbench.report.stats import Estimate, nested_mean_ci
from halbench.report.verdict_stats import Tested
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
    note: str = ""  # said above the verdicts (e.g. the metric is not the tuning's)


def _v(verdict: str) -> Cell:
    symbol = VERDICT_SYMBOLS.get(verdict, "–")
    return Cell(f"{symbol} {verdict}", verdict=verdict if verdict in VERDICT_SYMBOLS else None)


def _ci(est: Estimate | None, digits: int = 2) -> str:
    if est is None:
        return "—"
    if est.lo is None or est.hi is None:
        return f"{est.mean:+.{digits}f} (no CI, n={est.n})"
    return f"{est.mean:+.{digits}f} [{est.lo:+.{digits}f}, {est.hi:+.{digits}f}]"


def _t(t: Tested | None, digits: int = 2) -> Cell:
    est = None if t is None else t.est
    text = _ci(est, digits)
    if t is not None and est is not None and est.lo is not None:
        text += f" ({t.kind}" + (f", g = {t.g:+.2f})" if t.g is not None else ")")
    return Cell(text, None if est is None else est.mean)


def _describe(p: Pick) -> str:
    return f"{p.loss} B={p.batch_size} d={p.embedding_dim}: {fmt_est(nested_mean_ci(p.values))}"


def _result(
    claim: Claim, rule: str, verdict: str, summary: str, tables: list[Table], note: str = ""
) -> ClaimResult:
    return ClaimResult(claim.id, claim.title, claim.statement, rule, verdict, summary, tables, note)


def _stats_rule(claim: Claim) -> str:
    corr = "Holm-adjusted over its conditions" if claim.correction == "holm" else "uncorrected"
    return (
        f"Intervals at α = {claim.alpha:g}, {corr} (rank r of m: level 1 − α/(m − r)); "
        f"paired t over seeds, over replicate means with tuning replicates, else Welch. "
        f"Contradicted when the interval excludes the margin from below (and said when it also "
        f"excludes 0: the subject is worse); an inconclusive line states the minimum detectable "
        f"effect at {round(100 * claim.power)}% power and the seeds that would resolve it; "
        "g is Hedges' g of the difference."
    )


# ---------------------------------------------------------------- C1


def margin_result(ev: MarginEvaluation, prefix: str) -> ClaimResult:
    claim, k, margin = ev.claim, ev.k, ev.claim.threshold
    rows, parts = [], []
    for c in ev.conditions:
        rows.append(
            [
                Cell(c.regime or c.dataset or c.wanted),
                Cell(_describe(c.subject) if c.subject else "—"),
                Cell(_describe(c.competitor) if c.competitor else "—"),
                _t(c.tested),
                _v(c.verdict),
                Cell(c.why),
            ]
        )
        if c.tested is not None:
            parts.append(f"{c.dataset}: {_ci(c.diff)} points")
        elif c.verdict != UNTESTED:
            parts.append(f"{c.dataset or c.wanted}: {c.why or 'no data'}")
    parts.insert(0, ev.summary)
    table = Table(
        id=f"{prefix}-{claim.id.lower()}",
        title=f"{claim.id}: {claim.subject} minus the best competitor, k-NN@{k} (points)",
        columns=[
            "dataset",
            f"{claim.subject} (best config)",
            "best competitor (best config)",
            "difference [CI] (g)",
            "verdict",
            "verdict line",
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
                        Cell(f"{c.subject.loss}: {fmt_est(nested_mean_ci(c.subject.values))}"),
                        Cell(
                            f"{c.competitor.loss}: {fmt_est(nested_mean_ci(c.competitor.values))}"
                        ),
                        Cell(_ci(c.diff), None if c.diff is None else c.diff.mean),
                        _v(c.verdict),
                    ]
                    for c in ev.configs
                ],
            )
        )
    rule = (
        f"Per dataset, in its regime (dataset, backbone, optimizer steps): the interval of "
        f"({claim.subject} − best competitor) k-NN@{k} accuracy, in points. Supported when it "
        f"clears {margin:g} on every tested dataset; contradicted when it lies below "
        f"{margin:g} on one; inconclusive otherwise or with < 2 seeds. A listed dataset the "
        "suite does not contain is untested (named beside the verdict, not counted). "
        + _stats_rule(claim)
    )
    return _result(claim, rule, ev.verdict, "; ".join(parts), tables, ev.note)


# ---------------------------------------------------------------- C2


_PART_RULE = {
    "flops": "forward FLOPs of one loss call, counted by the probes and from the losses' "
    "analytic flops() (docs/losses.md, 'Cost'); B* is where a power law fitted to the ratio "
    "against B crosses the threshold",
    "time": "time of one isolated, warm loss call (forward + backward): the profile's points "
    "(median ± half IQR), else the probe rows of trials that had their device to themselves "
    "(max_neighbours = 0; geometric mean of per-seed ratios [95% CI] with ≥ 2 common seeds)",
    "step": "the training step a user pays: step time (B / images per second) of trials that "
    "had their device to themselves (max_neighbours = 0), with the peak-memory ratio shown",
}


def cost_part_result(part: CostPart, prefix: str) -> ClaimResult:
    claim, thr = part.claim, part.claim.threshold
    rows = []
    for p in part.points:
        text = fmt_ratio(p.ratio)
        if p.lo is not None and p.hi is not None:
            text += f" [{p.lo:.3g}, {p.hi:.3g}]"
        extra = [Cell(fmt_ratio(p.extra), p.extra)] if part.part in ("flops", "step") else []
        spread = [Cell(p.spread)] if part.part in ("time", "step") else []
        rows.append(
            [
                Cell(str(p.batch_size), p.batch_size),
                Cell(str(p.embedding_dim), p.embedding_dim),
                Cell(point_text(p.key, part.source)),
                Cell(p.competitor),
                Cell(text, p.ratio),
                *extra,
                *spread,
                _v(p.verdict),
            ]
        )
    summary = cost_summary(part)
    several_keys = len({str(k) for _, k, _ in part.b_star}) > 1
    stars = [
        f"d={d}{' ' + point_text(key, part.source) if several_keys else ''} vs {comp}: "
        + (f"B* ≈ {b:,.0f}" if b is not None else "no B* (needs ≥ 2 batch sizes, falling)")
        for (d, key, comp), b in sorted(part.b_star.items(), key=lambda kv: str(kv[0]))
    ]
    if stars and part.part == "flops":
        summary += "; " + "; ".join(stars)
    extra_cols = {
        "flops": ["analytic ratio"],
        "time": ["medians (subject / competitor)"],
        "step": ["peak-memory ratio", "step medians (subject / competitor)"],
    }
    cols = (
        ["B", "d", "C, M, device" if part.source == "profile" else "dataset", "competitor", "ratio"]
        + extra_cols[part.part]
        + ["verdict"]
    )
    table = Table(
        id=f"{prefix}-{claim.id.lower()}-{part.part}",
        title=f"{part.name}: {claim.subject} / competitor (from the {part.source})",
        columns=cols,
        rows=rows,
        notes=[f"Holds where the ratio < {thr:g}."]
        + ([f"No data: {part.why}."] if part.why else []),
    )
    rule = (
        f"{part.name}: {_PART_RULE[part.part]}. At every measured (B, d) and competitor the "
        f"ratio {claim.subject} / competitor must be < {thr:g}; single values are compared as "
        "is, per-seed ratios by their 95% CI (undecided when it contains the threshold). "
        "Supported when it holds at every point, contradicted when it fails at one."
    )
    title = f"{claim.title} ({part.name[3:]})"
    return ClaimResult(
        part.name, title, claim.statement, rule, part.verdict, summary, [table] if rows else []
    )


# ---------------------------------------------------------------- C3


def convergence_result(ev: ConvergenceEvaluation, prefix: str) -> ClaimResult:
    claim, k = ev.claim, ev.k
    subject, baseline = claim.subject, claim.baseline
    unit = "steps" if ev.measure == "steps" else "epochs"
    what = (
        "steps to target" if ev.measure == "steps" else f"epochs to {round(100 * claim.fraction)}%"
    )
    rows = []
    for c in ev.conditions:
        s_to, b_to = c.to_target
        (s_acc, b_acc) = c.finals
        target = f" (target {c.target:.1f}%)" if c.target is not None else ""
        rows.append(
            [
                Cell(f"{c.key[0]} B={c.key[1]} d={c.key[2]}{target}"),
                Cell(f"{fmt_est(nested_mean_ci(s_to))} / {fmt_est(nested_mean_ci(b_to))}"),
                _t(c.faster, 1),
                _t(c.auc),
                Cell(f"{fmt_est(nested_mean_ci(s_acc))} / {fmt_est(nested_mean_ci(b_acc))}"),
                _t(c.higher),
                _v(c.verdict),
            ]
        )
    verdicts = [c.verdict for c in ev.conditions]
    summary = (
        f"no ok {' or '.join(ev.missing)} trials"
        if ev.missing
        else f"{sum(v == SUPPORTED for v in verdicts)} of {len(verdicts)} (dataset, B, d) "
        f"supported, judged in {unit}"
        if verdicts
        else f"{subject} and {baseline} never share a (dataset, B, d)"
    )
    if ev.censored:
        summary += "; censored: every run reached the target at the first evaluation"
    notes = [
        (
            f"Target: the lower of the two losses' mean final accuracies on the curve's "
            f"subsample minus {claim.target_margin:g} points; steps: the first evaluation "
            "after step 0 (the untrained model) at or above it (a run that never reaches it "
            "counts its last step: censored, "
            f"{sum(c.censored for c in ev.conditions)} run(s)). Mean accuracy over steps: area "
            "under the curve divided by its step range."
        )
        if ev.measure == "steps"
        else (
            f"No sub-epoch curves (curve_steps / curve_acc): epochs to "
            f"{round(100 * claim.fraction)}% of each trial's final accuracy. When both losses "
            "reach it at the first evaluation on every seed, 'faster' is censored "
            "(inconclusive)."
        )
    ]
    table = Table(
        id=f"{prefix}-{claim.id.lower()}",
        title=f"{claim.id}: {subject} vs {baseline} at each (dataset, B, d), k-NN@{k}",
        columns=[
            "dataset, B, d",
            f"{what}: {subject} / {baseline}",
            f"{baseline} − {subject} {unit} [CI] (g)",
            f"{subject} − {baseline} mean acc. over steps [CI]",
            f"final %: {subject} / {baseline}",
            f"{subject} − {baseline} final [CI] (g)",
            "verdict",
        ],
        rows=rows,
        notes=notes,
    )
    rule = (
        f"At each (dataset, B, d) with both losses: faster when the interval of "
        f"({baseline} − {subject}) {what} is above 0, higher when the interval of "
        f"({subject} − {baseline}) final accuracy clears {claim.threshold:g} points; supported "
        "when both hold everywhere, contradicted when either interval lies below its bound. "
        + _stats_rule(claim)
    )
    return _result(claim, rule, ev.verdict, summary, [table] if rows else [], ev.note)


# ---------------------------------------------------------------- entry points


def accuracy_margin(view: ReportView, claim: AccuracyMarginClaim, prefix: str) -> ClaimResult:
    return margin_result(evaluate_accuracy_margin(view, claim), prefix)


def cost_ratio(view: ReportView, claim: CostRatioClaim, prefix: str) -> list[ClaimResult]:
    """One result per part: `C2 FLOPs`, `C2 call time`, `C2 training step`."""
    return [cost_part_result(p, prefix) for p in evaluate_cost_parts(view, claim)]


def convergence(view: ReportView, claim: ConvergenceClaim, prefix: str) -> ClaimResult:
    return convergence_result(evaluate_convergence(view, claim), prefix)


def evaluate_claims(view: ReportView, claims: list[Claim], prefix: str) -> list[ClaimResult]:
    """Verdict of every claim on this view (a cost claim gives one result per part)."""
    out = []
    for claim in claims:
        if isinstance(claim, AccuracyMarginClaim):
            out.append(accuracy_margin(view, claim, prefix))
        elif isinstance(claim, CostRatioClaim):
            out += cost_ratio(view, claim, prefix)
        else:
            out.append(convergence(view, claim, prefix))
    return out
