"""Datasets as whole-split tensors on the trial's device, with batched augmentation.

Every split is held as uint8 `[N, C, H, W]` on the device; a batch is gathered, augmented
(random crop with zero padding, horizontal flip where it suits the data) and normalized there,
so a training step does no per-sample Python work (the airbench recipe).

Files are read from the data root: the suite's `dataset.root`, else `$HALBENCH_DATA`, else
`~/.cache/halbench/data` (`$XDG_CACHE_HOME` respected). The on-disk layouts are torchvision's,
parsed here directly (torchvision is used only to download, when `download=True`): CIFAR
pickles, MNIST / Fashion-MNIST IDX files (plain or .gz), SVHN .mat files. Fashion-MNIST is also
found in /usr/share/datasets/fashion-mnist, where the Debian package dataset-fashion-mnist puts
it.

A plugin adds a data set by registering a reader that returns uint8 NCHW arrays:

    @DATASETS.register("my-data")
    def read(request: LoadRequest) -> RawData: ...
"""

from __future__ import annotations

import gzip
import os
import pickle
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from halbench.errors import UserError
from halbench.registry import Registry

DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")

# A data set "as read": uint8 NCHW arrays plus what the trainer needs to know about them.


@dataclass(frozen=True)
class RawData:
    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    flip: bool  # horizontal flip keeps the label (not for digits)
    crop_pad: int  # zero padding of the random-crop augmentation
    augment_default: bool  # what augment="auto" means for this data set


@dataclass(frozen=True)
class LoadRequest:
    """What a registered reader gets: where to look and what the user asked for."""

    name: str
    roots: list[Path]
    download: bool
    train_size: int | None
    test_size: int | None
    seed: int
    params: dict[str, Any] = field(default_factory=dict)


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


@dataclass
class Splits:
    """Train and test splits on one device, uint8 until a batch is drawn."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    flip: bool = False
    crop_pad: int = 0
    augment_default: bool = False

    @property
    def in_channels(self) -> int:
        return int(self.train_x.shape[1])

    @property
    def image_size(self) -> int:
        return int(self.train_x.shape[-1])

    @property
    def device(self) -> torch.device:
        return self.train_x.device

    def split(self, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        if split == "train":
            return self.train_x, self.train_y
        if split == "test":
            return self.test_x, self.test_y
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")

    def batches(
        self,
        split: str,
        batch_size: int,
        *,
        shuffle: bool,
        augment: bool,
        generator: torch.Generator | None = None,
        drop_last: bool = False,
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """Yield `(x float normalized, y int64, row indices)` on the device.

        Shuffling and augmentation draw from `generator` (a CPU generator, so that a seed gives
        the same order on every device); all random numbers of an epoch are drawn up front.
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size}")
        xs, ys = self.split(split)
        n = xs.shape[0]
        order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
        order = order.to(self.device)
        if augment:
            shifts, flips = self._draw_augmentation(n, generator)
        mean, std = self._norm_constants(xs.device)
        stop = n - n % batch_size if drop_last else n
        for start in range(0, stop, batch_size):
            idx = order[start : start + batch_size]
            x = xs[idx]
            if augment:
                x = self._augment(
                    x, shifts[start : start + batch_size], flips[start : start + batch_size]
                )
            yield x.float().sub_(mean).div_(std), ys[idx], idx

    def _norm_constants(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        # On the 0..255 scale, so a uint8 batch is normalized in one subtract and one divide.
        shape = (1, len(self.mean), 1, 1)
        mean = torch.tensor(self.mean, device=device).view(shape) * 255.0
        std = torch.tensor(self.std, device=device).view(shape) * 255.0
        return mean, std

    def _draw_augmentation(
        self, n: int, generator: torch.Generator | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        p = self.crop_pad
        shifts = torch.randint(0, 2 * p + 1, (n, 2), generator=generator)
        flips = (
            torch.rand(n, generator=generator) < 0.5
            if self.flip
            else torch.zeros(n, dtype=torch.bool)
        )
        return shifts.to(self.device), flips.to(self.device)

    def _augment(self, x: torch.Tensor, shifts: torch.Tensor, flips: torch.Tensor) -> torch.Tensor:
        p = self.crop_pad
        if p:
            b, _, h, w = x.shape
            padded = torch.nn.functional.pad(x, (p, p, p, p))
            rows = torch.arange(h, device=x.device).view(1, h, 1) + shifts[:, 0].view(b, 1, 1)
            cols = torch.arange(w, device=x.device).view(1, 1, w) + shifts[:, 1].view(b, 1, 1)
            batch = torch.arange(b, device=x.device).view(b, 1, 1)
            # Advanced indices around a slice put their dims first: [B, H, W, C].
            x = padded[batch, :, rows, cols].permute(0, 3, 1, 2)
        if self.flip:
            x = torch.where(flips.view(-1, 1, 1, 1), x.flip(3), x)
        return x.contiguous()


def load(
    name: str,
    *,
    root: str | Path | None = None,
    train_size: int | None = None,
    test_size: int | None = None,
    seed: int = 0,
    device: str | torch.device = "cpu",
    **params: Any,
) -> Splits:
    """Read data set `name` and return its splits on `device`.

    `train_size` / `test_size` take a class-stratified subset (chosen with `seed`);
    `download=True` (in params) lets torchvision fetch absent files. Dataset-specific
    params (e.g. synthetic's num_classes) are passed to the reader.
    """
    reader = DATASETS.get(name)
    for key, value in (("train_size", train_size), ("test_size", test_size)):
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int) or value < 1
        ):
            raise ValueError(f"{key} must be a positive integer or None, got {value!r}")
    download = params.pop("download", False)
    if not isinstance(download, bool):
        raise ValueError(f"download must be true or false, got {download!r}")
    base = Path(root).expanduser() if root is not None else default_root()
    request = LoadRequest(name, [base], download, train_size, test_size, seed, params)
    raw = reader(request)
    train_x, train_y = _subset(raw.train_x, raw.train_y, train_size, seed, "train_size")
    test_x, test_y = _subset(raw.test_x, raw.test_y, test_size, seed + 1, "test_size")

    def tensor(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(a)).to(device)

    return Splits(
        train_x=tensor(train_x),
        train_y=tensor(train_y.astype(np.int64)),
        test_x=tensor(test_x),
        test_y=tensor(test_y.astype(np.int64)),
        num_classes=raw.num_classes,
        mean=raw.mean,
        std=raw.std,
        flip=raw.flip,
        crop_pad=raw.crop_pad,
        augment_default=raw.augment_default,
    )


