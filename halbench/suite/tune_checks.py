"""Load-time checks of a suite's `tune:` / `final:` sections (they need the loss registry).

Each check tries what a trial would do with the value (TrainConfig validation, building the
loss) so that a bad value fails before any trial, as one line naming the field.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from halbench import losses
from halbench.data import validation_count
from halbench.errors import UserError
from halbench.suite.checks import Shape
from halbench.suite.models import Suite, TrainConfig
from halbench.suite.tune import GRID_KEYS, Space, check_values, parse_space


def loss_labels(suite: Suite) -> dict[str, list[str]]:
    """Keys a loss section of `tune.space` may use -> the loss labels they name."""
    out: dict[str, list[str]] = {}
    for loss in suite.losses:
        for key in dict.fromkeys((loss.display, loss.name)):
            out.setdefault(key, []).append(loss.display)
    return out


def suite_space(suite: Suite) -> Space:
    """The parsed space of a tuned suite (checked at load: no error expected here)."""
    assert suite.tune is not None
    return parse_space(suite.tune.space, loss_labels(suite))


def check_tune(suite: Suite, shapes: Sequence[Shape], path: Path) -> None:
    """Every mistake in tune:/final: -> UserError `path: tune.<field>: ...`."""
    tune, final = suite.tune, suite.final
    if tune is None:
        raise UserError(f"{path}: final: needs a tune: section (the configuration it retrains)")
    if final is None:
        raise UserError(f"{path}: tune: needs a final: section (seeds and epochs of the retrain)")
    if tune.grace_epochs > tune.epochs:
        raise UserError(
            f"{path}: tune.grace_epochs: {tune.grace_epochs} is more than tune.epochs "
            f"({tune.epochs})"
        )
    if tune.metric.startswith("knn_acc_") and int(tune.metric[8:]) not in suite.eval.ks:
        raise UserError(
            f"{path}: tune.metric: {tune.metric} needs k = {tune.metric[8:]} in eval.ks "
            f"({suite.eval.ks})"
        )
    if tune.search == "optuna" and importlib.util.find_spec("optuna") is None:
        raise UserError(
            f"{path}: tune.search: optuna is not installed (pip install 'halbench[optuna]')"
        )

    train_parts = []
    for i, shape in enumerate(shapes):
        if shape.train is None:
            continue
        try:
            n = validation_count(tune.validation, shape.train)
        except ValueError as err:
            raise UserError(f"{path}: tune.validation: {err} (datasets[{i}])") from None
        train_parts.append(shape.train - n)
    try:
        space = parse_space(tune.space, loss_labels(suite))
        check_values(
            space,
            lambda key, value: _check_shared(suite, key, value, min(train_parts, default=None)),
            lambda label, param, value: _check_loss(suite, shapes, label, param, value),
        )
    except ValueError as err:
        raise UserError(f"{path}: {str(err).splitlines()[0][:400]}") from None


def _check_shared(suite: Suite, key: str, value: Any, train_part: int | None) -> None:
    if key in GRID_KEYS:
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{key} must be a positive integer")
        if key == "batch_size" and train_part is not None and value > train_part:
            raise ValueError(f"more than the {train_part} rows of the training part")
        return

    assert suite.tune is not None and suite.final is not None
    base = suite.train.model_dump()
    # A tuned value must suit both the tuning trials and the final ones (warmup <= epochs).
    for epochs in {suite.tune.epochs, suite.final.epochs}:
        try:
            TrainConfig.model_validate({**base, "epochs": epochs, key: value})
        except Exception as err:  # noqa: BLE001 - pydantic's ValidationError, one line
            errors = getattr(err, "errors", None)
            msg = errors()[0]["msg"] if callable(errors) else str(err)
            raise ValueError(msg.removeprefix("Value error, ")) from None


def _check_loss(suite: Suite, shapes: Sequence[Shape], label: str, param: str, value: Any) -> None:

    spec = next(loss for loss in suite.losses if loss.display == label)
    classes = min(shapes[0].classes or 10, 1000)
    dim = min(min(suite.grid.embedding_dim), 64)
    try:
        losses.build(
            spec.name,
            num_classes=classes,
            embedding_dim=dim,
            memory_size=64,
            **{**spec.params, param: value},
        )
    except (ImportError, ArithmeticError, RuntimeError, AssertionError, IndexError) as err:
        raise ValueError(str(err) or type(err).__name__) from None
