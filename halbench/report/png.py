"""PNG copies of the report's figures for report.md, with the optional extra `halbench[png]`.

kaleido renders plotly figures; kaleido >= 1 drives a Chromium-based browser, found through its
documented `BROWSER_PATH` setting: when unset, the system's Chromium (or Chrome) on PATH is
used. Without kaleido or a browser no PNG is written and the Markdown links each figure to the
HTML report instead. A PNG is linked only when it exists after writing.

Chromium writes a profile under $HOME (~/.config/chromium, ~/.cache/dconf) even with the
throwaway --user-data-dir that kaleido's launcher (choreographer) gives it: the browser is
started with HOME and XDG_* pointing into a temporary directory that is deleted afterwards
(choreographer copies os.environ when it starts the browser).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from halbench.report.model import Figure

WIDTH = 1100
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "chrome")


def available() -> bool:
    """Whether kaleido is installed (the `png` extra) and PNGs are wanted: HALBENCH_NO_PNG=1
    turns them off (a fast test loop; each batch starts a browser)."""
    if os.environ.get("HALBENCH_NO_PNG", "") not in ("", "0"):
        return False
    return importlib.util.find_spec("kaleido") is not None


def _use_system_browser() -> None:
    if os.environ.get("BROWSER_PATH"):
        return
    found = next((p for name in BROWSERS if (p := shutil.which(name))), None)
    if found:
        os.environ["BROWSER_PATH"] = found


_BROWSER_HOME_VARS = (
    "HOME", "XDG_CONFIG_HOME", "XDG_CACHE_HOME", "XDG_DATA_HOME", "XDG_STATE_HOME",
)  # fmt: skip


@contextmanager
def _throwaway_home() -> Iterator[None]:
    """HOME and XDG_* in a temporary directory while the browser runs; restored after."""
    before = {name: os.environ.get(name) for name in _BROWSER_HOME_VARS}
    with tempfile.TemporaryDirectory(prefix="halbench-browser-") as home:
        os.environ["HOME"] = home
        for name in _BROWSER_HOME_VARS[1:]:
            os.environ[name] = os.path.join(home, name.lower())
        try:
            yield
        finally:
            for name, value in before.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value


def png_path(out_dir: Path, fig: Figure) -> Path:
    return Path(out_dir) / "figures" / f"{fig.id}.png"


def _tmp(path: Path) -> Path:
    return path.with_name(f".{path.stem}.tmp.png")


def _commit(pairs: list[tuple[Figure, Path]]) -> set[str]:
    """Move each rendered temporary file over its target; the ids whose PNG now exists."""
    written = set()
    for fig, path in pairs:
        tmp = _tmp(path)
        if tmp.is_file() and tmp.stat().st_size > 0:
            os.replace(tmp, path)
        tmp.unlink(missing_ok=True)
        if path.is_file() and path.stat().st_size > 0:
            written.add(fig.id)
    return written


def export_one(fig: Figure, out_dir: Path) -> bool:
    """Render one figure to figures/<id>.png; False (and no file left behind) on failure."""
    path = png_path(out_dir, fig)
    path.parent.mkdir(parents=True, exist_ok=True)
    _use_system_browser()
    try:
        with _throwaway_home():
            fig.figure.write_image(
                _tmp(path), format="png", width=WIDTH, height=fig.figure.layout.height or 450
            )
    except Exception:  # noqa: BLE001 - kaleido without a browser: fall back to the link
        _tmp(path).unlink(missing_ok=True)
        return False
    return fig.id in _commit([(fig, path)])


def export_all(figures: list[Figure], out_dir: Path) -> set[str]:
    """Render every figure in one browser session (plotly.io.write_images), else one by one;
    the ids of the figures whose PNG exists afterwards."""
    if not figures or not available():
        return set()
    import plotly.io as pio

    pairs = [(fig, png_path(out_dir, fig)) for fig in figures]
    pairs[0][1].parent.mkdir(parents=True, exist_ok=True)
    _use_system_browser()
    batch = getattr(pio, "write_images", None)
    if batch is not None:
        try:
            with _throwaway_home():
                batch(
                    [f.figure for f, _ in pairs],
                    [_tmp(p) for _, p in pairs],
                    format="png",
                    width=WIDTH,
                    height=[f.figure.layout.height or 450 for f, _ in pairs],
                )
        except Exception:  # noqa: BLE001 - fall back to one figure at a time
            pass
        else:
            return _commit(pairs)
    return {fig.id for fig, _ in pairs if export_one(fig, out_dir)}
