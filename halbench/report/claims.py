"""The paper's claims as typed models, read from a claims file (halbench/claims/*.yaml), and the
one rule that turns an interval into a verdict.

Verdicts come from 95% intervals over seeds, never from a single run:
- a margin claim "X - Y > m" is supported when the interval's lower bound is > m, not supported
  when its upper bound is <= m, inconclusive otherwise or with fewer than 2 seeds a side;
- a claim over several conditions (datasets, configurations, points) is not supported when one
  condition is not, no data when one lacks data, inconclusive when one is, supported otherwise.

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

SUPPORTED, NOT_SUPPORTED, INCONCLUSIVE, NO_DATA = (
    "supported",
    "not supported",
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


class CostRatioClaim(_Claim):
    """subject / competitor cost per loss call < threshold at every measured point."""

    kind: Literal["cost_ratio"]
    competitors: list[str] = []
    metrics: Annotated[list[Literal["flops", "time"]], Field(min_length=1)] = ["flops", "time"]
    threshold: Annotated[float, Field(gt=0)] = 0.1  # a ratio

    _finite_threshold = field_validator("threshold")(_finite)


class ConvergenceClaim(_Claim):
    """subject reaches `fraction` of its final accuracy in fewer epochs than baseline, and its
    final accuracy is higher by more than threshold points."""

    kind: Literal["convergence"]
    baseline: Annotated[str, Field(min_length=1)] = "al"
    k: Annotated[int, Field(ge=1)] | None = None
    fraction: Annotated[float, Field(gt=0, le=1)] = 0.9
    threshold: float = 0.0  # final accuracy margin, percent points

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


def judge_value(value: float | None, threshold: float) -> str:
    """Verdict of 'value < threshold' for a single measured value (no interval)."""
    if value is None:
        return NO_DATA
    return SUPPORTED if value < threshold else NOT_SUPPORTED


def combine(verdicts: list[str]) -> str:
    """Verdict of a claim that must hold under every condition."""
    for v in (NOT_SUPPORTED, NO_DATA, INCONCLUSIVE):
        if v in verdicts:
            return v
    return SUPPORTED if verdicts else NO_DATA
