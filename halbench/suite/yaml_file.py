"""Reading a suite file safely: bounded bytes, a safe YAML loader, bounded structure.

Whatever a suite file is (a FIFO, /proc/self/mem, 50 MB of comments, a billion-laughs alias
bomb, a mapping nested 100,000 deep), reading it ends in well under a second with either a
document or one-line UserError naming the file (and the line where the YAML is at fault).

    text = read_suite_text(path)            # bytes checks, UTF-8
    data = parse_yaml(text, path)           # safe, no duplicate keys, depth/alias budgets
    data = load_yaml_file(path)             # both
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path
from typing import Any

import yaml

from halbench.checks import short
from halbench.errors import UserError

MAX_BYTES = 1_000_000  # suites are a few KB; a 1 MB cap keeps parsing under a second
MAX_DEPTH = 50  # a suite nests 4 deep; the composer recurses once per level
MAX_ALIASES = 1_000  # `*name` references in one document
MAX_ALIAS_NODES = 10_000  # nodes all aliases together stand for once expanded

# libyaml's parser when present (10x faster); the pure-Python one otherwise. Both are safe.
_BaseLoader: type = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class SuiteLoader(_BaseLoader):  # type: ignore[misc, valid-type]
    """A safe loader whose mappings refuse a key given twice (YAML would keep the last)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # `<<: *base` keys are meant to be overridden by the node's own keys
            key = self.construct_object(key_node, deep=True)
            try:
                duplicate = key in seen
                seen.add(key)
            except TypeError:
                continue  # unhashable: the base class says so with its own mark
            if duplicate:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {short(key)}", key_node.start_mark
                )
        return super().construct_mapping(node, deep=deep)


def read_suite_text(path: str | Path, *, limit: int = MAX_BYTES) -> str:
    """The file's text, refusing anything but a readable regular UTF-8 file of <= limit bytes.

    Never reads more than limit + 1 bytes and never blocks (a FIFO is refused before it is
    opened, and the open is non-blocking in case one replaces the file in between).
    """
    path = Path(path)
    try:
        before = os.stat(path)
    except FileNotFoundError:
        raise UserError(f"{path}: suite file not found") from None
    except OSError as err:
        raise UserError(f"{path}: cannot read the suite file ({_reason(err)})") from None
    except ValueError:  # an embedded NUL byte in the path
        raise UserError(f"{short(str(path))}: not a valid file name") from None
    _require_regular(path, before.st_mode)
    if before.st_size > limit:
        raise UserError(f"{path}: suite file is {before.st_size} bytes; the limit is {limit}")
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except OSError as err:
        raise UserError(f"{path}: cannot read the suite file ({_reason(err)})") from None
    try:
        opened = os.fstat(fd)
        _require_regular(path, opened.st_mode)  # swapped for a FIFO between stat and open
        blob = _read_at_most(fd, limit + 1, path)
        after = os.fstat(fd)
    finally:
        os.close(fd)
    if len(blob) > limit:
        # A size-0 "regular" file that streams (/proc) or one still being written.
        raise UserError(f"{path}: suite file is over the limit of {limit} bytes")
    # /proc files report size 0 and are read as they stream; any other size must hold still.
    if opened.st_size and (len(blob) != opened.st_size or after.st_size != opened.st_size):
        raise UserError(f"{path}: suite file changed while being read; try again")
    try:
        return blob.decode("utf-8")
    except UnicodeDecodeError as err:
        raise UserError(
            f"{path}: not a text file (expected UTF-8 YAML; bad byte at offset {err.start})"
        ) from None


def parse_yaml(text: str, path: str | Path) -> Any:
    """One YAML document through SuiteLoader, after a flat pass over its events that bounds
    nesting depth and alias expansion (so that neither the composer's recursion nor a repr or
    hash of an alias bomb can run away)."""
    path = Path(path)
    try:
        _check_events(text, path)
        loader = SuiteLoader(text)
        try:
            return loader.get_single_data()
        finally:
            loader.dispose()
    except yaml.YAMLError as err:
        raise UserError(_yaml_message(path, err)) from None
    except RecursionError:  # cannot happen below MAX_DEPTH; kept so that it stays one line
        raise UserError(f"{path}: YAML nested too deeply") from None


