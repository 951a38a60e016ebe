"""The paper's claims, checked against one suite group: a verdict per claim, with its rule.

Verdicts come from 95% intervals over seeds, never from a single run:
- a margin claim "X - Y > m" is supported when the interval's lower bound is > m, not supported
  when its upper bound is <= m, inconclusive otherwise or with fewer than 2 seeds a side;
- a claim over several conditions (datasets, configurations, points) is not supported when one
  condition is not, no data when one lacks data, inconclusive when one is, supported otherwise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from halbench.errors import UserError
from halbench.report.load import RunGroup
from halbench.report.model import VERDICT_SYMBOLS, Cell, Table
from halbench.report.stats import Estimate, diff_ci, mean_ci
from halbench.report.tables import (
    Row,
    cost_points,
    fmt_est,
    fmt_interval,
    fmt_ratio,
    group_by,
    median_of,
    norm_name,
    ok_rows,
    primary_k,
    seed_values,
)

SUPPORTED, NOT_SUPPORTED, INCONCLUSIVE, NO_DATA = (
    "supported",
    "not supported",
    "inconclusive",
    "no data",
)
KINDS = ("accuracy_margin", "cost_ratio", "convergence")


@dataclass
class ClaimResult:
    id: str
    title: str
    statement: str
    rule: str
    verdict: str
    summary: str
    tables: list[Table] = field(default_factory=list)


def default_claims_path() -> Path:
    return Path(str(resources.files("halbench.claims").joinpath("hal2023.yaml")))


def load_claims(path: Path | None = None) -> list[dict[str, Any]]:
    """Read a claims file; UserError naming the file and field when it is malformed."""
    path = Path(path) if path is not None else default_claims_path()
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise UserError(f"{path}: cannot read claims file ({exc.__class__.__name__})") from exc
    claims = data.get("claims") if isinstance(data, dict) else None
    if not isinstance(claims, list):
        raise UserError(f"{path}: claims: expected a list of claims")
    for i, claim in enumerate(claims):
        if not isinstance(claim, dict) or claim.get("kind") not in KINDS:
            raise UserError(f"{path}: claims[{i}].kind: expected one of {', '.join(KINDS)}")
        for key in ("id", "title", "statement", "subject"):
            if not claim.get(key):
                raise UserError(f"{path}: claims[{i}].{key}: expected a non-empty value")
    return claims


def judge(est: Estimate | None, margin: float) -> str:
    """Verdict of 'value > margin' from a 95% interval (see module docstring)."""
    if est is None:
        return NO_DATA
    if est.lo is None or est.hi is None or est.n < 2:
        return INCONCLUSIVE
    if est.lo > margin:
        return SUPPORTED
    if est.hi <= margin:
        return NOT_SUPPORTED
    return INCONCLUSIVE


def combine(verdicts: list[str]) -> str:
    """Verdict of a claim that must hold under every condition."""
    for v in (NOT_SUPPORTED, NO_DATA, INCONCLUSIVE):
        if v in verdicts:
            return v
    return SUPPORTED if verdicts else NO_DATA


def _v(verdict: str) -> Cell:
    return Cell(f"{VERDICT_SYMBOLS[verdict]} {verdict}")


def _with_name(rows: list[Row], names: list[str]) -> list[Row]:
    wanted = {norm_name(n) for n in names}
    return [r for r in rows if norm_name(r["loss_name"]) in wanted]


def _datasets(rows: list[Row], claim: dict[str, Any]) -> list[tuple[str, str | None]]:
    """(claimed dataset, dataset name in the data or None) pairs; all data sets if none listed."""
    present = sorted({r["dataset"] for r in rows})
    wanted = claim.get("datasets") or present
    by_norm = {norm_name(d): d for d in present}
    return [(str(d), by_norm.get(norm_name(d))) for d in wanted]


def _best(rows: list[Row], column: str) -> tuple[tuple, dict[int, float]] | None:
    """The (loss, B, d) with the highest mean of column over seeds, and its seed values."""
    best = None
    for key, cell in group_by(rows, ["loss", "batch_size", "embedding_dim"]).items():
        vals = seed_values(cell, column, 100.0)
        est = mean_ci(vals.values())
        if est is not None and (best is None or est.mean > best[0]):
            best = (est.mean, key, vals)
    return None if best is None else (best[1], best[2])


def _describe(key: tuple, vals: dict[int, float]) -> str:
    return f"{key[0]} B={key[1]} d={key[2]}: {fmt_est(mean_ci(vals.values()))}"


# ---------------------------------------------------------------- C1: accuracy margin


def accuracy_margin(group: RunGroup, claim: dict[str, Any], prefix: str) -> ClaimResult:
    k = primary_k(group, claim.get("k"))
    column = f"knn_acc_{k}"
    margin = float(claim.get("threshold", 0.0))
    rows = ok_rows(group)
    subject = _with_name(rows, [claim["subject"]])
    competitors = _with_name(rows, claim.get("competitors") or [])
    table_rows, verdicts, parts = [], [], []
    for wanted, dataset in _datasets(rows, claim):
        s = _best([r for r in subject if r["dataset"] == dataset], column) if dataset else None
        c = _best([r for r in competitors if r["dataset"] == dataset], column) if dataset else None
        diff = diff_ci(s[1], c[1]) if s and c else None
        verdict = judge(diff, margin)
        verdicts.append(verdict)
        if not dataset:
            why = "dataset not in this suite"
        elif not s or not c:
            why = f"no ok {claim['subject'] if not s else 'competitor'} trials"
        else:
            why = "fewer than 2 seeds" if diff is None or diff.lo is None else ""
        table_rows.append(
            [
                Cell(dataset or wanted),
                Cell(_describe(*s) if s else "—"),
                Cell(_describe(*c) if c else "—"),
                Cell(
                    fmt_interval(diff) + (f" ({diff.method})" if diff else ""),
                    None if diff is None else diff.mean,
                ),
                _v(verdict),
                Cell(why),
            ]
        )
        parts.append(
            f"{dataset or wanted}: "
            + (f"{fmt_interval(diff)} points" if diff else why or "no data")
        )
    verdict = combine(verdicts)
    table = Table(
        id=f"{prefix}-{claim['id'].lower()}",
        title=f"{claim['id']}: {claim['subject']} minus the best competitor, k-NN@{k} (points)",
        columns=[
            "dataset",
            f"{claim['subject']} (best config)",
            "best competitor (best config)",
            "difference [95% CI]",
            "verdict",
            "why",
        ],
        rows=table_rows,
        notes=[
            f"Competitors: {', '.join(claim.get('competitors') or [])}. Each loss at its own "
            "best (B, d) by mean accuracy; the competitor is the one with the highest mean."
        ],
    )
    tables = [table] if rows else []
    listed = {d for _, d in _datasets(rows, claim) if d is not None}
    detail = _per_config_margin(
        [r for r in subject if r["dataset"] in listed],
        [r for r in competitors if r["dataset"] in listed],
        column,
        margin,
        prefix,
        claim,
    )
    if detail is not None:
        tables.append(detail)
    rule = (
        f"Per dataset: 95% CI of ({claim['subject']} − best competitor) accuracy, in points "
        f"(paired t over seeds when both have the same seeds, else Welch). Supported when the "
        f"lower bound > {margin:g} on every listed dataset; not supported when the upper "
        f"bound ≤ {margin:g} on one; inconclusive otherwise or with < 2 seeds; no data when "
        "a dataset, the subject or every competitor is missing."
    )
    return ClaimResult(
        claim["id"],
        claim["title"],
        claim["statement"].strip(),
        rule,
        verdict,
        "; ".join(parts),
        tables,
    )


def _per_config_margin(
    subject: list[Row],
    competitors: list[Row],
    column: str,
    margin: float,
    prefix: str,
    claim: dict[str, Any],
) -> Table | None:
    """Subject minus best competitor at each (dataset, B, d): where the margin holds."""
    keys = ["dataset", "batch_size", "embedding_dim"]
    subj, comp = group_by(subject, keys), group_by(competitors, keys)
    rows = []
    for key in sorted(set(subj) & set(comp)):
        s, c = _best(subj[key], column), _best(comp[key], column)
        if not s or not c:
            continue
        diff = diff_ci(s[1], c[1])
        rows.append(
            [
                Cell(str(key[0])),
                Cell(str(key[1]), key[1]),
                Cell(str(key[2]), key[2]),
                Cell(f"{s[0][0]}: {fmt_est(mean_ci(s[1].values()))}"),
                Cell(f"{c[0][0]}: {fmt_est(mean_ci(c[1].values()))}"),
                Cell(fmt_interval(diff), None if diff is None else diff.mean),
                _v(judge(diff, margin)),
            ]
        )
    if not rows:
        return None
    return Table(
        id=f"{prefix}-{claim['id'].lower()}-configs",
        title=f"{claim['id']} at each (B, d): where the margin holds (not used for the verdict)",
        columns=[
            "dataset",
            "B",
            "d",
            claim["subject"],
            "best competitor at this (B, d)",
            "difference [95% CI]",
            "margin verdict",
        ],
        rows=rows,
    )


# ---------------------------------------------------------------- C2: cost ratio


def _time_ratio(subj: list[Row], comp: list[Row], thr: float) -> tuple[str, float | None, str]:
    """(text, ratio, verdict) of subject/competitor time at one point.

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
        return (
            f"{fmt_ratio(math.exp(est.mean))} [{math.exp(est.lo):.3g}, {math.exp(est.hi):.3g}]",
            math.exp(est.mean),
            verdict,
        )
    r = _ratio_of_medians(subj, comp, "time")
    return fmt_ratio(r), r, NO_DATA if r is None else (SUPPORTED if r < thr else NOT_SUPPORTED)


