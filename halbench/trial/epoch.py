"""One epoch of a trial's training: warm-up off the clock, no host syncs in the steps.

`train_epoch` runs the steps of one epoch; the conventions of its clock (warm-up, curve points
off the clock, where the device is waited for) are in halbench/trial/trainer.py's docstring
and docs/probes.md.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from dataclasses import dataclass

import torch
from torch import nn

from halbench import data, losses
from halbench.failures import Diverged
from halbench.probes import TrialProbe
from halbench.probes.timing import synchronize
from halbench.probes.torch_compat import HostSyncCounter, optimizer_host_tensors
from halbench.trial.curve import Curve

# Steps of epoch 1 run before the clock starts: the first step pays cuDNN's algorithm search
# and torch.compile's compilation, the second the optimizer's first update with its state, the
# third runs warm (the allocator's pools settled), as on a GPU's first step after those.
WARMUP_STEPS = 3


@dataclass
class TrialRun:
    """Everything one trial trains and evaluates with, built once."""

    device: torch.device
    splits: data.Splits
    model: nn.Module
    train_model: nn.Module  # the model, or its torch.compile wrapper
    loss_fn: losses.KNNLoss
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    metric: str
    steps: int  # per epoch
    drop_last: bool
    augment: bool
    amp: bool
    channels_last: bool
    generator: torch.Generator
    warmup_s: float = 0.0  # seconds of the warm-up steps (train_epoch's warmup_steps)


def warmup_steps(steps_per_epoch: int) -> int:
    """Warm-up steps of a trial: WARMUP_STEPS, leaving epoch 1 at least one timed step."""
    return max(0, min(WARMUP_STEPS, steps_per_epoch - 1))


class _Clock:
    """Seconds of the blocks between resume() and pause(), the device synchronized at each."""

    def __init__(self, device: torch.device) -> None:
        self.device, self.seconds, self._since = device, 0.0, None

    def resume(self) -> None:
        synchronize(self.device)
        self._since = time.perf_counter()

    def pause(self) -> None:
        if self._since is not None:
            synchronize(self.device)
            self.seconds += time.perf_counter() - self._since
            self._since = None

    @property
    def running(self) -> bool:
        return self._since is not None


def train_epoch(
    run: TrialRun,
    batch_size: int,
    probe: TrialProbe,
    epoch: int,
    *,
    warmup_steps: int = 0,
    curve: Curve | None = None,
) -> tuple[float, int, float]:
    """One epoch of training: (mean train loss, images, seconds on the clock).

    The first `warmup_steps` steps run off the clock (their seconds are added to
    `run.warmup_s`), and the epoch's seconds count them at the timed steps' rate; curve points
    are taken off the clock. The device is waited for only at the warm-up's end, on the probe
    schedule (finiteness read, probe samples), at curve points and at the epoch's end.
    """
    run.model.train()
    run.loss_fn.train()
    # Summed on the device: reading the loss every step would sync a GPU every step.
    loss_sum = torch.zeros((), device=run.device)
    done_before = (epoch - 1) * run.steps  # optimizer steps of the earlier epochs
    warm, clock = _Clock(run.device), _Clock(run.device)
    (warm if warmup_steps else clock).resume()
    steps = 0
    batches = run.splits.batches(
        "train",
        batch_size,
        shuffle=True,
        augment=run.augment,
        generator=run.generator,
        drop_last=run.drop_last,
    )
    for x, y, idx in batches:
        if steps == run.steps:
            break
        if run.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        index = done_before + steps + 1  # the trial's step number (probe schedule: 1, 1 + N, ..)
        timed = steps >= warmup_steps
        with probe.step(index) if timed else contextlib.nullcontext():
            with torch.autocast(run.device.type, dtype=torch.bfloat16, enabled=run.amp):
                emb = run.train_model(x)
            # The loss runs in float32: its exp/log are where bf16 loses accuracy.
            loss = probe.loss_call(run.loss_fn, emb.float(), y, idx)
            run.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            run.optimizer.step()
            run.scheduler.step()
        loss_sum += loss.detach()
        steps += 1
        if steps == warmup_steps:  # the warm-up is over: the device is waited for here anyway
            warm.pause()
            _check_finite(loss_sum, epoch)
            clock.resume()
        elif timed and probe.on_schedule(index):
            _check_finite(loss_sum, epoch)
        if curve is not None and curve.due(done_before + steps):
            _curve_point(run, curve, done_before + steps, warm if warm.running else clock)
    clock.pause()
    warm.pause()
    run.warmup_s += warm.seconds
    _check_finite(loss_sum, epoch)
    seconds = clock.seconds
    timed_steps = steps - min(warmup_steps, steps)
    if warmup_steps and timed_steps:
        seconds *= steps / timed_steps  # the warm-up steps at the timed steps' rate
    return loss_sum.item() / steps, steps * batch_size, seconds


def _curve_point(run: TrialRun, curve: Curve, steps_done: int, clock: _Clock) -> None:
    """A curve point off the clock; training mode is set back after the evaluation."""
    clock.pause()
    curve.record(run.model, steps_done)
    run.model.train()
    run.loss_fn.train()
    clock.resume()


def _check_finite(loss_sum: torch.Tensor, epoch: int) -> None:
    if not torch.isfinite(loss_sum).item():
        raise Diverged(f"training loss became NaN or infinite in epoch {epoch}")


def host_syncs_per_step(run: TrialRun, batch_size: int, probe: TrialProbe) -> float:
    """Host syncs per training step, as a GPU would wait: the marginal count of longer epochs.

    Counted on any device (probes/torch_compat.HostSyncCounter) over epochs of N and 3N steps
    (N: the probe interval; no warm-up, no curve), so that the epoch's fixed reads (its loss
    and finiteness at the end) cancel. Trains `run` for 4N + 1 steps; `run.steps` is kept.
    """
    n = probe.every_n_steps
    batches = run.splits.train_y.shape[0] // batch_size
    if batches < 3 * n:
        raise ValueError(
            f"host_syncs_per_step: needs {3 * n} batches of {batch_size}, got {batches}"
        )
    # One step first: the optimizer's state (its host step counters) exists from then on.
    train_epoch(dataclasses.replace(run, steps=1), batch_size, probe, 2)
    counts = []
    for steps in (n, 3 * n):
        part = dataclasses.replace(run, steps=steps)
        with HostSyncCounter(optimizer_host_tensors(run.optimizer)) as counter:
            train_epoch(part, batch_size, probe, 2)
        counts.append(counter.total)
    return (counts[1] - counts[0]) / (2 * n)
