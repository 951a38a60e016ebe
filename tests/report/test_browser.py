"""The HTML report in a real browser: loads from disk offline, no console errors, plots render."""

import re
import shutil
import subprocess

import pytest

from halbench.report import build_model, build_report
from halbench.report.model import Figure

from .test_report import training_rows

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="Chromium not installed (Debian package 'chromium'; .ci/run has it)"
)
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--enable-logging=stderr",
    "--v=0",
    "--virtual-time-budget=10000",
]


def chromium(tmp_path, *args):
    out = subprocess.run(
        [CHROMIUM, *FLAGS, f"--user-data-dir={tmp_path / 'profile'}", *args],
        capture_output=True,
        text=True,
        timeout=180,
    )
    errors = [
        line
        for line in out.stderr.splitlines()
        if ":CONSOLE" in line and re.search(r"Uncaught|Error|error", line)
    ]
    return out, errors


@pytest.fixture
def report_html(make_run, tmp_path):
    run = make_run(*training_rows())
    html = build_report([run], tmp_path / "out")["html"]
    figures = [b.id for s in build_model([run]).sections for b in s.blocks if isinstance(b, Figure)]
    return html, figures


def test_plots_render_without_console_errors(report_html, tmp_path):
    html, figures = report_html
    out, errors = chromium(tmp_path, "--dump-dom", html.as_uri())
    assert errors == []
    assert figures
    for fig in figures:
        # Plotly.newPlot marks the div and fills it with its SVG layers once it has drawn.
        div = re.search(rf'<div id="{fig}-plot" class="([^"]*)"', out.stdout)
        assert div and "js-plotly-plot" in div.group(1), fig
    assert out.stdout.count('class="main-svg"') >= len(figures)


def test_screenshot_is_not_blank(report_html, tmp_path):
    image = pytest.importorskip("PIL.Image")
    html, _ = report_html
    shot = tmp_path / "shot.png"
    _, errors = chromium(tmp_path, f"--screenshot={shot}", "--window-size=1280,2000", html.as_uri())
    assert errors == []
    colours = image.open(shot).convert("RGB").getcolors(maxcolors=1 << 20)
    assert colours is not None and len(colours) > 50
