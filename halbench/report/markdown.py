"""Render the report model as GitHub-flavoured Markdown."""

from __future__ import annotations

from pathlib import Path

from halbench.report import png
from halbench.report.model import (
    BEST_MARK,
    NOISE_MARK,
    VERDICT_SYMBOLS,
    Cell,
    Figure,
    KeyValues,
    Paragraph,
    Report,
    Table,
    Verdict,
)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _marked(c: Cell) -> str:
    if c.best and c.within_noise:
        return f"{_cell(c.text)} {NOISE_MARK}"
    return f"**{_cell(c.text)}** {BEST_MARK}" if c.best else _cell(c.text)


def table_markdown(table: Table) -> str:
    lines = [
        f"**{table.title}**",
        "",
        "| " + " | ".join(_cell(c) for c in table.columns) + " |",
        "|" + "|".join("---" for _ in table.columns) + "|",
    ]
    for row in table.rows:
        lines.append("| " + " | ".join(_marked(c) for c in row) + " |")
    lines += [""] + [f"_{note}_" for note in table.notes]
    return "\n".join(lines)


def _can_export_images() -> bool:
    return png.available()


def _link(fig: Figure, html_name: str) -> str:
    return f"📈 [{fig.title}]({html_name}#{fig.id}) (interactive figure in the HTML report)"


def figure_markdown(fig: Figure, out_dir: Path, html_name: str) -> str:
    """A PNG beside the report when kaleido can render it, else a link to the HTML figure."""
    if _can_export_images() and png.export_one(fig, out_dir):
        return f"![{fig.title}](figures/{fig.id}.png)"
    return _link(fig, html_name)


def render_markdown(
    report: Report, out_dir: Path, html_name: str = "report.html", pngs: set[str] | None = None
) -> str:
    """The Markdown report. pngs: ids of the figures already written as PNGs (build_report
    exports them in one batch); None: export each figure here when kaleido is installed."""
    out = [f"# {report.title}", ""]
    for section in report.sections:
        out += [f"{'#' * section.level} {section.title}", ""]
        for block in section.blocks:
            if isinstance(block, Table):
                out.append(table_markdown(block))
            elif isinstance(block, Paragraph):
                out.append(block.text)
            elif isinstance(block, KeyValues):
                out += ["| | |", "|---|---|"]
                out += [f"| {_cell(k)} | {_cell(v)} |" for k, v in block.items]
            elif isinstance(block, Figure):
                if pngs is None:
                    out.append(figure_markdown(block, out_dir, html_name))
                elif block.id in pngs and png.png_path(out_dir, block).is_file():
                    out.append(f"![{block.title}](figures/{block.id}.png)")
                else:  # never link a PNG that was not written
                    out.append(_link(block, html_name))
            elif isinstance(block, Verdict):
                out.append(
                    f"#### {block.claim_id}: {block.title} — "
                    f"{VERDICT_SYMBOLS[block.verdict]} {block.verdict}\n\n"
                    f"Measured: {block.summary}"
                )
            out.append("")
    return "\n".join(out).rstrip() + "\n"
