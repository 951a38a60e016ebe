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


# --- a full disk, wherever it was hit -------------------------------------------------------


def test_no_space_is_found_in_causes_contexts_and_args(tmp_path) -> None:
    import errno

    full = OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "x.json"))
    assert failures.no_space(full) == (str(tmp_path / "x.json"), "No space left on device")
    try:
        try:
            raise full
        except OSError as err:
            raise RuntimeError("Tune failed") from err
    except RuntimeError as wrapped:
        assert failures.no_space(wrapped) == (str(tmp_path / "x.json"), "No space left on device")
    tune_error = Exception("The Ray Tune run failed", full)  # TuneError keeps it in its args
    assert failures.no_space(tune_error) is not None
    pyarrow_like = OSError("error writing '/mnt/run/trials.parquet': No space left on device")
    assert failures.no_space(pyarrow_like) == ("/mnt/run/trials.parquet", "No space left on device")
    assert failures.no_space(RuntimeError("shape mismatch")) is None
    assert failures.no_space(OSError(errno.EACCES, "Permission denied")) is None


def test_disk_full_line_names_path_and_free_space(tmp_path) -> None:
    import errno
    import shutil

    line = failures.disk_full_line(OSError(errno.ENOSPC, "full"), tmp_path / "missing" / "f")
    assert line is not None and line.startswith(f"{tmp_path / 'missing' / 'f'}: ")
    assert "No space left on device" in line and "free)" in line and "what finished is kept" in line
    free = shutil.disk_usage(tmp_path).free
    assert failures.free_space(tmp_path / "a" / "b") == failures.free_space(tmp_path)
    shown, unit = failures.free_space(tmp_path).split()[:2]
    scale = {"B": 1, "kB": 1024, "MB": 1024**2, "GB": 1024**3}[unit]
    assert abs(float(shown) * scale - free) <= 0.1 * scale + 0.01 * free
    assert failures.disk_full_line(ValueError("no"), tmp_path) is None
