"""The paper's claims as typed models, read from a claims file (halbench/claims/*.yaml), and the
one rule that turns an interval into a verdict.

Verdicts come from intervals over seeds (replicate x seed with tuning replicates), never from
a single run (docs/report.md, "Verdicts"):
- a margin claim "X - Y > m" is supported when the interval clears m, contradicted when it
  excludes m from above (and, said apart, when it also excludes 0: X is worse), inconclusive
  otherwise or with fewer than 2 seeds a side; the conditions of one claim (its datasets) are
  tested together with Holm's correction (verdict_stats.py);
- a claim over several conditions is contradicted when one condition is, inconclusive when one
  is, supported otherwise; conditions without data (a dataset not in the suite) are "untested"
  beside the verdict of those with data, and only a claim with no tested condition is no data.

Evaluation (estimates and verdicts) is in claim_eval.py, layout (tables, text) in
claim_tables.py; every threshold comes from the claim file.
"""

from __future__ import annotations

import math
from importlib import resources
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from halbench.errors import UserError
from halbench.report.stats import Estimate

SUPPORTED, CONTRADICTED, INCONCLUSIVE, NO_DATA = (
    "supported",
    "contradicted",
    "inconclusive",
    "no data",
)
KINDS = ("accuracy_margin", "cost_ratio", "convergence")


class _Claim(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: Annotated[str, Field(min_length=1)]
    title: Annotated[str, Field(min_length=1)]
    statement: Annotated[str, Field(min_length=1)]
    subject: Annotated[str, Field(min_length=1)]  # a loss registry name
    metric: Literal["knn_acc"] = "knn_acc"
    # How intervals become verdicts (docs/report.md, "Verdicts"): the test's level, the power
    # of the minimum detectable effect an inconclusive verdict states, the correction over a
    # claim's conditions, and a margin within which a difference counts as no difference.
    alpha: Annotated[float, Field(gt=0, lt=0.5)] = 0.05
    power: Annotated[float, Field(gt=0.5, lt=1)] = 0.8
    correction: Literal["holm", "none"] = "holm"
    equivalence_margin: Annotated[float, Field(ge=0)] | None = None

    @field_validator("statement")
    @classmethod
    def _strip(cls, v: str) -> str:
        return v.strip()


def _finite(v: float) -> float:
    if not math.isfinite(v):
        raise ValueError(f"expected a finite number, got {v}")
    return v


class AccuracyMarginClaim(_Claim):
    """subject − best competitor k-NN accuracy > threshold points, on every listed dataset."""

    kind: Literal["accuracy_margin"]
    competitors: list[str] = []
    k: Annotated[int, Field(ge=1)] | None = None  # None: the primary k
    threshold: float = 0.0  # percent points
    datasets: list[str] = []  # empty: every dataset with data

    _finite_threshold = field_validator("threshold")(_finite)


CostPart = Literal["flops", "time", "step"]


class CostRatioClaim(_Claim):
    """subject / competitor cost < threshold at every measured point, judged in three parts
    (each its own verdict): forward FLOPs, isolated loss-call time, training step."""

    kind: Literal["cost_ratio"]
    competitors: list[str] = []
    metrics: Annotated[list[CostPart], Field(min_length=1)] = ["flops", "time", "step"]
    threshold: Annotated[float, Field(gt=0)] = 0.1  # a ratio

    _finite_threshold = field_validator("threshold")(_finite)


class ConvergenceClaim(_Claim):
    """subject reaches a fixed accuracy target in fewer optimizer steps than baseline (target:
    the lower of the two final accuracies minus target_margin points, on the sub-epoch curve),
    and its final accuracy is higher by more than threshold points. Without curves: epochs to
    `fraction` of the final accuracy."""

    kind: Literal["convergence"]
    baseline: Annotated[str, Field(min_length=1)] = "al"
    k: Annotated[int, Field(ge=1)] | None = None
    fraction: Annotated[float, Field(gt=0, le=1)] = 0.9
    threshold: float = 0.0  # final accuracy margin, percent points
    target_margin: Annotated[float, Field(ge=0)] = 2.0  # percent points below the lower final

    _finite_threshold = field_validator("threshold")(_finite)


Claim = Annotated[
    AccuracyMarginClaim | CostRatioClaim | ConvergenceClaim, Field(discriminator="kind")
]


class ClaimsFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    paper: str = ""
    claims: list[Claim]


def default_claims_path() -> Path:
    return Path(str(resources.files("halbench.claims").joinpath("hal2023.yaml")))


def _first_error(err: ValidationError) -> str:
    """'claims[0].kind: expected one of ...' from pydantic's first error."""
    e = err.errors()[0]
    # A discriminated union puts the kind into the path (claims, 0, 'cost_ratio', 'threshold').
    parts = [p for i, p in enumerate(e["loc"]) if not (i == 2 and p in KINDS)]
    loc = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in parts).lstrip(".")
    if e["type"] in ("union_tag_invalid", "union_tag_not_found"):
        return f"{loc}.kind: expected one of {', '.join(KINDS)}"
    return f"{loc or 'claims'}: {e['msg']}"


def load_claims(path: Path | None = None) -> list[Claim]:
    """Read a claims file; UserError naming the file and field when it is malformed."""
    path = Path(path) if path is not None else default_claims_path()
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, ValueError, yaml.YAMLError) as exc:  # ValueError: not UTF-8
        raise UserError(f"{path}: cannot read claims file ({exc.__class__.__name__})") from exc
    if not isinstance(data, dict) or not isinstance(data.get("claims"), list):
        raise UserError(f"{path}: claims: expected a list of claims")
    try:
        claims = ClaimsFile.model_validate(data).claims
    except ValidationError as err:
        raise UserError(f"{path}: {_first_error(err)}") from None
    ids = [c.id for c in claims]
    if len(set(ids)) != len(ids):
        raise UserError(f"{path}: claims: each id may appear once, got {', '.join(ids)}")
    return claims


def cost_threshold(claims: list[Claim]) -> float | None:
    """The threshold of the first cost-ratio claim: the line the ratio figure draws."""
    return next((c.threshold for c in claims if isinstance(c, CostRatioClaim)), None)


def judge(est: Estimate | None, margin: float) -> str:
    """Verdict of 'value > margin' from an interval (see module docstring)."""
    if est is None:
        return NO_DATA
    if est.lo is None or est.hi is None or est.n < 2:
        return INCONCLUSIVE
    if est.lo > margin:
        return SUPPORTED
    if est.hi <= margin:
        return CONTRADICTED
    return INCONCLUSIVE


def judge_value(value: float | None, threshold: float) -> str:
    """Verdict of 'value < threshold' for a single measured value (no interval)."""
    if value is None:
        return NO_DATA
    return SUPPORTED if value < threshold else CONTRADICTED


def combine(verdicts: list[str]) -> str:
    """Verdict of a claim that must hold under every condition."""
    for v in (CONTRADICTED, NO_DATA, INCONCLUSIVE):
        if v in verdicts:
            return v
    return SUPPORTED if verdicts else NO_DATA
