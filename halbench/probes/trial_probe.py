"""Probes during training: sampled loss calls, step times and NVML, summarized per trial.

On every ``every_n_steps``-th step (steps 1, 1 + N, 1 + 2N, ...: step 0 carries one-time
start-up costs) the probe times the training step and, after the real loss call, measures the
loss call separately on a detached copy of the embeddings with a shadow copy of the loss, inside
``torch.random.fork_rng``: the training graph, the loss's state (memory banks), the gradients
and the random streams are untouched, so a probed run trains exactly like an unprobed one.
FLOPs and peak memory are measured once per input shape and cached.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import statistics
from collections import Counter
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from halbench.checks import check_bool, check_int
from halbench.probes.call import forward_backward, leaf, loss_args
from halbench.probes.flops import count_loss_flops
from halbench.probes.memory import peak_memory
from halbench.probes.nvml import READINGS, NvmlSampler
from halbench.probes.timing import Stopwatch, time_call

log = logging.getLogger(__name__)

SUMMARY_KEYS = (
    "loss_call_ms",
    "loss_flops_fwd",
    "loss_flops_bwd",
    "loss_peak_mem_bytes",
    "loss_share_of_step",
    *READINGS,
)

Shape = tuple[tuple[int, ...], ...]


class TrialProbe:
    """Sampled loss-call probes for one trial (see the module docstring and docs/probes.md)."""

    def __init__(
        self,
        every_n_steps: int = 50,
        enabled: bool = True,
        device: torch.device | str = "cpu",
        warmup: int = 1,
        repeats: int = 3,
        nvml_interval_s: float = 0.5,
    ) -> None:
        self.every_n_steps = check_int("every_n_steps", every_n_steps, minimum=1)
        self.enabled = check_bool("enabled", enabled)
        self.device = torch.device(device)
        self.warmup = check_int("warmup", warmup, minimum=0)
        self.repeats = check_int("repeats", repeats, minimum=1)
        self.notes: list[str] = []
        self._nvml = NvmlSampler(self.device, nvml_interval_s) if enabled else None
        self._nvml_readings: dict[str, float | None] = dict.fromkeys(READINGS)
        self._sampling = False
        self._probe_ms = 0.0  # time spent measuring inside the current sampled step
        self.measuring_ms = 0.0  # time spent measuring over the whole trial (the overhead)
        self._call_ms: float | None = None  # loss call measured in the current sampled step
        self._samples: list[tuple[float, float]] = []  # (loss call ms, step ms) per sample
        self._shapes: Counter[Shape] = Counter()
        self._per_shape: dict[Shape, dict[str, float]] = {}
        self._shadows: dict[int, nn.Module] = {}

    def start(self) -> None:
        if self._nvml is not None:
            self._nvml.start()

    def on_schedule(self, step_index: int) -> bool:
        """Steps 1, 1 + N, ...: where the probe samples (when enabled) and where a trainer
        may wait for the device anyway (its loss check), so that the waits coincide."""
        return step_index % self.every_n_steps == 1 % self.every_n_steps

    def is_sampled(self, step_index: int) -> bool:
        return self.enabled and self.on_schedule(step_index)

    @contextlib.contextmanager
    def step(self, step_index: int) -> Iterator[None]:
        """Times the training step when it is sampled; does nothing otherwise."""
        if not self.is_sampled(step_index):
            yield
            return
        self._sampling, self._probe_ms, self._call_ms = True, 0.0, None
        try:
            with Stopwatch(self.device) as watch:
                yield
        finally:
            self._sampling = False
        if self._call_ms is not None:
            self._samples.append((self._call_ms, watch.ms - self._probe_ms))

    def loss_call(
        self,
        loss_fn: nn.Module,
        embeddings: torch.Tensor,
        labels: torch.Tensor,
        indices: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``loss_fn(embeddings, labels, indices)``; on a sampled step also measures the call."""
        out = loss_fn(*loss_args(embeddings, labels, indices))
        if self._sampling and self._call_ms is None:
            with Stopwatch(self.device) as watch:
                try:
                    self._measure(loss_fn, embeddings, labels, indices)
                except torch.OutOfMemoryError:
                    # the measured copy needs the loss's activations a second time; a trial
                    # that fits without the probe must not fail because of it
                    self._note("probe: out of memory while measuring a loss call, sample skipped")
            self._probe_ms += watch.ms
            self.measuring_ms += watch.ms
        return out

    def _measure(
        self,
        loss_fn: nn.Module,
        embeddings: torch.Tensor,
        labels: torch.Tensor,
        indices: torch.Tensor | None,
    ) -> None:
        shadow = self._shadow(loss_fn)
        emb = leaf(embeddings)
        args = loss_args(emb, labels, indices)
        shape: Shape = tuple(tuple(a.shape) for a in args)
        devices = []
        if self.device.type == "cuda":
            devices = [
                self.device.index if self.device.index is not None else torch.cuda.current_device()
            ]
        with torch.random.fork_rng(devices=devices):
            timing = time_call(
                lambda: forward_backward(shadow, emb, args),
                device=self.device,
                warmup=self.warmup,
                repeats=self.repeats,
            )
            if shape not in self._per_shape:
                self._per_shape[shape] = self._count(shadow, emb, labels, indices, args)
        self._call_ms = timing.median_ms
        self._shapes[shape] += 1

    def _shadow(self, loss_fn: nn.Module) -> nn.Module:
        """A copy of the loss holding its current state, so that measuring never mutates it."""
        shadow = self._shadows.get(id(loss_fn))
        if shadow is None:
            shadow = self._shadows[id(loss_fn)] = copy.deepcopy(loss_fn)
        else:
            current = loss_fn.state_dict().values()
            with torch.no_grad():
                for mine, theirs in zip(shadow.state_dict().values(), current, strict=True):
                    mine.copy_(theirs)
        return shadow

    def _count(
        self,
        shadow: nn.Module,
        emb: torch.Tensor,
        labels: torch.Tensor,
        indices: torch.Tensor | None,
        args: tuple[torch.Tensor, ...],
    ) -> dict[str, float]:
        flops = count_loss_flops(shadow, emb, labels, indices, cross_check=False)
        if flops.unsupported:
            self._note(f"probe: ops without a FLOP rule: {', '.join(flops.unsupported)}")
        peak, source = peak_memory(lambda: forward_backward(shadow, emb, args), device=self.device)
        return {
            "loss_flops_fwd": float(flops.fwd),
            "loss_flops_bwd": float(flops.bwd),
            "loss_peak_mem_bytes": float(peak),
        }

    def summary(self) -> dict[str, Any]:
        """Per-trial probe columns (None where not measured)."""
        result: dict[str, Any] = dict.fromkeys(SUMMARY_KEYS)
        if not self.enabled:
            return result
        if self._samples:
            result["loss_call_ms"] = statistics.median(call for call, _ in self._samples)
            shares = [call / step for call, step in self._samples if step > 0]
            result["loss_share_of_step"] = statistics.median(shares) if shares else None
            # a trial has one batch shape except for a short last batch: report the usual one
            result.update(self._per_shape[self._shapes.most_common(1)[0][0]])
        if self._nvml is not None:
            self._nvml_readings = self._nvml.stop()
        result.update(self._nvml_readings)
        return result

    def close(self) -> None:
        if self._nvml is not None:
            self._nvml_readings = self._nvml.stop()
            for note in self._nvml.notes:
                self._note(note)
        self._shadows.clear()

    def _note(self, note: str) -> None:
        if note not in self.notes:
            self.notes.append(note)
            log.info(note)
