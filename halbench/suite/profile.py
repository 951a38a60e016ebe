"""Profile suites (`halbench profile`): the run suite's vocabulary for a sweep of loss calls alone.

The same sections as a run suite (losses as LossSpec, a grid, resources), parsed and reported
the same way; B, d and C are the grid's axes and every point is measured once.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    Field,
    NonNegativeInt,
    PositiveInt,
    ValidationError,
    field_validator,
    model_validator,
)

from halbench.errors import UserError
from halbench.plugins import load_plugins
from halbench.suite.checks import check_loss_specs
from halbench.suite.models import LossSpec, NonEmptyPositiveList, ResourcesConfig, Section
from halbench.suite.parse import format_validation_error  # one message format for both kinds
from halbench.suite.yaml_file import load_yaml_file

DEFAULT_PROFILE_LOSSES = ("hal", "al", "nca", "snnl", "proxy_nca", "normface", "softmax")


class ProfileGridConfig(Section):
    batch_size: NonEmptyPositiveList = [32, 64, 128, 256, 512, 1024]
    embedding_dim: NonEmptyPositiveList = [128]
    num_classes: Annotated[list[Annotated[int, Field(ge=2)]], Field(min_length=1)] = [10, 100]

    @field_validator("batch_size", "embedding_dim", "num_classes")
    @classmethod
    def _sorted(cls, v: list[int]) -> list[int]:
        return sorted(set(v))  # a sweep measures each point once, in increasing order

    def points(self) -> list[tuple[int, int, int]]:
        """(B, d, C) in sweep order: B varies fastest."""
        return [
            (b, d, c) for d in self.embedding_dim for c in self.num_classes for b in self.batch_size
        ]


class ProfileCallsConfig(Section):
    """How each point is measured (as probes: in a run suite, with a sweep's defaults)."""

    warmup: NonNegativeInt = 3
    repeats: PositiveInt = 10
    # Rounds over all points (round-robin, losses interleaved): each point's time is the median
    # of all its rounds' samples, so that a burst of load hits every loss alike.
    rounds: PositiveInt = 3


class ProfileSuite(Section):
    kind: Literal["profile"] = "profile"
    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")] = "profile"
    description: str = ""
    losses: Annotated[list[LossSpec], Field(min_length=1)] = [
        LossSpec(name=n) for n in DEFAULT_PROFILE_LOSSES
    ]
    grid: ProfileGridConfig = ProfileGridConfig()
    memory_size: Annotated[int, Field(ge=2)] = (
        60_000  # memory-bank losses: a Fashion-MNIST train set
    )
    device: Literal["cpu", "cuda"] = "cpu"
    probes: ProfileCallsConfig = ProfileCallsConfig()
    resources: ResourcesConfig = ResourcesConfig()

    @model_validator(mode="after")
    def _unique_labels(self) -> ProfileSuite:
        labels = [loss.display for loss in self.losses]
        if len(set(labels)) != len(labels):
            raise ValueError(f"losses: labels must be unique, got {labels}")
        return self

    def science(self) -> dict[str, Any]:
        """What determines the numbers (not resources or prose)."""
        return self.model_dump(mode="json", exclude={"description", "resources"})

    def hash(self) -> str:
        blob = json.dumps(self.science(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:12]


# Keys of the flat profile files before the shared vocabulary, and where they went.
_PROFILE_RENAMED = {
    "batch_sizes": "grid.batch_size",
    "embedding_dims": "grid.embedding_dim",
    "num_classes": "grid.num_classes",
    "warmup": "probes.warmup",
    "repeats": "probes.repeats",
}


def parse_profile_suite(data: Any, path: Path | str) -> ProfileSuite:
    """Validate a loaded profile suite; raise UserError naming the file and field."""
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a mapping of profile suite keys at the top level")
    unknown = sorted(set(data) - set(ProfileSuite.model_fields))
    if unknown:
        moved = [f"{k} is now {_PROFILE_RENAMED[k]}" for k in unknown if k in _PROFILE_RENAMED]
        hint = f" ({'; '.join(moved)})" if moved else ""
        raise UserError(
            f"{path}: unknown key(s) {', '.join(unknown)}{hint}; "
            f"expected {', '.join(ProfileSuite.model_fields)}"
        )
    try:
        suite = ProfileSuite.model_validate(data)
    except ValidationError as err:
        raise UserError(format_validation_error(Path(path), err)) from None
    check_profile_losses(suite, path)
    return suite


def load_profile_suite(path: str | Path | None) -> ProfileSuite:
    """A profile suite file, or the built-in sweep when path is None."""
    if path is None:
        suite = ProfileSuite()
        check_profile_losses(suite, "profile")
        return suite
    path = Path(path)
    return parse_profile_suite(load_yaml_file(path), path)


def profile_overrides(suite: ProfileSuite, changes: dict[str, tuple[str, Any]]) -> ProfileSuite:
    """The suite with command-line values in place: {dotted field: (flag, value or None)}.

    None leaves the suite's value. A bad value is a UserError naming the flag.
    """
    doc = suite.model_dump(mode="python")
    for dotted, (flag, value) in changes.items():
        if value is None:
            continue
        node = doc
        *parents, leaf = dotted.split(".")
        for part in parents:
            node = node[part]
        node[leaf] = value
        try:
            ProfileSuite.model_validate(doc)
        except ValidationError as err:
            raise UserError(format_validation_error(Path(flag), err)) from None
    out = ProfileSuite.model_validate(doc)
    check_profile_losses(out, "--losses")
    return out


def check_profile_losses(suite: ProfileSuite, where: Path | str) -> None:
    """Every loss builds with its params (plug-ins included), before any point runs."""
    load_plugins()
    # A roomy shape, so that limits that depend on the point (C <= d) fail per point.
    check_loss_specs(suite.losses, where, num_classes=2, embedding_dim=512)
