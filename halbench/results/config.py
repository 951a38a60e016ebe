"""A sampled configuration as the run directory records it: the vocabulary of a tune space,
shared by the suite (which validates a space and samples it) and the report (which reads the
space and the configurations back from the run directory).

A configuration is flat: shared keys (`lr`) and a loss's own parameters under `loss.<param>`
(`loss.scale`); rows keep it as `config` JSON and one `cfg_<key>` column per key.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

DISTRIBUTIONS = ("uniform", "loguniform", "randint", "choice")
LOSS_PREFIX = "loss."  # a loss parameter's key in a sampled configuration: "loss.scale"


def loss_key(param: str) -> str:
    """The configuration key of a loss's own parameter: 'scale' -> 'loss.scale'."""
    return f"{LOSS_PREFIX}{param}"


def split_config(config: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """A sampled configuration -> (shared keys, the loss's own parameters)."""
    shared = {k: v for k, v in config.items() if not k.startswith(LOSS_PREFIX)}
    loss = {k[len(LOSS_PREFIX) :]: v for k, v in config.items() if k.startswith(LOSS_PREFIX)}
    return shared, loss


def config_columns(config: Mapping[str, Any]) -> dict[str, Any]:
    """One column per tuned key: `cfg_lr`, `cfg_loss_scale`."""
    return {"cfg_" + k.replace(".", "_"): v for k, v in config.items()}


def distribution(value: Any) -> tuple[str, list[Any]] | None:
    """`{loguniform: [1e-4, 1e-2]}` -> ('loguniform', [1e-4, 1e-2]); None for anything else."""
    if isinstance(value, Mapping) and len(value) == 1:
        ((kind, args),) = value.items()
        if kind in DISTRIBUTIONS and isinstance(args, list):
            return str(kind), args
    return None


@dataclass(frozen=True)
class SpaceEntry:
    key: str  # as in a sampled configuration: "lr", "loss.scale"
    loss: str | None  # the loss section (label or name) of a loss's own parameter, else None
    kind: str  # one of DISTRIBUTIONS
    args: list[Any]


def space_entries(space: Mapping[str, Any]) -> list[SpaceEntry]:
    """A recorded `tune.space` as entries: shared keys (one distribution each), then each loss
    section's parameters under `loss.<param>`. Read leniently (the suite validated the space
    before the run); anything else is skipped."""
    out = []
    for key, value in space.items():
        dist = distribution(value)
        if dist is not None:
            out.append(SpaceEntry(str(key), None, *dist))
        elif isinstance(value, Mapping):
            for param, sub in value.items():
                if (d := distribution(sub)) is not None:
                    out.append(SpaceEntry(loss_key(str(param)), str(key), *d))
    return out
