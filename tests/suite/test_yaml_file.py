"""Reading suite files: special and huge files, the safe bounded YAML loader."""

from __future__ import annotations

import os
import signal
import time
import tracemalloc
from pathlib import Path

import pytest
import yaml

from halbench.errors import UserError
from halbench.suite import yaml_file as suite_file
from halbench.suite.yaml_file import (
    MAX_DEPTH,
    SuiteLoader,
    load_yaml_file,
    parse_yaml,
    read_suite_text,
)

BOMB = 'a: &a ["l","l","l","l","l","l","l","l","l"]\n' + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{','.join([f'*{chr(97 + i)}'] * 9)}]\n" for i in range(8)
)


@pytest.fixture(autouse=True)
def _alarm():
    """Nothing here may block: a FIFO opened for reading would, without O_NONBLOCK."""
    signal.alarm(10)
    yield
    signal.alarm(0)


def _refused(path: Path | str, expected: str, **kw: int) -> str:
    with pytest.raises(UserError) as err:
        read_suite_text(path, **kw)
    message = str(err.value)
    assert message.startswith(str(path)) and "\n" not in message, message
    assert expected in message, message
    return message


def test_a_plain_file_is_read(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text("name: ü\n", encoding="utf-8")
    assert read_suite_text(path) == "name: ü\n"
    assert load_yaml_file(path) == {"name": "ü"}


def test_missing_directory_fifo_device(tmp_path: Path) -> None:
    _refused(tmp_path / "none.yaml", "suite file not found")
    _refused(tmp_path, "is a directory")
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    _refused(fifo, "is a FIFO")
    _refused("/dev/null", "is a device")


def test_a_fifo_swapped_in_after_the_stat_does_not_block(tmp_path, monkeypatch) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    real_stat = os.stat
    regular = real_stat(__file__)
    monkeypatch.setattr(suite_file.os, "stat", lambda p: regular if p == fifo else real_stat(p))
    _refused(fifo, "is a FIFO")  # the open is non-blocking and fstat sees the FIFO


def test_permission_denied_is_one_line(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "s.yaml"
    path.write_text("name: x\n")

    def denied(*args: object) -> int:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(suite_file.os, "open", denied)
    _refused(path, "permission denied")


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads mode-000 files")
def test_mode_000_file_and_directory(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text("name: x\n")
    path.chmod(0)
    _refused(path, "permission denied")
    closed = tmp_path / "closed"
    closed.mkdir()
    (closed / "s.yaml").write_text("name: x\n")
    closed.chmod(0)
    try:
        _refused(closed / "s.yaml", "permission denied")
    finally:
        closed.chmod(0o700)


def test_proc_files_stream_within_the_limit() -> None:
    assert "Name:" in read_suite_text("/proc/self/status")
    _refused("/proc/self/status", "over the limit of 10 bytes", limit=10)
    _refused("/proc/self/mem", "cannot read")


def test_a_big_file_is_refused_by_its_size_without_reading(tmp_path, monkeypatch) -> None:
    path = tmp_path / "big.yaml"
    path.write_bytes(b"# x\n" * 500_000)
    monkeypatch.setattr(suite_file.os, "read", lambda *a: pytest.fail("read a file over the limit"))
    _refused(path, "2000000 bytes; the limit is 1000000")


def test_a_file_that_grows_while_read_is_refused_and_read_boundedly(tmp_path, monkeypatch):
    path = tmp_path / "grows.yaml"
    path.write_bytes(b"name: x\n")
    real_read = os.read
    total = 0

    def read_and_grow(fd: int, n: int) -> bytes:
        nonlocal total
        with path.open("ab") as f:
            f.write(b"#" * 1_000_000)
        chunk = real_read(fd, n)
        total += len(chunk)
        return chunk

    monkeypatch.setattr(suite_file.os, "read", read_and_grow)
    _refused(path, "over the limit")
    assert total <= suite_file.MAX_BYTES + 1

    path.write_bytes(b"name: x\n")
    monkeypatch.setattr(suite_file.os, "read", real_read)
    calls = 0

    def grow_once(fd: int, n: int) -> bytes:
        nonlocal calls
        calls += 1
        if calls == 1:
            with path.open("ab") as f:
                f.write(b"# more\n")
        return real_read(fd, n)

    monkeypatch.setattr(suite_file.os, "read", grow_once)
    _refused(path, "changed while being read")


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_bytes("description: caf\xe9\n".encode("latin-1"))
    _refused(path, "not a text file (expected UTF-8 YAML; bad byte at offset 16)")


def _yaml_refused(text: str, expected: str) -> str:
    with pytest.raises(UserError) as err:
        parse_yaml(text, "s.yaml")
    message = str(err.value)
    assert message.startswith("s.yaml: ") and "\n" not in message, message
    assert expected in message, message
    return message


def test_duplicate_keys_name_the_key_and_line() -> None:
    _yaml_refused("a: 1\nb: 2\na: 3\n", "at line 3, column 1: duplicate key 'a'")
    _yaml_refused("a: {x: 1, x: 2}\n", "line 1, column 11: duplicate key 'x'")
    _yaml_refused("- {k: 1}\n- {k: 1, k: 2}\n", "line 2")
    _yaml_refused("1: a\n1: b\n", "duplicate key 1")
    # A merge key's values are meant to be overridden by the mapping's own keys.
    assert parse_yaml("b: &b {x: 1, y: 2}\nc: {<<: *b, x: 3}\n", "s.yaml")["c"] == {"x": 3, "y": 2}


def test_depth_limit_without_recursion_error() -> None:
    ok = "a: " + "[" * (MAX_DEPTH - 1) + "]" * (MAX_DEPTH - 1)
    assert parse_yaml(ok, "s.yaml")
    _yaml_refused("a: " + "[" * MAX_DEPTH + "]" * MAX_DEPTH, f"deeper than {MAX_DEPTH}")
    for text in (
        "a: " + "{a: " * 100_000 + "1" + "}" * 100_000,
        "a: " + "[" * 100_000 + "]" * 100_000,
        "".join("  " * i + "k:\n" for i in range(200)) + "  " * 200 + "v\n",
    ):
        start = time.perf_counter()
        _yaml_refused(text, "s.yaml: invalid YAML at line")
        assert time.perf_counter() - start < 1.0


def test_billion_laughs_is_refused_fast_and_small() -> None:
    tracemalloc.start()
    start = time.perf_counter()
    try:
        _yaml_refused(BOMB, "aliases expand beyond the budget")
        seconds = time.perf_counter() - start
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert seconds < 0.5 and peak < 20 * 2**20, (seconds, peak)


def test_alias_budget_counts_expanded_nodes_and_aliases() -> None:
    assert parse_yaml("p: &p {x: 1}\nq: *p\nr: *p\n", "s.yaml")["r"] == {"x": 1}
    big = "big: &b [" + ",".join(["0"] * 6000) + "]\nc: [*b, *b]\n"
    _yaml_refused(big, "aliases expand beyond the budget")
    many = "a: &a 1\nl: [" + ",".join(["*a"] * (suite_file.MAX_ALIASES + 1)) + "]\n"
    _yaml_refused(many, "aliases expand beyond the budget")


def test_recursive_and_undefined_aliases() -> None:
    _yaml_refused("a: &x [1, *x]\n", "line 1: recursive alias *x")
    _yaml_refused("a: &m {b: {c: *m}}\n", "recursive alias *m")
    _yaml_refused("a: *nope\n", "found undefined alias")


def test_the_loader_is_safe() -> None:
    assert issubclass(SuiteLoader, yaml.SafeLoader) or issubclass(SuiteLoader, yaml.CSafeLoader)
    _yaml_refused("a: !!python/object/apply:os.system [echo hi]\n", "could not determine")
    _yaml_refused("a: [unclosed\n", "invalid YAML at line")
    _yaml_refused("a: 1\n---\nb: 2\n", "another document")


def test_a_nul_in_the_path_is_one_line() -> None:
    with pytest.raises(UserError, match="not a valid file name"):
        read_suite_text("a\x00b.yaml")
