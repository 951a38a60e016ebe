"""Reading a run directory's tables and suite record, checked against the schemas."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import polars as pl

from halbench.errors import UserError

SUITE_JSON = "suite.json"  # the normalized suite, Suite.model_dump(mode="json")
SUITE_YAML = "suite.yaml"  # the suite file as given (older run directories have only this)


def _dtype_fits(actual: pl.DataType, expected: pl.DataType) -> bool:
    """Whether a column read from disk may be cast to its schema type without guessing."""
    if actual == pl.Null or actual == expected:
        return True
    if expected.is_numeric():
        return actual.is_numeric() and (expected.is_float() or actual.is_integer())
    if expected == pl.Utf8:
        return actual in (pl.Utf8, pl.Categorical)
    return isinstance(expected, pl.List) and isinstance(actual, pl.List)


def read_table(
    path: Path, schema: Mapping[str, pl.DataType], required: Sequence[str] = ()
) -> pl.DataFrame:
    """A results parquet file checked against its schema; UserError naming the file and column.

    Columns of `required` must exist without nulls; every schema column present must have the
    schema's type (an integer where a float is expected is fine, a string where a number is
    expected is not); absent optional columns are added as nulls, so that older files read like
    new ones.
    """
    try:
        df = pl.read_parquet(path)
    except Exception as exc:  # noqa: BLE001 - pyarrow/polars raise many types for a bad file
        raise UserError(f"{path}: cannot read parquet file ({exc.__class__.__name__})") from exc
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise UserError(f"{path}: missing column(s) {', '.join(missing)}")
    for name, dtype in schema.items():
        if name in df.columns and not _dtype_fits(df.schema[name], dtype):
            raise UserError(f"{path}: column {name}: expected {dtype}, got {df.schema[name]}")
    for name in required:  # key columns: a null cannot be grouped or joined on
        if nulls := df[name].null_count():
            raise UserError(f"{path}: column {name}: {nulls} null value(s) in a key column")
    return df.with_columns(
        [pl.col(c).cast(t) for c, t in schema.items() if c in df.columns]
        + [pl.lit(None, dtype=t).alias(c) for c, t in schema.items() if c not in df.columns]
    )


def read_suite_record(run_dir: Path) -> dict[str, Any]:
    """The suite a run directory keeps, as plain data: suite.json (normalized) when present,
    else suite.yaml as the user wrote it; {} when neither. UserError naming a bad file."""
    import yaml

    for name, parse in ((SUITE_JSON, json.loads), (SUITE_YAML, yaml.safe_load)):
        path = Path(run_dir) / name
        if not path.is_file():
            continue
        try:
            data = parse(path.read_text())
        except (OSError, ValueError, yaml.YAMLError) as exc:  # ValueError: also bad UTF-8
            raise UserError(f"{path}: cannot read the suite ({exc.__class__.__name__})") from exc
        if not isinstance(data, dict):
            raise UserError(f"{path}: expected a mapping, got {type(data).__name__}")
        return data
    return {}
