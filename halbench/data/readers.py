"""Data set readers: on-disk formats to uint8 NCHW numpy arrays, one registry (DATASETS).

Files are read from the data root: the suite's `dataset.root`, else `$HALBENCH_DATA`, else
`~/.cache/halbench/data` (`$XDG_CACHE_HOME` respected). The on-disk layouts are torchvision's,
parsed here directly (torchvision is used only to download, when `download=True`): CIFAR
pickles, MNIST / Fashion-MNIST IDX files (plain or .gz), SVHN .mat files. Fashion-MNIST is also
found in /usr/share/datasets/fashion-mnist, where the Debian package dataset-fashion-mnist puts
it. The synthetic data set lives in synthetic.py.

A reader reads only the splits its request names (`request.wants("test")`): a tuning load asks
for the training split alone, and the test files are then never opened. A plugin adds a data
set by registering a reader:

    @DATASETS.register("my-data")
    def read(request: LoadRequest) -> RawData:
        info = DatasetInfo(num_classes=10, mean=(0.5,), std=(0.25,))
        test = read_my_test() if request.wants("test") else (None, None)
        return RawData(info, *read_my_train(), *test)
"""

from __future__ import annotations

import gzip
import os
import pickle
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from halbench.errors import UserError
from halbench.registry import Registry

DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
SPLIT_NAMES = ("train", "test")  # the splits a data set ships; validation is carved from train


@dataclass(frozen=True)
class DatasetInfo:
    """What the trainer needs to know about a data set besides its arrays."""

    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    flip: bool = False  # horizontal flip keeps the label (not for digits)
    crop_pad: int = 0  # zero padding of the random-crop augmentation
    augment_default: bool = False  # what augment="auto" means for this data set


@dataclass(frozen=True)
class LoadRequest:
    """What a registered reader gets: where to look, what the user asked for, which splits."""

    name: str
    roots: list[Path]
    download: bool
    train_size: int | None
    test_size: int | None
    seed: int
    params: dict[str, Any] = field(default_factory=dict)
    splits: frozenset[str] = frozenset(SPLIT_NAMES)

    def wants(self, split: str) -> bool:
        """Whether the reader should read `split` ("train" or "test")."""
        return split in self.splits


@dataclass(frozen=True)
class RawData:
    """A data set as read: uint8 `[N, C, H, W]` images, integer labels and its info.

    `test_x` / `test_y` are None when the request did not ask for the test split.
    """

    info: DatasetInfo
    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray | None = None
    test_y: np.ndarray | None = None


Reader = Callable[[LoadRequest], RawData]
DATASETS: Registry[Reader] = Registry("dataset")


def available(pattern: str = "*") -> list[str]:
    """Registered data set names matching an fnmatch pattern."""
    return DATASETS.names(pattern)


def default_root() -> Path:
    """$HALBENCH_DATA, else the user cache directory."""
    env = os.environ.get("HALBENCH_DATA")
    if env:
        return Path(env).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "halbench" / "data"


def no_params(request: LoadRequest) -> None:
    """Refuse params for a data set that takes none."""
    if request.params:
        raise ValueError(
            f"dataset {request.name!r} takes no params, got {', '.join(sorted(request.params))}"
        )


def _missing(request: LoadRequest, looked: list[Path], how: str) -> UserError:
    paths = ", ".join(str(p) for p in looked)
    return UserError(
        f"dataset {request.name!r} not found (looked in: {paths}); {how}, "
        f"or set dataset.root / $HALBENCH_DATA to where it is"
    )


def _fetch(request: LoadRequest, looked: list[Path], fetch: Callable[[Path], None]) -> Path:
    """Download into the first root with torchvision; failures become a UserError."""
    root = request.roots[0]
    if not request.download:
        raise _missing(request, looked, "set dataset.download: true to fetch it with torchvision")
    try:
        root.mkdir(parents=True, exist_ok=True)
        fetch(root)
    except Exception as err:  # noqa: BLE001 - any download failure is reported the same way
        raise UserError(
            f"dataset {request.name!r}: download into {root} failed "
            f"({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}); "
            f"fetch it on a machine with network access and copy it there"
        ) from None
    return root


def _wanted(request: LoadRequest, files: dict[str, list[str]]) -> dict[str, list[str]]:
    """The per-split file lists restricted to the splits the request asks for."""
    return {split: names for split, names in files.items() if request.wants(split)}


def _raw(info: DatasetInfo, arrays: dict[str, tuple[np.ndarray, np.ndarray]]) -> RawData:
    test = arrays.get("test", (None, None))
    return RawData(info, *arrays["train"], *test)


# --- CIFAR (python pickles) ---------------------------------------------------------------


