"""run/rundir.py: the suite files, env.json (one recipe for run and profile), paths."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from halbench.errors import UserError
from halbench.run import rundir, store
from halbench.suite import Suite
from halbench.suite.profile import ProfileSuite

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


def test_resume_without_suite_yaml_uses_suite_json_and_restores_it(tmp_path: Path) -> None:
    """issue 24: a deleted suite.yaml was a dead end although suite.json was still there."""
    suite, path = suite_file(tmp_path)
    out = tmp_path / "run"
    rundir.prepare_run_dir(suite, path, out, resume=False)
    (out / "trials" / "t.json").write_text("{}")  # the run holds results
    (out / "suite.yaml").unlink()
    rundir.prepare_run_dir(suite, path, out, resume=True)
    assert (out / "suite.yaml").read_bytes() == path.read_bytes()
    other = {**SUITE, "grid": {**SUITE["grid"], "seed": [0, 1, 2]}}
    (tmp_path / "o").mkdir()
    changed, other_path = suite_file(tmp_path / "o", other)
    (out / "suite.yaml").unlink()
    with pytest.raises(UserError, match="differs from the suite of the run"):
        rundir.prepare_run_dir(changed, other_path, out, resume=True)
    (out / "suite.json").unlink()
    with pytest.raises(UserError, match="no suite.yaml or suite.json here.*restore the run's"):
        rundir.check_run_dir(suite, path, out, resume=True)


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


def test_default_output_is_the_suite_name_and_a_utc_stamp(tmp_path: Path) -> None:
    suite, _ = suite_file(tmp_path)
    out = rundir.default_output(suite, tmp_path)
    assert out.parent == tmp_path / "stub" and re.fullmatch(r"\d{8}T\d{6}Z", out.name)


# --- names from a suite never become paths unchecked -----------------------------------------


def test_portable_trial_ids_keep_their_names(tmp_path: Path) -> None:
    for trial_id in ["synthetic-hal-b64-d16-s0", "cifar10-pml:TripletMarginLoss:margin=0.1-b8"]:
        assert rundir.task_file_name(trial_id) == f"{trial_id}.json"
    assert rundir.task_file_name("a-b") != rundir.task_file_name("a/b")


def test_no_write_lands_outside_the_run_directory(tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert rundir.inside(out, "trials", "x.json") == (out / "trials" / "x.json").resolve()
    for parts in [("..", "x"), ("/etc/passwd",), ("trials", "..", "..", "y"), (".",)]:
        with pytest.raises(UserError, match="outside the run directory"):
            rundir.inside(out, *parts)
    (tmp_path / "elsewhere").mkdir()
    out.mkdir()
    (out / "trials").symlink_to(tmp_path / "elsewhere")  # a link planted in the run dir
    with pytest.raises(UserError, match="outside the run directory"):
        store.save(out, {"trial_id": "t", "status": "ok"}, [])
    assert not any((tmp_path / "elsewhere").iterdir())


@pytest.mark.parametrize(
    "content", [b"\x00\x01\xffbinary", b'{"invocations": [', b"[]", b'{"invocations": 5}']
)
def test_a_damaged_env_json_is_kept_beside_the_new_one(tmp_path: Path, content: bytes) -> None:
    suite, _ = suite_file(tmp_path)
    (tmp_path / "env.json").write_bytes(content)
    lines: list[str] = []
    env = rundir.write_env(tmp_path, suite, {"started_at": "t1"}, say=lines.append)
    (bad,) = tmp_path.glob("env.json.bad-*")
    assert bad.read_bytes() == content
    assert len(lines) == 1 and "damaged" in lines[0] and bad.name in lines[0]
    assert env["invocations"] == [{"started_at": "t1"}]
    assert json.loads((tmp_path / "env.json").read_text())["suite_hash"] == suite.hash()


def test_a_damaged_env_json_keeps_its_first_start_when_readable(tmp_path: Path) -> None:
    suite, _ = suite_file(tmp_path)
    (tmp_path / "env.json").write_text(json.dumps({"started_at": "t0", "invocations": "x"}))
    env = rundir.write_env(tmp_path, suite, {"started_at": "t1"}, say=lambda _: None)
    assert env["started_at"] == "t0"
    assert [i["started_at"] for i in env["invocations"]] == ["t0", "t1"]
