"""The runner without Ray: resume bookkeeping, parquet collection, interruption, options."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
import yaml

from halbench.errors import UserError
from halbench.run import runner
from halbench.run.options import RunOptions
from halbench.suite import Suite
from tests.plugins import stub_trial

ROOT = Path(__file__).resolve().parents[2]


SUITE = {
    "name": "stub",
    "dataset": {"name": "synthetic"},
    "losses": [{"name": "a"}, {"name": "b", "params": {"status": "oom"}}],
    "grid": {"batch_size": [8, 16], "embedding_dim": [4], "seed": [0, 1]},
    "train": {"epochs": 2},
}


def write_suite(tmp_path: Path, doc: dict) -> tuple[Suite, Path]:
    path = tmp_path / f"{doc['name']}.yaml"
    path.write_text(yaml.safe_dump(doc))
    return Suite.model_validate(doc), path


class CountingTrial:
    """stub_trial.run_trial that records which trials ran (in-process runs only)."""

    def __init__(self) -> None:
        self.ran: list[str] = []

    def __call__(self, suite, spec, *, report=None):  # noqa: ANN001
        self.ran.append(spec.trial_id)
        return stub_trial.run_trial(suite, spec, report=report)


def run(suite: Suite, path: Path, out: Path, trial, **kw) -> runner.RunSummary:  # noqa: ANN001
    options = RunOptions(output=out, use_ray=False, **kw)
    return runner.run_suite(suite, path, options, trial_fn=trial)


def test_in_process_run_writes_rows_in_grid_order(tmp_path) -> None:
    suite, path = write_suite(tmp_path, SUITE)
    summary = run(suite, path, tmp_path / "run", CountingTrial())
    assert summary.statuses == {"ok": 4, "oom": 4} and not summary.interrupted
    trials = pl.read_parquet(tmp_path / "run/trials.parquet")
    assert trials["trial_id"].to_list() == [s.trial_id for s in suite.trials()]
    epochs = pl.read_parquet(tmp_path / "run/epochs.parquet")
    assert epochs.height == 8 * 2
    assert (tmp_path / "run/suite.yaml").read_text() == path.read_text()


def test_resume_runs_only_missing_trials_and_matches_full_run(tmp_path) -> None:
    suite, path = write_suite(tmp_path, SUITE)
    full = tmp_path / "full"
    run(suite, path, full, CountingTrial())

    part = tmp_path / "part"
    run(suite, path, part, CountingTrial())
    gone = sorted((part / "trials").glob("*.json"))[::3]  # as if the run had died
    for file in gone:
        file.unlink()
    second = CountingTrial()
    summary = run(suite, path, part, second, resume=True)
    assert sorted(second.ran) == sorted(f.stem for f in gone)
    assert summary.skipped == 8 - len(gone)
    for name in ("trials.parquet", "epochs.parquet"):
        assert pl.read_parquet(part / name).equals(pl.read_parquet(full / name)), name


def test_existing_results_need_resume(tmp_path) -> None:
    suite, path = write_suite(tmp_path, SUITE)
    run(suite, path, tmp_path / "run", CountingTrial())
    with pytest.raises(UserError, match="--resume"):
        run(suite, path, tmp_path / "run", CountingTrial())


def test_resume_refuses_a_changed_suite_and_names_the_change(tmp_path) -> None:
    suite, path = write_suite(tmp_path, SUITE)
    run(suite, path, tmp_path / "run", CountingTrial())
    changed = {**SUITE, "train": {"epochs": 3}}
    suite2, path2 = write_suite(tmp_path, changed)
    with pytest.raises(UserError, match=r"changed: train\.epochs"):
        run(suite2, path2, tmp_path / "run", CountingTrial(), resume=True)


def test_resume_accepts_changed_resources(tmp_path) -> None:
    suite, path = write_suite(tmp_path, SUITE)
    run(suite, path, tmp_path / "run", CountingTrial())
    more = {**SUITE, "resources": {"cpus_per_trial": 2, "max_concurrent": 3}}
    suite2, path2 = write_suite(tmp_path, more)
    again = CountingTrial()
    assert not run(suite2, path2, tmp_path / "run", again, resume=True).interrupted
    assert again.ran == []


def test_resume_needs_a_run_directory(tmp_path) -> None:
    suite, path = write_suite(tmp_path, SUITE)
    with pytest.raises(UserError, match="nothing to resume"):
        run(suite, path, tmp_path / "empty", CountingTrial(), resume=True)


def test_keyboard_interrupt_keeps_finished_trials(tmp_path) -> None:
    suite, path = write_suite(tmp_path, SUITE)

    def dies_on_third(suite, spec, *, report=None):  # noqa: ANN001
        if spec.trial_id == suite.trials()[2].trial_id:
            raise KeyboardInterrupt
        return stub_trial.run_trial(suite, spec, report=report)

    summary = run(suite, path, tmp_path / "run", dies_on_third)
    assert summary.interrupted
    assert pl.read_parquet(tmp_path / "run/trials.parquet").height == 2
    summary = run(suite, path, tmp_path / "run", CountingTrial(), resume=True)
    assert not summary.interrupted and sum(summary.statuses.values()) == 8


def test_a_hashless_trial_file_of_another_suite_is_rejected(tmp_path, capsys) -> None:  # noqa: ANN001
    """issue 24: another suite's trial file with its hash removed went into trials.parquet."""
    suite, path = write_suite(tmp_path, SUITE)
    other_doc = {**SUITE, "name": "longsmoke", "train": {"epochs": 5}}
    other, other_path = write_suite(tmp_path, other_doc)
    run(other, other_path, tmp_path / "other", CountingTrial())
    trial_id = suite.trials()[0].trial_id
    foreign = json.loads((tmp_path / "other/trials" / f"{trial_id}.json").read_text())
    del foreign["row"]["suite_hash"]
    first = CountingTrial()
    run(suite, path, tmp_path / "run", first)
    (tmp_path / "run/trials" / f"{trial_id}.json").write_text(json.dumps(foreign))
    capsys.readouterr()
    again = CountingTrial()
    summary = run(suite, path, tmp_path / "run", again, resume=True)
    err = capsys.readouterr().err
    assert again.ran == [trial_id] and sum(summary.statuses.values()) == 8
    assert "no suite_hash in its row" in err and "moved to trials/rejected/" in err
    trials = pl.read_parquet(tmp_path / "run/trials.parquet")
    assert set(trials["suite"]) == {"stub"} and set(trials["epochs"]) == {2}
    assert pl.read_parquet(tmp_path / "run/epochs.parquet").height == 8 * 2
    assert len(list((tmp_path / "run/trials/rejected").iterdir())) == 1


