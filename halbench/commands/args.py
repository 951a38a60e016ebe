"""The command line's argument parser and argument types: one-line errors, no abbreviations."""

from __future__ import annotations

import argparse
import difflib
from typing import Any

from halbench.errors import UserError


class Parser(argparse.ArgumentParser):
    """argparse, but usage mistakes are one line and exit 2 like every other user error; no
    abbreviated options (`--num-cpu` is a mistake, not --num-cpus), and a misspelled option
    gets the nearest real one."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, allow_abbrev=False, **kwargs)
        self.commands: dict[str, argparse.ArgumentParser] = {}

    def error(self, message: str) -> None:  # type: ignore[override]
        command = self.prog.removeprefix("halbench").strip()  # main prints "halbench: error:"
        raise UserError(f"{command}: {message}" if command else message)

    def parse_args(self, args: Any = None, namespace: Any = None) -> argparse.Namespace:  # type: ignore[override]
        parsed, extras = self.parse_known_args(args, namespace)
        if extras:
            command = self.commands.get(getattr(parsed, "command", None) or "", self)
            self.error(f"unrecognized arguments: {' '.join(extras)}{hint(extras, command)}")
        return parsed


def hint(extras: list[str], parser: argparse.ArgumentParser) -> str:
    """' (did you mean --num-gpus?)' for the first unknown option close to a real one."""
    known = [o for action in parser._actions for o in action.option_strings]
    for word in extras:
        if word.startswith("--"):
            close = difflib.get_close_matches(word.split("=", 1)[0], known, n=1, cutoff=0.6)
            if close:
                return f" (did you mean {close[0]}?)"
    return ""


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def csv_list(text: str) -> list[str]:
    return [x.strip() for x in text.split(",") if x.strip()]


def ints(text: str) -> list[int]:
    try:
        return [int(t) for t in csv_list(text)]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, got {text!r}"
        ) from None
