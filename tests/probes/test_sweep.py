"""The loss-call sweep's rounds and its on_row hook (run/profile.py tests the files it writes)."""

from __future__ import annotations

from halbench.probes import sweep as loss_sweep
from halbench.run import profile
from halbench.suite.profile import load_profile_suite


def tiny_suite(losses: list[str]):  # noqa: ANN201
    overrides = profile.SweepOverrides(
        losses=losses, batch_sizes=[8, 16], dims=[8], classes=[4], device="cpu"
    )
    return profile.apply_overrides(load_profile_suite(None), overrides)


def test_on_row_hears_each_point_once_when_its_row_is_final() -> None:
    suite = tiny_suite(["hal", "nca"])
    rounds = suite.probes.rounds
    calls: list[tuple[str, int]] = []
    heard: list[tuple[dict, int]] = []

    def timer(spec, suite, b, d, c, memory, device, seed):  # noqa: ANN001, ANN202
        calls.append((spec.display, b))
        return [1.0], [2.0]

    def on_row(row: dict) -> None:
        # the row is final: its point has been timed in every round
        assert calls.count((row["loss"], row["batch_size"])) == rounds
        heard.append((dict(row), len(calls)))

    rows = loss_sweep.sweep(suite.losses, suite, timer=timer, on_row=on_row)
    assert sorted((r["loss"], r["batch_size"]) for r, _ in heard) == sorted(
        (r["loss"], r["batch_size"]) for r in rows
    )
    for row, _ in heard:
        assert row["time_fwdbwd_ms"] == 2.0 and row["time_fwd_ms"] == 1.0
    # the first point is written before the last round has timed the others
    assert heard[0][1] < len(calls)


def test_on_row_hears_failed_points_with_their_status() -> None:
    suite = tiny_suite(["hal"])
    heard: list[dict] = []

    def timer(spec, suite, b, d, c, memory, device, seed):  # noqa: ANN001, ANN202
        if b == 16:
            raise RuntimeError("boom")
        return [1.0], [2.0]

    rows = loss_sweep.sweep(suite.losses, suite, timer=timer, on_row=heard.append)
    assert heard == rows  # the same row objects, final
    by_b = {row["batch_size"]: row for row in heard}
    assert by_b[8]["status"] == "ok"
    assert by_b[16]["status"] == "error" and "boom" in by_b[16]["error"]


def test_rows_come_back_loss_by_loss() -> None:
    suite = tiny_suite(["hal", "nca"])
    rows = loss_sweep.sweep(suite.losses, suite, timer=lambda *a: ([1.0], [1.0]))
    assert [(r["loss"], r["batch_size"]) for r in rows] == [
        ("hal", 8),
        ("hal", 16),
        ("nca", 8),
        ("nca", 16),
    ]
