"""The tune:/final: sections: space parsing, validation, deterministic sampling, selection."""

from __future__ import annotations

import math

import pytest
from pydantic import ValidationError

from halbench.suite.tune import (
    Dist,
    FinalConfig,
    TuneConfig,
    best_trial,
    check_values,
    config_columns,
    parse_dist,
    parse_space,
    sample_configs,
    split_config,
)

LABELS = {"hal": ["hal"], "nca": ["nca"]}


def test_parse_each_distribution() -> None:
    assert parse_dist({"uniform": [4, 64]}, "x") == Dist("uniform", (4.0, 64.0))
    assert parse_dist({"loguniform": [1e-4, 1e-2]}, "x").kind == "loguniform"
    assert parse_dist({"randint": [1, 5]}, "x") == Dist("randint", (1, 5))
    assert parse_dist({"choice": [64, 128]}, "x").args == (64, 128)


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ({"uniform": [5, 5]}, "empty or inverted"),
        ({"uniform": [6, 5]}, "empty or inverted"),
        ({"loguniform": [0, 1]}, "above 0"),
        ({"loguniform": [-1, 1]}, "above 0"),
        ({"uniform": [0, math.inf]}, "finite"),
        ({"uniform": [0, math.nan]}, "finite"),
        ({"normal": [0, 1]}, "unknown distribution"),
        ({"uniform": [0, 1], "choice": [1]}, "one distribution"),
        ({"uniform": [0]}, "[low, high]"),
        ({"uniform": []}, "non-empty list"),
        ({"randint": [0.5, 3]}, "integers"),
        ({"uniform": [True, 3]}, "numbers"),
        ({"choice": [1, 1]}, "unique"),
        ({"choice": [[1], 2]}, "numbers, strings"),
        (0.1, "one distribution"),
    ],
)
def test_bad_distributions_name_the_field(value: object, fragment: str) -> None:
    with pytest.raises(ValueError, match="tune.space.lr") as err:
        parse_dist(value, "tune.space.lr")
    assert fragment in str(err.value)
    assert "\n" not in str(err.value)


def test_space_splits_shared_and_per_loss_keys() -> None:
    space = parse_space(
        {
            "lr": {"loguniform": [1e-4, 1e-2]},
            "batch_size": {"choice": [64, 128]},
            "hal": {"scale": {"uniform": [4, 64]}},
        },
        LABELS,
    )
    assert set(space.shared) == {"lr", "batch_size"}
    assert set(space.per_loss) == {"hal"}
    assert set(space.for_loss("hal")) == {"lr", "batch_size", "loss.scale"}
    assert set(space.for_loss("nca")) == {"lr", "batch_size"}
    assert space.tuned_axes() == {"batch_size"}


def test_loss_name_applies_to_each_labelled_entry() -> None:
    space = parse_space(
        {"hal": {"scale": {"uniform": [4, 64]}}}, {"hal": ["hal-a", "hal-b"], "hal-a": ["hal-a"]}
    )
    assert set(space.per_loss) == {"hal-a", "hal-b"}


@pytest.mark.parametrize(
    ("space", "fragment"),
    [
        ({}, "empty"),
        ({"bogus": {"uniform": [0, 1]}}, "tune.space.bogus: unknown key"),
        ({"hal": {}}, "tune.space.hal: expected the loss's parameters"),
        ({"hal": {"scale": {"uniform": [2, 1]}}}, "tune.space.hal.scale.uniform"),
    ],
)
def test_bad_spaces(space: dict, fragment: str) -> None:
    with pytest.raises(ValueError, match="tune.space") as err:
        parse_space(space, LABELS)
    assert fragment in str(err.value)


def test_check_values_tries_both_ends_and_names_the_field() -> None:
    space = parse_space({"hal": {"scale": {"uniform": [-1, 64]}}}, LABELS)
    tried = []

    def check_loss(label: str, param: str, value: object) -> None:
        tried.append(value)
        if value < 0:
            raise ValueError("scale must be > 0")

    with pytest.raises(ValueError, match=r"tune.space.hal.scale: -1.0 is refused: scale must"):
        check_values(space, lambda k, v: None, check_loss)
    assert tried == [-1.0]


