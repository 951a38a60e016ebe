"""Datasets: on-disk formats, data roots, subsets, batches and augmentation."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
import torch
from fixtures_data import (
    idx_bytes,
    write_fake_cifar10,
    write_fake_cifar100,
    write_fake_idx_dataset,
    write_fake_svhn,
)

from halbench import data
from halbench.errors import UserError


def test_fake_cifar10_is_read_in_batch_order(tmp_path: Path) -> None:
    written = write_fake_cifar10(tmp_path, per_batch=12, n_test=7)
    splits = data.load("cifar10", root=tmp_path)
    assert splits.train_x.dtype == torch.uint8
    assert splits.train_x.shape == (60, 3, 32, 32)
    assert splits.test_x.shape == (7, 3, 32, 32)
    np.testing.assert_array_equal(splits.train_x.numpy(), written["train_x"])
    np.testing.assert_array_equal(splits.train_y.numpy(), written["train_y"])
    np.testing.assert_array_equal(splits.test_x.numpy(), written["test_x"])
    assert splits.train_y.dtype == torch.int64
    assert (splits.num_classes, splits.in_channels, splits.image_size) == (10, 3, 32)
    assert splits.flip and splits.crop_pad == 4 and splits.augment_default


def test_fake_cifar100_uses_fine_labels(tmp_path: Path) -> None:
    written = write_fake_cifar100(tmp_path)
    splits = data.load("cifar100", root=tmp_path)
    assert splits.num_classes == 100 and splits.train_x.shape == (200, 3, 32, 32)
    np.testing.assert_array_equal(splits.train_y.numpy(), written["train_y"])
    np.testing.assert_array_equal(splits.test_x.numpy(), written["test_x"])


def test_fake_svhn_maps_label_10_to_digit_0(tmp_path: Path) -> None:
    written = write_fake_svhn(tmp_path)
    splits = data.load("svhn", root=tmp_path)
    assert splits.train_x.shape == (30, 3, 32, 32) and not splits.flip
    np.testing.assert_array_equal(splits.train_x.numpy(), written["train_x"])
    np.testing.assert_array_equal(splits.test_y.numpy(), written["test_y"])
    assert splits.train_y.min().item() == 0 and splits.train_y.max().item() == 9


def test_data_root_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_fake_cifar10(tmp_path / "env", per_batch=10, n_test=10)
    monkeypatch.setenv("HALBENCH_DATA", str(tmp_path / "env"))
    assert data.default_root() == tmp_path / "env"
    assert data.load("cifar10").train_x.shape[0] == 50


def test_default_root_is_the_user_cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("HALBENCH_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert data.default_root() == tmp_path / "halbench" / "data"


def test_missing_dataset_names_the_paths_looked_in(tmp_path: Path) -> None:
    with pytest.raises(UserError) as err:
        data.load("cifar10", root=tmp_path)
    message = str(err.value)
    assert str(tmp_path / "cifar-10-batches-py") in message
    assert "download" in message and "\n" not in message


def test_failed_download_is_a_user_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torchvision

    def offline(*args: object, **kwargs: object) -> None:
        raise OSError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", offline)
    with pytest.raises(UserError) as err:
        data.load("cifar10", root=tmp_path, download=True)
    assert str(tmp_path) in str(err.value) and "OSError" in str(err.value)


def test_unknown_dataset_and_params() -> None:
    with pytest.raises(ValueError, match="unknown dataset 'cifar11'.*cifar10"):
        data.load("cifar11")
    with pytest.raises(ValueError, match="takes no params"):
        data.load("mnist", colour=True)
    with pytest.raises(ValueError, match="train_size"):
        data.load("synthetic", train_size=0)
    with pytest.raises(ValueError, match="download"):
        data.load("synthetic", download="yes")


def test_available_lists_registered_names() -> None:
    assert {"cifar10", "cifar100", "fashion-mnist", "mnist", "svhn", "synthetic"} <= set(
        data.available()
    )
    assert data.available("cifar*") == ["cifar10", "cifar100"]


@pytest.mark.parametrize("gz", [True, False])
def test_idx_files_of_fashion_mnist(tmp_path: Path, gz: bool) -> None:
    written = write_fake_idx_dataset(tmp_path / "FashionMNIST" / "raw", gz=gz)
    splits = data.load("fashion-mnist", root=tmp_path)
    assert splits.train_x.shape == (40, 1, 28, 28)
    np.testing.assert_array_equal(splits.train_x[:, 0].numpy(), written["train_x"])
    np.testing.assert_array_equal(splits.test_y.numpy(), written["test_y"])
    assert splits.flip and not splits.augment_default


def test_mnist_does_not_flip(tmp_path: Path) -> None:
    write_fake_idx_dataset(tmp_path / "MNIST" / "raw")
    assert not data.load("mnist", root=tmp_path).flip


def test_read_idx_rejects_other_files(tmp_path: Path) -> None:
    bad = tmp_path / "bad-idx3-ubyte"
    bad.write_bytes(b"\x1f\x8bnot idx")
    with pytest.raises(UserError, match="not an IDX file"):
        data.read_idx(bad)
    short = tmp_path / "short.gz"
    short.write_bytes(gzip.compress(idx_bytes(np.zeros((4, 3), np.uint8))[:-2]))
    with pytest.raises(UserError, match="truncated"):
        data.read_idx(short)


def test_real_fashion_mnist() -> None:
    if not (data.DEBIAN_FASHION_MNIST / "train-images-idx3-ubyte.gz").exists():
        pytest.skip("dataset-fashion-mnist is not installed (/usr/share/datasets/fashion-mnist)")
    # A root with nothing in it: the Debian directory is the fallback.
    splits = data.load("fashion-mnist", root="/nonexistent-halbench-root")
    assert splits.train_x.shape == (60000, 1, 28, 28)
    assert splits.test_x.shape == (10000, 1, 28, 28)
    assert torch.bincount(splits.train_y).tolist() == [6000] * 10
    # The stored normalization constants are this data's own statistics.
    assert splits.train_x.float().mean().item() / 255 == pytest.approx(splits.mean[0], abs=1e-3)


def test_stratified_subset_keeps_class_proportions() -> None:
    labels = np.repeat(np.arange(4), [50, 30, 15, 5])
    idx = data.stratified_indices(labels, 20, seed=3)
    assert len(idx) == 20 and len(set(idx.tolist())) == 20
    assert np.bincount(labels[idx]).tolist() == [10, 6, 3, 1]
    assert not np.array_equal(idx, data.stratified_indices(labels, 20, seed=4))
    np.testing.assert_array_equal(idx, data.stratified_indices(labels, 20, seed=3))


def test_subset_through_load(tmp_path: Path) -> None:
    write_fake_cifar10(tmp_path, per_batch=20, n_test=30)
    splits = data.load("cifar10", root=tmp_path, train_size=30, test_size=10)
    assert torch.bincount(splits.train_y).tolist() == [3] * 10
    assert torch.bincount(splits.test_y).tolist() == [1] * 10
    with pytest.raises(ValueError, match="test_size must be at most the split size 30"):
        data.load("cifar10", root=tmp_path, test_size=31)


def test_synthetic_is_seeded_and_sized() -> None:
    kw = {"train_size": 60, "test_size": 30, "num_classes": 3, "image_size": 12, "channels": 2}
    a = data.load("synthetic", **kw)
    b = data.load("synthetic", **kw)
    c = data.load("synthetic", pattern_seed=1, **kw)
    assert a.train_x.shape == (60, 2, 12, 12) and a.test_x.shape == (30, 2, 12, 12)
    assert torch.bincount(a.train_y).tolist() == [20, 20, 20]
    assert torch.equal(a.train_x, b.train_x) and not torch.equal(a.train_x, c.train_x)
    with pytest.raises(ValueError, match="unknown params colour"):
        data.load("synthetic", colour=1)
    with pytest.raises(ValueError, match="num_classes"):
        data.load("synthetic", num_classes=1)


def test_synthetic_classes_are_separable_by_their_prototypes() -> None:
    s = data.load("synthetic", train_size=200, test_size=100, num_classes=5)
    flat = lambda t: t.float().flatten(1)  # noqa: E731
    centroids = torch.stack([flat(s.train_x)[s.train_y == c].mean(0) for c in range(5)])
    pred = torch.cdist(flat(s.test_x), centroids).argmin(1)
    assert (pred == s.test_y).float().mean() > 0.8


def _splits(n: int = 10, size: int = 6, channels: int = 1, flip: bool = False, pad: int = 0):
    x = torch.arange(n * channels * size * size).remainder(251).to(torch.uint8)
    return data.Splits(
        train_x=x.view(n, channels, size, size),
        train_y=torch.arange(n) % 3,
        test_x=x.view(n, channels, size, size)[:4],
        test_y=torch.arange(4) % 3,
        num_classes=3,
        mean=(0.5,) * channels,
        std=(0.25,) * channels,
        flip=flip,
        crop_pad=pad,
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