def stratified_indices(labels: np.ndarray, size: int, seed: int) -> np.ndarray:
    """`size` row indices whose class proportions match `labels` (largest remainders).

    Rows within each class are a seeded random choice; the result is sorted.
    """
    n = len(labels)
    if size >= n:
        return np.arange(n)
    classes, counts = np.unique(labels, return_counts=True)
    exact = counts * size / n
    quota = np.floor(exact).astype(int)
    # Hand the rows lost to rounding to the classes with the largest remainders.
    extra = np.argsort(-(exact - quota), kind="stable")[: size - quota.sum()]
    quota[extra] += 1
    rng = np.random.default_rng(seed)
    picked = [
        rng.permutation(np.flatnonzero(labels == c))[:q]
        for c, q in zip(classes, quota, strict=True)
    ]
    return np.sort(np.concatenate(picked))


def _subset(
    x: np.ndarray, y: np.ndarray, size: int | None, seed: int, what: str
) -> tuple[np.ndarray, np.ndarray]:
    if size is None:
        return x, y
    if size > len(y):
        raise ValueError(f"{what} must be at most the split size {len(y)}, got {size}")
    idx = stratified_indices(y, size, seed)
    return x[idx], y[idx]


def _no_params(request: LoadRequest) -> None:
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
    train_files: list[str],
    test_files: list[str],
    label_key: str,
    tv_class: str,
    num_classes: int,
    mean: tuple[float, ...],
    std: tuple[float, ...],
) -> RawData:
    _no_params(request)
    looked = [r / folder for r in request.roots]

    def present(root: Path) -> bool:
        return all((root / folder / f).is_file() for f in train_files + test_files)

    root = next((r for r in request.roots if present(r)), None)
    if root is None:
        import torchvision

        root = _fetch(
            request,
            looked,
            lambda r: getattr(torchvision.datasets, tv_class)(str(r), train=True, download=True),
        )
    train_x, train_y = _read_cifar_batches([root / folder / f for f in train_files], label_key)
    test_x, test_y = _read_cifar_batches([root / folder / f for f in test_files], label_key)
    return RawData(
        train_x,
        train_y,
        test_x,
        test_y,
        num_classes,
        mean,
        std,
        flip=True,
        crop_pad=4,
        augment_default=True,
    )


@DATASETS.register("cifar10")
def _cifar10(request: LoadRequest) -> RawData:
    return _cifar(
        request,
        "cifar-10-batches-py",
        [f"data_batch_{i}" for i in range(1, 6)],
        ["test_batch"],
        "labels",
        "CIFAR10",
        10,
        (0.4914, 0.4822, 0.4465),
        (0.2470, 0.2435, 0.2616),
    )


