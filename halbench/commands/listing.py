"""`halbench list losses|datasets|models [pattern]`: the registries, plug-ins included."""

from __future__ import annotations

import fnmatch
import inspect

from halbench import data, losses, models
from halbench.errors import UserError
from halbench.plugins import load_plugins

# A `pml:` loss is any pytorch-metric-learning class: one entry stands for all of them.
PML_ENTRY = f"{losses.PML_PREFIX}<ClassName>[:key=value,...]"


def listing(kind: str, pattern: str = "*") -> str:
    """The names of `kind` matching the wildcard `pattern`; losses with their parameters."""
    load_plugins()  # $HALBENCH_PLUGINS registers its losses, models and datasets here
    module = {"losses": losses, "datasets": data, "models": models}[kind]
    names = module.available(pattern)
    pml = kind == "losses" and fnmatch.fnmatchcase(PML_ENTRY, pattern)
    if not names and not pml:
        raise UserError(f"list {kind}: nothing matches {pattern!r}")
    if kind != "losses":
        return "\n".join(names)
    lines = [_loss_lines(name) for name in names]
    if pml:
        lines.append(f"{PML_ENTRY}  (any pytorch-metric-learning loss)")
    return "\n".join(lines)


def _loss_lines(name: str) -> str:
    """A loss's name on a line of its own, then its parameters with their defaults."""
    params = []
    for key, default in losses.parameters(name).items():
        if key == "memory_size" and losses.LOSSES.get(name).needs_memory_size:
            params.append("memory_size=<training set size>")
        elif default is inspect.Parameter.empty:
            params.append(f"{key}=<required>")
        else:
            params.append(f"{key}={default!r}")
    return f"{name}\n    {', '.join(params) or '(no parameters)'}"
