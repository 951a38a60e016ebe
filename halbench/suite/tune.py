"""The `tune:` and `final:` sections of a suite: an equal-budget tuning protocol.

A tuned suite runs in two phases (see docs/report.md, "Protocol"):
- tune: for every loss (and every grid point left as an axis), `budget` trials sample the
  search space, train on the training split minus a validation part, and are scored on that
  validation part only; ASHA may stop the weak ones after each epoch.
- final: the best validation configuration of each loss is retrained for every seed of
  `final.seeds`; only these trials read the test split, and only they feed the claims.

This module holds the sections' models, the search-space parser and validator, the
deterministic sampler and the rule that picks the best configuration; halbench/run/ runs it.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PositiveInt,
    SerializerFunctionWrapHandler,
    field_validator,
    model_serializer,
    model_validator,
)

# The configuration vocabulary (DISTRIBUTIONS, `loss.<param>` keys, cfg_ columns) is shared with
# the report, which reads it back from the run directory: it lives in results/. LOSS_PREFIX,
# config_columns and split_config are re-exported for run/ and trial/, which import them here.
from halbench.results.config import DISTRIBUTIONS, loss_key
from halbench.results.config import LOSS_PREFIX as LOSS_PREFIX
from halbench.results.config import config_columns as config_columns
from halbench.results.config import split_config as split_config

# Keys of `space` that tune the training recipe (TrainConfig fields) or a grid axis.
TRAIN_KEYS = ("lr", "weight_decay", "momentum", "warmup_epochs", "gamma", "loss_lr_mult")
GRID_KEYS = ("batch_size", "embedding_dim")
SHARED_KEYS = TRAIN_KEYS + GRID_KEYS
MAX_CHOICES = 1000


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class TuneConfig(_Section):
    """`tune:`: how each loss is tuned. Every loss gets the same budget, search and epochs."""

    # A fraction (0 < f < 1) or a count of the training split, stratified, fixed data seed.
    validation: float | PositiveInt = 0.2
    budget: Annotated[int, Field(ge=1, le=10_000)]
    epochs: Annotated[int, Field(ge=1, le=100_000)]
    scheduler: Literal["asha", "fifo"] = "asha"
    grace_epochs: PositiveInt = 1
    search: Literal["random", "optuna"] = "random"
    metric: str = "knn_acc_10"
    seed: Annotated[int, Field(ge=0, le=2**32 - 1)] = 0  # the sampler's seed
    space: dict[str, Any]
    # Independent tunings per group, each with its own search seed, training seed and
    # validation split, each followed by the final seeds of its own choice.
    replicates: Annotated[int, Field(ge=1, le=100)] = 1
    # Total training epochs one group's tuning (per replicate) may spend; None: no cap.
    budget_epochs: Annotated[int, Field(ge=1, le=10_000_000)] | None = None

    @model_serializer(mode="wrap")
    def _drop_new_defaults(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # A suite without the newer keys hashes (and is recorded) as before they existed.
        out = handler(self)
        if isinstance(out, dict):
            if out.get("replicates") == 1:
                out.pop("replicates")
            if out.get("budget_epochs") is None:
                out.pop("budget_epochs", None)
        return out

    @field_validator("validation", mode="before")
    @classmethod
    def _validation(cls, v: Any) -> Any:
        if isinstance(v, float) and not (math.isfinite(v) and 0.0 < v < 1.0):
            raise ValueError(f"a fraction must be in (0, 1), got {v!r}; a count is an integer")
        return v

    @model_validator(mode="after")
    def _budget_holds_a_trial(self) -> TuneConfig:
        # A budget below one trial's epochs would stop every group before its first trial
        # trained to the end: no configuration could be judged at tune.epochs.
        if self.budget_epochs is not None and self.budget_epochs < self.epochs:
            raise ValueError(
                f"budget_epochs {self.budget_epochs} is less than tune.epochs {self.epochs}: "
                "not one tuning trial could train to the end"
            )
        return self

    @field_validator("metric")
    @classmethod
    def _metric(cls, v: str) -> str:
        if v != "map_at_r" and not (v.startswith("knn_acc_") and v[8:].isdigit()):
            raise ValueError(f"expected knn_acc_<k> or map_at_r, got {v[:40]!r}")
        return v


class FinalConfig(_Section):
    """`final:`: the best validation configuration of each loss, retrained per seed."""

    seeds: Annotated[list[Annotated[int, Field(ge=0, le=2**63 - 1)]], Field(min_length=1)]
    epochs: Annotated[int, Field(ge=1, le=100_000)]
    train_on: Literal["train", "train+validation"] = "train"

    @field_validator("seeds")
    @classmethod
    def _unique(cls, v: list[int]) -> list[int]:
        if len(set(v)) != len(v):
            raise ValueError(f"values must be unique, got {v}")
        return v


@dataclass(frozen=True)
class Dist:
    """One distribution of the space: Tune's own sampling function of that name."""

    kind: str
    args: tuple[Any, ...]

    def domain(self) -> Any:
        # Ray is imported when a Tuner's search space is built, not when a suite is read
        # (start-up time: validate, dry runs and reports never need it).
        from ray import tune

        if self.kind == "choice":
            return tune.choice(list(self.args))
        return getattr(tune, self.kind)(*self.args)

    def probes(self) -> list[Any]:
        """The values a validator tries: both ends of a range, every choice."""
        if self.kind == "choice":
            return list(self.args)
        lo, hi = self.args
        return [lo, hi - 1] if self.kind == "randint" else [lo, hi]

    def describe(self) -> str:
        return f"{self.kind}{list(self.args)}"


