"""The sub-epoch convergence curve: k-NN accuracy on a fixed subsample, every part of an epoch.

An epoch-level accuracy cannot tell two losses apart when both reach their plateau within the
first epoch. The curve evaluates every `eval.curve_every` epochs (at most a quarter epoch, in
optimizer steps) and once before the first step:

- queries: a fixed random subsample of the evaluation split (`eval.curve_subsample` images; the
  validation split of a tuning trial, the test split otherwise);
- reference set: a fixed random subset of the training split (`eval.curve_reference` images),
  so that each point embeds `curve_subsample + curve_reference` images, not the whole data;
- k: the primary k (the smallest evaluated), the metric the trial evaluates with.

Both subsets are drawn with the data seed (the same images for every trial of a dataset), so
curves of different losses and seeds are comparable point by point. `curve_acc` is on its own
scale (a smaller reference set than the epoch evaluation's): compare curve points with curve
points. Evaluating is off the training clock and changes nothing of the training (eval mode,
inference mode, no random numbers drawn).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from halbench import data, knn
from halbench.suite import EvalConfig
from halbench.trial.evaluation import embed

COLUMNS = ("curve_steps", "curve_acc", "curve_k", "curve_subsample")


def curve_interval(steps_per_epoch: int, every_epochs: float) -> int:
    """Optimizer steps between two curve points: at most `every_epochs` of an epoch, >= 1."""
    return max(1, math.floor(steps_per_epoch * every_epochs))


def fixed_rows(n: int, size: int, seed: int) -> torch.Tensor:
    """`size` of `n` row indices (all of them when size >= n), sorted; the same for one seed."""
    if size >= n:
        return torch.arange(n)
    gen = torch.Generator().manual_seed(seed)
    return torch.randperm(n, generator=gen)[:size].sort().values


@dataclass
class Curve:
    """One trial's curve: the subsets it evaluates on and the points recorded so far."""

    splits: data.Splits  # the reference subset as "train", the query subsample as "eval"
    interval: int
    k: int
    metric: str
    ecfg: EvalConfig
    amp: bool = False
    channels_last: bool = False
    steps: list[int] = field(default_factory=list)
    acc: list[float] = field(default_factory=list)

    def due(self, steps_done: int) -> bool:
        return steps_done % self.interval == 0

    def record(self, model: nn.Module, steps_done: int) -> None:
        """Evaluate the model now (eval mode; the caller sets train mode back)."""
        kw = {"amp": self.amp, "channels_last": self.channels_last}
        ref = embed(model, self.splits, "train", self.ecfg.batch_size, **kw)
        queries = embed(model, self.splits, "eval", self.ecfg.batch_size, **kw)
        if torch.isfinite(ref).all() and torch.isfinite(queries).all():
            with torch.inference_mode():
                accs = knn.knn_accuracy(
                    ref,
                    self.splits.train_y,
                    queries,
                    self.splits.eval_y,
                    ks=[self.k],
                    metric=self.metric,
                    weighted=self.ecfg.weighted,
                )
            value = accs[self.k]
        else:  # a diverging trial: the loss check stops it; the point says what was seen
            value = math.nan
        self.steps.append(steps_done)
        self.acc.append(value)

    def columns(self) -> dict[str, Any]:
        return {
            "curve_steps": list(self.steps),
            "curve_acc": list(self.acc),
            "curve_k": self.k,
            "curve_subsample": int(self.splits.eval_y.shape[0]),
        }


def build_curve(
    splits: data.Splits,
    ecfg: EvalConfig,
    *,
    steps_per_epoch: int,
    k: int,
    metric: str,
    seed: int,
    amp: bool = False,
    channels_last: bool = False,
) -> Curve | None:
    """The trial's curve, or None when `eval.curve_subsample` is 0 (no curve)."""
    if ecfg.curve_subsample == 0:
        return None
    # k neighbours need at least k reference images.
    ref = fixed_rows(splits.train_y.shape[0], max(ecfg.curve_reference, k), seed)
    queries = fixed_rows(splits.eval_y.shape[0], ecfg.curve_subsample, seed + 1)
    ref, queries = ref.to(splits.device), queries.to(splits.device)
    sub = dataclasses.replace(
        splits,
        train_x=splits.train_x[ref],
        train_y=splits.train_y[ref],
        eval_x=splits.eval_x[queries],
        eval_y=splits.eval_y[queries],
    )
    return Curve(
        splits=sub,
        interval=curve_interval(steps_per_epoch, ecfg.curve_every),
        k=k,
        metric=metric,
        ecfg=ecfg,
        amp=amp,
        channels_last=channels_last,
    )
