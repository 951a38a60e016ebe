"""Render the report model as one self-contained HTML file (plotly.js inlined once)."""

from __future__ import annotations

import html
import re

import plotly.offline

from halbench.report.model import (
    BEST_MARK,
    NOISE_MARK,
    VERDICT_SYMBOLS,
    Figure,
    KeyValues,
    Paragraph,
    Report,
    Table,
    Verdict,
)

CSS = """
body { font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1f2328;
       margin: 0; display: flex; }
nav { position: sticky; top: 0; height: 100vh; overflow-y: auto; width: 230px; flex: none;
      padding: 16px; box-sizing: border-box; background: #f6f8fa; border-right: 1px solid #d0d7de;
      font-size: 13px; }
nav ul { list-style: none; padding-left: 0; margin: 0; }
nav li.l3 { padding-left: 14px; }
nav a { color: #0969da; text-decoration: none; display: block; padding: 2px 0; }
main { padding: 16px 28px; max-width: 1280px; min-width: 0; flex: 1; }
h1 { font-size: 26px; } h2 { border-bottom: 1px solid #d0d7de; padding-bottom: 4px; }
.table-wrap { overflow-x: auto; margin: 8px 0 4px; }
table { border-collapse: collapse; font-size: 13px; }
th, td { border: 1px solid #d0d7de; padding: 4px 8px; text-align: left; white-space: nowrap; }
th { background: #f6f8fa; position: sticky; top: 0; }
table.sortable th { cursor: pointer; user-select: none; }
table.sortable th[data-dir=asc]::after { content: " ▲"; }
table.sortable th[data-dir=desc]::after { content: " ▼"; }
tr:nth-child(even) td { background: #fbfcfd; }
td.wrap { white-space: normal; min-width: 320px; }
td.best { font-weight: 600; background: #dafbe1 !important; }
td.noise { background: #f6f8fa !important; }
td.v-supported { color: #1a7f37; font-weight: 600; }
td.v-not-supported { color: #cf222e; font-weight: 600; }
td.v-inconclusive { color: #9a6700; font-weight: 600; } td.v-no-data { color: #57606a; }
.caption { font-weight: 600; margin-top: 18px; }
.note { color: #57606a; font-size: 13px; margin: 2px 0; }
.verdict { border-left: 5px solid #8c959f; padding: 6px 12px; margin: 18px 0 8px;
           background: #f6f8fa; }
.verdict.supported { border-color: #1a7f37; } .verdict.not-supported { border-color: #cf222e; }
.verdict.inconclusive { border-color: #bf8700; }
.verdict h4 { margin: 0 0 4px; }
.kv td:first-child { font-weight: 600; }
.figure { margin: 16px 0; }
@media (max-width: 900px) { nav { display: none; } }
"""

WRAP_AT = 60  # longer cells wrap, so that a sentence does not widen its table off screen

SORT_JS = """
document.querySelectorAll('table.sortable th').forEach(function (th) {
  th.addEventListener('click', function () {
    var table = th.closest('table');
    var idx = Array.prototype.indexOf.call(th.parentNode.children, th);
    var asc = th.getAttribute('data-dir') !== 'asc';
    table.querySelectorAll('th').forEach(function (h) { h.removeAttribute('data-dir'); });
    th.setAttribute('data-dir', asc ? 'asc' : 'desc');
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = a.cells[idx], y = b.cells[idx];
      var vx = x.getAttribute('data-v'), vy = y.getAttribute('data-v');
      var r;
      if (vx !== null && vy !== null) { r = parseFloat(vx) - parseFloat(vy); }
      else if (vx !== null) { r = -1; } else if (vy !== null) { r = 1; }
      else { r = x.textContent.localeCompare(y.textContent, undefined, {numeric: true}); }
      return asc ? r : -r;
    });
    rows.forEach(function (r) { body.appendChild(r); });
  });
});
"""


def inline(text: str) -> str:
    """Escape, then turn the model's only inline markup (**bold**, `code`) into HTML."""
    out = html.escape(text)
    out = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", out)
    return re.sub(r"`(.+?)`", r"<code>\1</code>", out)


def table_html(table: Table) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in table.columns)
    body = []
    for row in table.rows:
        cells = []
        for c in row:
            noisy = c.best and c.within_noise
            classes = ["best"] * (c.best and not noisy) + ["noise"] * noisy
            classes += ["wrap"] * (len(c.text) > WRAP_AT)
            if c.verdict:
                classes.append("v-" + c.verdict.replace(" ", "-"))
            attrs = f' class="{" ".join(classes)}"' if classes else ""
            if c.value is not None:
                attrs += f' data-v="{c.value!r}"'
            mark = f" {NOISE_MARK}" if noisy else f" {BEST_MARK}" if c.best else ""
            cells.append(f"<td{attrs}>{html.escape(c.text)}{mark}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    notes = "".join(f'<p class="note">{inline(n)}</p>' for n in table.notes)
    return (
        f'<div class="caption" id="{table.id}">{html.escape(table.title)}</div>'
        f'<div class="table-wrap"><table class="sortable"><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table></div>{notes}"
    )


def figure_html(fig: Figure) -> str:
    plot = fig.figure.to_html(
        full_html=False,
        include_plotlyjs=False,
        div_id=f"{fig.id}-plot",
        config={"displaylogo": False, "responsive": True},
    )
    return (
        f'<div class="figure" id="{fig.id}"><div class="caption">{html.escape(fig.title)}'
        f"</div>{plot}</div>"
    )


def block_html(block: object) -> str:
    if isinstance(block, Table):
        return table_html(block)
    if isinstance(block, Paragraph):
        return f"<p>{inline(block.text)}</p>"
    if isinstance(block, KeyValues):
        rows = "".join(
            f"<tr><td>{html.escape(k)}</td><td>{html.escape(v)}</td></tr>" for k, v in block.items
        )
        return f'<div class="table-wrap"><table class="kv"><tbody>{rows}</tbody></table></div>'
    if isinstance(block, Figure):
        return figure_html(block)
    if isinstance(block, Verdict):
        css = block.verdict.replace(" ", "-")
        return (
            f'<div class="verdict {css}">'
            f"<h4>{html.escape(block.claim_id)}: {html.escape(block.title)} — "
            f"{VERDICT_SYMBOLS[block.verdict]} {html.escape(block.verdict)}</h4>"
            f"Measured: {html.escape(block.summary)}</div>"
        )
    raise TypeError(f"block: unknown report block {type(block).__name__}")


def render_html(report: Report) -> str:
    toc = "".join(
        f'<li class="l{s.level}"><a href="#{s.id}">{html.escape(s.title)}</a></li>'
        for s in report.sections
    )
    body = []
    for s in report.sections:
        body.append(f'<h{s.level} id="{s.id}">{html.escape(s.title)}</h{s.level}>')
        body += [block_html(b) for b in s.blocks]
    # plotly.js once for every figure, inline, so that the file works offline.
    plotly_js = plotly.offline.get_plotlyjs()
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(report.title)}</title><style>{CSS}</style>"
        f'<script type="text/javascript">{plotly_js}</script></head><body>'
        f"<nav><strong>Contents</strong><ul>{toc}</ul></nav>"
        f"<main><h1>{html.escape(report.title)}</h1>{''.join(body)}</main>"
        f"<script>{SORT_JS}</script></body></html>\n"
    )
