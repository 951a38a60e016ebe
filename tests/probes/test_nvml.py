"""The NVML sampler against a fake pynvml (no GPU here)."""

from __future__ import annotations

import sys
import time
import types
from itertools import count

import pytest
import torch

from halbench.probes.nvml import READINGS, NvmlSampler

CUDA0 = torch.device("cuda", 0)


class FakeNVMLError(Exception):
    pass


class FakeNotSupported(FakeNVMLError):
    pass


def fake_pynvml(*, init_fails: bool = False, energy: bool = True) -> types.ModuleType:
    """A pynvml stand-in whose readings grow with every call, and that records its calls."""
    nvml = types.ModuleType("pynvml")
    nvml.NVMLError = FakeNVMLError
    nvml.NVMLError_NotSupported = FakeNotSupported
    nvml.calls = []
    memory, util, energy_mj = count(1000, 1000), count(10, 10), count(5000, 2500)

    def init() -> None:
        nvml.calls.append("init")
        if init_fails:
            raise FakeNVMLError("Driver Not Loaded")

    def by_uuid(uuid: str) -> str:
        nvml.calls.append(f"uuid:{uuid}")
        return "handle"

    def total_energy(handle: str) -> int:
        if not energy:
            raise FakeNotSupported("Not Supported")
        return next(energy_mj)

    nvml.nvmlInit = init
    nvml.nvmlShutdown = lambda: nvml.calls.append("shutdown")
    nvml.nvmlDeviceGetHandleByUUID = by_uuid
    nvml.nvmlDeviceGetHandleByIndex = lambda i: "handle"
    nvml.nvmlDeviceGetMemoryInfo = lambda h: types.SimpleNamespace(used=next(memory))
    nvml.nvmlDeviceGetUtilizationRates = lambda h: types.SimpleNamespace(gpu=next(util))
    nvml.nvmlDeviceGetTotalEnergyConsumption = total_energy
    return nvml


@pytest.fixture
def cuda_props(monkeypatch: pytest.MonkeyPatch) -> None:
    props = types.SimpleNamespace(uuid="1234-abcd")
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda index: props)


def test_sampling_thread_collects_peak_mean_and_energy(monkeypatch, cuda_props) -> None:  # noqa: ANN001
    nvml = fake_pynvml()
    monkeypatch.setitem(sys.modules, "pynvml", nvml)
    sampler = NvmlSampler(CUDA0, interval_s=0.01)
    sampler.start()
    time.sleep(0.15)
    readings = sampler.stop()
    # the fake's memory/utilization grow by one step per sample: n samples -> peak n * 1000
    # and mean (10 + 10 n) / 2
    n = int(readings["gpu_mem_peak_bytes"] // 1000)
    assert n >= 4  # first sample, several from the thread, last one at stop
    assert readings["gpu_util_mean"] == pytest.approx((10 + 10 * n) / 2)
    assert readings["energy_j"] == pytest.approx(2.5)  # one counter step: 2500 mJ
    assert nvml.calls[0] == "init" and nvml.calls[1] == "uuid:GPU-1234-abcd"
    assert nvml.calls[-1] == "shutdown"
    assert sampler.stop() == readings  # idempotent, no second shutdown
    assert nvml.calls.count("shutdown") == 1
    assert sampler.notes == []


def test_energy_not_supported_gives_null_energy_and_a_note(monkeypatch, cuda_props) -> None:  # noqa: ANN001
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml(energy=False))
    sampler = NvmlSampler(CUDA0, interval_s=0.01)
    sampler.start()
    readings = sampler.stop()
    assert readings["energy_j"] is None
    assert readings["gpu_mem_peak_bytes"] is not None
    assert any("energy" in note for note in sampler.notes)


def test_nvml_init_failure_gives_nulls_and_a_note(monkeypatch, cuda_props) -> None:  # noqa: ANN001
    nvml = fake_pynvml(init_fails=True)
    monkeypatch.setitem(sys.modules, "pynvml", nvml)
    sampler = NvmlSampler(CUDA0)
    sampler.start()
    assert sampler.stop() == dict.fromkeys(READINGS)
    assert any("Driver Not Loaded" in note for note in sampler.notes)


def test_missing_pynvml_gives_nulls_and_a_note(monkeypatch, cuda_props) -> None:  # noqa: ANN001
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import raises ImportError
    sampler = NvmlSampler(CUDA0)
    sampler.start()
    assert sampler.stop() == dict.fromkeys(READINGS)
    assert any("unavailable" in note and "pynvml" in note for note in sampler.notes)


def test_no_gpu_gives_nulls_and_a_note(monkeypatch) -> None:  # noqa: ANN001
    nvml = fake_pynvml()
    monkeypatch.setitem(sys.modules, "pynvml", nvml)
    sampler = NvmlSampler(torch.device("cpu"))
    sampler.start()
    assert sampler.stop() == dict.fromkeys(READINGS)
    assert nvml.calls == []  # NVML is not even initialized on CPU
    assert any("no CUDA device" in note for note in sampler.notes)


def test_interval_must_be_positive() -> None:
    with pytest.raises(ValueError, match="interval_s"):
        NvmlSampler(CUDA0, interval_s=0)
