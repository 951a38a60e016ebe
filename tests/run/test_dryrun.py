"""`halbench run SUITE --dry-run`: the trial list and cost estimate, and that nothing is written."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from halbench.cli import main
from halbench.run import dryrun
from halbench.run.options import RunOptions
from halbench.suite import Suite, load_suite

SMOKE = Path(__file__).resolve().parents[2] / "suites" / "smoke.yaml"


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_dry_run_lists_times_and_estimates_without_writing(tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    monkeypatch.chdir(tmp_path)
    lines: list[str] = []
    hours = dryrun.dry_run(load_suite(SMOKE), RunOptions(num_cpus=2), out=lines.append)
    text = "\n".join(lines)
    assert lines[0] == "smoke: 4 trials (dry run: nothing is written)"
    assert "grid synthetic: 4 trials x 2 epochs (hal 2, nca 2)" in text
    assert "timed synthetic-hal-b64-d16-s0 on cpu" in text and "training images/s" in text
    assert "at 2 trials at once (2 CPUs / 1 per trial)" in text
    assert 0 < hours < 0.1  # seconds per trial, not hours
    assert os.listdir(tmp_path) == []


def test_cli_dry_run_creates_no_run_directory(tmp_path: Path, capsys) -> None:  # noqa: ANN001
    out = tmp_path / "run"
    assert main(["run", str(SMOKE), "--dry-run", "--output", str(out), "--datasets", "x"]) == 2
    assert "--datasets x" in capsys.readouterr().err
    assert not out.exists()


def _timing(**kw: object) -> dryrun.Timing:
    base = {
        "trial_id": "t",
        "device": "cpu",
        "threads": 1,
        "images_per_s": 100.0,
        "eval_s_per_image": 0.001,
        "eval_images": 1500,
        "n_train": 1000,
        "n_test": 500,
        "max_steps": None,
    }
    return dryrun.Timing(**{**base, **kw})


def test_trial_seconds_counts_steps_epochs_and_evaluations() -> None:
    grid = dryrun.Planned("grid", "d", "hal", batch_size=300, epochs=4, count=1)
    # 3 full batches (drop_last) = 900 images per epoch at 100/s; 1500 images per evaluation
    assert dryrun.trial_seconds(grid, _timing(), 1) == pytest.approx(4 * 9.0 + 4 * 1.5)
    assert dryrun.trial_seconds(grid, _timing(), 3) == pytest.approx(4 * 9.0 + 2 * 1.5)
    capped = _timing(max_steps=1)
    assert dryrun.trial_seconds(grid, capped, 1) == pytest.approx(4 * 3.0 + 4 * 1.5)
    tune = dryrun.Planned("tune", "d", "hal", 300, 2, 1, validation=0.1)
    # 900 training rows left: 3 batches; evaluation embeds train part + validation = 1000
    assert dryrun.trial_seconds(tune, _timing(), 1) == pytest.approx(2 * 9.0 + 2 * 1.0)


def test_tuned_suite_counts_budget_per_group_and_final_seeds() -> None:
    suite = load_suite(SMOKE)  # 2 losses x B 64 x d 16 x seeds 0, 1
    tune = {"budget": 5, "epochs": 3, "validation": 0.2,
            "space": {"lr": {"loguniform": [1e-4, 1e-1]}}}  # fmt: skip
    doc = {
        **suite.model_dump(mode="json"),
        "tune": tune,
        "final": {"seeds": [0, 1, 2], "epochs": 7},
    }
    tuned = Suite.model_validate(doc)
    planned = dryrun.plan(tuned)
    assert sorted((p.phase, p.loss, p.count, p.epochs) for p in planned) == [
        ("final", "hal", 3, 7), ("final", "nca", 3, 7), ("tune", "hal", 5, 3), ("tune", "nca", 5, 3)
    ]  # fmt: skip
    grid = dryrun.plan(suite)
    assert sum(p.count for p in grid) == 4 and {p.phase for p in grid} == {"grid"}


def test_total_says_plainly_when_a_suite_is_thousands_of_hours() -> None:
    suite = load_suite(SMOKE)
    big = suite.model_copy(
        update={"resources": suite.resources.model_copy(update={"cpus_per_trial": 4.0})}
    )
    lines: list[str] = []
    dryrun._print_total(big, RunOptions(num_cpus=2), 1500.0, False, lines.append)
    text = "\n".join(lines)
    assert "1,500 trial-hours = 6,000 CPU hours" in text
    assert "this machine cannot run it" in text
    assert "this suite is 6,000 hours of compute on this machine" in text
    assert "62.5 days" in text  # 1500 h at one trial at a time


def test_the_plan_states_replicates_and_the_epoch_budget(tmp_path: Path) -> None:
    from halbench.commands.validate import summary

    doc = {
        "name": "tr",
        "dataset": {"name": "synthetic"},
        "losses": [{"name": "hal"}, {"name": "nca"}],
        "grid": {"batch_size": [16], "embedding_dim": [8], "seed": [0]},
        "train": {"epochs": 2},
        "tune": {
            "budget": 6,
            "epochs": 3,
            "replicates": 2,
            "budget_epochs": 10,
            "space": {"lr": {"loguniform": [1.0e-4, 1.0e-1]}},
        },  # fmt: skip
        "final": {"seeds": [0, 1, 2], "epochs": 2},
    }
    suite = Suite.model_validate(doc)
    lines = dryrun.protocol_lines(suite)
    assert lines[0].startswith("  protocol: tune 2 replicates x 2 groups x 6 trials x 3 epochs")
    assert "= 24 tuning trials; tune.budget_epochs 10" in lines[0]
    assert "(4 trials each when none stops early)" in lines[0]
    assert lines[1] == (
        "  protocol: final 2 replicates x 2 groups x 3 seeds x 2 epochs = 12 final trials"
    )
    # priced: 4 of the 6 tuning trials per group and replicate (ceil(10 / 3)), every final
    planned = dryrun.plan(suite)
    assert sorted((p.phase, p.count) for p in planned) == [("final", 3)] * 4 + [("tune", 4)] * 4
    assert summary(suite, tmp_path / "s.yaml").splitlines()[1:] == lines
    assert dryrun.protocol_lines(Suite.model_validate({**doc, "tune": None, "final": None})) == []
