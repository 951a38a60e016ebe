"""Render the report model as GitHub-flavoured Markdown."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

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
    return importlib.util.find_spec("kaleido") is not None


def figure_markdown(fig: Figure, out_dir: Path, html_name: str) -> str:
    """A PNG beside the report when kaleido can render it, else a link to the HTML figure."""
    if _can_export_images():
        path = out_dir / "figures" / f"{fig.id}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        # Rendered beside the target, then renamed: a failed export never leaves half a PNG.
        tmp = path.with_name(f".{path.stem}.tmp.png")
        try:
            fig.figure.write_image(
                tmp, format="png", width=1100, height=fig.figure.layout.height or 450
            )
            os.replace(tmp, path)
            return f"![{fig.title}](figures/{path.name})"
        except Exception:  # noqa: BLE001 - kaleido without a browser: fall back to the link
            tmp.unlink(missing_ok=True)
    return f"📈 [{fig.title}]({html_name}#{fig.id}) (interactive figure in the HTML report)"


def render_markdown(report: Report, out_dir: Path, html_name: str = "report.html") -> str:
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
                out.append(figure_markdown(block, out_dir, html_name))
            elif isinstance(block, Verdict):
                out.append(
                    f"#### {block.claim_id}: {block.title} — "
                    f"{VERDICT_SYMBOLS[block.verdict]} {block.verdict}\n\n"
                    f"Measured: {block.summary}"
                )
            out.append("")
    return "\n".join(out).rstrip() + "\n"
