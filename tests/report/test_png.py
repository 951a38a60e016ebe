"""PNG figures in report.md (the `png` extra): written with kaleido, linked only when they exist."""

import os
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


@pytest.mark.slow
def test_the_browser_writes_nothing_under_home(make_run, tmp_path, monkeypatch):
    # Chromium made ~/.config/chromium and ~/.cache/dconf: it runs with a throwaway HOME.
    pytest.importorskip("kaleido")
    if not (shutil.which("chromium") or shutil.which("google-chrome")):
        pytest.skip("no Chromium for kaleido")
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    for name in ("XDG_CONFIG_HOME", "XDG_CACHE_HOME", "XDG_DATA_HOME", "XDG_STATE_HOME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("HALBENCH_NO_PNG")
    out = tmp_path / "out"
    md = build_report([make_run(*training_rows())], out)["markdown"].read_text()
    assert _linked(md), "the PNGs were written"
    assert [p for p in home.rglob("*")] == []
    assert os.environ["HOME"] == str(home)  # restored after the browser ran


def test_the_browser_home_is_temporary_and_restored(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    with png._throwaway_home():
        inside = os.environ["HOME"]
        assert inside != str(tmp_path) and os.path.isdir(inside)
        assert os.environ["XDG_CONFIG_HOME"].startswith(inside)
        assert os.environ["XDG_CACHE_HOME"].startswith(inside)
    assert not os.path.exists(inside)
    assert os.environ["HOME"] == str(tmp_path)
    assert os.environ["XDG_CACHE_HOME"] == str(tmp_path / "cache")
    assert "XDG_CONFIG_HOME" not in os.environ
