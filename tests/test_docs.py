"""Every `halbench CMD --flag` that README.md and docs/*.md show exists in the CLI's parser."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from typing import Any

import pytest

from tests.readme_tool import readme_tool

REPO = Path(__file__).resolve().parent.parent
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]

# `halbench` where a command starts: at the start of a code span or line, or after a shell
# separator; not `from halbench import`, `halbench/run/`, `halbench.cli` or `halbench[png]`.
COMMAND = re.compile(r"(?:^|(?<=[;&|(`])|(?<=\$ )|(?<=&& ))\s*halbench[ \t]+([a-z][\w-]*)")
FLAG = re.compile(r"(?<![\w-])--[a-z][\w-]*")


def _subcommands() -> dict[str, frozenset[str]]:
    return {c.name: c.flags for c in readme_tool().subcommands()}


def code_segments(text: str) -> list[str]:
    """The code in a Markdown text: inline `spans`, and the lines of indented or fenced blocks
    (a block line that starts with `[` or `--` continues the command above it)."""
    segments: list[str] = []
    fenced = False
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
            continue
        if fenced or line.startswith("    "):
            stripped = line.strip()
            if segments and stripped.startswith(("[", "--")) and "halbench" in segments[-1]:
                segments[-1] += " " + stripped
            else:
                segments.append(stripped)
            continue
        segments.extend(re.findall(r"`([^`]+)`", line))
    return segments


def mentions(text: str) -> list[tuple[str, list[str]]]:
    """(subcommand, flags written after it) for every `halbench CMD ...` in the code of text."""
    found = []
    for segment in code_segments(text):
        starts = list(COMMAND.finditer(segment))
        for i, m in enumerate(starts):
            end = starts[i + 1].start() if i + 1 < len(starts) else len(segment)
            rest = segment[m.end() : end].split("#", 1)[0]  # a shell comment is prose
            found.append((m.group(1), FLAG.findall(rest)))
    return found


def test_the_scanner_finds_commands_and_their_flags() -> None:
    text = (
        "Run `halbench run suites/x.yaml --resume --output d` or\n\n"
        "    halbench profile [SUITE] [--losses L]\n"
        "                     [--no-ray] --output DIR  # --not-a-flag\n\n"
        "`from halbench import losses`, halbench/run/rundir.py, `pip install halbench[png]`\n"
        "```\nS=1; halbench report a && halbench compare a b --threshold 2\n```\n"
    )
    assert mentions(text) == [
        ("run", ["--resume", "--output"]),
        ("profile", ["--losses", "--no-ray", "--output"]),
        ("report", []),
        ("compare", ["--threshold"]),
    ]


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.relative_to(REPO).as_posix())
def test_documented_commands_and_flags_exist(doc: Path) -> None:
    cli = _subcommands()
    wrong = []
    for command, flags in mentions(doc.read_text(encoding="utf-8")):
        if command not in cli:
            wrong.append(f"halbench {command} (no such subcommand)")
            continue
        wrong.extend(f"halbench {command} {f}" for f in flags if f not in cli[command])
    assert not wrong, f"{doc.name} shows what the CLI does not have: {sorted(set(wrong))}"


def _suite_reference_tool() -> Any:
    """tools/suite_reference.py as a module (tools/ is a folder of scripts)."""
    path = REPO / "tools" / "suite_reference.py"
    spec = importlib.util.spec_from_file_location("suite_reference", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_suite_reference_is_the_models() -> None:
    # Rendered from the suite models as they are now: a new, renamed or re-typed key fails
    # here until `python tools/suite_reference.py --write` is rerun.
    tool = _suite_reference_tool()
    assert (REPO / "docs" / "suite-reference.md").read_text(encoding="utf-8") == tool.render(), (
        "docs/suite-reference.md is stale: run python tools/suite_reference.py --write"
    )
    assert tool.stale_descriptions() == [], "descriptions of keys the models no longer have"


def test_suite_reference_lists_every_key_with_its_default() -> None:
    from halbench.suite.models import Suite, TrainConfig

    text = _suite_reference_tool().render()
    for name in Suite.model_fields:
        assert f"| `{name}` |" in text
    assert "| `epochs` | int > 0 | `2` |" in text  # TrainConfig.epochs: BoundedInt = 2
    assert TrainConfig().epochs == 2
    assert "| `optimizer` | `sgd` or `adamw` | `adamw` |" in text
    assert "| `batch_size` | non-empty list of int > 0 | `required` |" in text  # the grid's
