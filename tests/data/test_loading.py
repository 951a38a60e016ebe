"""Loading per protocol phase (grid, tune, final), bounds on sizes, batches and augmentation."""

from __future__ import annotations

import builtins
from pathlib import Path

import numpy as np
import pytest
import torch
from fixtures_data import write_fake_cifar10, write_fake_idx_dataset

from halbench import data


def _rows(x: torch.Tensor) -> set[bytes]:
    """Images as hashable rows (the fake images are random bytes, hence distinct)."""
    return {bytes(r) for r in x.flatten(1).numpy()}


class _TestSplitRead(AssertionError):
    pass


@data.DATASETS.register("test-guarded-data")
def _guarded(request: data.LoadRequest) -> data.RawData:
    """A data set whose test split raises when it is read."""
    if request.wants("test"):
        raise _TestSplitRead(f"the test split was requested: {sorted(request.splits)}")
    y = np.arange(60) % 3
    x = (np.arange(60 * 4 * 4) % 251).astype(np.uint8).reshape(60, 1, 4, 4)
    return data.RawData(data.DatasetInfo(3, (0.5,), (0.25,)), x, y)


def test_tune_never_asks_a_reader_for_the_test_split() -> None:
    s = data.load("test-guarded-data", validation=0.25, phase="tune")
    assert s.eval_split == "validation" and s.sizes == {"train": 45, "validation": 15}
    with pytest.raises(ValueError, match="'test' is not loaded"):
        _ = s.test_x
    with pytest.raises(ValueError, match="'test' is not loaded"):
        next(s.batches("test", 4, shuffle=False, augment=False))
    # The guard works: grid and final do ask for it.
    for phase, validation in (("grid", None), ("final", 0.25)):
        with pytest.raises(_TestSplitRead):
            data.load("test-guarded-data", validation=validation, phase=phase)


@pytest.mark.parametrize("name", ["fashion-mnist", "synthetic"])
def test_tune_never_opens_the_test_files(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_fake_idx_dataset(tmp_path / "FashionMNIST" / "raw")
    opened: list[str] = []
    real_open = builtins.open

    def spying_open(file: object, *args: object, **kwargs: object) -> object:
        opened.append(str(file))
        if "t10k" in str(file):
            raise AssertionError(f"test file opened during tuning: {file}")
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", spying_open)  # gzip.open goes through it too
    params = {"num_classes": 3, "image_size": 8} if name == "synthetic" else {}
    s = data.load(name, root=tmp_path, validation=10, phase="tune", train_size=40, **params)
    assert s.sizes == {"train": 30, "validation": 10}
    if name == "fashion-mnist":
        assert any("train-images" in f for f in opened)
    else:  # synthetic does not generate a test split in tune: a huge test_size costs nothing
        big = data.load(
            name, validation=10, phase="tune", train_size=40, test_size=10**11, **params
        )
        assert big.sizes == s.sizes and torch.equal(big.eval_x, s.eval_x)
    with pytest.raises(AssertionError, match="test file opened"):
        data.load("fashion-mnist", root=tmp_path)


def test_phases_partition_the_training_split(tmp_path: Path) -> None:
    write_fake_cifar10(tmp_path, per_batch=20, n_test=30)
    kw = {"root": tmp_path, "train_size": 80, "test_size": 20, "seed": 3}
    grid = data.load("cifar10", **kw)
    tune = data.load("cifar10", validation=0.25, phase="tune", **kw)
    final = data.load("cifar10", validation=0.25, phase="final", **kw)
    full = data.load("cifar10", validation=0.25, phase="final", train_on="train+validation", **kw)
    assert grid.eval_split == final.eval_split == full.eval_split == "test"
    assert tune.eval_split == "validation"
    train, fit, val = _rows(grid.train_x), _rows(tune.train_x), _rows(tune.eval_x)
    assert len(fit) == 60 and len(val) == 20 and not fit & val and fit | val == train
    assert torch.bincount(tune.eval_y).tolist() == [2] * 10
    # final (train_on train) trains on exactly tune's training part; the test split is grid's.
    assert torch.equal(final.train_x, tune.train_x) and torch.equal(final.train_y, tune.train_y)
    assert torch.equal(final.test_x, grid.test_x) and torch.equal(final.eval_y, grid.test_y)
    assert torch.equal(full.train_x, grid.train_x)
    assert final.sizes == {"train": 60, "validation": 20, "test": 20}
    assert full.sizes == {"train": 80, "validation": 20, "test": 20}
    assert grid.sizes == {"train": 80, "validation": 0, "test": 20}
    # Another data seed gives another validation part.
    other = data.load("cifar10", validation=0.25, phase="tune", **{**kw, "seed": 4})
    assert _rows(other.eval_x) != val


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"validation": 0.2}, "validation applies to phases 'tune' and 'final'"),
        ({"phase": "tune"}, "phase 'tune' needs a validation split"),
        ({"phase": "final"}, "phase 'final' needs a validation split"),
        ({"phase": "test"}, "phase must be one of grid, tune, final"),
        ({"phase": "tune", "validation": 1.0}, "validation must be a fraction"),
        ({"phase": "tune", "validation": True}, "validation must be a fraction"),
        ({"phase": "final", "validation": 0.2, "train_on": "all"}, "train_on must be one of"),
        ({"phase": "tune", "validation": 0.2, "train_on": "train+validation"}, "train_on applies"),
        ({"seed": -1}, "seed must be an integer >= 0"),
        ({"train_size": 2.5}, "train_size must be an integer >= 1"),
    ],
)
def test_bad_phase_arguments_are_one_line_errors(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message) as err:
        data.load("synthetic", train_size=kwargs.pop("train_size", 50), test_size=10, **kwargs)
    assert "\n" not in str(err.value)


