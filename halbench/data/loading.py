"""Loading a data set onto the trial's device, per protocol phase, and drawing batches.

Every split is held as uint8 `[N, C, H, W]` on the device; a batch is gathered, augmented
(random crop with zero padding, horizontal flip where it suits the data) and normalized there,
so a training step does no per-sample Python work (the airbench recipe).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from halbench.checks import check_bool, check_choice, check_int
from halbench.data.readers import DATASETS, DatasetInfo, LoadRequest, default_root
from halbench.data.splits import (
    check_validation,
    subset,
    validation_indices,
    validation_split_seed,
)

Phase = Literal["grid", "tune", "final"]
PHASES: tuple[str, ...] = ("grid", "tune", "final")
TRAIN_ON: tuple[str, ...] = ("train", "train+validation")
EVAL_SPLITS: tuple[str, ...] = ("validation", "test")


@dataclass
class Splits:
    """The training data and one evaluation split on one device, uint8 until a batch is drawn.

    `eval_split` says what `eval_x` / `eval_y` are: "test" (phases grid and final) or
    "validation" (phase tune, where the test split was not read and `test_x` raises).
    `validation_size` is the number of rows carved out of the training split (0 without one;
    with `train_on="train+validation"` they are also in `train_x`).
    """

    train_x: torch.Tensor
    train_y: torch.Tensor
    eval_x: torch.Tensor
    eval_y: torch.Tensor
    info: DatasetInfo
    eval_split: str = "test"
    validation_size: int = 0

    def __post_init__(self) -> None:
        check_choice("eval_split", self.eval_split, EVAL_SPLITS)

    # The dataset info, as attributes (the trainer reads splits.num_classes and the like).
    num_classes = property(lambda self: self.info.num_classes)
    mean = property(lambda self: self.info.mean)
    std = property(lambda self: self.info.std)
    flip = property(lambda self: self.info.flip)
    crop_pad = property(lambda self: self.info.crop_pad)
    augment_default = property(lambda self: self.info.augment_default)

    @property
    def test_x(self) -> torch.Tensor:
        return self.split("test")[0]

    @property
    def test_y(self) -> torch.Tensor:
        return self.split("test")[1]

    @property
    def in_channels(self) -> int:
        return int(self.train_x.shape[1])

    @property
    def image_size(self) -> int:
        return int(self.train_x.shape[-1])

    @property
    def device(self) -> torch.device:
        return self.train_x.device

    @property
    def sizes(self) -> dict[str, int]:
        """Rows per split as loaded: train, validation (carved out) and the evaluated split."""
        out = {"train": int(self.train_y.shape[0]), "validation": self.validation_size}
        out[self.eval_split] = int(self.eval_y.shape[0])
        return out

    def split(self, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        """`(x, y)` of "train", "eval", or the evaluated split by name."""
        if split == "train":
            return self.train_x, self.train_y
        if split in ("eval", self.eval_split):
            return self.eval_x, self.eval_y
        if split in EVAL_SPLITS:
            raise ValueError(
                f"split {split!r} is not loaded (this load evaluates on {self.eval_split!r})"
            )
        raise ValueError(f"split must be 'train', 'eval' or {self.eval_split!r}, got {split!r}")

    def batches(
        self,
        split: str,
        batch_size: int,
        *,
        shuffle: bool,
        augment: bool,
        generator: torch.Generator | None = None,
        drop_last: bool = False,
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """Yield `(x float normalized, y int64, row indices)` on the device.

        Shuffling and augmentation draw from `generator` (a CPU generator, so that a seed gives
        the same order on every device); all random numbers of an epoch are drawn up front.
        """
        check_int("batch_size", batch_size, minimum=1)
        xs, ys = self.split(split)
        n = xs.shape[0]
        order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
        order = order.to(self.device)
        if augment:
            shifts, flips = self._draw_augmentation(n, generator)
        mean, std = self._norm_constants(xs.device)
        stop = n - n % batch_size if drop_last else n
        for start in range(0, stop, batch_size):
            idx = order[start : start + batch_size]
            x = xs[idx]
            if augment:
                x = self._augment(
                    x, shifts[start : start + batch_size], flips[start : start + batch_size]
                )
            yield x.float().sub_(mean).div_(std), ys[idx], idx

    def _norm_constants(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        # On the 0..255 scale, so a uint8 batch is normalized in one subtract and one divide.
        shape = (1, len(self.mean), 1, 1)
        mean = torch.tensor(self.mean, device=device).view(shape) * 255.0
        std = torch.tensor(self.std, device=device).view(shape) * 255.0
        return mean, std

    def _draw_augmentation(
        self, n: int, generator: torch.Generator | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        p = self.crop_pad
        shifts = torch.randint(0, 2 * p + 1, (n, 2), generator=generator)
        flips = (
            torch.rand(n, generator=generator) < 0.5
            if self.flip
            else torch.zeros(n, dtype=torch.bool)
        )
        return shifts.to(self.device), flips.to(self.device)

    def _augment(self, x: torch.Tensor, shifts: torch.Tensor, flips: torch.Tensor) -> torch.Tensor:
        p = self.crop_pad
        if p:
            b, _, h, w = x.shape
            padded = torch.nn.functional.pad(x, (p, p, p, p))
            rows = torch.arange(h, device=x.device).view(1, h, 1) + shifts[:, 0].view(b, 1, 1)
            cols = torch.arange(w, device=x.device).view(1, 1, w) + shifts[:, 1].view(b, 1, 1)
            batch = torch.arange(b, device=x.device).view(b, 1, 1)
            # Advanced indices around a slice put their dims first: [B, H, W, C].
            x = padded[batch, :, rows, cols].permute(0, 3, 1, 2)
        if self.flip:
            x = torch.where(flips.view(-1, 1, 1, 1), x.flip(3), x)
        return x.contiguous()


def load(
    name: str,
    *,
    root: str | Path | None = None,
    train_size: int | None = None,
    test_size: int | None = None,
    seed: int = 0,
    device: str | torch.device = "cpu",
    validation: float | int | None = None,
    phase: Phase = "grid",
    train_on: str = "train",
    validation_seed: int = 0,
    **params: Any,
) -> Splits:
    """Read data set `name` and return its splits on `device` for one protocol phase.

    `train_size` / `test_size` take a class-stratified subset (chosen with `seed`, `seed + 1`);
    `validation` (a fraction in (0, 1) or a row count) is then carved, stratified with
    `seed + 2`, from that training subset; `validation_seed` (a tuning replicate's) draws
    another such split, 0 being that one. Phases:
    - "grid" (default; no validation): train on the training split, evaluate on the test split.
    - "tune": train on training minus validation, evaluate on validation; the reader is asked
      for the training split only, so the test files are never opened.
    - "final": evaluate on the test split; train on training minus validation
      (`train_on="train"`) or on all of it (`train_on="train+validation"`).
    `download=True` (in params) lets torchvision fetch absent files. Dataset-specific params
    (e.g. synthetic's num_classes) are passed to the reader.
    """
    reader = DATASETS.get(name)
    check_choice("phase", phase, PHASES)
    check_choice("train_on", train_on, TRAIN_ON)
    for key, value in (("train_size", train_size), ("test_size", test_size)):
        if value is not None:
            check_int(key, value, minimum=1)
    check_int("seed", seed, minimum=0)
    check_int("validation_seed", validation_seed, minimum=0)
    if phase == "grid":
        if validation is not None:
            raise ValueError("validation applies to phases 'tune' and 'final', not 'grid'")
    elif validation is None:
        raise ValueError(f"phase {phase!r} needs a validation split (a fraction or a count)")
    else:
        validation = check_validation(validation)
    if train_on != "train" and phase != "final":
        raise ValueError(f"train_on applies to phase 'final' only, got phase {phase!r}")
    download = check_bool("download", params.pop("download", False))
    base = Path(root).expanduser() if root is not None else default_root()
    wanted = frozenset({"train"} if phase == "tune" else {"train", "test"})
    request = LoadRequest(name, [base], download, train_size, test_size, seed, params, wanted)
    raw = reader(request)
    train_x, train_y = subset(raw.train_x, raw.train_y, train_size, seed, "train_size")
    n_val = 0
    if validation is not None:
        fit_rows, val_rows = validation_indices(
            train_y, validation, validation_split_seed(seed, validation_seed)
        )
        n_val = len(val_rows)
        if phase == "tune":
            eval_x, eval_y = train_x[val_rows], train_y[val_rows]
        if train_on == "train":
            train_x, train_y = train_x[fit_rows], train_y[fit_rows]
    if phase != "tune":
        if raw.test_x is None or raw.test_y is None:
            raise ValueError(f"dataset {name!r}: its reader returned no test split")
        eval_x, eval_y = subset(raw.test_x, raw.test_y, test_size, seed + 1, "test_size")

    def tensor(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(a)).to(device)

    return Splits(
        train_x=tensor(train_x),
        train_y=tensor(train_y.astype(np.int64)),
        eval_x=tensor(eval_x),
        eval_y=tensor(eval_y.astype(np.int64)),
        info=raw.info,
        eval_split="validation" if phase == "tune" else "test",
        validation_size=n_val,
    )
