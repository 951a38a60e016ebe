"""The committed example reports are what today's code makes of their run directories.

A change to the report (wording, tables, verdict rules) must regenerate them in the same commit
(`HALBENCH_NO_PNG=1 halbench report reports/<example> --output reports/<example>`); this test
fails when one was left stale. PNG figures are off so that report.md links the HTML figures,
as the committed ones do.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from halbench.cli import main

EXAMPLES = sorted((Path(__file__).resolve().parents[2] / "reports").glob("example*/report.md"))


def test_there_are_committed_examples() -> None:
    assert len(EXAMPLES) >= 3


@pytest.mark.parametrize("report_md", EXAMPLES, ids=lambda p: p.parent.name)
def test_a_committed_example_reproduces_its_report(
    report_md: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HALBENCH_NO_PNG", "1")
    run = tmp_path / report_md.parent.name
    shutil.copytree(report_md.parent, run, ignore=shutil.ignore_patterns("report.*", "figures"))
    assert main(["report", str(run), "--output", str(run)]) == 0
    assert (run / "report.md").read_text() == report_md.read_text()
