"""Small fake data sets in torchvision's on-disk formats (there is no network in tests)."""

from __future__ import annotations

import gzip
import pickle
from pathlib import Path

import numpy as np


def write_fake_cifar10(root: Path, per_batch: int = 20, n_test: int = 30, seed: int = 0) -> dict:
    """Write cifar-10-batches-py/ (5 data batches, test batch, meta) under `root`.

    Returns the arrays written, as `{"train_x", "train_y", "test_x", "test_y"}` with images
    `[N, 3, 32, 32]` uint8 in the order the batches hold them.
    """
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)

    def batch(name: str, n: int) -> tuple[np.ndarray, np.ndarray]:
        x = rng.integers(0, 256, size=(n, 3 * 32 * 32), dtype=np.uint8)
        y = [int(v) for v in np.arange(n) % 10]  # the real files hold Python lists
        entry = {
            "batch_label": name,
            "labels": y,
            "data": x,
            "filenames": [f"{i}.png" for i in range(n)],
        }
        with (folder / name).open("wb") as fh:
            pickle.dump(entry, fh)
        return x.reshape(n, 3, 32, 32), np.array(y)

    train = [batch(f"data_batch_{i}", per_batch) for i in range(1, 6)]
    test_x, test_y = batch("test_batch", n_test)
    names = [
        "airplane",
        "automobile",
        "bird",
        "cat",
        "deer",
        "dog",
        "frog",
        "horse",
        "ship",
        "truck",
    ]
    with (folder / "batches.meta").open("wb") as fh:
        pickle.dump({"label_names": names, "num_cases_per_batch": per_batch}, fh)
    return {
        "train_x": np.concatenate([x for x, _ in train]),
        "train_y": np.concatenate([y for _, y in train]),
        "test_x": test_x,
        "test_y": test_y,
    }


def idx_bytes(array: np.ndarray) -> bytes:
    """An unsigned-byte IDX file's content for `array`."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(
        int(d).to_bytes(4, "big") for d in array.shape
    )
    return header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()


def write_fake_idx_dataset(
    folder: Path, n_train: int = 40, n_test: int = 20, gz: bool = True, seed: int = 0
) -> dict:
    """Write MNIST-style IDX files (28x28 images, 10 classes) into `folder`."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {
        "train_x": rng.integers(0, 256, size=(n_train, 28, 28), dtype=np.uint8),
        "train_y": (np.arange(n_train) % 10).astype(np.uint8),
        "test_x": rng.integers(0, 256, size=(n_test, 28, 28), dtype=np.uint8),
        "test_y": (np.arange(n_test) % 10).astype(np.uint8),
    }
    stems = {
        "train_x": "train-images-idx3-ubyte",
        "train_y": "train-labels-idx1-ubyte",
        "test_x": "t10k-images-idx3-ubyte",
        "test_y": "t10k-labels-idx1-ubyte",
    }
    for key, stem in stems.items():
        content = idx_bytes(arrays[key])
        if gz:
            (folder / f"{stem}.gz").write_bytes(gzip.compress(content))
        else:
            (folder / stem).write_bytes(content)
    return arrays


def write_fake_cifar100(root: Path, n_train: int = 200, n_test: int = 50, seed: int = 0) -> dict:
    """Write cifar-100-python/{train,test,meta} (fine and coarse labels) under `root`."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for name, n in (("train", n_train), ("test", n_test)):
        x = rng.integers(0, 256, size=(n, 3 * 32 * 32), dtype=np.uint8)
        fine = [int(v) for v in np.arange(n) % 100]
        entry = {"data": x, "fine_labels": fine, "coarse_labels": [f // 5 for f in fine]}
        with (folder / name).open("wb") as fh:
            pickle.dump(entry, fh)
        out[f"{name}_x"], out[f"{name}_y"] = x.reshape(n, 3, 32, 32), np.array(fine)
    with (folder / "meta").open("wb") as fh:
        pickle.dump({"fine_label_names": [f"c{i}" for i in range(100)]}, fh)
    return out


def write_fake_svhn(root: Path, n_train: int = 30, n_test: int = 20, seed: int = 0) -> dict:
    """Write train_32x32.mat / test_32x32.mat as SVHN ships them: X [32, 32, 3, N], y in 1..10."""
    import scipy.io

    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    out = {}
    for name, n in (("train", n_train), ("test", n_test)):
        x = rng.integers(0, 256, size=(32, 32, 3, n), dtype=np.uint8)
        y = (np.arange(n) % 10 + 1).reshape(n, 1)  # 10 stands for the digit 0
        scipy.io.savemat(root / f"{name}_32x32.mat", {"X": x, "y": y})
        out[f"{name}_x"], out[f"{name}_y"] = x.transpose(3, 2, 0, 1), y.reshape(-1) % 10
    return out
