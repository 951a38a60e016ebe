"""optim.py: the trial's optimizer groups and learning-rate schedules."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from halbench.suite import TrainConfig
from halbench.trial import optim


def _train_cfg(**kw: Any) -> TrainConfig:
    return TrainConfig.model_validate({"epochs": 3, "optimizer": "adamw", "lr": 3e-3, **kw})


def test_lr_schedules() -> None:
    warm_cos = optim.lr_factor(_train_cfg(epochs=4, warmup_epochs=1), steps_per_epoch=10)
    assert [warm_cos(s) for s in (0, 4, 9)] == pytest.approx([0.1, 0.5, 1.0])
    assert warm_cos(10) == pytest.approx(1.0)
    assert warm_cos(25) == pytest.approx(0.5)  # halfway through the 30 cosine steps
    assert warm_cos(40) == pytest.approx(0.0, abs=1e-12)
    step = optim.lr_factor(
        _train_cfg(epochs=6, schedule="step", step_size=2, gamma=0.5), steps_per_epoch=10
    )
    assert [step(s) for s in (0, 19, 20, 45)] == [1.0, 1.0, 0.5, 0.25]
    const = optim.lr_factor(_train_cfg(schedule="constant"), steps_per_epoch=10)
    assert const(0) == const(29) == 1.0


def test_optimizer_groups_and_loss_lr() -> None:
    from halbench import losses

    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.BatchNorm1d(8))
    hal = losses.build("hal", num_classes=3, embedding_dim=8)
    opt = optim.build_optimizer(
        _train_cfg(optimizer="sgd", lr=0.1, weight_decay=1e-4, loss_lr_mult=10.0), model, hal
    )
    assert isinstance(opt, torch.optim.SGD) and opt.defaults["nesterov"]
    decayed = [g for g in opt.param_groups if g["weight_decay"] > 0]
    assert len(decayed) == 1 and [p.ndim for p in decayed[0]["params"]] == [2]
    anchor_group = next(g for g in opt.param_groups if any(p is hal.weight for p in g["params"]))
    assert anchor_group["lr"] == pytest.approx(1.0) and anchor_group["weight_decay"] == 0.0
    n_params = sum(len(g["params"]) for g in opt.param_groups)
    assert n_params == len(list(model.parameters())) + len(list(hal.parameters()))