def _ratio_of_medians(subj: list[Row], comp: list[Row], column: str) -> float | None:
    a, b = median_of(subj, column), median_of(comp, column)
    return None if a is None or b is None or b == 0 else a / b


def cost_ratio(group: RunGroup, claim: dict[str, Any], prefix: str) -> ClaimResult:
    thr = float(claim.get("threshold", 0.1))
    metrics = claim.get("metrics") or ["flops", "time"]
    points, source = cost_points(group)
    subject = group_by(
        _with_name(points, [claim["subject"]]), ["batch_size", "embedding_dim", "key"]
    )
    competitors = group_by(
        _with_name(points, claim.get("competitors") or []),
        ["batch_size", "embedding_dim", "key", "loss"],
    )
    rows, verdicts, holds = [], [], []
    for (b, d, key, label), comp in sorted(
        competitors.items(), key=lambda kv: (str(kv[0][2]), kv[0][1], kv[0][0], kv[0][3])
    ):
        subj = subject.get((b, d, key))
        if not subj:
            continue
        point_verdicts, cells = [], []
        if "flops" in metrics:
            r = _ratio_of_medians(subj, comp, "flops_fwd")
            point_verdicts.append(NO_DATA if r is None else SUPPORTED if r < thr else NOT_SUPPORTED)
            cells.append(Cell(fmt_ratio(r), r))
        if "time" in metrics:
            text, r, v = _time_ratio(subj, comp, thr)
            point_verdicts.append(v)
            cells.append(Cell(text, r))
        verdict = combine(point_verdicts)
        verdicts.append(verdict)
        holds.append((d, ", ".join(map(str, key)), b, verdict))
        rows.append(
            [
                Cell(str(b), b),
                Cell(str(d), d),
                Cell(", ".join(map(str, key))),
                Cell(label),
                *cells,
                _v(verdict),
            ]
        )
    verdict = combine(verdicts)
    n_ok = sum(v == SUPPORTED for *_, v in holds)
    summary = (
        (f"holds at {n_ok} of {len(holds)} points; " + where_it_holds(holds))
        if holds
        else f"no {claim['subject']} and competitor costs at the same (B, d)"
    )
    table = Table(
        id=f"{prefix}-{claim['id'].lower()}",
        title=f"{claim['id']}: cost ratio {claim['subject']} / competitor (from the {source})",
        columns=["B", "d", "C, M, device" if source == "profile" else "dataset", "competitor"]
        + [
            {"flops": "FLOPs fwd ratio", "time": "time ratio"}[m]
            for m in metrics
            if m in ("flops", "time")
        ]
        + ["verdict"],
        rows=rows,
        notes=[
            f"Holds where the ratio < {thr:g}. Time from trials with ≥ 2 common seeds: "
            "geometric mean of per-seed ratios [95% CI]; otherwise ratio of medians."
        ],
    )
    rule = (
        f"At every measured (B, d) and competitor, {claim['subject']}'s forward FLOPs and "
        f"time per loss call divided by the competitor's must be < {thr:g}. FLOPs and "
        "single-measurement times are compared as is; per-seed times use their 95% CI "
        "(inconclusive when it contains the threshold). Supported when it holds at every "
        "point, not supported when it fails at one (the table shows where it holds)."
    )
    return ClaimResult(
        claim["id"],
        claim["title"],
        claim["statement"].strip(),
        rule,
        verdict,
        summary,
        [table] if table.rows else [],
    )


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