@dataclass(frozen=True)
class Space:
    """A parsed `tune.space`: shared keys, and each loss's own parameters by loss label."""

    shared: dict[str, Dist]
    per_loss: dict[str, dict[str, Dist]]

    def for_loss(self, label: str) -> dict[str, Dist]:
        """The flat space one loss is tuned over: shared keys and `loss.<param>` keys."""
        own = {loss_key(k): d for k, d in self.per_loss.get(label, {}).items()}
        return {**self.shared, **own}

    def tuned_axes(self) -> set[str]:
        return {k for k in self.shared if k in GRID_KEYS}


def parse_dist(value: Any, where: str) -> Dist:
    """`{loguniform: [1e-4, 1e-2]}` -> Dist; every mistake is a ValueError naming `where`."""
    if not isinstance(value, Mapping) or len(value) != 1:
        raise ValueError(
            f"{where}: expected one distribution, e.g. {{loguniform: [1.0e-4, 1.0e-2]}} "
            f"(one of {', '.join(DISTRIBUTIONS)})"
        )
    ((kind, args),) = value.items()
    if kind not in DISTRIBUTIONS:
        raise ValueError(
            f"{where}: unknown distribution {str(kind)[:40]!r}; expected one of "
            f"{', '.join(DISTRIBUTIONS)}"
        )
    if not isinstance(args, list) or not args:
        raise ValueError(f"{where}.{kind}: expected a non-empty list")
    if kind == "choice":
        if len(args) > MAX_CHOICES:
            raise ValueError(f"{where}.choice: at most {MAX_CHOICES} values, got {len(args)}")
        if any(not isinstance(a, bool | int | float | str) for a in args):
            raise ValueError(f"{where}.choice: values must be numbers, strings or booleans")
        if any(isinstance(a, float) and not math.isfinite(a) for a in args):
            raise ValueError(f"{where}.choice: values must be finite")
        if len({repr(a) for a in args}) != len(args):
            raise ValueError(f"{where}.choice: values must be unique")
        return Dist(kind, tuple(args))
    if len(args) != 2:
        raise ValueError(f"{where}.{kind}: expected [low, high], got {len(args)} values")
    number = int if kind == "randint" else int | float
    if any(isinstance(a, bool) or not isinstance(a, number) for a in args):
        what = "integers" if kind == "randint" else "numbers"
        raise ValueError(f"{where}.{kind}: low and high must be {what}")
    lo, hi = args
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise ValueError(f"{where}.{kind}: low and high must be finite")
    if not lo < hi:
        raise ValueError(f"{where}.{kind}: empty or inverted range [{lo}, {hi}]")
    if kind == "loguniform" and lo <= 0:
        raise ValueError(f"{where}.loguniform: a log range must be above 0, got low = {lo}")
    if kind == "randint":
        return Dist(kind, (int(lo), int(hi)))
    return Dist(kind, (float(lo), float(hi)))


