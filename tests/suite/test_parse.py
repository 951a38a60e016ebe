"""Suite loading: the shipped suites are valid; every kind of mistake is one line, exit 2."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import yaml

from halbench.cli import main
from halbench.errors import UserError
from halbench.suite import load_suite, parse_suite, suite_diff

ROOT = Path(__file__).resolve().parents[2]
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
    # eval.save_embeddings keeps files, it measures nothing: the same hash (a resume may add it)
    eval_ = {**GOOD.get("eval", {}), "save_embeddings": True}
    assert parse_suite({**GOOD, "eval": eval_}, Path("d.yaml")).hash() == a.hash()


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


# --- hostile values: finite numbers, bounds, file-safe labels, bounded messages --------------

HOSTILE: list[tuple[str, object, str]] = [
    ("lr inf", _with(train={"lr": float("inf")}), "train.lr: Input should be a finite number"),
    ("lr 1e400 text", _with(train={"lr": "1e400"}), "train.lr: Input should be a finite number"),
    ("400-digit lr", _with(train={"lr": 10**400}), "train.lr: must be a finite number"),
    ("warmup nan", _with(train={"warmup_epochs": float("nan")}), "train.warmup_epochs"),
    ("warmup > epochs", _with(train={"warmup_epochs": 1e29}), "must be at most epochs"),
    ("loss_lr_mult inf", _with(train={"loss_lr_mult": float("inf")}), "train.loss_lr_mult"),
    ("weight_decay inf", _with(train={"weight_decay": float("inf")}), "train.weight_decay"),
    ("seed 2^64", _with(grid__seed=[2**64]), "grid.seed[0]: Input should be less than"),
    ("epochs 400 digits", _with(train={"epochs": 10**400}), "got an integer of 401 digits"),
    ("gpus 1.5", _with(resources={"gpus_per_trial": 1.5}), "resources.gpus_per_trial"),
    ("cpus inf", _with(resources={"cpus_per_trial": float("inf")}), "resources.cpus_per_trial"),
    ("batch > train", _with(grid__batch_size=[65]), "grid.batch_size[0]: 65 is more than the 64"),
    ("k > train", _with(eval={"ks": [1, 65]}), "eval.ks: k = 65 is more than the 64"),
    (
        "classes > samples",
        _with(dataset={"name": "synthetic", "train_size": 64, "params": {"num_classes": 600}}),
        "datasets[0].params.num_classes: num_classes must be an integer in [2, 64], got 600",
    ),
    (
        "noise nan",
        _with(dataset={"name": "synthetic", "train_size": 64, "params": {"noise": float("nan")}}),
        "datasets[0].params.noise: noise must be a finite number",
    ),
    (
        "huge synthetic images",
        _with(
            dataset={
                "name": "synthetic",
                "train_size": 64,
                "params": {"channels": 4096, "image_size": 4096},
            }
        ),
        "GiB to generate",
    ),
    ("cifar10 too big", _with(dataset={"name": "cifar10", "train_size": 60_000}), "has 50000"),
    ("model width 0", _with(model={"params": {"width": 0}}), "model.params.width: width must"),
    ("model width 1e9", _with(model={"params": {"width": 10**9}}), "model.params: cannot build"),
    ("label slash", _with(losses=[{"name": "hal", "label": "a/b"}]), "losses[0].label: a label"),
    ("label NUL", _with(losses=[{"name": "hal", "label": "a\x00b"}]), "losses[0].label"),
    ("label newline", _with(losses=[{"name": "hal", "label": "a\nb"}]), "losses[0].label"),
    ("label 65 chars", _with(losses=[{"name": "hal", "label": "a" * 65}]), "losses[0].label"),
    ("label dot", _with(losses=[{"name": "hal", "label": ".x"}]), "losses[0].label"),
    ("label ..", _with(losses=[{"name": "hal", "label": ".."}]), "losses[0].label"),
    ("pml path name", _with(losses=[{"name": "pml:TripletMarginLoss:m=/x"}]), "give the entry"),
    (
        "pml repeated",
        _with(losses=[{"name": "pml:TripletMarginLoss:margin=1,margin=2"}]),
        "parameter margin given twice",
    ),
    ("pml nan", _with(losses=[{"name": "pml:MultiSimilarityLoss:alpha=nan"}]), "finite number"),
    ("pml str", _with(losses=[{"name": "pml:ContrastiveLoss:pos_margin=abc"}]), "losses[0]"),
    ("pml temp 0", _with(losses=[{"name": "pml:NTXentLoss:temperature=0"}]), "must be > 0"),
    ("pml base", _with(losses=[{"name": "pml:BaseMetricLossFunction"}]), "base class"),
    (
        "pml L-Softmax margin 1e9",
        _with(losses=[{"name": "pml:LargeMarginSoftmaxLoss:margin=1e9"}]),
        "margin must be an integer in [1, 32]",
    ),
]


@pytest.mark.parametrize(("what", "data", "expected"), HOSTILE, ids=[h[0] for h in HOSTILE])
def test_hostile_values_are_one_line_naming_file_and_field(what, data, expected, tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data))
    start = time.perf_counter()
    with pytest.raises(UserError) as err:
        load_suite(path)
    message = str(err.value)
    assert time.perf_counter() - start < 5
    assert message.startswith(f"{path}: ") and "\n" not in message, message
    assert expected in message, message


def test_messages_never_repr_a_huge_value(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    for data in (
        _with(train={"optimizer": "x" * 500_000}),
        _with(dataset={"name": "x" * 500_000}),
        _with(losses=[{"name": "hal", "label": "x" * 500_000}]),
        _with(losses=[{"name": "pml:TripletMarginLoss:margin=" + "9" * 500_000}]),
        _with(name=["x"] * 100_000),
    ):
        path.write_text(yaml.safe_dump(data))
        with pytest.raises(UserError) as err:
            load_suite(path)
        assert len(str(err.value)) < len(str(path)) + 500, str(err.value)[:300]


def test_legal_extremes_load_quickly(tmp_path: Path) -> None:
    path = tmp_path / "ok.yaml"
    data = _with(
        train={"epochs": 10**9, "lr": "1e-3"},
        grid__seed=[0, 2**63 - 1],
        probes={"repeats": 10**9},
        losses=[
            {"name": "hal", "label": "a" * 64},
            {"name": "pml:LargeMarginSoftmaxLoss:margin=4"},
            {"name": "pml:TripletMarginLoss:margin=0.1", "label": "trip.m0-1"},
        ],
    )
    path.write_text(yaml.safe_dump(data))
    start = time.perf_counter()
    suite = load_suite(path)
    assert time.perf_counter() - start < 5
    assert suite.train.epochs == 10**9 and suite.grid.seed[-1] == 2**63 - 1
    assert len(suite.hash()) == 12


def test_alias_heavy_suite_hashes_fast(tmp_path: Path) -> None:
    # Within the alias budget: the shared list is expanded by model_dump, boundedly.
    path = tmp_path / "ok.yaml"
    text = yaml.safe_dump({k: v for k, v in GOOD.items() if k != "losses"})
    text += "losses:\n  - {name: hal, label: a, params: &p {scale: 16.0}}\n"
    text += "  - {name: hal, label: b, params: *p}\n"
    path.write_text(text)
    suite = load_suite(path)
    start = time.perf_counter()
    suite.hash()
    assert time.perf_counter() - start < 0.5


def test_every_problem_is_listed_and_a_typo_names_the_field_it_meant(tmp_path) -> None:
    # The typo, not the required key it hides, is what the user must read.
    grid = {"batchsize": [16], "embedding_dim": [8], "seed": [0]}
    with pytest.raises(UserError) as err:
        parse_suite(_with(grid=grid, train={"epoch": 3}), Path("t.yaml"))
    message = str(err.value)
    assert "grid.batchsize: unknown key (did you mean 'batch_size'?)" in message
    assert "train.epoch: unknown key (did you mean 'epochs'?)" in message
    assert "required key is missing" not in message  # batch_size is the typo's hint
    assert "\n" not in message


def test_more_than_five_problems_are_counted_and_a_union_is_one_problem() -> None:
    data = _with(
        train={"augment": "x", "epochs": 0, "lr": -1, "momentum": 2},
        eval={"batch_size": "x"},
        probes={"warmup": -1, "zzz": 1},
    )
    with pytest.raises(UserError) as err:
        parse_suite(data, Path("t.yaml"))
    message = str(err.value)
    assert message.count(": ") == 1 + 5 and message.endswith("; and 2 more problems"), message
    assert "train.augment: Input should be 'auto' or a valid boolean (got 'x')" in message
    assert "probes.zzz: unknown key" not in message  # the 7th problem, counted only
