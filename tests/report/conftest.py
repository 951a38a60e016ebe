"""Fixtures of the report tests."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from .fixtures import write_run


@pytest.fixture
def make_run(tmp_path: Path) -> Callable[..., Path]:
    counter = iter(range(1000))

    def make(*args: Any, **kwargs: Any) -> Path:
        return write_run(tmp_path / f"run{next(counter)}", *args, **kwargs)

    return make


@pytest.fixture(autouse=True)
def _no_png(monkeypatch: pytest.MonkeyPatch) -> None:
    """Report tests write no PNGs (a browser start each) unless they ask: test_png.py does."""
    monkeypatch.setenv("HALBENCH_NO_PNG", "1")