def load_yaml_file(path: str | Path, *, limit: int = MAX_BYTES) -> Any:
    """read_suite_text + parse_yaml."""
    return parse_yaml(read_suite_text(path, limit=limit), path)


def _check_events(text: str, path: Path) -> None:
    """Depth, recursive aliases and the expansion budget, from the event stream (no recursion).

    sizes[anchor] is the number of nodes the anchored node stands for, aliases inside it
    counted at their own expanded size, so nested bombs are measured without expanding them.
    """
    loader = _BaseLoader(text)
    # One frame per open collection: [anchor or None, nodes so far in it].
    stack: list[list[Any]] = []
    sizes: dict[str, int] = {}
    aliases = expanded = 0
    try:
        while loader.check_event():
            event = loader.get_event()
            line = event.start_mark.line + 1 if event.start_mark else 0
            if isinstance(event, yaml.CollectionStartEvent):
                if len(stack) >= MAX_DEPTH:
                    raise UserError(_at(path, line, f"nested deeper than {MAX_DEPTH} levels"))
                stack.append([event.anchor, 1])
            elif isinstance(event, yaml.CollectionEndEvent):
                anchor, count = stack.pop()
                if anchor is not None:
                    sizes[anchor] = count
                if stack:
                    stack[-1][1] += count
            elif isinstance(event, yaml.ScalarEvent):
                if event.anchor is not None:
                    sizes[event.anchor] = 1
                if stack:
                    stack[-1][1] += 1
            elif isinstance(event, yaml.AliasEvent):
                if any(frame[0] == event.anchor for frame in stack):
                    raise UserError(_at(path, line, f"recursive alias *{event.anchor[:40]}"))
                if event.anchor not in sizes:
                    continue  # undefined: the composer reports it with its mark
                aliases += 1
                expanded += sizes[event.anchor]
                if aliases > MAX_ALIASES or expanded > MAX_ALIAS_NODES:
                    raise UserError(
                        _at(
                            path,
                            line,
                            f"aliases expand beyond the budget of {MAX_ALIASES} aliases / "
                            f"{MAX_ALIAS_NODES} nodes (an alias bomb?)",
                        )
                    )
                if stack:
                    stack[-1][1] += sizes[event.anchor]
    finally:
        loader.dispose()


def _require_regular(path: Path, mode: int) -> None:
    if stat.S_ISDIR(mode):
        raise UserError(f"{path}: is a directory (expected a suite YAML file)")
    if not stat.S_ISREG(mode):
        kind = (
            "a FIFO"
            if stat.S_ISFIFO(mode)
            else "a socket"
            if stat.S_ISSOCK(mode)
            else "a device"
            if stat.S_ISCHR(mode) or stat.S_ISBLK(mode)
            else "not a regular file"
        )
        raise UserError(f"{path}: is {kind}, not a regular file (expected a suite YAML file)")


def _read_at_most(fd: int, size: int, path: Path) -> bytes:
    chunks: list[bytes] = []
    left = size
    while left > 0:
        try:
            chunk = os.read(fd, min(left, 1 << 16))
        except BlockingIOError:
            raise UserError(f"{path}: suite file would block (not a regular file)") from None
        except OSError as err:  # EIO from /proc/self/mem, EISDIR, ...
            raise UserError(f"{path}: cannot read the suite file ({_reason(err)})") from None
        if not chunk:
            break
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _reason(err: OSError) -> str:
    if err.errno in (errno.EACCES, errno.EPERM):
        return "permission denied"
    return err.strerror or type(err).__name__


def _at(path: Path, line: int, problem: str) -> str:
    return f"{path}: invalid YAML at line {line}: {problem}"


def _yaml_message(path: Path, err: yaml.YAMLError) -> str:
    mark = getattr(err, "problem_mark", None) or getattr(err, "context_mark", None)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
    problem = getattr(err, "problem", None) or (str(err).splitlines() or [type(err).__name__])[0]
    problem = " ".join(str(problem).split())[:200]
    return f"{path}: invalid YAML{where}: {problem}"
