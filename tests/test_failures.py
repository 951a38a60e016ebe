"""failures.py: one map from an exception to (status, one line), for every kind of task."""

from __future__ import annotations

import pytest
import torch

from halbench import failures


def test_is_oom() -> None:
    assert failures.is_oom(RuntimeError("DefaultCPUAllocator: can't allocate memory: 9 GB"))
    assert not failures.is_oom(RuntimeError("shape mismatch"))
    assert failures.is_oom(RuntimeError("DefaultCPUAllocator: not enough memory: 1 TB"))
    assert failures.is_oom(torch.OutOfMemoryError("CUDA out of memory"))
    assert failures.is_oom(MemoryError())


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (RuntimeError("boom\nsecond line"), ("error", "RuntimeError: boom")),
        (KeyError(), ("error", "KeyError")),
        (failures.Diverged("training loss became NaN"), ("diverged", "training loss became NaN")),
        (
            torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB\nmore"),
            ("oom", "OutOfMemoryError: CUDA out of memory. Tried to allocate 2 GiB"),
        ),
    ],
)
def test_classify_local_exceptions(exc: BaseException, expected: tuple[str, str]) -> None:
    assert failures.classify(exc) == expected


def test_first_line() -> None:
    assert failures.first_line(ValueError("  bad value\n  detail")) == "ValueError: bad value"
    assert failures.first_line(ValueError()) == "ValueError"


def test_ray_failure_statuses() -> None:
    from ray.exceptions import OutOfMemoryError, RayActorError

    assert (
        failures.classify(
            OutOfMemoryError(
                "Task was killed due to the node running low on memory.\nMemory on the node was 95%"
            )
        )[0]
        == "oom"
    )
    status, error = failures.classify(RayActorError())
    assert status == "error" and error.startswith("RayActorError: ")
    assert failures.classify(None) == ("error", "RayTrialError: trial process failed")


@pytest.mark.parametrize(
    "message",
    [
        "1 worker(s) were killed due to the node running low on memory.",
        "The actor died unexpectedly before finishing this task.\n"
        "Worker exited from signal SIGKILL",
        "The worker was killed by the memory monitor",
    ],
)
def test_workers_killed_for_memory_are_oom(message: str) -> None:
    from ray.exceptions import RayActorError

    status, error = failures.classify(RayActorError(error_msg=message))
    assert status == "oom", error
    assert error.startswith("RayActorError: ") and len(error) < 300


def test_a_crashed_worker_is_an_error_and_its_line_is_short() -> None:
    from ray.exceptions import RayActorError

    long = "The actor died unexpectedly. " + "context " * 100 + "\nexit code 1"
    status, error = failures.classify(RayActorError(error_msg=long))
    assert status == "error" and error == "RayActorError: exit code 1"
    # the common "killed by the OOM killer, or SIGSEGV, or ..." hint is not evidence of an OOM
    hint = "Some common causes include: (1) the process was killed by the OOM killer"
    assert failures.classify(RayActorError(error_msg=hint))[0] == "error"
