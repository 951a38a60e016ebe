"""run/rundir.py: the suite files, env.json (one recipe for run and profile), trial files."""

from __future__ import annotations

import json
import re
from pathlib import Path

import polars as pl
import pytest
import yaml

from halbench.errors import UserError
from halbench.profile_suite import ProfileSuite
from halbench.run import rundir
from halbench.suite import Suite

SUITE = {
    "name": "stub",
    "dataset": {"name": "synthetic"},
    "losses": [{"name": "a"}, {"name": "b"}],
    "grid": {"batch_size": [8], "embedding_dim": [4], "seed": [0, 1]},
}


def suite_file(tmp_path: Path, doc: dict = SUITE) -> tuple[Suite, Path]:
    path = tmp_path / "stub.yaml"
    path.write_text(yaml.safe_dump(doc))
    return Suite.model_validate(doc), path


def test_a_run_directory_keeps_the_suite_as_given_and_normalized(tmp_path: Path) -> None:
    suite, path = suite_file(tmp_path)
    out = tmp_path / "run"
    rundir.prepare_run_dir(suite, path, out, resume=False)
    assert (out / "suite.yaml").read_text() == path.read_text()
    text = (out / "suite.json").read_text()
    assert json.loads(text) == suite.model_dump(mode="json")
    assert text == json.dumps(suite.model_dump(mode="json"), sort_keys=True, indent=2) + "\n"
    # the defaults are filled in: a reader needs no YAML parser and no pydantic model
    assert json.loads(text)["train"]["epochs"] == suite.train.epochs
    assert Suite.model_validate(json.loads(text)).hash() == suite.hash()


def test_resuming_an_old_run_directory_adds_its_suite_json(tmp_path: Path) -> None:
    suite, path = suite_file(tmp_path)
    out = tmp_path / "run"
    rundir.prepare_run_dir(suite, path, out, resume=False)
    (out / "suite.json").unlink()
    rundir.prepare_run_dir(suite, path, out, resume=True)
    assert json.loads((out / "suite.json").read_text())["name"] == "stub"


def test_a_stored_suite_that_cannot_be_read_refuses_resume(tmp_path: Path) -> None:
    suite, path = suite_file(tmp_path)
    out = tmp_path / "run"
    rundir.prepare_run_dir(suite, path, out, resume=False)
    (out / "suite.yaml").write_text("name: [unclosed\n")
    with pytest.raises(UserError, match=r"unreadable suite \(\w+Error: .*cannot resume"):
        rundir.prepare_run_dir(suite, path, out, resume=True)


def test_write_env_opens_and_closes_one_invocation_at_a_time(tmp_path: Path) -> None:
    suite, _ = suite_file(tmp_path)
    rundir.write_env(tmp_path, suite, {"started_at": "t0", "argv": ["a"]})
    rundir.write_env(tmp_path, suite, {"finished_at": "t1"})
    rundir.write_env(tmp_path, suite, {"started_at": "t2"})
    env = rundir.write_env(tmp_path, suite, {"finished_at": "t3"}, profile_device="cpu")
    assert env == json.loads((tmp_path / "env.json").read_text())
    assert (env["started_at"], env["finished_at"]) == ("t0", "t3")
    assert env["invocations"] == [
        {"started_at": "t0", "argv": ["a"], "finished_at": "t1"},
        {"started_at": "t2", "finished_at": "t3"},
    ]
    assert env["suite"] == "stub" and env["suite_hash"] == suite.hash()
    assert env["profile_device"] == "cpu" and env["torch"] and "git_sha" in env


def test_a_profile_suite_goes_through_the_same_recipe(tmp_path: Path) -> None:
    suite = ProfileSuite()
    rundir.store_suite(tmp_path, suite, None)
    env = rundir.write_env(tmp_path, suite, {"started_at": "t0"})
    assert not (tmp_path / "suite.yaml").exists()  # the built-in sweep has no file
    assert json.loads((tmp_path / "suite.json").read_text())["kind"] == "profile"
    assert env["suite"] == "profile" and env["suite_hash"] == suite.hash()


def test_collect_writes_grid_order_and_counts_statuses(tmp_path: Path) -> None:
    suite, _ = suite_file(tmp_path)
    specs = suite.trials()
    for spec, status in zip(reversed(specs), ["ok", "oom", "ok", "error"], strict=True):
        row = {"trial_id": spec.trial_id, "status": status}
        rundir.save_trial(tmp_path, row, [{"trial_id": spec.trial_id, "epoch": 1}])
    assert rundir.has_trial(tmp_path, specs[0].trial_id)
    done = rundir.finished_trials(tmp_path)
    assert rundir.collect(tmp_path, suite, done) == {"ok": 2, "oom": 1, "error": 1}
    trials = pl.read_parquet(tmp_path / "trials.parquet")
    assert trials["trial_id"].to_list() == [s.trial_id for s in specs]
    assert pl.read_parquet(tmp_path / "epochs.parquet").height == 4


def test_default_output_is_the_suite_name_and_a_utc_stamp(tmp_path: Path) -> None:
    suite, _ = suite_file(tmp_path)
    out = rundir.default_output(suite, tmp_path)
    assert out.parent == tmp_path / "stub" and re.fullmatch(r"\d{8}T\d{6}Z", out.name)
