"""Plugins: user modules that register their own losses, models or datasets.

`HALBENCH_PLUGINS=mypkg.losses,other.module` imports those modules before a suite is checked
and in every trial process, so that `@LOSSES.register("my_loss")` in them works without a fork.
Ray workers on a local cluster inherit the driver's environment; on a remote cluster, set the
variable in the cluster's runtime environment (docs/cluster.md).
"""

from __future__ import annotations

import importlib
import os

from halbench.errors import UserError

ENV_VAR = "HALBENCH_PLUGINS"
_loaded: set[str] = set()


def load_plugins() -> list[str]:
    """Import every module named in $HALBENCH_PLUGINS once; return their names."""
    names = [n.strip() for n in os.environ.get(ENV_VAR, "").split(",") if n.strip()]
    for name in names:
        if name in _loaded:
            continue
        try:
            importlib.import_module(name)
        except ImportError as err:
            raise UserError(f"${ENV_VAR}: cannot import plugin module {name!r} ({err})") from None
        _loaded.add(name)
    return names
