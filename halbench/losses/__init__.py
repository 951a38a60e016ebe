"""The loss zoo: HAL, AL and the KNN losses they compete with, built by name.

build("hal", num_classes=10, embedding_dim=128, scale=16) -> KNNLoss
build("pml:TripletMarginLoss:margin=0.1", num_classes=10, embedding_dim=128)
available("*nca*") -> ["nca", "nca_memory", "proxy_nca"]
"""

from __future__ import annotations

import difflib
import inspect
from typing import Any

# Importing the loss modules registers their losses.
from halbench.losses import anchor, margin, memory, nca, pair, softmax  # noqa: F401
from halbench.losses.base import LOSSES, KNNLoss
from halbench.losses.pml import PML_PREFIX, build_pml, is_pml

__all__ = ["LOSSES", "PML_PREFIX", "KNNLoss", "available", "build", "is_pml", "parameters"]


def available(pattern: str = "*") -> list[str]:
    """Registered loss names matching an fnmatch pattern (`pml:<Class>` losses are not listed)."""
    return LOSSES.names(pattern)


def parameters(name: str) -> dict[str, Any]:
    """The parameters a registered loss accepts, with their defaults."""
    found: dict[str, Any] = {}
    # Walk the constructors up the class hierarchy as long as they forward **kwargs.
    for cls in LOSSES.get(name).__mro__:
        if "__init__" not in vars(cls):
            continue
        signature = inspect.signature(cls.__init__)
        for param in signature.parameters.values():
            if param.kind is param.KEYWORD_ONLY:
                found.setdefault(param.name, param.default)
        if not any(p.kind is p.VAR_KEYWORD for p in signature.parameters.values()):
            break
    return found


def build(name: str, *, num_classes: int, embedding_dim: int, **params: Any) -> KNNLoss:
    """A loss by registry name (or `pml:<Class>[:key=value,...]`) with its parameters.

    `memory_size` (the number of training samples) may be given for every loss: it reaches only
    losses that declare `needs_memory_size`, so a trainer can pass it unconditionally.
    Unknown names and parameters raise ValueError.
    """
    memory_size = params.pop("memory_size", None)
    if is_pml(name):
        return build_pml(name, num_classes=num_classes, embedding_dim=embedding_dim, **params)
    cls = LOSSES.get(name)
    accepted = parameters(name)
    for key in params:
        if key not in accepted:
            close = difflib.get_close_matches(key, list(accepted), n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise ValueError(
                f"loss '{name}': unknown parameter '{key}'; expected one of: "
                f"{', '.join(accepted) or '(none)'}{hint}"
            )
    if cls.needs_memory_size:
        params["memory_size"] = memory_size
    return cls(num_classes=num_classes, embedding_dim=embedding_dim, **params)
