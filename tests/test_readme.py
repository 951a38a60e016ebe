"""README.md against the code: its command list is the CLI's usage, its suites table lists
every suite, and its test command is the one .ci/run runs."""

from __future__ import annotations

import re
from pathlib import Path
from types import ModuleType

import pytest

from tests.readme_tool import readme_tool

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"


def _tool() -> ModuleType:
    return readme_tool()


@pytest.fixture(scope="module")
def tool() -> ModuleType:
    return _tool()


def _section(text: str, title: str) -> str:
    start = text.index(f"## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end >= 0 else len(text)]


def test_command_list_is_the_clis_usage(tool: ModuleType) -> None:
    # Rendered at test time from the parser as it is now: a new flag or subcommand in cli.py
    # fails here until `python tools/readme_commands.py --write` is rerun.
    assert tool.readme_block(README.read_text(encoding="utf-8")) == tool.render(), (
        "README.md's command list is stale: run python tools/readme_commands.py --write"
    )


def test_every_subcommand_and_flag_is_in_the_rendered_list(tool: ModuleType) -> None:
    block = tool.render()
    commands = tool.subcommands()
    assert {c.name for c in commands} >= {"run", "profile", "report", "compare", "list"}
    for cmd in commands:
        assert f"halbench {cmd.name} " in block or f"halbench {cmd.name}\n" in block
        for flag in cmd.flags:
            if flag.startswith("--"):
                assert flag in block, f"{cmd.name} {flag} missing from the rendered list"


def test_wrapped_lines_fit_and_keep_option_groups_whole(tool: ModuleType) -> None:
    usage = "halbench run " + " ".join(f"[--option-{i} VALUE_{i}]" for i in range(20)) + " suite"
    lines = tool.wrap_usage(usage, width=60)
    assert len(lines) > 1
    assert all(len(line) <= 60 for line in lines)
    joined = " ".join(line.strip() for line in lines)
    assert joined == usage  # nothing lost, no group split across lines


def test_check_mode_catches_a_stale_block(tool: ModuleType, tmp_path: Path) -> None:
    text = README.read_text(encoding="utf-8")
    stale = tool.replace_block(text, "    halbench run suite\n")
    assert tool.readme_block(stale) != tool.render()
    assert tool.readme_block(tool.replace_block(stale, tool.render())) == tool.render()
    with pytest.raises(ValueError, match="no command block"):
        tool.readme_block("# no markers here\n")


def test_suites_table_lists_every_suite() -> None:
    table = _section(README.read_text(encoding="utf-8"), "Suites")
    rows = [line for line in table.splitlines() if line.startswith("| suites/")]
    listed = set()
    for row in rows:
        listed.update(re.findall(r"suites/[\w.-]+\.yaml", row.split("|")[1]))
    on_disk = {f"suites/{p.name}" for p in (REPO / "suites").glob("*.yaml")}
    assert on_disk - listed == set(), "suites missing from README's table"
    assert listed - on_disk == set(), "README's table names suites that do not exist"


def test_ci_runs_the_readmes_test_command_verbatim() -> None:
    text = README.read_text(encoding="utf-8")
    run_tests = text[: text.index("## ")]  # the set-up part above the first section
    blocks = re.findall(r"Run the tests:\n\n    (.+)\n", run_tests)
    assert len(blocks) == 1, "README has no 'Run the tests:' command"
    ci = (REPO / ".ci" / "run").read_text(encoding="utf-8")
    assert blocks[0] in ci.splitlines(), ".ci/run no longer runs README's test command verbatim"


def test_quickstart_needs_no_sudo() -> None:
    # A root-only machine has no sudo (exit 127): the line must pick it up only when present.
    text = README.read_text(encoding="utf-8")
    first = re.search(r"\n    (.*apt-get.*halbench run suites/quickstart\.yaml)\n", text)
    assert first is not None
    line = first.group(1)
    assert not re.search(r"(^|[;&|] *)sudo ", line)
    assert "command -v sudo" in line


def test_the_documentation_list_names_every_doc() -> None:
    listed = set(
        re.findall(r"^- (docs/[\w.-]+\.md):", _section(README.read_text(), "Documentation"), re.M)
    )
    on_disk = {f"docs/{p.name}" for p in (REPO / "docs").glob("*.md")}
    assert on_disk - listed == set(), "docs missing from README's Documentation list"
    assert listed - on_disk == set(), "README's Documentation list names docs that do not exist"
