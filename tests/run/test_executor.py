"""run/executor.py: one preflight for run and profile suites, and the in-process path."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from halbench.errors import UserError
from halbench.run import executor
from halbench.run.options import RunOptions
from halbench.run.progress import Progress
from halbench.suite import Suite
from halbench.suite.profile import ProfileSuite
from tests.plugins import stub_trial

SUITE = {
    "name": "ex",
    "dataset": {"name": "synthetic"},
    "losses": [{"name": "a"}],
    "grid": {"batch_size": [8], "embedding_dim": [4], "seed": [0, 1]},
    "train": {"epochs": 2},
}


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_one_preflight_refuses_cuda_for_both_kinds_of_suite() -> None:
    run_suite = Suite.model_validate({**SUITE, "train": {"epochs": 2, "device": "cuda"}})
    with pytest.raises(UserError, match="train.device: cuda"):
        executor.preflight(run_suite, Path("s.yaml"), RunOptions(use_ray=False))
    profile = ProfileSuite.model_validate({"kind": "profile", "device": "cuda"})
    with pytest.raises(UserError, match=r"device \(or --device\): cuda"):
        executor.preflight(profile, None, RunOptions(use_ray=False))


def test_a_cpu_profile_task_asks_for_no_gpu() -> None:
    profile = ProfileSuite.model_validate({"kind": "profile", "device": "cpu"})
    assert executor.task_resources(profile)["gpu"] == 0.0


def test_the_in_process_path_writes_each_trial_through_its_sink(tmp_path: Path) -> None:
    from halbench.run import store

    suite = Suite.model_validate(SUITE)
    specs = suite.trials()
    run = executor.Executor(suite, tmp_path, RunOptions(use_ray=False), stub_trial.run_trial)
    run.trials(specs, Progress(len(specs), 0))
    expected = {s.trial_id: 2 for s in specs}
    assert sorted(store.finished(tmp_path, suite, expected)) == sorted(expected)


def test_saved_embeddings_are_written_before_the_trial_file(tmp_path: Path, monkeypatch) -> None:
    """The in-process path hands a trial's embeddings to the same sink as Ray's callback; the
    sink writes them first, so a trial with a file (the unit of resume) has its embeddings."""
    from types import SimpleNamespace

    from halbench.run import store

    order: list[str] = []
    monkeypatch.setattr(
        store,
        "save_embeddings",
        lambda out, task_id, parquet: order.append(f"embeddings {task_id}"),
    )
    real_save = store.save
    monkeypatch.setattr(store, "save", lambda out, row, epochs: (
        order.append(f"trial {row['trial_id']}"), real_save(out, row, epochs)))  # fmt: skip

    def trial_fn(suite, spec, report):  # noqa: ANN001, ANN202
        result = stub_trial.run_trial(suite, spec, report=report)
        return SimpleNamespace(row=result.row, epochs=result.epochs, embeddings=b"PAR1")

    suite = Suite.model_validate(SUITE)
    specs = suite.trials()
    executor.Executor(suite, tmp_path, RunOptions(use_ray=False), trial_fn).trials(
        specs, Progress(len(specs), 0)
    )
    assert order == [f"{kind} {s.trial_id}" for s in specs for kind in ("embeddings", "trial")]


def test_store_names_the_embeddings_file_after_the_trial_file(tmp_path: Path) -> None:
    from halbench.run import rundir, store

    for task_id in ("grid-a-s0", "a/odd id"):
        store.save_embeddings(tmp_path, task_id, b"PAR1")
        stem = Path(rundir.task_file_name(task_id)).stem
        assert (tmp_path / "embeddings" / f"{stem}.parquet").read_bytes() == b"PAR1"
