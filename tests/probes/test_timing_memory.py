"""Timing and peak-memory probes on calls whose cost is known."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from halbench.probes.memory import SOURCE_CPU, peak_memory
from halbench.probes.timing import Timing, iqr, paired_ratio, time_call, time_interleaved

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


@pytest.mark.parametrize("samples", [[3.0, 1.0, 2.0], [5.0, 1.0, 9.0, 2.0, 2.5, 7.0]])
def test_timing_of_pooled_samples_matches_numpy(samples: list[float]) -> None:
    timing = Timing.of(samples)
    assert timing.median_ms == pytest.approx(np.median(samples))
    assert timing.iqr_ms == pytest.approx(np.percentile(samples, 75) - np.percentile(samples, 25))
    with pytest.raises(ValueError, match="at least one sample"):
        Timing.of([])


def test_a_sample_is_the_mean_time_per_call_of_number_calls() -> None:
    calls = []

    def sleep() -> None:
        calls.append(1)
        time.sleep(0.01)

    timing = time_call(sleep, device=CPU, warmup=1, repeats=2, number=3)
    assert len(calls) == 1 + 2 * 3 and len(timing.samples_ms) == 2
    assert 10.0 <= timing.median_ms < 25.0  # per call, not per sample of three


def test_cpu_clock_leaves_out_time_the_process_does_not_run() -> None:
    def sleep() -> None:
        time.sleep(0.02)

    assert time_call(sleep, device=CPU, warmup=0, repeats=2).median_ms >= 20.0
    assert time_call(sleep, device=CPU, warmup=0, repeats=2, clock="cpu").median_ms < 10.0


def test_bad_clocks_are_refused() -> None:
    with pytest.raises(ValueError, match="clock"):
        time_call(lambda: None, device=CPU, warmup=0, repeats=1, clock="gpu")
    with pytest.raises(ValueError, match="events"):  # refused before CUDA is touched
        time_call(lambda: None, device=torch.device("cuda"), warmup=0, repeats=1, clock="cpu")


def test_time_interleaved_takes_one_sample_of_each_call_per_round() -> None:
    order: list[str] = []
    calls = {name: (lambda name=name: order.append(name)) for name in ("a", "b")}
    timings = time_interleaved(calls, device=CPU, warmup=2, repeats=3)
    assert order == ["a", "a", "b", "b"] + ["a", "b"] * 3  # warm-up, then round-robin rounds
    assert all(len(t.samples_ms) == 3 for t in timings.values())


def test_time_interleaved_fills_min_time_with_back_to_back_calls() -> None:
    count = {"n": 0}

    def sleep() -> None:
        count["n"] += 1
        time.sleep(0.001)

    timing = time_interleaved({"s": sleep}, device=CPU, warmup=0, repeats=2, min_time_s=0.05)
    # one calibrating call, then two samples of up to 50 calls each (fewer when a call is
    # slower on a loaded machine; one per sample only if it took 25 ms)
    assert 1 + 2 * 2 <= count["n"] <= 1 + 2 * 50
    assert timing["s"].median_ms >= 1.0


def test_paired_ratio_is_the_median_of_per_round_ratios() -> None:
    top, bottom = Timing.of([1.0, 2.0, 4.0]), Timing.of([1.0, 1.0, 2.0])
    assert paired_ratio(top, bottom) == 2.0  # ratios 1, 2, 2
    with pytest.raises(ValueError):
        paired_ratio(top, Timing.of([1.0]))


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
