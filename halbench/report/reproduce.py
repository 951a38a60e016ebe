"""`halbench reproduce RUN_DIR`: rerun a run directory's suite with today's code and check that
each headline number lands inside the original's interval.

Headlines: the accuracy of each loss (its best configuration, per dataset), each claim's
differences (C1 per dataset, C3 per configuration) and cost ratios (each C2 part, per point).
A number with an interval in the original is inside when the new value lies in it; FLOPs (no
interval, deterministic) must match to 1e-6; other numbers without an interval (one seed) are
shown, not judged. A headline the rerun lacks counts as not reproduced, except C3 in epochs
when the rerun judges it in optimizer steps (a new measure: shown, not compared).
"""

from __future__ import annotations

import argparse
import math
import subprocess
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from halbench.errors import UserError
from halbench.report.claim_convergence import evaluate_convergence
from halbench.report.claim_cost import evaluate_cost_parts
from halbench.report.claim_eval import best_pick, evaluate_accuracy_margin, metric_k
from halbench.report.claims import (
    AccuracyMarginClaim,
    Claim,
    ConvergenceClaim,
    CostRatioClaim,
    load_claims,
)
from halbench.report.load import load_groups
from halbench.report.stats import Estimate, nested_mean_ci
from halbench.report.views import ReportView, build_view

EXIT_MOVED = 3  # halbench.cli's EXIT_REGRESSION: a headline left the original's interval
SUITE_FILES = ("suite.yaml", "suite.json")


@dataclass(frozen=True)
class Headline:
    value: float
    lo: float | None = None
    hi: float | None = None
    exact: bool = False  # deterministic (FLOPs): must match without an interval


def _est(name: str, est: Estimate | None, out: dict[str, Headline]) -> None:
    if est is not None:
        out[name] = Headline(est.mean, est.lo, est.hi)


def _group_headlines(view: ReportView, claims: list[Claim], g: str) -> dict[str, Headline]:
    out: dict[str, Headline] = {}
    margin = next((c for c in claims if isinstance(c, AccuracyMarginClaim)), None)
    k = metric_k(view, margin)[0] if margin else view.k
    for ds in view.datasets:
        for loss in view.losses:
            rows = [r for r in view.ok if r["dataset"] == ds and r["loss"] == loss]
            pick = best_pick(rows, f"knn_acc_{k}", view.select_by) if k else None
            if pick:
                where = f"B={pick.batch_size} d={pick.embedding_dim}"
                name = f"{g}accuracy {ds} {loss} (k-NN@{k}, {where})"
                _est(name, nested_mean_ci(pick.values), out)
    for claim in claims:
        if isinstance(claim, AccuracyMarginClaim):
            for c in evaluate_accuracy_margin(view, claim).conditions:
                _est(f"{g}{claim.id} {c.dataset} difference", c.diff, out)
        elif isinstance(claim, ConvergenceClaim):
            ev = evaluate_convergence(view, claim)
            for c in ev.conditions:
                where = f"{c.key[0]} B={c.key[1]} d={c.key[2]}"
                for what, t in (("final", c.higher), (f"{ev.measure} saved", c.faster)):
                    _est(f"{g}{claim.id} {where} {what}", t.est if t else None, out)
        elif isinstance(claim, CostRatioClaim):
            for part in evaluate_cost_parts(view, claim):
                for p in part.points:
                    if p.ratio is None:
                        continue
                    name = f"{g}{part.name} B={p.batch_size} d={p.embedding_dim} vs {p.competitor}"
                    out[name] = Headline(p.ratio, p.lo, p.hi, exact=part.part == "flops")
    return out


def headlines(run_dir: Path, claims: list[Claim]) -> dict[str, Headline]:
    """Every headline number of a run directory, by a name stable across reruns."""
    groups = load_groups([run_dir])
    out: dict[str, Headline] = {}
    for i, group in enumerate(groups):
        prefix = f"[{group.name}] " if len(groups) > 1 else ""
        out.update(
            _group_headlines(build_view(group), claims, prefix or ("" if i == 0 else f"[{i}] "))
        )
    return out


def check(old: dict[str, Headline], new: dict[str, Headline]) -> tuple[list[str], bool]:
    """(one line per original headline, whether every judged one lies inside its interval)."""
    lines, ok = [], True
    for name, h in old.items():
        n = new.get(name)
        if n is None and name.endswith(" epochs saved") and name[:-13] + " steps saved" in new:
            # C3 of a run without sub-epoch curves is judged in epochs; today's trials record
            # curves and the rerun judges optimizer steps: a new measure, not a moved number
            steps = new[name[:-13] + " steps saved"].value
            lines.append(
                f"{name}: the rerun measures steps saved ({steps:.4g}); the original, without "
                "sub-epoch curves, epochs: not compared"
            )
            continue
        if n is None:
            lines.append(f"{name}: missing in the rerun — NOT reproduced")
            ok = False
            continue
        if h.lo is not None and h.hi is not None:
            inside = h.lo <= n.value <= h.hi
            where = f"original {h.value:.4g} [{h.lo:.4g}, {h.hi:.4g}]"
        elif h.exact:
            inside = math.isclose(n.value, h.value, rel_tol=1e-6)
            where = f"original {h.value:.4g} (exact)"
        else:
            lines.append(
                f"{name}: new {n.value:.4g}; original {h.value:.4g} (no interval: not judged)"
            )
            continue
        ok = ok and inside
        verdict = "inside" if inside else "OUTSIDE — not reproduced"
        lines.append(f"{name}: new {n.value:.4g}; {where}: {verdict}")
    return lines, ok


def suite_file(run_dir: Path) -> Path:
    for name in SUITE_FILES:
        if (run_dir / name).is_file():
            return run_dir / name
    raise UserError(f"{run_dir}: no {' or '.join(SUITE_FILES)}: not a run directory")


def rerun(suite: Path, out: Path, no_ray: bool) -> None:
    """`halbench run SUITE --output OUT` in a child process: the run's own exit codes and
    interrupt handling, and nothing of it left in this process."""
    cmd = [sys.executable, "-m", "halbench.cli", "run", str(suite), "--output", str(out)]
    code = subprocess.run(cmd + (["--no-ray"] if no_ray else []), check=False).returncode
    if code != 0:
        raise UserError(f"the rerun of {suite} exited {code}; its output is in {out}")


def reproduce_main(args: argparse.Namespace) -> int:
    run_dir: Path = args.run_dir
    claims = load_claims(args.claims)
    suite = suite_file(run_dir)
    old = headlines(run_dir, claims)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out = args.output or run_dir.parent / f"{run_dir.name.rstrip('/')}-reproduced-{stamp}"
    rerun(suite, out, args.no_ray)
    lines, ok = check(old, headlines(out, claims))
    print(f"reproduce {run_dir} -> {out}")
    print("\n".join(lines) if lines else "no headline numbers in the original")
    print("all headline numbers reproduce" if ok else "some headline numbers do not reproduce")
    return 0 if ok else EXIT_MOVED
