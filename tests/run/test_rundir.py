"""run/rundir.py: the suite files, env.json (one recipe for run and profile), trial files."""

from __future__ import annotations

import json
import re
from pathlib import Path

import polars as pl
import pytest
import yaml

from halbench.errors import UserError
from halbench.run import rundir
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


# --- names from a suite never become paths unchecked -----------------------------------------


@pytest.mark.parametrize(
    "trial_id",
    ["/../../../../tmp/ESCAPED-b64", "a/b", "..", ".hidden", "a\x00b", "x" * 300, "ü", "a b"],
)
def test_any_trial_id_becomes_a_file_name_inside_trials(tmp_path: Path, trial_id: str) -> None:
    name = rundir.trial_file_name(trial_id)
    assert re.fullmatch(r"[A-Za-z0-9_-]{1,80}-[0-9a-f]{16}\.json", name), name
    assert len(name.encode()) < 255
    rundir.save_trial(tmp_path, {"trial_id": trial_id, "status": "ok"}, [])
    (written,) = (tmp_path / "trials").iterdir()
    assert written.name == name
    # the id is kept inside the file, and resume finds it by that id
    assert rundir.finished_trials(tmp_path) == {
        trial_id: {"row": {"trial_id": trial_id, "status": "ok"}, "epochs": []}
    }
    assert rundir.has_trial(tmp_path, trial_id)


def test_portable_trial_ids_keep_their_names(tmp_path: Path) -> None:
    for trial_id in ["synthetic-hal-b64-d16-s0", "cifar10-pml:TripletMarginLoss:margin=0.1-b8"]:
        assert rundir.trial_file_name(trial_id) == f"{trial_id}.json"
    assert rundir.trial_file_name("a-b") != rundir.trial_file_name("a/b")


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
        rundir.save_trial(out, {"trial_id": "t", "status": "ok"}, [])
    assert not any((tmp_path / "elsewhere").iterdir())


# --- resume trusts only trial files of this suite ----------------------------------------------


def _damaged(suite: Suite) -> dict[str, bytes]:
    """File name -> content of trial files that resume must not read as results."""
    s0, s1, other = suite.trials()[0].trial_id, suite.trials()[1].trial_id, "stub-a-b8-d4-s7"

    def blob(row: object, epochs: object = ()) -> bytes:
        return json.dumps({"row": row, "epochs": list(epochs)}).encode()

    good = {"trial_id": s0, "status": "ok", "suite_hash": suite.hash()}
    return {
        f"{s0}.json": blob(good)[:20],  # truncated
        f"{s1}.json": b"\x00\xff\xfe binary \x89PNG",
        "empty-object.json": b"{}",
        "a-list.json": b"[]",
        "null.json": b"null",
        "no-row.json": b'{"epochs": []}',
        "empty-row.json": b'{"row": {}, "epochs": []}',
        "no-epochs.json": json.dumps({"row": {**good, "trial_id": "no-epochs"}}).encode(),
        f"{other}.json": blob({**good, "trial_id": other}),  # a seed the suite does not have
        "renamed.json": blob(good),  # another trial's record under this name
        "bad-type.json": blob({**good, "trial_id": "bad-type", "batch_size": "64"}),
        "garbled.json": b'{"row": {"trial_id": "x", "status": "ok"}, "epochs": [',
    }


def test_resume_moves_aside_every_trial_file_it_cannot_trust(tmp_path: Path) -> None:
    suite, _ = suite_file(tmp_path)
    specs = suite.trials()
    out = tmp_path / "run"
    (out / "trials").mkdir(parents=True)
    for name, content in _damaged(suite).items():
        (out / "trials" / name).write_bytes(content)
    foreign_hash = {"trial_id": specs[2].trial_id, "status": "ok", "suite_hash": "feedbeef0000"}
    rundir.save_trial(out, foreign_hash, [])
    kept = {"trial_id": specs[3].trial_id, "status": "ok", "suite_hash": suite.hash()}
    rundir.save_trial(out, kept, [{"trial_id": specs[3].trial_id, "epoch": 1}])
    lines: list[str] = []
    done = rundir.finished_trials(out, suite, {s.trial_id for s in specs}, say=lines.append)
    assert list(done) == [specs[3].trial_id]  # only the sound file of this suite
    assert len(lines) == len(_damaged(suite)) + 1
    assert all("\n" not in line and "moved to trials/rejected/" in line for line in lines)
    assert any("not a trial of this suite" in line for line in lines)
    assert any("another suite" in line for line in lines)
    rejected = sorted(p.name.split(".json")[0] for p in (out / "trials" / "rejected").iterdir())
    assert len(rejected) == len(lines)
    assert sorted(p.name for p in (out / "trials").glob("*.json")) == [f"{specs[3].trial_id}.json"]
    # a second look finds nothing more to move, and collect counts each trial once
    assert rundir.finished_trials(out, suite, say=lines.append) == done
    assert rundir.collect(out, suite, done) == {"ok": 1}
    assert pl.read_parquet(out / "epochs.parquet").height == 1


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