def test_sampling_is_deterministic_per_group_and_in_range() -> None:
    space = parse_space(
        {"lr": {"loguniform": [1e-4, 1e-2]}, "hal": {"scale": {"uniform": [4, 64]}}}, LABELS
    ).for_loss("hal")
    a = sample_configs(space, 8, seed=0, group="fashion-mnist/hal")
    b = sample_configs(space, 8, seed=0, group="fashion-mnist/hal")
    c = sample_configs(space, 8, seed=0, group="fashion-mnist/nca")
    assert a == b
    assert a != c
    assert len({cfg["lr"] for cfg in a}) == 8
    assert all(1e-4 <= cfg["lr"] <= 1e-2 and 4 <= cfg["loss.scale"] <= 64 for cfg in a)
    assert all(type(cfg["lr"]) is float for cfg in a)


def test_split_and_columns() -> None:
    cfg = {"lr": 0.01, "loss.scale": 8.0}
    assert split_config(cfg) == ({"lr": 0.01}, {"scale": 8.0})
    assert config_columns(cfg) == {"cfg_lr": 0.01, "cfg_loss_scale": 8.0}


def _row(i: int, val: float, epochs_run: int = 6, status: str = "ok") -> dict:
    return {
        "trial_index": i,
        "last_val": val,
        "epochs_run": epochs_run,
        "epochs": 6,
        "status": status,
    }


def test_best_trial_prefers_survivors_then_score_then_earlier() -> None:
    rows = [
        _row(0, 0.7),
        _row(1, 0.9, epochs_run=1),
        _row(2, 0.8),
        _row(3, 0.8),
        _row(4, 0.99, status="error"),
    ]
    assert best_trial(rows)["trial_index"] == 2
    assert best_trial([_row(0, 0.5, 1), _row(1, 0.6, 2)])["trial_index"] == 1
    assert best_trial([_row(0, math.nan)]) is None
    assert best_trial([]) is None


def test_section_models_validate() -> None:
    cfg = TuneConfig.model_validate({"budget": 8, "epochs": 6, "space": {"lr": {}}})
    assert cfg.scheduler == "asha" and cfg.validation == 0.2
    for bad in (
        {"validation": 1.5},
        {"validation": 0.0},
        {"metric": "acc"},
        {"budget": 0},
        {"scheduler": "hyperband"},
        {"bogus": 1},
    ):
        with pytest.raises(ValidationError):
            TuneConfig.model_validate({"budget": 8, "epochs": 6, "space": {}, **bad})
    assert (
        TuneConfig.model_validate(
            {"budget": 1, "epochs": 1, "space": {}, "validation": 500}
        ).validation
        == 500
    )
    assert FinalConfig.model_validate({"seeds": [0, 1], "epochs": 3}).train_on == "train"
    with pytest.raises(ValidationError):
        FinalConfig.model_validate({"seeds": [0, 0], "epochs": 3})


def test_replicates_and_budget_epochs_validate_and_hide_their_defaults() -> None:
    base = {"budget": 8, "epochs": 6, "space": {}}
    cfg = TuneConfig.model_validate(base)
    assert cfg.replicates == 1 and cfg.budget_epochs is None
    # absent from the dump at their defaults: a suite without them hashes as before
    assert "replicates" not in cfg.model_dump() and "budget_epochs" not in cfg.model_dump()
    set_ = TuneConfig.model_validate({**base, "replicates": 3, "budget_epochs": 40})
    assert set_.model_dump(mode="json")["replicates"] == 3
    assert set_.model_dump(mode="json")["budget_epochs"] == 40
    for bad in ({"replicates": 0}, {"replicates": 1.5}, {"budget_epochs": 0}):
        with pytest.raises(ValidationError):
            TuneConfig.model_validate({**base, **bad})
    # a budget below one trial's epochs: no trial could train to the end
    with pytest.raises(ValidationError, match="budget_epochs 5 is less than tune.epochs 6"):
        TuneConfig.model_validate({**base, "budget_epochs": 5})
    assert TuneConfig.model_validate({**base, "budget_epochs": 6}).budget_epochs == 6
