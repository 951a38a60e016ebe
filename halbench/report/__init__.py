"""Reports: accuracy and cost tables, plots and a verdict per claim, as Markdown and HTML."""

from halbench.report.build import build_model, build_report

__all__ = ["build_model", "build_report"]
