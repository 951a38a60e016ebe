"""run/progress.py: the terminal lines (finished tasks, epochs), running count and time left."""

from __future__ import annotations

import io
from pathlib import Path
from types import SimpleNamespace

import pytest

from halbench.run.progress import EPOCH_LINE_EVERY_S, Progress, epoch_summary
from halbench.suite import parse_suite


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def lines(stream: io.StringIO) -> list[str]:
    return stream.getvalue().splitlines()


def test_progress_line_counts_and_estimates() -> None:
    stream = io.StringIO()
    progress = Progress(total=4, already=1, stream=stream)
    progress.started("t1")
    progress.started("t2")
    progress.finished("t1", "ok")
    progress.finished("t2", "oom", "CUDA out of memory. Tried to allocate 2 GiB\nmore detail")
    last = lines(stream)[-1]
    assert last.startswith("[halbench] 3/4 trials done (1 failed, 0 running), elapsed ")
    assert "left; t2: oom (CUDA out of memory. Tried to allocate 2 GiB)" in last
    assert "more detail" not in last


def test_time_left_counts_concurrency_and_each_trials_own_duration() -> None:
    # 6 trials of 100 s, 2 at a time, after 50 s of start-up: the first pair ends at 150 s.
    clock, stream = Clock(), io.StringIO()
    progress = Progress(total=6, already=0, stream=stream, clock=clock)
    clock.now = 50.0
    progress.started("a", running=1)
    progress.started("b", running=2)
    clock.now = 150.0
    progress.finished("a", "ok", running=1)
    # 4 queued + b (done now) over 2 slots at 100 s each: 200 s, not 5 x 150 s (elapsed / done).
    assert progress.time_left() == pytest.approx(200.0)
    assert "about 3m20s left" in lines(stream)[-1]
    progress.finished("b", "ok", running=0)
    progress.started("c", running=1)
    progress.started("d", running=2)
    clock.now = 200.0  # c and d are half done; e and f still queued
    assert progress.time_left() == pytest.approx((2 * 100 + 50 + 50) / 2)


def test_no_estimate_before_the_first_task_ends() -> None:
    stream = io.StringIO()
    progress = Progress(total=3, already=0, stream=stream)
    assert progress.time_left() is None
    progress.started("a")
    progress.finished("x", "error", "boom")  # never seen starting: no duration
    assert "time left unknown" in lines(stream)[-1]


def test_running_count_comes_from_the_caller_not_from_callbacks() -> None:
    # A worker lost and restarted reports start twice; the count is what the states say.
    stream = io.StringIO()
    progress = Progress(total=4, already=0, stream=stream)
    for trial_id in "abcd":
        progress.started(trial_id, running=4)
    progress.started("a", running=4)  # restarted after a lost worker
    for n, trial_id in enumerate("abcd"):
        progress.finished(trial_id, "error", "ActorDiedError", running=3 - n)
    assert lines(stream)[-1].startswith("[halbench] 4/4 trials done (4 failed, 0 running)")


def test_in_process_running_count_is_by_task_id() -> None:
    stream = io.StringIO()
    progress = Progress(total=2, already=0, stream=stream)
    progress.started("a")
    progress.started("a")
    assert progress.running == 1
    progress.finished("a", "ok")
    assert progress.running == 0


def test_epoch_lines_at_most_one_per_interval_per_trial() -> None:
    clock, stream = Clock(), io.StringIO()
    progress = Progress(total=2, already=0, stream=stream, clock=clock)
    progress.started("a")
    progress.started("b")
    row = {"epoch": 1, "train_loss": 1.2345, "knn_acc_1": 0.81, "epoch_time_s": 40.0}
    clock.now = EPOCH_LINE_EVERY_S / 2
    progress.epoch("a", row, 20)  # a short trial's first epoch: quiet
    assert lines(stream) == []
    clock.now = EPOCH_LINE_EVERY_S + 1
    progress.epoch("a", {**row, "epoch": 3, "eval_time_s": 2.0}, 20)
    progress.epoch("a", {**row, "epoch": 4}, 20)  # too soon after the last line
    progress.epoch("b", row, 20)
    assert lines(stream) == [
        "[halbench] a: epoch 3/20, loss 1.234, knn_acc_1 0.810, 42 s/epoch",
        "[halbench] b: epoch 1/20, loss 1.234, knn_acc_1 0.810, 40 s/epoch",
    ]


def test_epoch_summary_uses_the_primary_k_and_skips_unevaluated_epochs() -> None:
    both = {"epoch": 2, "knn_acc_1": 0.5, "knn_acc_10": 0.7, "knn_acc_5": 0.6}
    assert "knn_acc_1 0.500" in epoch_summary(both, None)
    assert epoch_summary({"epoch": 2, "train_loss": 0.5, "knn_acc_1": None}, 4) == (
        "epoch 2/4, loss 0.5"
    )


def _trial(trial_id: str, status: str) -> SimpleNamespace:
    return SimpleNamespace(
        config={"spec": {"trial_id": trial_id}},
        status=status,
        pickled_error_file="/nonexistent",
        trial_id=f"tune-{trial_id}",
    )


def test_tune_callback_counts_running_trials_from_their_states(tmp_path: Path) -> None:
    pytest.importorskip("ray.tune")
    from halbench.run.executor import TrialWriter
    from halbench.run.ray_tune import Interrupt, task_callback

    doc = {
        "name": "t",
        "dataset": {"name": "synthetic", "train_size": 64, "test_size": 32},
        "losses": [{"name": "hal"}],
        "grid": {"batch_size": [8], "embedding_dim": [4], "seed": [0, 1, 2, 3]},
    }
    suite = parse_suite(doc, Path("t.yaml"))
    specs = suite.trials()
    (tmp_path / "trials").mkdir()
    stream = io.StringIO()
    progress = Progress(len(specs), 0, stream=stream)
    sink = TrialWriter(suite, tmp_path, specs, progress, None)
    writer = task_callback(sink, Interrupt(progress))
    trials = [_trial(s.trial_id, "RUNNING") for s in specs]
    for t in trials:
        writer.on_trial_start(0, trials, t)
        writer.on_trial_start(0, trials, t)  # a retry after a lost worker starts it again
    assert progress.running == 4
    writer.on_trial_result(0, trials, trials[0], {"epoch": 1, "train_loss": 1.0})
    for t in trials[:3]:
        t.status = "ERROR"
        writer.on_trial_error(0, trials, t)
    assert progress.running == 1
    assert lines(stream)[-1].startswith("[halbench] 3/4 trials done (3 failed, 1 running)")
