"""Suite files -> a checked Suite: schema validation, then the checks that need registries.

    suite = load_suite(path)     # bounded YAML (yaml_file.py), the models, checks.py
    suite = parse_suite(doc, path)

Every problem is reported as one line naming the file and the field, before anything runs.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError

from halbench import data, models
from halbench.checks import short
from halbench.errors import UserError
from halbench.plugins import load_plugins
from halbench.suite.checks import check_dataset, check_losses, check_model, check_resources
from halbench.suite.models import Suite
from halbench.suite.tune_checks import check_tune
from halbench.suite.yaml_file import load_yaml_file

MAX_PROBLEMS = 5  # listed in one error; the rest are counted


def _loc(loc: tuple[Any, ...]) -> str:
    """A dotted path from pydantic's loc, without its union and validator tags (no model)."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in ("function-after", "function-before") or str(part).startswith(
            ("function-", "literal[", "constrained-")
        ):
            continue
        else:
            out += f".{part}" if out else str(part)
    return out or "<top level>"


def _model_of(tp: Any) -> type[BaseModel] | None:
    """The pydantic model inside an annotation (Annotated, Optional, a union), if any."""
    if get_origin(tp) is Annotated:
        return _model_of(get_args(tp)[0])
    if get_origin(tp) in (Union, UnionType):
        return next(filter(None, map(_model_of, get_args(tp))), None)
    return tp if isinstance(tp, type) and issubclass(tp, BaseModel) else None


def _inner(tp: Any, index: int) -> Any:
    """The item type of list[X] (index 0) or the value type of dict[K, V] (index 1)."""
    while get_origin(tp) is Annotated:
        tp = get_args(tp)[0]
    args = get_args(tp)
    return args[index] if len(args) > index else Any


def _walk(model: type[BaseModel], loc: tuple[Any, ...], key_last: bool) -> tuple[str, list[str]]:
    """loc as a dotted path through `model`'s fields (union tags dropped), and the field names
    of the model holding its last key (for did-you-mean)."""
    tp: Any = model
    parts: list[str] = []
    siblings: list[str] = []
    for i, part in enumerate(loc):
        inner = _model_of(tp)
        if isinstance(part, int):
            parts.append(f"[{part}]")
            tp = _inner(tp, 0)
        elif inner is not None and part in inner.model_fields:
            parts.append(f".{part}")
            siblings, tp = list(inner.model_fields), inner.model_fields[part].annotation
        elif inner is not None and key_last and i == len(loc) - 1:
            parts.append(f".{part}")  # the unknown key itself
            siblings = list(inner.model_fields)
        elif get_origin(tp) is dict or tp is dict:
            parts.append(f".{part}")
            tp = _inner(tp, 1)
        # else: a union member's tag ("bool", "literal['auto']"): not a key
    return "".join(parts).lstrip(".") or "<top level>", siblings


def _problem(error: Any, path_of: Any) -> tuple[str, str, str]:
    """(dotted location, what is wrong, " (got ...)" or "") for one pydantic error."""
    loc = path_of(error)
    if error["type"] == "extra_forbidden":
        return loc, "unknown key", ""
    if error["type"] == "missing":
        return ("dataset" if loc == "datasets" else loc), "required key is missing", ""
    got = ""
    if "input" in error and error["type"] not in ("model_type", "dict_type", "value_error"):
        # short: never repr a huge (or alias-expanded) value into a message.
        got = f" (got {short(error['input'])})"
    return loc, error["msg"].removeprefix("Value error, "), got


def _either(msgs: list[str]) -> str:
    """A union's alternatives: "Input should be 'auto' or a valid boolean"."""
    head = "Input should be "
    rest = [m.removeprefix(head) if m.startswith(head) else m for m in msgs[1:]]
    return " or ".join([msgs[0], *rest])


def format_validation_error(
    path: Path, err: ValidationError, model: type[BaseModel] | None = None
) -> str:
    """Every problem on one line, `file: field: problem; field: problem`, at most MAX_PROBLEMS
    of them. With the `model` validated, an unknown key names its nearest field
    (did you mean ...?), and a required key it stands for is not listed again as missing."""
    errors = err.errors()
    hints: dict[str, str] = {}  # unknown key's location -> the field it likely meant
    absorbed: set[str] = set()  # missing keys that an unknown key's hint already names

    def path_of(error: Any) -> str:
        if model is None:
            return _loc(tuple(error["loc"]))
        return _walk(model, tuple(error["loc"]), error["type"] == "extra_forbidden")[0]

    if model is not None:
        missing = {path_of(e) for e in errors if e["type"] == "missing"}
        for e in errors:
            if e["type"] != "extra_forbidden":
                continue
            loc, fields = _walk(model, tuple(e["loc"]), key_last=True)
            parent, _, key = loc.rpartition(".")
            close = difflib.get_close_matches(str(key), fields, n=1, cutoff=0.6)
            if close:
                hints[loc] = close[0]
                absorbed.add(f"{parent}.{close[0]}" if parent else close[0])
        absorbed &= missing
    problems: dict[str, list[str]] = {}  # one line per location; a union's alternatives joined
    got: dict[str, str] = {}
    for e in errors:
        loc, msg, got[loc] = _problem(e, path_of)
        if e["type"] == "missing" and loc in absorbed:
            continue
        if loc in hints and e["type"] == "extra_forbidden":
            msg += f" (did you mean {hints[loc]!r}?)"
        if msg not in problems.setdefault(loc, []):
            problems[loc].append(msg)
    lines = [f"{loc}: {_either(msgs)}{got[loc]}" for loc, msgs in problems.items()]
    more = len(lines) - MAX_PROBLEMS
    tail = f"; and {more} more problem{'s' * (more > 1)}" if more > 0 else ""
    return f"{path}: {'; '.join(lines[:MAX_PROBLEMS])}{tail}"


def parse_suite(doc: Any, path: Path) -> Suite:
    """Validate a loaded YAML document; raise UserError naming the file and field."""
    if not isinstance(doc, dict):
        raise UserError(f"{path}: expected a mapping of suite keys at the top level")
    try:
        suite = Suite.model_validate(doc)
    except ValidationError as err:
        raise UserError(format_validation_error(path, err, Suite)) from None
    _check_names(suite, path)
    return suite


def load_suite(path: str | Path) -> Suite:
    """Read, parse and validate a suite file (yaml_file.py bounds the reading)."""
    path = Path(path)
    return parse_suite(load_yaml_file(path), path)


def _check_names(suite: Suite, path: Path) -> None:
    """Unknown datasets, models and losses, and bad parameters, fail before any trial."""
    load_plugins()
    for i, ds in enumerate(suite.datasets):
        if ds.name not in data.DATASETS:
            raise UserError(
                f"{path}: datasets[{i}].name: unknown dataset {short(ds.name)}; "
                f"available: {', '.join(data.available())}"
            )
    if suite.model.backbone not in models.MODELS:
        raise UserError(
            f"{path}: model.backbone: unknown model {short(suite.model.backbone)}; "
            f"available: {', '.join(models.available())}"
        )
    check_resources(suite, path)
    shapes = [check_dataset(suite, i, path) for i in range(len(suite.datasets))]
    check_model(suite, shapes, path)
    check_losses(suite, shapes[0], path)
    if suite.tune is not None or suite.final is not None:
        check_tune(suite, shapes, path)
