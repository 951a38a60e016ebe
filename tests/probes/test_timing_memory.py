"""Timing and peak-memory probes on calls whose cost is known."""

from __future__ import annotations

import time

import pytest
import torch

from halbench.probes.memory import SOURCE_CPU, peak_memory
from halbench.probes.timing import iqr, time_call

CPU = torch.device("cpu")


def test_time_call_measures_a_known_sleep() -> None:
    calls = []

    def sleep() -> None:
        calls.append(1)
        time.sleep(0.02)

    timing = time_call(sleep, device=CPU, warmup=2, repeats=3)
    assert len(calls) == 5 and len(timing.samples_ms) == 3
    assert 20.0 <= timing.median_ms < 500.0
    assert 0.0 <= timing.iqr_ms <= max(timing.samples_ms) - min(timing.samples_ms)


def test_time_call_orders_matmuls_by_size() -> None:
    small, large = torch.randn(16, 16), torch.randn(384, 384)
    t_small = time_call(lambda: small @ small, device=CPU, warmup=1, repeats=5).median_ms
    t_large = time_call(lambda: large @ large, device=CPU, warmup=1, repeats=5).median_ms
    # 13824x the work; even a busy machine keeps the order
    assert t_large > t_small


def test_iqr() -> None:
    assert iqr([5.0]) == 0.0
    assert iqr([1.0, 2.0, 3.0, 4.0, 5.0]) == pytest.approx(2.0)


@pytest.mark.parametrize(("warmup", "repeats"), [(-1, 3), (0, 0)])
def test_time_call_rejects_bad_counts(warmup: int, repeats: int) -> None:
    with pytest.raises(ValueError, match="warmup|repeats"):
        time_call(lambda: None, device=CPU, warmup=warmup, repeats=repeats)


MB4 = 1_000_000 * 4  # one million float32


def test_peak_memory_sees_a_tensor_allocated_inside_the_call() -> None:
    def allocate() -> None:
        x = torch.ones(1_000_000)
        del x

    peak, source = peak_memory(allocate, device=CPU)
    assert source == SOURCE_CPU
    assert MB4 <= peak < MB4 + 64 * 1024


def test_peak_memory_is_the_peak_not_the_sum() -> None:
    def two_at_a_time() -> None:
        for _ in range(3):
            a, b = torch.ones(1_000_000), torch.ones(1_000_000)
            del a, b

    peak, _ = peak_memory(two_at_a_time, device=CPU)
    assert 2 * MB4 <= peak < 3 * MB4


def test_peak_memory_ignores_what_existed_before() -> None:
    kept = torch.ones(2_000_000)
    peak, _ = peak_memory(lambda: kept.sum(), device=CPU)
    assert peak < 64 * 1024