def _read_cifar_batches(files: list[Path], label_key: str) -> tuple[np.ndarray, np.ndarray]:
    xs, ys = [], []
    for f in files:
        with f.open("rb") as fh:
            entry = pickle.load(fh, encoding="latin1")
        xs.append(np.asarray(entry["data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
        ys.append(np.asarray(entry[label_key], dtype=np.int64))
    return np.concatenate(xs), np.concatenate(ys)


def _cifar(
    request: LoadRequest,
    folder: str,
    files: dict[str, list[str]],
    label_key: str,
    tv_class: str,
    info: DatasetInfo,
) -> RawData:
    no_params(request)
    looked = [r / folder for r in request.roots]
    wanted = _wanted(request, files)

    def present(root: Path) -> bool:
        return all((root / folder / f).is_file() for names in wanted.values() for f in names)

    root = next((r for r in request.roots if present(r)), None)
    if root is None:
        import torchvision

        root = _fetch(
            request,
            looked,
            lambda r: getattr(torchvision.datasets, tv_class)(str(r), train=True, download=True),
        )
    arrays = {
        split: _read_cifar_batches([root / folder / f for f in names], label_key)
        for split, names in wanted.items()
    }
    return _raw(info, arrays)


@DATASETS.register("cifar10")
def _cifar10(request: LoadRequest) -> RawData:
    files = {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]}
    mean, std = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
    info = DatasetInfo(10, mean, std, flip=True, crop_pad=4, augment_default=True)
    return _cifar(request, "cifar-10-batches-py", files, "labels", "CIFAR10", info)


@DATASETS.register("cifar100")
def _cifar100(request: LoadRequest) -> RawData:
    files = {"train": ["train"], "test": ["test"]}
    mean, std = (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)
    info = DatasetInfo(100, mean, std, flip=True, crop_pad=4, augment_default=True)
    return _cifar(request, "cifar-100-python", files, "fine_labels", "CIFAR100", info)


# --- MNIST / Fashion-MNIST (IDX files) -----------------------------------------------------

IDX_FILES = {
    "train_x": "train-images-idx3-ubyte",
    "train_y": "train-labels-idx1-ubyte",
    "test_x": "t10k-images-idx3-ubyte",
    "test_y": "t10k-labels-idx1-ubyte",
}


def read_idx(path: Path) -> np.ndarray:
    """Parse an IDX file (optionally gzipped) of unsigned bytes into a numpy array."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as fh:
        data = fh.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise UserError(f"{path}: not an IDX file (bad magic number)")
    if data[2] != 0x08:
        raise UserError(f"{path}: IDX element type 0x{data[2]:02x} is not unsigned byte (0x08)")
    ndim = data[3]
    dims = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    offset = 4 + 4 * ndim
    if len(data) - offset != int(np.prod(dims)):
        raise UserError(f"{path}: IDX file is truncated (dims {dims})")
    # A copy: torch wants writable memory, and the bytes object is read-only.
    return np.frombuffer(data, dtype=np.uint8, offset=offset).reshape(dims).copy()


def _idx_file(folder: Path, stem: str) -> Path | None:
    for name in (stem, stem + ".gz"):
        if (folder / name).is_file():
            return folder / name
    return None


def _idx_dataset(
    request: LoadRequest, folders: list[Path], tv_class: str, info: DatasetInfo
) -> RawData:
    no_params(request)
    # Only the wanted splits' files are looked up, so a tuning load never opens t10k-*.
    stems = {key: stem for key, stem in IDX_FILES.items() if request.wants(key.split("_")[0])}

    def files(folder: Path) -> dict[str, Path] | None:
        found = {key: _idx_file(folder, stem) for key, stem in stems.items()}
        return found if all(found.values()) else None  # type: ignore[return-value]

    found = next((f for f in map(files, folders) if f), None)
    if found is None:
        import torchvision

        root = _fetch(
            request,
            folders,
            lambda r: [
                getattr(torchvision.datasets, tv_class)(str(r), train=t, download=True)
                for t in (True, False)
            ],
        )
        found = files(root / tv_class / "raw")
        if found is None:
            raise _missing(request, folders, "the download did not produce the IDX files")
    arrays = {
        split: (read_idx(found[f"{split}_x"])[:, None], read_idx(found[f"{split}_y"]))
        for split in SPLIT_NAMES
        if request.wants(split)
    }
    return _raw(info, arrays)


# Few-epoch runs on these small, centred images do better without augmentation.
@DATASETS.register("mnist")
def _mnist(request: LoadRequest) -> RawData:
    folders = [f for r in request.roots for f in (r / "MNIST" / "raw", r / "mnist")]
    info = DatasetInfo(10, (0.1307,), (0.3081,), flip=False, crop_pad=2)
    return _idx_dataset(request, folders, "MNIST", info)


@DATASETS.register("fashion-mnist")
def _fashion_mnist(request: LoadRequest) -> RawData:
    folders = [f for r in request.roots for f in (r / "FashionMNIST" / "raw", r / "fashion-mnist")]
    folders.append(DEBIAN_FASHION_MNIST)
    info = DatasetInfo(10, (0.2860,), (0.3530,), flip=True, crop_pad=2)
    return _idx_dataset(request, folders, "FashionMNIST", info)


# --- SVHN (.mat files) -----------------------------------------------------------------------


@DATASETS.register("svhn")
def _svhn(request: LoadRequest) -> RawData:
    no_params(request)
    names = {s: f"{s}_32x32.mat" for s in SPLIT_NAMES if request.wants(s)}
    looked = [r / n for r in request.roots for n in names.values()]
    root = next((r for r in request.roots if all((r / n).is_file() for n in names.values())), None)
    if root is None:
        import torchvision

        root = _fetch(
            request,
            looked,
            lambda r: [torchvision.datasets.SVHN(str(r), split=s, download=True) for s in names],
        )
    import scipy.io

    def read(name: str) -> tuple[np.ndarray, np.ndarray]:
        mat = scipy.io.loadmat(str(root / name))
        # X is [H, W, C, N]; label 10 stands for the digit 0.
        return mat["X"].transpose(3, 2, 0, 1), mat["y"].reshape(-1).astype(np.int64) % 10

    mean, std = (0.4377, 0.4438, 0.4728), (0.1980, 0.2010, 0.1970)
    info = DatasetInfo(10, mean, std, flip=False, crop_pad=4, augment_default=True)
    return _raw(info, {split: read(name) for split, name in names.items()})
