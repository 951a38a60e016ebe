"""Reports: accuracy and cost tables, plots and a verdict per claim, as Markdown and HTML.

The names below load on first use (PEP 562): `halbench.cli` declares the report subcommands
from `halbench.report.commands`, and a headless `run --no-report` must not import plotly.
"""

from __future__ import annotations

from typing import Any

__all__ = ["build_model", "build_report"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from halbench.report import build  # plotly: only once a report is built

        return getattr(build, name)
    raise AttributeError(f"module 'halbench.report' has no attribute {name!r}")