def test_sizes_beyond_the_dataset_are_refused(tmp_path: Path) -> None:
    write_fake_cifar10(tmp_path, per_batch=20, n_test=30)
    with pytest.raises(ValueError, match="train_size must be at most the split size 100, got 101"):
        data.load("cifar10", root=tmp_path, train_size=101)
    with pytest.raises(ValueError, match="test_size must be at most the split size 30, got 10"):
        data.load("cifar10", root=tmp_path, test_size=10**11)
    with pytest.raises(ValueError, match="num_classes must be at most train_size \\(50\\)"):
        data.load("synthetic", train_size=50, num_classes=51)


def _splits(n: int = 10, size: int = 6, channels: int = 1, flip: bool = False, pad: int = 0):
    x = torch.arange(n * channels * size * size).remainder(251).to(torch.uint8)
    return data.Splits(
        train_x=x.view(n, channels, size, size),
        train_y=torch.arange(n) % 3,
        eval_x=x.view(n, channels, size, size)[:4],
        eval_y=torch.arange(4) % 3,
        info=data.DatasetInfo(3, (0.5,) * channels, (0.25,) * channels, flip=flip, crop_pad=pad),
    )


def test_batches_in_order_are_normalized_rows() -> None:
    s = _splits()
    out = list(s.batches("train", 4, shuffle=False, augment=False))
    assert [len(y) for _, y, _ in out] == [4, 4, 2]
    x = torch.cat([b[0] for b in out])
    torch.testing.assert_close(x * 0.25 + 0.5, s.train_x.float() / 255)
    assert torch.equal(torch.cat([b[2] for b in out]), torch.arange(10))
    assert [
        len(y) for _, y, _ in s.batches("train", 4, shuffle=False, augment=False, drop_last=True)
    ] == [4, 4]


def test_seeded_shuffle_is_a_repeatable_permutation() -> None:
    s = _splits()

    def order(seed: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(seed)
        return torch.cat(
            [i for _, _, i in s.batches("train", 3, shuffle=True, augment=False, generator=g)]
        )

    assert sorted(order(0).tolist()) == list(range(10))
    assert torch.equal(order(0), order(0)) and not torch.equal(order(0), order(1))
    g = torch.Generator().manual_seed(0)
    for x, y, i in s.batches("train", 3, shuffle=True, augment=False, generator=g):
        assert torch.equal(y, s.train_y[i])
        torch.testing.assert_close(x * 0.25 + 0.5, s.train_x[i].float() / 255)


def _translations(img: torch.Tensor, pad: int, flip: bool) -> list[torch.Tensor]:
    """Every crop of the zero-padded image (and of its mirror when flip)."""
    out = []
    for im in [img, img.flip(-1)] if flip else [img]:
        p = torch.nn.functional.pad(im, (pad,) * 4)
        h, w = im.shape[-2:]
        out += [
            p[..., dy : dy + h, dx : dx + w]
            for dy in range(2 * pad + 1)
            for dx in range(2 * pad + 1)
        ]
    return out


@pytest.mark.parametrize("flip", [False, True])
def test_augmentation_is_a_padded_crop_and_flip(flip: bool) -> None:
    s = _splits(n=40, size=5, channels=2, flip=flip, pad=2)
    g = torch.Generator().manual_seed(0)
    seen_flip = seen_shift = False
    for x, _, idx in s.batches("train", 16, shuffle=True, augment=True, generator=g):
        raw = (x * 0.25 + 0.5) * 255
        for img, i in zip(raw, idx, strict=True):
            original = s.train_x[i].float()
            candidates = _translations(original, 2, flip)
            match = [j for j, c in enumerate(candidates) if torch.allclose(img, c, atol=1e-3)]
            assert match, "augmented image is not a padded crop (or mirror) of its source"
            seen_flip |= match[0] >= 25
            seen_shift |= match[0] % 25 != 12  # 12 is the centre crop: no shift
    assert seen_shift and seen_flip == flip


def test_batches_reject_bad_arguments() -> None:
    s = _splits()
    with pytest.raises(ValueError, match="split"):
        next(s.batches("val", 2, shuffle=False, augment=False))
    with pytest.raises(ValueError, match="batch_size"):
        next(s.batches("train", 0, shuffle=False, augment=False))
