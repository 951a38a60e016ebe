"""PNG figures in report.md (the `png` extra): written with kaleido, linked only when they exist."""

import re
import shutil

import pytest

from halbench.report import build_report, png

from .test_report import training_rows


def _linked(md: str) -> list[str]:
    return re.findall(r"!\[[^\]]*\]\((figures/[^)]+\.png)\)", md)


def test_markdown_links_only_pngs_that_were_written(make_run, tmp_path, monkeypatch):
    # An export that claims success but leaves no file: the Markdown links the HTML instead.
    monkeypatch.delenv("HALBENCH_NO_PNG")
    monkeypatch.setattr(png, "export_all", lambda figs, out: {f.id for f in figs})
    md = build_report([make_run(*training_rows())], tmp_path / "out")["markdown"].read_text()
    assert _linked(md) == [] and "(interactive figure in the HTML report)" in md


@pytest.mark.slow
def test_pngs_are_written_with_kaleido(make_run, tmp_path, monkeypatch):
    pytest.importorskip("kaleido")
    if not (shutil.which("chromium") or shutil.which("google-chrome")):
        pytest.skip("no Chromium for kaleido")
    monkeypatch.delenv("HALBENCH_NO_PNG")
    out = tmp_path / "out"
    md = build_report([make_run(*training_rows())], out)["markdown"].read_text()
    links = _linked(md)
    assert links, "kaleido is installed: report.md embeds PNG figures"
    for link in links:
        data = (out / link).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list((out / "figures").glob(".*.tmp.png"))  # no temporary file left behind