def parse_space(
    space: Mapping[str, Any],
    loss_labels: Mapping[str, list[str]],
    where: str = "tune.space",
) -> Space:
    """Split `space` into shared keys and per-loss parameters.

    `loss_labels` maps each key a loss section may use (its label and its registry name) to
    the labels of the suite's losses it names: `hal:` applies to every entry of loss hal.
    """
    if not space:
        raise ValueError(f"{where}: empty; give at least one key to tune (e.g. lr)")
    shared: dict[str, Dist] = {}
    per_loss: dict[str, dict[str, Dist]] = {}
    for key, value in space.items():
        if key in SHARED_KEYS:
            shared[key] = parse_dist(value, f"{where}.{key}")
        elif key in loss_labels:
            if not isinstance(value, Mapping) or not value:
                raise ValueError(
                    f"{where}.{key}: expected the loss's parameters, e.g. "
                    f"{{scale: {{uniform: [4, 64]}}}}"
                )
            for param, dist in value.items():
                parsed = parse_dist(dist, f"{where}.{key}.{param}")
                for label in loss_labels[key]:
                    per_loss.setdefault(label, {})[str(param)] = parsed
        else:
            known = ", ".join(list(SHARED_KEYS) + sorted(loss_labels))
            raise ValueError(f"{where}.{str(key)[:40]}: unknown key; expected one of {known}")
    return Space(shared=shared, per_loss=per_loss)


def check_values(
    space: Space,
    check_shared: Callable[[str, Any], None],
    check_loss: Callable[[str, str, Any], None],
    where: str = "tune.space",
) -> None:
    """Try both ends of every range (and every choice) on the field it tunes.

    `check_shared(key, value)` and `check_loss(label, param, value)` raise ValueError (or
    TypeError) for a value the field or the loss refuses; the message gets the field's path.
    """
    for key, dist in space.shared.items():
        for value in dist.probes():
            try:
                check_shared(key, value)
            except (ValueError, TypeError) as err:
                raise ValueError(f"{where}.{key}: {value!r} is refused: {_first(err)}") from None
    for label, params in space.per_loss.items():
        for param, dist in params.items():
            for value in dist.probes():
                try:
                    check_loss(label, param, value)
                except (ValueError, TypeError) as err:
                    raise ValueError(
                        f"{where}.{label}.{param}: {value!r} is refused: {_first(err)}"
                    ) from None


def sample_configs(space: Mapping[str, Dist], budget: int, *, seed: int, group: str) -> list[dict]:
    """`budget` configurations drawn with Tune's sampling functions, the same on every run.

    The random state depends only on the suite's tune.seed and the group (dataset, loss, grid
    point), so a resumed run samples exactly the configurations of an uninterrupted one and
    adding a loss to a suite does not change the other losses' samples.
    """
    rng = np.random.RandomState((seed * 1_000_003 + zlib.crc32(group.encode())) % 2**32)
    configs = []
    for _ in range(budget):
        config = {}
        for key in sorted(space):
            value = space[key].domain().sample(random_state=rng)
            config[key] = value.item() if isinstance(value, np.generic) else value
        configs.append(config)
    return configs


def best_trial(rows: Iterable[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """The tuning trial whose configuration is retrained: the selection rule, in one place.

    Among the ok trials of one group, those that ran every tuning epoch (ASHA's survivors)
    come first, since a score after one epoch is not comparable with one after six; among
    them, the best validation score at the last epoch run (Tune's `scope="last"`); ties go
    to the earlier trial. None when no trial of the group finished.
    """
    ok = [r for r in rows if r.get("status") == "ok" and _finite(r.get("last_val"))]
    if not ok:
        return None
    return max(
        ok,
        key=lambda r: (r["epochs_run"] >= r["epochs"], r["last_val"], -r["trial_index"]),
    )


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)


def _first(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0][:200] if text else type(err).__name__


__all__ = [
    "Dist",
    "FinalConfig",
    "Space",
    "TuneConfig",
    "best_trial",
    "check_values",
    "config_columns",
    "parse_dist",
    "parse_space",
    "sample_configs",
    "split_config",
]
