"""The report model: built once from the data, rendered to Markdown and HTML.

Renderers only lay out these blocks; every number and every verdict is decided before them, so
report.md and report.html state the same facts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Cell:
    """A table cell: display text, a numeric sort key, whether it is the best of its column
    (the highest mean), whether that best is within noise of the runner-up (the 95% CI of
    their difference contains 0: no star, "within noise"), and a verdict it shows (colour)."""

    text: str
    value: float | None = None
    best: bool = False
    within_noise: bool = False
    verdict: str | None = None


@dataclass
class Table:
    id: str
    title: str
    columns: list[str]
    rows: list[list[Cell]]
    notes: list[str] = field(default_factory=list)


@dataclass
class Paragraph:
    """Plain text; `**bold**` and `` `code` `` are the only inline markup."""

    text: str


@dataclass
class KeyValues:
    items: list[tuple[str, str]]


@dataclass
class Figure:
    id: str
    title: str
    figure: Any  # plotly.graph_objects.Figure
    caption: str = ""


@dataclass
class Verdict:
    """A claim's verdict line: shown as a heading-like badge in HTML, a symbol in Markdown."""

    claim_id: str
    title: str
    verdict: str  # supported | contradicted | inconclusive | no data
    summary: str


Block = Table | Paragraph | KeyValues | Figure | Verdict


@dataclass
class Section:
    id: str
    title: str
    blocks: list[Block] = field(default_factory=list)
    level: int = 2


@dataclass
class Report:
    title: str
    sections: list[Section]


# Symbols every text font has (no emoji font needed); the verdict's word always follows them,
# and the HTML colours verdict cells and badges, so that no cell relies on a symbol alone.
VERDICT_SYMBOLS = {
    "supported": "✓",
    "contradicted": "✗",
    "inconclusive": "?",
    "no data": "∅",
}
BEST_MARK = "★"
NOISE_MARK = "☆ within noise"  # the highest mean, not beyond the runner-up's noise