def convergence_per_trial(group: RunGroup, k: int, fraction: float) -> dict[tuple, dict]:
    """(dataset, loss, B, d, seed) -> {epochs, seconds}: first epoch whose accuracy reaches
    fraction x the final (last) accuracy, and the elapsed seconds at that epoch."""
    column = f"knn_acc_{k}"
    out: dict[tuple, dict] = {}
    if group.epochs.height and column in group.epochs.columns:
        rows = group.epochs.filter(group.epochs["status"] == "ok").to_dicts()
        keys = ["dataset", "loss", "batch_size", "embedding_dim", "seed"]
        for key, trial in group_by(rows, keys).items():
            trial = sorted(
                (r for r in trial if r.get(column) is not None), key=lambda r: r["epoch"]
            )
            if not trial:
                continue
            final = trial[-1][column]
            hit = next(r for r in trial if r[column] >= fraction * final)
            out[key] = {"epochs": hit["epoch"], "seconds": hit.get("elapsed_s")}
    if fraction == 0.9:
        # Trials without epoch rows carry the trial's own measure of the same quantity.
        for r in ok_rows(group):
            key = (r["dataset"], r["loss"], r["batch_size"], r["embedding_dim"], r["seed"])
            if key not in out and r.get("epochs_to_90") is not None:
                out[key] = {"epochs": r["epochs_to_90"], "seconds": r.get("seconds_to_90")}
    return out


