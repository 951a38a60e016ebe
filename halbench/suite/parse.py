"""Suite files -> a checked Suite: schema validation, then the checks that need registries.

    suite = load_suite(path)     # bounded YAML (yaml_file.py), the models, checks.py
    suite = parse_suite(doc, path)

Every problem is reported as one line naming the file and the field, before anything runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import ValidationError

from halbench import data, models
from halbench.checks import short
from halbench.errors import UserError
from halbench.plugins import load_plugins
from halbench.suite.checks import check_dataset, check_losses, check_model, check_resources
from halbench.suite.models import Suite
from halbench.suite.tune_checks import check_tune
from halbench.suite.yaml_file import load_yaml_file


def _loc(loc: tuple[Any, ...]) -> str:
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


def format_validation_error(path: Path, err: ValidationError) -> str:
    first = err.errors()[0]
    loc = _loc(tuple(first["loc"]))
    if first["type"] == "extra_forbidden":
        msg = "unknown key"
    elif first["type"] == "missing":
        msg = "required key is missing"
        if loc == "datasets":
            loc = "dataset"
    else:
        msg = first["msg"].removeprefix("Value error, ")
        if "input" in first and first["type"] not in ("model_type", "dict_type", "value_error"):
            # short: never repr a huge (or alias-expanded) value into a message.
            msg += f" (got {short(first['input'])})"
    more = len(err.errors()) - 1
    tail = f" (and {more} more problem{'s' if more > 1 else ''})" if more else ""
    return f"{path}: {loc}: {msg}{tail}"


def parse_suite(doc: Any, path: Path) -> Suite:
    """Validate a loaded YAML document; raise UserError naming the file and field."""
    if not isinstance(doc, dict):
        raise UserError(f"{path}: expected a mapping of suite keys at the top level")
    try:
        suite = Suite.model_validate(doc)
    except ValidationError as err:
        raise UserError(format_validation_error(path, err)) from None
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