@DATASETS.register("cifar100")
def _cifar100(request: LoadRequest) -> RawData:
    return _cifar(
        request,
        "cifar-100-python",
        ["train"],
        ["test"],
        "fine_labels",
        "CIFAR100",
        100,
        (0.5071, 0.4865, 0.4409),
        (0.2673, 0.2564, 0.2762),
    )


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
    request: LoadRequest,
    folders: list[Path],
    tv_class: str,
    mean: float,
    std: float,
    flip: bool,
) -> RawData:
    _no_params(request)

    def files(folder: Path) -> dict[str, Path] | None:
        found = {key: _idx_file(folder, stem) for key, stem in IDX_FILES.items()}
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
    arrays = {key: read_idx(path) for key, path in found.items()}
    return RawData(
        arrays["train_x"][:, None],
        arrays["train_y"],
        arrays["test_x"][:, None],
        arrays["test_y"],
        10,
        (mean,),
        (std,),
        flip=flip,
        crop_pad=2,
        # Few-epoch runs on these small, centred images do better without augmentation.
        augment_default=False,
    )


@DATASETS.register("mnist")
def _mnist(request: LoadRequest) -> RawData:
    folders = [f for r in request.roots for f in (r / "MNIST" / "raw", r / "mnist")]
    return _idx_dataset(request, folders, "MNIST", 0.1307, 0.3081, flip=False)


@DATASETS.register("fashion-mnist")
def _fashion_mnist(request: LoadRequest) -> RawData:
    folders = [f for r in request.roots for f in (r / "FashionMNIST" / "raw", r / "fashion-mnist")]
    folders.append(DEBIAN_FASHION_MNIST)
    return _idx_dataset(request, folders, "FashionMNIST", 0.2860, 0.3530, flip=True)


# --- SVHN (.mat files) -----------------------------------------------------------------------


@DATASETS.register("svhn")
def _svhn(request: LoadRequest) -> RawData:
    _no_params(request)
    names = {"train": "train_32x32.mat", "test": "test_32x32.mat"}
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

    train_x, train_y = read(names["train"])
    test_x, test_y = read(names["test"])
    return RawData(
        train_x,
        train_y,
        test_x,
        test_y,
        10,
        (0.4377, 0.4438, 0.4728),
        (0.1980, 0.2010, 0.1970),
        flip=False,
        crop_pad=4,
        augment_default=True,
    )


# --- synthetic -------------------------------------------------------------------------------


@DATASETS.register("synthetic")
def _synthetic(request: LoadRequest) -> RawData:
    """Class-conditional images: a smooth random prototype per class, shifted, plus noise.

    params: num_classes (10), image_size (32), channels (3), noise (0.5, relative to the
    prototype contrast), pattern_seed (0; the prototypes and samples, independent of the trial
    seed so that every trial sees the same data). Sizes come from train_size (1000) and
    test_size (200); no subsetting is applied on top.
    """
    allowed = {"num_classes", "image_size", "channels", "noise", "pattern_seed"}
    unknown = sorted(set(request.params) - allowed)
    if unknown:
        raise ValueError(
            f"synthetic dataset: unknown params {', '.join(unknown)}; "
            f"expected some of {', '.join(sorted(allowed))}"
        )
    p = request.params
    num_classes = _positive_int(p.get("num_classes", 10), "num_classes", minimum=2)
    size = _positive_int(p.get("image_size", 32), "image_size", minimum=4)
    channels = _positive_int(p.get("channels", 3), "channels")
    noise = p.get("noise", 0.5)
    if isinstance(noise, bool) or not isinstance(noise, int | float) or noise < 0:
        raise ValueError(f"noise must be a non-negative number, got {noise!r}")
    seed = _positive_int(p.get("pattern_seed", 0), "pattern_seed", minimum=0)
    n_train = request.train_size or 1000
    n_test = request.test_size or 200

    rng = np.random.default_rng(seed)
    # Low-frequency prototypes (4x4 upsampled): learnable by a small CNN, not by one pixel.
    coarse = rng.standard_normal((num_classes, channels, 4, 4))
    reps = -(-size // 4)
    protos = np.kron(coarse, np.ones((1, 1, reps, reps)))[:, :, :size, :size]

    def draw(n: int) -> tuple[np.ndarray, np.ndarray]:
        y = np.arange(n) % num_classes
        rng.shuffle(y)
        x = protos[y] + noise * rng.standard_normal((n, channels, size, size))
        # Small random translations so that the task is not solvable by pixel lookup.
        shift = rng.integers(-1, 2, size=(n, 2))
        for dy, dx in {tuple(s) for s in shift.tolist()}:
            sel = (shift[:, 0] == dy) & (shift[:, 1] == dx)
            x[sel] = np.roll(x[sel], (dy, dx), axis=(2, 3))
        return np.clip(128 + 40 * x, 0, 255).astype(np.uint8), y.astype(np.int64)

    train_x, train_y = draw(n_train)
    test_x, test_y = draw(n_test)
    mean = tuple(float(m) for m in train_x.mean(axis=(0, 2, 3)) / 255)
    std = tuple(float(s) for s in train_x.std(axis=(0, 2, 3)) / 255)
    return RawData(
        train_x,
        train_y,
        test_x,
        test_y,
        num_classes,
        mean,
        std,
        flip=False,
        crop_pad=2,
        augment_default=False,
    )


def _positive_int(value: Any, name: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return value
