"""Suite loading: the shipped suites are valid; every kind of mistake is one line, exit 2."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from halbench.cli import main
from halbench.errors import UserError
from halbench.suite import load_suite, parse_suite, suite_diff

ROOT = Path(__file__).resolve().parents[1]
SUITES = sorted((ROOT / "suites").glob("*.yaml"))

GOOD = {
    "name": "t",
    "dataset": {"name": "synthetic", "train_size": 64, "test_size": 32},
    "losses": [{"name": "hal"}, {"name": "nca"}],
    "grid": {"batch_size": [16, 32], "embedding_dim": [8], "seed": [0, 1, 2]},
}


def _with(**changes):
    data = {k: (dict(v) if isinstance(v, dict) else v) for k, v in GOOD.items()}
    for dotted, value in changes.items():
        node = data
        *parents, leaf = dotted.split("__")
        for p in parents:
            node = node[p]
        node[leaf] = value
    return data


@pytest.mark.parametrize(
    "path", [p for p in SUITES if p.name != "profile.yaml"], ids=lambda p: p.name
)
def test_shipped_suites_are_valid(path: Path) -> None:
    suite = load_suite(path)
    assert suite.trials(), path


def test_grid_expansion_and_ids() -> None:
    suite = parse_suite(GOOD, Path("t.yaml"))
    trials = suite.trials()
    assert len(trials) == 2 * 2 * 1 * 3
    ids = [t.trial_id for t in trials]
    assert len(set(ids)) == len(ids)
    assert ids[0] == "synthetic-hal-b16-d8-s0"


def test_hash_ignores_resources_and_formatting_but_not_science() -> None:
    a = parse_suite(GOOD, Path("a.yaml"))
    b = parse_suite(_with(resources={"max_concurrent": 4}, description="x"), Path("b.yaml"))
    c = parse_suite(_with(grid__seed=[0, 1]), Path("c.yaml"))
    assert a.hash() == b.hash()
    assert a.hash() != c.hash()
    assert suite_diff(a.science(), c.science()) == ["grid.seed"]


def test_labels_distinguish_two_entries_of_one_loss() -> None:
    data = _with(
        losses=[
            {"name": "hal", "label": "hal-s16"},
            {"name": "hal", "label": "hal-s32", "params": {"scale": 32.0}},
        ]
    )
    suite = parse_suite(data, Path("t.yaml"))
    assert {t.loss.display for t in suite.trials()} == {"hal-s16", "hal-s32"}


BAD: list[tuple[str, object, str]] = [
    ("unknown top-level key", _with(epochs=3), "epochs: unknown key"),
    ("unknown nested key", _with(train={"epoch": 3}), "train.epoch: unknown key"),
    ("wrong type", _with(train={"epochs": "two"}), "train.epochs: Input should be a valid integer"),
    ("float for int", _with(train={"epochs": 2.5}), "train.epochs"),
    ("empty grid axis", _with(grid__batch_size=[]), "grid.batch_size"),
    (
        "negative batch size",
        _with(grid__batch_size=[-4]),
        "grid.batch_size[0]: Input should be greater than 0",
    ),
    ("zero embedding dim", _with(grid__embedding_dim=[0]), "grid.embedding_dim[0]"),
    ("unknown loss", _with(losses=[{"name": "hall"}]), "losses[0] (hall)"),
    (
        "bad loss parameter",
        _with(losses=[{"name": "hal", "params": {"scale": -1.0}}]),
        "losses[0] (hal)",
    ),
    (
        "unknown loss parameter",
        _with(losses=[{"name": "nca", "params": {"temprature": 1.0}}]),
        "losses[0] (nca)",
    ),
    (
        "unknown dataset",
        _with(dataset={"name": "imagenet22k"}),
        "datasets[0].name: unknown dataset",
    ),
    ("unknown model", _with(model={"backbone": "vgg99"}), "model.backbone: unknown model"),
    (
        "missing dataset",
        {k: v for k, v in GOOD.items() if k != "dataset"},
        "dataset: required key is missing",
    ),
    ("bad optimizer", _with(train={"optimizer": "rmsprop"}), "train.optimizer"),
    ("duplicate losses", _with(losses=[{"name": "hal"}, {"name": "hal"}]), "appear more than once"),
    ("not a mapping", ["a", "b"], "expected a mapping"),
]


@pytest.mark.parametrize(("what", "data", "expected"), BAD, ids=[b[0] for b in BAD])
def test_bad_suites_exit_2_with_one_line(what, data, expected, tmp_path, capsys) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(UserError) as err:
        load_suite(path)
    assert expected in str(err.value), str(err.value)
    assert str(err.value).startswith(str(path)), "the message names the file"

    assert main(["run", str(path), "--output", str(tmp_path / "out")]) == 2
    stderr = capsys.readouterr().err
    assert stderr.count("\n") == 1 and "Traceback" not in stderr, stderr
    assert not (tmp_path / "out").exists(), "nothing runs for a bad suite"


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (None, "suite file not found"),
        ("name: [unclosed\n", "invalid YAML at line"),
        ("", "expected a mapping"),
        ("\x00\xff binary", "not a text file"),
    ],
    ids=["missing file", "bad YAML", "empty file", "binary"],
)
def test_unreadable_suite_files(content, expected, tmp_path, capsys) -> None:
    path = tmp_path / "s.yaml"
    if content is not None:
        path.write_bytes(content.encode("latin-1"))
    assert main(["run", str(path)]) == 2
    err = capsys.readouterr().err
    assert expected in err and err.count("\n") == 1, err


@pytest.mark.parametrize(
    ("dataset", "expected"),
    [
        ({"name": "cifar10"}, "dataset 'cifar10' not found (looked in: "),
        ({"name": "synthetic", "params": {"colour": True}}, "synthetic dataset: unknown params"),
    ],
    ids=["missing files", "bad dataset params"],
)
def test_data_problems_stop_a_local_run_before_it_starts(dataset, expected, tmp_path, capsys):
    path = tmp_path / "s.yaml"
    data = _with(dataset={**dataset, "root": str(tmp_path / "data")})
    path.write_text(yaml.safe_dump(data))
    out = tmp_path / "out"
    assert main(["run", str(path), "--output", str(out), "--no-ray"]) == 2
    err = capsys.readouterr().err
    assert expected in err and err.count("\n") == 1, err
    assert not out.exists()