def convergence(group: RunGroup, claim: dict[str, Any], prefix: str) -> ClaimResult:
    k = primary_k(group, claim.get("k"))
    fraction = float(claim.get("fraction", 0.9))
    margin = float(claim.get("threshold", 0.0))
    subject_name, baseline_name = claim["subject"], claim.get("baseline", "al")
    rows = ok_rows(group)
    conv = convergence_per_trial(group, k, fraction) if k is not None else {}
    keys = ["dataset", "batch_size", "embedding_dim"]
    subj = group_by(_with_name(rows, [subject_name]), keys)
    base = group_by(_with_name(rows, [baseline_name]), keys)
    pct = f"{round(100 * fraction)}%"

    def conv_values(cell: list[Row], what: str) -> dict[int, float]:
        out = {}
        for r in cell:
            c = conv.get((r["dataset"], r["loss"], r["batch_size"], r["embedding_dim"], r["seed"]))
            if c and c[what] is not None:
                out[int(r["seed"])] = float(c[what])
        return out

    first_epoch = min(group.epochs["epoch"].drop_nulls().to_list(), default=1)
    table_rows, verdicts = [], []
    for key in sorted(set(subj) & set(base)):
        s_ep, b_ep = conv_values(subj[key], "epochs"), conv_values(base[key], "epochs")
        s_sec, b_sec = conv_values(subj[key], "seconds"), conv_values(base[key], "seconds")
        s_acc = seed_values(subj[key], f"knn_acc_{k}", 100.0)
        b_acc = seed_values(base[key], f"knn_acc_{k}", 100.0)
        faster = diff_ci(b_ep, s_ep)  # baseline minus subject epochs: > 0 when subject faster
        higher = diff_ci(s_acc, b_acc)
        # Reached within the first epoch on every seed: the epoch count cannot order the two.
        censored = bool(s_ep) and {*s_ep.values(), *b_ep.values()} == {first_epoch}
        faster_verdict = INCONCLUSIVE if censored else judge(faster, 0.0)
        verdict = combine([faster_verdict, judge(higher, margin)])
        verdicts.append(verdict)
        table_rows.append(
            [
                Cell(str(key[0])),
                Cell(str(key[1]), key[1]),
                Cell(str(key[2]), key[2]),
                Cell(fmt_est(mean_ci(s_ep.values()))),
                Cell(fmt_est(mean_ci(b_ep.values()))),
                Cell(fmt_interval(faster), None if faster is None else faster.mean),
                Cell(fmt_interval(diff_ci(b_sec, s_sec), 1)),
                Cell(fmt_est(mean_ci(s_acc.values()))),
                Cell(fmt_est(mean_ci(b_acc.values()))),
                Cell(fmt_interval(higher), None if higher is None else higher.mean),
                _v(verdict),
            ]
        )
    verdict = combine(verdicts)
    missing = [n for n, g in ((subject_name, subj), (baseline_name, base)) if not g]
    summary = (
        f"no ok {' or '.join(missing)} trials"
        if missing
        else f"{sum(v == SUPPORTED for v in verdicts)} of {len(verdicts)} (dataset, B, d) supported"
        if verdicts
        else f"{subject_name} and {baseline_name} never share a (dataset, B, d)"
    )
    table = Table(
        id=f"{prefix}-{claim['id'].lower()}",
        title=f"{claim['id']}: {subject_name} vs {baseline_name} at each (dataset, B, d), k-NN@{k}",
        columns=[
            "dataset",
            "B",
            "d",
            f"{subject_name} epochs to {pct}",
            f"{baseline_name} epochs to {pct}",
            f"{baseline_name} − {subject_name} epochs [CI]",
            f"{baseline_name} − {subject_name} seconds [CI]",
            f"{subject_name} final %",
            f"{baseline_name} final %",
            f"{subject_name} − {baseline_name} final [CI]",
            "verdict",
        ],
        rows=table_rows,
        notes=[
            f"Epochs to {pct}: first epoch whose k-NN accuracy reaches {pct} of the trial's "
            "final accuracy. Differences: paired t over seeds when both share seeds, else "
            "Welch. Seconds are shown, not judged. When both losses reach it within the first "
            "epoch on every seed, 'faster' is inconclusive (the epoch count cannot order them)."
        ],
    )
    rule = (
        f"At each (dataset, B, d) with both losses: faster when the 95% CI of "
        f"({baseline_name} − {subject_name}) epochs to {pct} of final accuracy is above 0, "
        f"higher when the CI of ({subject_name} − {baseline_name}) final accuracy is above "
        f"{margin:g} points; a configuration supports the claim when both hold and refutes "
        "it when either CI lies at or below its bound. Supported when every configuration "
        "supports it; inconclusive with < 2 seeds."
    )
    return ClaimResult(
        claim["id"],
        claim["title"],
        claim["statement"].strip(),
        rule,
        verdict,
        summary,
        [table] if table.rows else [],
    )


EVALUATORS = {
    "accuracy_margin": accuracy_margin,
    "cost_ratio": cost_ratio,
    "convergence": convergence,
}


def evaluate_claims(
    group: RunGroup, claims: list[dict[str, Any]], prefix: str
) -> list[ClaimResult]:
    """Verdict of every claim on this group."""
    return [EVALUATORS[c["kind"]](group, c, prefix) for c in claims]
