"""A named registry of factories (losses, models, data sets) with loud, helpful errors.

`Registry.build` owns parameter checking: an unknown keyword is one ValueError naming it (with
a did-you-mean), and the factory checks types and ranges with halbench.checks, whose messages
name the parameter ("scale must be > 0"). Callers do not check parameters again.
"""

from __future__ import annotations

import difflib
import fnmatch
import inspect
from collections.abc import Callable
from typing import Any, Generic, TypeVar

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

    def parameters(self, name: str) -> dict[str, Any]:
        """The keyword parameters `name`'s factory accepts, with their defaults
        (inspect.Parameter.empty where required); for a class, up its constructors as long as
        they forward **kwargs."""
        return keyword_parameters(self.get(name))

    def check_params(self, name: str, params: dict[str, Any], fixed: tuple[str, ...] = ()) -> None:
        """ValueError naming the first key of `params` that `name` does not accept (with a
        did-you-mean); `fixed` are the parameters the caller sets itself (sizes), which
        `params` may not name."""
        accepted = [key for key in self.parameters(name) if key not in fixed]
        for key in params:
            if key not in accepted:
                close = difflib.get_close_matches(str(key), accepted, n=1)
                hint = f" (did you mean '{close[0]}'?)" if close else ""
                raise ValueError(
                    f"{self.kind} '{name}': unknown parameter '{str(key)[:40]}'; expected one "
                    f"of: {', '.join(accepted) or '(none)'}{hint}"
                )

    def build(self, name: str, fixed: dict[str, Any], params: dict[str, Any]) -> Any:
        """`name`'s factory called with the caller's `fixed` keywords (sizes) and the user's
        `params`, after `check_params`; the factory checks types and ranges."""
        self.check_params(name, params, tuple(fixed))
        return self.get(name)(**fixed, **params)

    def names(self, pattern: str = "*") -> list[str]:
        """Sorted registered names matching an fnmatch wildcard pattern."""
        return sorted(n for n in self._items if fnmatch.fnmatchcase(n, pattern))

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {self.names()})"


def keyword_parameters(factory: Callable[..., Any]) -> dict[str, Any]:
    """Parameters of a function or class that can be passed by keyword, with their defaults;
    for a class, its constructors up the hierarchy as long as they forward **kwargs."""
    found: dict[str, Any] = {}
    targets = (
        [vars(cls)["__init__"] for cls in factory.__mro__ if "__init__" in vars(cls)]
        if isinstance(factory, type)
        else [factory]
    )
    for target in targets:
        signature = inspect.signature(target)
        for param in signature.parameters.values():
            if (
                param.kind in (param.KEYWORD_ONLY, param.POSITIONAL_OR_KEYWORD)
                and param.name != "self"
            ):
                found.setdefault(param.name, param.default)
        if not any(p.kind is p.VAR_KEYWORD for p in signature.parameters.values()):
            break
    return found
