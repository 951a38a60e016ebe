"""Evaluation of C3-type claims (convergence) at each (dataset, B, d) with both losses.

With sub-epoch curves (trial columns curve_steps / curve_acc, BRIEF contract): optimizer steps to
a fixed target, the lower of the two losses' mean final curve accuracies minus the claim's
target_margin, and the area under accuracy vs steps (the mean accuracy over the run, points);
both as paired differences over seeds. A run that never reaches the target counts its last
step (censored; said in the table). Without curves: epochs to `fraction` of the trial's final
accuracy (results.convergence), censored when every run reaches it at the first evaluation.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field

import numpy as np

from halbench.report.claim_eval import metric_k, tested_all, verdict_of, with_name
from halbench.report.claims import INCONCLUSIVE, NO_DATA, ConvergenceClaim, combine
from halbench.report.rows import Row, group_by, seed_values
from halbench.report.verdict_stats import Tested
from halbench.report.views import ReportView
from halbench.results import convergence


@dataclass
class ConvergenceCondition:
    key: tuple[str, int, int]
    to_target: tuple[dict, dict]  # (subject, baseline): steps (curves) or epochs per seed
    finals: tuple[dict, dict]
    faster: Tested | None  # baseline − subject steps/epochs
    higher: Tested | None  # subject − baseline final accuracy, points
    auc: Tested | None  # subject − baseline mean accuracy over steps (curves only)
    verdict: str
    target: float | None = None  # points (curves)
    censored: int = 0  # runs that never reached the target


@dataclass
class ConvergenceEvaluation:
    claim: ConvergenceClaim
    k: int | None
    missing: list[str]
    measure: str  # "steps" (sub-epoch curves) or "epochs"
    conditions: list[ConvergenceCondition] = field(default_factory=list)
    verdict: str = NO_DATA
    censored: bool = False  # epochs: every run reached the target at the first evaluation
    note: str = ""


def _curve(r: Row) -> tuple[list[int], list[float]] | None:
    steps, acc = r.get("curve_steps"), r.get("curve_acc")
    if not steps or not acc or len(steps) != len(acc):
        return None
    return [int(s) for s in steps], [100.0 * float(a) for a in acc]


def steps_to(steps: list[int], acc: list[float], target: float) -> tuple[int, bool]:
    """(first step after step 0 whose accuracy reaches target, reached); the last step when
    never. Step 0 is the untrained model, where a curve starts: k-NN on a random small CNN's
    embeddings already scores ~75% on Fashion-MNIST, and a loss that lowered that early on
    must not read as having converged in 0 steps (the CPU example's HAL at B=256 did)."""
    for s, a in zip(steps, acc, strict=True):
        if s > 0 and a >= target:
            return s, True
    return steps[-1], False


def mean_accuracy(steps: list[int], acc: list[float]) -> float:
    """Area under accuracy vs steps over the steps' range: the run's mean accuracy (points)."""
    if len(steps) < 2 or steps[-1] == steps[0]:
        return acc[-1]
    return float(np.trapezoid(acc, steps) / (steps[-1] - steps[0]))


def _keyed(cell: list[Row], fn) -> dict:
    keys = seed_values(cell, "seed")  # same keys as the accuracies (seed or (replicate, seed))
    out = {}
    for key, r in zip(keys, [r for r in cell if r.get("seed") is not None], strict=False):
        v = fn(r)
        if v is not None:
            out[key] = v
    return out


def evaluate_convergence(view: ReportView, claim: ConvergenceClaim) -> ConvergenceEvaluation:
    k, note = metric_k(view, claim)
    keys = ["dataset", "batch_size", "embedding_dim"]
    subj = group_by(with_name(view.ok, [claim.subject]), keys)
    base = group_by(with_name(view.ok, [claim.baseline]), keys)
    missing = [n for n, g in ((claim.subject, subj), (claim.baseline, base)) if not g]
    shared = sorted(set(subj) & set(base))
    curves = bool(shared) and all(_curve(r) for key in shared for r in subj[key] + base[key])
    ev = ConvergenceEvaluation(claim, k, missing, "steps" if curves else "epochs", note=note)
    pct = round(100 * claim.fraction)
    conv = {}
    if not curves and k is not None:
        tk = ["dataset", "loss", "batch_size", "embedding_dim", "seed"]
        conv = {
            key: c
            for key, rows in group_by(view.ok_epochs, tk).items()
            if (c := convergence(rows, k, (claim.fraction,)))
        }
    first_epoch = min(view.group.epochs["epoch"].drop_nulls().to_list(), default=1)
    inputs = []
    for key in shared:
        s_cell, b_cell = subj[key], base[key]
        s_acc = seed_values(s_cell, f"knn_acc_{k}", 100.0)
        b_acc = seed_values(b_cell, f"knn_acc_{k}", 100.0)
        target, n_censored, s_auc, b_auc = None, 0, {}, {}
        if curves:
            finals = [
                statistics.fmean(_curve(r)[1][-1] for r in cell)  # type: ignore[index]
                for cell in (s_cell, b_cell)
            ]
            target = min(finals) - claim.target_margin
            reached: list[bool] = []

            def to_t(r: Row, target=target, reached=reached) -> float:
                s, ok = steps_to(*_curve(r), target)  # type: ignore[misc]
                reached.append(ok)
                return float(s)

            s_to, b_to = _keyed(s_cell, to_t), _keyed(b_cell, to_t)
            n_censored = reached.count(False)
            s_auc = _keyed(s_cell, lambda r: mean_accuracy(*_curve(r)))  # type: ignore[misc]
            b_auc = _keyed(b_cell, lambda r: mean_accuracy(*_curve(r)))  # type: ignore[misc]
        else:

            def epochs(r: Row) -> float | None:
                c = conv.get(
                    (r["dataset"], r["loss"], r["batch_size"], r["embedding_dim"], r["seed"])
                )
                v = c.get(f"epochs_to_{pct}") if c else None
                return None if v is None else float(v)

            s_to, b_to = _keyed(s_cell, epochs), _keyed(b_cell, epochs)
        inputs.append((key, s_to, b_to, s_acc, b_acc, s_auc, b_auc, target, n_censored))
    faster = tested_all([(i[2], i[1]) for i in inputs], 0.0, claim)
    higher = tested_all([(i[3], i[4]) for i in inputs], claim.threshold, claim)
    auc = tested_all([(i[5], i[6]) for i in inputs if i[5] and i[6]], 0.0, claim) if curves else []
    auc_iter = iter(auc)
    for i, (key, s_to, b_to, s_acc, b_acc, s_auc, b_auc, target, n_c) in enumerate(inputs):
        censored = not curves and bool(s_to) and {*s_to.values(), *b_to.values()} == {first_epoch}
        ev.censored = ev.censored or censored
        f_verdict = INCONCLUSIVE if censored else verdict_of(faster[i], 0.0, claim.alpha)
        h_verdict = verdict_of(higher[i], claim.threshold, claim.alpha)
        ev.conditions.append(
            ConvergenceCondition(
                key,
                (s_to, b_to),
                (s_acc, b_acc),
                faster[i],
                higher[i],
                next(auc_iter) if (s_auc and b_auc) else None,
                combine([f_verdict, h_verdict]),
                target,
                n_c,
            )
        )
    ev.verdict = combine([c.verdict for c in ev.conditions])
    return ev
