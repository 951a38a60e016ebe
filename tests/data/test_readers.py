"""Data set readers: on-disk formats, data roots, the registry, synthetic data and its bounds."""

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
from halbench.data import synthetic
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


@pytest.mark.parametrize(
    ("params", "culprit"),
    [
        ({"num_classes": 10**9}, "num_classes"),
        ({"num_classes": 10**9, "train_size": 10**10}, "reduce"),
        ({"image_size": 10**6}, "image_size"),
        ({"channels": 10**5}, "channels"),
        ({"train_size": 10**11}, "train_size"),
        ({"test_size": 10**11}, "test_size"),
        ({"train_size": 10**400}, "train_size"),
        ({"noise": float("nan")}, "noise"),
    ],
)
def test_synthetic_sizes_are_bounded_before_allocating(
    params: dict, culprit: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Were an array allocated, numpy would raise MemoryError (or take minutes), not ValueError.
    monkeypatch.setattr(synthetic, "memory_limit_bytes", lambda: 2**34)
    with pytest.raises(ValueError, match=culprit) as err:
        data.load("synthetic", **params)
    assert "\n" not in str(err.value) and len(str(err.value)) < 300


def test_synthetic_bound_counts_every_array() -> None:
    # 10 classes, 3x32x32: prototypes, three float64 temporaries of the larger split, uint8 kept.
    pixels = 3 * 32 * 32
    expected = 8 * 10 * pixels + 24 * 1000 * pixels + 1200 * pixels
    assert synthetic.generation_bytes(10, 3, 32, 1000, 200) == expected
    assert synthetic.memory_limit_bytes() > 2**20


def test_readers_read_only_the_requested_splits(tmp_path: Path) -> None:
    write_fake_cifar10(tmp_path, per_batch=4, n_test=5)
    write_fake_idx_dataset(tmp_path / "MNIST" / "raw")
    write_fake_svhn(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "test_batch").unlink()
    (tmp_path / "MNIST" / "raw" / "t10k-images-idx3-ubyte.gz").unlink()
    (tmp_path / "test_32x32.mat").unlink()
    train_only = frozenset({"train"})
    for name, n_train in (("cifar10", 20), ("mnist", 40), ("svhn", 30), ("synthetic", 1000)):
        request = data.LoadRequest(name, [tmp_path], False, None, None, 0, {}, train_only)
        raw = data.DATASETS.get(name)(request)
        assert raw.train_x.shape[0] == n_train and raw.train_y.shape == (n_train,)
        assert raw.test_x is None and raw.test_y is None
    # Asked for both splits, the readers need the files that were removed.
    with pytest.raises(UserError, match="not found"):
        data.load("cifar10", root=tmp_path)


def test_dataset_info_is_shared_by_raw_data_and_splits(tmp_path: Path) -> None:
    write_fake_cifar10(tmp_path, per_batch=4, n_test=5)
    request = data.LoadRequest("cifar10", [tmp_path], False, None, None, 0)
    raw = data.DATASETS.get("cifar10")(request)
    splits = data.load("cifar10", root=tmp_path)
    assert (
        splits.info
        == raw.info
        == data.DatasetInfo(10, (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616), True, 4, True)
    )
    assert request.wants("test") and request.wants("train")