def test_resume_after_suite_yaml_was_deleted_uses_suite_json(tmp_path) -> None:  # noqa: ANN001
    suite, path = write_suite(tmp_path, SUITE)

    def dies_on_third(suite, spec, *, report=None):  # noqa: ANN001
        if spec.trial_id == suite.trials()[2].trial_id:
            raise KeyboardInterrupt
        return stub_trial.run_trial(suite, spec, report=report)

    assert run(suite, path, tmp_path / "run", dies_on_third).interrupted
    (tmp_path / "run/suite.yaml").unlink()
    counting = CountingTrial()
    summary = run(suite, path, tmp_path / "run", counting, resume=True)
    assert not summary.interrupted and len(counting.ran) == 6
    assert (tmp_path / "run/suite.yaml").read_text() == path.read_text()


def test_env_json_keeps_first_start_and_every_invocation(tmp_path) -> None:
    suite, path = write_suite(tmp_path, SUITE)
    run(suite, path, tmp_path / "run", CountingTrial())
    first = json.loads((tmp_path / "run/env.json").read_text())
    run(suite, path, tmp_path / "run", CountingTrial(), resume=True)
    env = json.loads((tmp_path / "run/env.json").read_text())
    assert env["suite_hash"] == suite.hash()
    assert env["started_at"] == first["started_at"] <= first["finished_at"] <= env["finished_at"]
    assert [inv["trials_to_run"] for inv in env["invocations"]] == [8, 0]
    assert all("finished_at" in inv for inv in env["invocations"])


def test_unreadable_trial_file_is_rerun(tmp_path) -> None:
    suite, path = write_suite(tmp_path, SUITE)
    run(suite, path, tmp_path / "run", CountingTrial())
    victim = next((tmp_path / "run/trials").glob("*.json"))
    victim.write_text('{"row": ')
    again = CountingTrial()
    run(suite, path, tmp_path / "run", again, resume=True)
    assert again.ran == [victim.stem]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--num-gpus", "-1"], "--num-gpus: expected a non-negative integer"),
        (["--address", "auto", "--ray-temp-dir", "/tmp/x"], "--ray-temp-dir is for a local Ray"),
        (["--address", "auto", "--no-ray"], "--no-ray and --address exclude each other"),
    ],
)
def test_run_option_mistakes_are_one_line_exit_2(extra, message, capsys) -> None:
    from halbench.cli import main

    assert main(["run", str(ROOT / "suites/smoke.yaml"), *extra]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"halbench: error: {message}") and err.count("\n") == 1, err


class _Entered(Exception):
    """Raised by a stand-in ray_session: the driver got as far as starting Ray."""


def test_run_and_profile_enter_ray_through_one_function(tmp_path, monkeypatch) -> None:
    from contextlib import contextmanager

    from halbench.run import cluster, profile
    from halbench.suite.profile import ProfileSuite

    seen: list[RunOptions] = []

    @contextmanager
    def session(options: RunOptions):
        seen.append(options)
        raise _Entered
        yield  # pragma: no cover

    monkeypatch.setattr(cluster, "ray_session", session)
    suite, path = write_suite(tmp_path, SUITE)
    run_options = RunOptions(output=tmp_path / "run", num_cpus=1)
    with pytest.raises(_Entered):
        runner.run_suite(suite, path, run_options, trial_fn=CountingTrial())
    sweep = ProfileSuite.model_validate({"losses": [{"name": "hal"}]})
    profile_options = RunOptions(output=tmp_path / "profile", address="auto")
    with pytest.raises(_Entered):
        profile.run_profile(sweep, None, profile_options)
    assert seen == [run_options, profile_options]
