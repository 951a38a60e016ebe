"""A named registry of factories (losses, models, data sets) with loud, helpful errors."""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps explicit names to objects (classes or factory functions) of one kind.

    `kind` names what is registered ("loss", "model", "dataset"); it appears in errors.
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator registering its target under `name`; a duplicate name is a bug."""
        if not name or name != name.strip():
            raise ValueError(
                f"{self.kind} name must be a non-empty string without surrounding spaces"
            )

        def decorator(obj: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.kind} '{name}' is already registered")
            self._items[name] = obj
            return obj

        return decorator

    def get(self, name: str) -> T:
        """The object registered as `name`; an unknown name raises a ValueError listing names."""
        try:
            return self._items[name]
        except KeyError:
            pass
        names = self.names()
        message = f"unknown {self.kind} '{name}'; available: {', '.join(names) or '(none)'}"
        close = difflib.get_close_matches(name, names, n=3, cutoff=0.6)
        if close:
            message += f" (did you mean {' or '.join(repr(c) for c in close)}?)"
        raise ValueError(message) from None

    def names(self, pattern: str = "*") -> list[str]:
        """Sorted registered names matching an fnmatch wildcard pattern."""
        return sorted(n for n in self._items if fnmatch.fnmatchcase(n, pattern))

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {self.names()})"
