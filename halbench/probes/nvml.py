"""Device-level GPU readings during a trial, sampled by NVML in a background thread.

NVML sees the whole device (every process on it), not one loss call: memory used (peak over
the samples), GPU utilization (mean over the samples) and energy (difference of the device's
total-energy counter between start and stop, where the GPU supports it). Without a GPU, without
the pynvml module or when NVML fails, every reading is None and ``notes`` says why.
"""

from __future__ import annotations

import importlib
import statistics
import threading
from typing import Any

import torch

READINGS = ("gpu_mem_peak_bytes", "gpu_util_mean", "energy_j")


class NvmlSampler:
    """Samples one CUDA device every ``interval_s`` seconds between ``start()`` and ``stop()``."""

    def __init__(self, device: torch.device, interval_s: float = 0.5) -> None:
        if interval_s <= 0:
            raise ValueError(f"interval_s must be > 0, got {interval_s}")
        self.device = device
        self.interval_s = interval_s
        self.notes: list[str] = []
        self._nvml: Any = None
        self._handle: Any = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._mem: list[int] = []
        self._util: list[float] = []
        self._energy_start_mj: int | None = None
        self._result: dict[str, float | None] = dict.fromkeys(READINGS)

    def start(self) -> None:
        if self.device.type != "cuda":
            self.notes.append("nvml: no CUDA device, GPU readings are null")
            return
        try:
            self._nvml = importlib.import_module("pynvml")
            self._nvml.nvmlInit()
            self._handle = self._device_handle()
        except Exception as exc:  # noqa: BLE001 - any NVML failure means "no readings", not a crash
            self.notes.append(f"nvml: unavailable ({type(exc).__name__}: {exc}), GPU readings null")
            self._shutdown()
            return
        self._energy_start_mj = self._energy_mj()
        self._sample()
        self._thread = threading.Thread(target=self._run, name="halbench-nvml", daemon=True)
        self._thread.start()

    def stop(self) -> dict[str, float | None]:
        """Stop sampling (idempotent) and return the readings (None where absent)."""
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._thread = None
            self._sample()
            energy_end = self._energy_mj()
            self._result = {
                "gpu_mem_peak_bytes": float(max(self._mem)) if self._mem else None,
                "gpu_util_mean": statistics.fmean(self._util) if self._util else None,
                "energy_j": (
                    (energy_end - self._energy_start_mj) / 1000.0
                    if energy_end is not None and self._energy_start_mj is not None
                    else None
                ),
            }
            self._shutdown()
        return dict(self._result)

    def _device_handle(self) -> Any:
        # CUDA and NVML number devices differently under CUDA_VISIBLE_DEVICES (e.g. in a Ray
        # task), so look the device up by its UUID and fall back to the index.
        index = self.device.index if self.device.index is not None else torch.cuda.current_device()
        uuid = getattr(torch.cuda.get_device_properties(index), "uuid", None)
        if uuid is not None:
            try:
                return self._nvml.nvmlDeviceGetHandleByUUID(f"GPU-{uuid}")
            except self._nvml.NVMLError:
                pass
        return self._nvml.nvmlDeviceGetHandleByIndex(index)

    def _energy_mj(self) -> int | None:
        try:
            return int(self._nvml.nvmlDeviceGetTotalEnergyConsumption(self._handle))
        except self._nvml.NVMLError as exc:
            note = f"nvml: energy counter unavailable ({exc}), energy_j null"
            if note not in self.notes:
                self.notes.append(note)
            return None

    def _sample(self) -> None:
        try:
            self._mem.append(int(self._nvml.nvmlDeviceGetMemoryInfo(self._handle).used))
            self._util.append(float(self._nvml.nvmlDeviceGetUtilizationRates(self._handle).gpu))
        except self._nvml.NVMLError as exc:
            note = f"nvml: sampling failed ({exc})"
            if note not in self.notes:
                self.notes.append(note)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._sample()

    def _shutdown(self) -> None:
        if self._nvml is not None:
            try:
                self._nvml.nvmlShutdown()
            except Exception:  # noqa: BLE001 - shutting down a half-initialized NVML
                pass
        self._nvml = self._handle = None
