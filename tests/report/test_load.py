import pytest

from halbench.errors import UserError
from halbench.report.load import load_groups

from .fixtures import epochs_of, trial


def test_missing_directory_and_directory_without_parquet(tmp_path):
    with pytest.raises(UserError, match="nowhere: run directory not found"):
        load_groups([tmp_path / "nowhere"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="empty: no trials.parquet or profile.parquet"):
        load_groups([tmp_path / "empty"])


def test_runs_of_one_suite_are_merged_with_their_epochs(make_run):
    fm = trial("hal", 64, 16, 0, 0.9, dataset="fashion-mnist")
    cf = trial("hal", 64, 16, 0, 0.6, dataset="cifar10")  # same trial_id, other dataset
    groups = load_groups(
        [make_run([fm], epochs_of(fm, [0.5, 0.9])), make_run([cf], epochs_of(cf, [0.3, 0.5, 0.6]))]
    )
    assert len(groups) == 1
    g = groups[0]
    assert sorted(g.trials["dataset"].to_list()) == ["cifar10", "fashion-mnist"]
    per_dataset = dict(g.epochs.group_by("dataset").len().iter_rows())
    assert per_dataset == {"fashion-mnist": 2, "cifar10": 3}


def test_different_suites_stay_apart(make_run):
    a = make_run([trial("hal", 64, 16, 0, 0.9, suite_hash="aaa")], suite_hash="aaa")
    b = make_run([trial("hal", 64, 16, 0, 0.5, suite_hash="bbb")], suite_hash="bbb")
    groups = load_groups([a, b])
    assert [g.suite_hash for g in groups] == ["aaa", "bbb"]
    assert [g.trials["knn_acc_1"].to_list() for g in groups] == [[0.9], [0.5]]


def test_suite_hash_from_the_trials_when_env_lacks_it(make_run):
    a = make_run([trial("hal", 64, 16, 0, 0.9, suite_hash="x")], suite_hash=None)
    b = make_run([trial("hal", 64, 16, 1, 0.8, suite_hash="x")], suite_hash=None)
    assert [g.trials.height for g in load_groups([a, b])] == [2]


def test_a_rerun_trial_keeps_its_ok_row(make_run):
    ok = trial("hal", 64, 16, 0, 0.9)
    failed = trial("hal", 64, 16, 0, None, status="error")
    g = load_groups([make_run([ok]), make_run([failed])])[0]
    assert g.trials["status"].to_list() == ["ok"]


def test_a_directory_with_two_suite_hashes_is_split(make_run):
    rows = [
        trial("hal", 64, 16, 0, 0.9, suite_hash="x"),
        trial("hal", 64, 16, 1, 0.5, suite_hash="y"),
    ]
    groups = load_groups([make_run(rows, suite_hash=None)])
    assert [(g.suite_hash, g.trials["knn_acc_1"].to_list()) for g in groups] == [
        ("x", [0.9]),
        ("y", [0.5]),
    ]
