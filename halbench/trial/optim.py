"""The optimizer and the learning-rate schedule of a trial, from the suite's `train` section."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from halbench import losses
from halbench.suite import TrainConfig


def build_optimizer(
    train: TrainConfig, model: nn.Module, loss_fn: losses.KNNLoss
) -> torch.optim.Optimizer:
    """SGD (momentum, optional Nesterov) or AdamW over the model's and the loss's parameters.

    Weight decay applies to the model's weight matrices and kernels, not to its biases and
    norm scales (the usual practice), and not to the loss's anchors/proxies; those run at
    lr * loss_lr_mult times the loss's own lr_scale (KNNLoss.param_groups).
    """
    decay = [p for p in model.parameters() if p.requires_grad and p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.ndim <= 1]
    groups: list[dict[str, Any]] = [
        {"params": decay, "weight_decay": train.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    groups = [g for g in groups if g["params"]]
    groups += [
        {**g, "weight_decay": 0.0} for g in loss_fn.param_groups(train.lr * train.loss_lr_mult)
    ]
    if train.optimizer == "sgd":
        return torch.optim.SGD(
            groups,
            lr=train.lr,
            momentum=train.momentum,
            nesterov=train.nesterov and train.momentum > 0,
        )
    return torch.optim.AdamW(groups, lr=train.lr)


def lr_factor(train: TrainConfig, steps_per_epoch: int) -> Callable[[int], float]:
    """Per-step multiplier of the base lr: linear warm-up, then cosine, step or constant."""
    total = train.epochs * steps_per_epoch
    warm = round(train.warmup_epochs * steps_per_epoch)

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        if train.schedule == "constant":
            return 1.0
        if train.schedule == "step":
            return train.gamma ** ((step // steps_per_epoch) // train.step_size)
        progress = (step - warm) / max(1, total - warm)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return factor
