"""The loss zoo: HAL, AL and the KNN losses they compete with, built by name.

build("hal", num_classes=10, embedding_dim=128, scale=16) -> KNNLoss
build("pml:TripletMarginLoss:margin=0.1", num_classes=10, embedding_dim=128)
available("*nca*") -> ["nca", "nca_memory", "proxy_nca"]
available("pml*", pml=True) -> ["pml:AngularLoss", "pml:ArcFaceLoss", ...]
"""

from __future__ import annotations

import fnmatch
from typing import Any

# Importing the loss modules registers their losses.
from halbench.losses import anchor, margin, memory, nca, pair, softmax  # noqa: F401
from halbench.losses.base import LOSSES, KNNLoss
from halbench.losses.pml import PML_PREFIX, build_pml, is_pml, pml_names, pml_parameters

__all__ = ["LOSSES", "PML_PREFIX", "KNNLoss", "available", "build", "is_pml", "parameters"]


def available(pattern: str = "*", *, pml: bool = False) -> list[str]:
    """Registered loss names matching an fnmatch pattern; with pml=True also one
    `pml:<ClassName>` entry per pytorch-metric-learning loss (when it is installed), so that
    'pml*' or '*Proxy*' match them."""
    names = LOSSES.names(pattern)
    if pml:
        names += [n for n in pml_names() if fnmatch.fnmatchcase(n, pattern)]
    return names


def parameters(name: str) -> dict[str, Any]:
    """The parameters a loss accepts, with their defaults (a registered name or `pml:<Class>`);
    inspect.Parameter.empty marks a required one."""
    if is_pml(name):
        return pml_parameters(name)
    return {k: v for k, v in LOSSES.parameters(name).items() if k not in _SIZES}


# Set by build() from the trainer's sizes, never by the suite's loss params.
_SIZES = ("num_classes", "embedding_dim")


def build(name: str, *, num_classes: int, embedding_dim: int, **params: Any) -> KNNLoss:
    """A loss by registry name (or `pml:<Class>[:key=value,...]`) with its parameters.

    `memory_size` (the number of training samples) may be given for every loss: it reaches only
    losses that declare `needs_memory_size`, so a trainer can pass it unconditionally.
    The registry checks the parameters: an unknown one, or one of a wrong type or range, raises
    one ValueError naming it.
    """
    memory_size = params.pop("memory_size", None)
    if is_pml(name):
        return build_pml(name, num_classes=num_classes, embedding_dim=embedding_dim, **params)
    if LOSSES.get(name).needs_memory_size:
        params["memory_size"] = memory_size
    sizes = {"num_classes": num_classes, "embedding_dim": embedding_dim}
    return LOSSES.build(name, sizes, params)
