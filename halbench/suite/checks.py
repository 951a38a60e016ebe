"""Suite checks that need the registries: data set sizes and params, the model, the losses.

Everything that can be known without training is checked here, in well under a second, so
that a bad suite fails with one line naming the file and the field before anything runs.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from halbench import losses, models
from halbench.checks import check_int, check_nonnegative, short
from halbench.errors import UserError
from halbench.suite.models import DatasetConfig, LossSpec, Suite

# What is known of the built-in data sets without reading them: (train, test, classes, C, H).
_KNOWN_DATA: dict[str, tuple[int, int, int, int, int]] = {
    "cifar10": (50_000, 10_000, 10, 3, 32),
    "cifar100": (50_000, 10_000, 100, 3, 32),
    "mnist": (60_000, 10_000, 10, 1, 28),
    "fashion-mnist": (60_000, 10_000, 10, 1, 28),
    "svhn": (73_257, 26_032, 10, 3, 32),
}
_SYNTHETIC_PARAMS = {"num_classes", "image_size", "channels", "noise", "pattern_seed"}
_SYNTHETIC_DEFAULT_SIZES = (1000, 200)  # halbench.data's synthetic reader


@dataclass(frozen=True)
class Shape:
    """What validation knows of a dataset: None where only reading it would tell."""

    train: int | None
    classes: int | None
    channels: int | None
    image_size: int | None


def _machine_bytes() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 1 << 40


def _fail(path: Path, field: str, message: str) -> UserError:
    first = (message.splitlines() or ["invalid"])[0]
    return UserError(f"{path}: {field}: {first[:400]}")


def check_resources(suite: Suite, path: Path) -> None:
    """What no machine can give, whatever Ray finds (runner.trial_resources checks the rest)."""
    gpus = suite.resources.gpus_per_trial
    # Ray places a fraction of one GPU, or whole GPUs: 1.5 can never be scheduled.
    if gpus > 1 and not gpus.is_integer():
        raise _fail(
            path,
            "resources.gpus_per_trial",
            f"a fraction (<= 1) or a whole number of GPUs, got {gpus:g}",
        )


def check_dataset(suite: Suite, i: int, path: Path) -> Shape:
    """Sizes against the data set's, synthetic params, batch sizes and ks against train size."""
    ds = suite.datasets[i]
    where = f"datasets[{i}]"
    known = _KNOWN_DATA.get(ds.name)
    train, classes, channels, size = ds.train_size, None, None, None
    if known is not None:
        if ds.params:
            raise _fail(path, f"{where}.params", f"{ds.name} takes no params")
        for field, value, full in (
            ("train_size", ds.train_size, known[0]),
            ("test_size", ds.test_size, known[1]),
        ):
            if value is not None and value > full:
                raise _fail(path, f"{where}.{field}", f"{ds.name} has {full} samples, got {value}")
        train = ds.train_size or known[0]
        classes, channels, size = known[2:]
    elif ds.name == "synthetic":
        train, classes, channels, size = check_synthetic(ds, where, path)
    if train is not None:
        for j, b in enumerate(suite.grid.batch_size):
            if b > train:
                raise _fail(
                    path,
                    f"grid.batch_size[{j}]",
                    f"{b} is more than the {train} training samples of {where} ({ds.name})",
                )
        if suite.eval.ks[-1] > train:
            raise _fail(
                path,
                "eval.ks",
                f"k = {suite.eval.ks[-1]} is more than the {train} reference "
                f"(training) samples of {where} ({ds.name})",
            )
    return Shape(train, classes, channels, size)


def check_synthetic(ds: DatasetConfig, where: str, path: Path) -> tuple[int, int, int, int]:
    p = ds.params
    unknown = sorted(set(p) - _SYNTHETIC_PARAMS)
    if unknown:
        raise _fail(
            path,
            f"{where}.params",
            f"synthetic dataset: unknown params {short(', '.join(map(str, unknown)))}; "
            f"expected some of {', '.join(sorted(_SYNTHETIC_PARAMS))}",
        )
    train = ds.train_size or _SYNTHETIC_DEFAULT_SIZES[0]
    test = ds.test_size or _SYNTHETIC_DEFAULT_SIZES[1]
    try:
        classes = check_int("num_classes", p.get("num_classes", 10), minimum=2, maximum=train)
        size = check_int("image_size", p.get("image_size", 32), minimum=4, maximum=4096)
        channels = check_int("channels", p.get("channels", 3), minimum=1, maximum=4096)
        check_nonnegative("noise", p.get("noise", 0.5))
        check_int("pattern_seed", p.get("pattern_seed", 0), minimum=0)
    except ValueError as err:
        key = str(err).split(" ", 1)[0]
        raise _fail(path, f"{where}.params.{key}", str(err)) from None
    # The reader draws float64 images (and a temporary of the same size) before the uint8 cast.
    need = 2 * 8 * (train + test + classes) * channels * size * size
    if need > _machine_bytes() // 2:
        raise _fail(
            path,
            f"{where}",
            f"synthetic data of {train + test} x {channels} x {size} x {size} "
            f"needs ~{need / 2**30:.1f} GiB to generate; this machine has "
            f"{_machine_bytes() / 2**30:.1f} GiB",
        )
    return train, classes, channels, size


def check_model(suite: Suite, shapes: list[Shape], path: Path) -> None:
    """Build the backbone on the meta device (no memory) for each input shape; bound its size."""

    dim = max(suite.grid.embedding_dim)
    done: set[tuple[int, int]] = set()
    for shape in shapes:
        if shape.channels is None or shape.image_size is None:
            continue  # a plugin dataset: its shape is known only once read
        key = (shape.channels, shape.image_size)
        if key in done:
            continue
        done.add(key)
        try:
            with torch.device("meta"):
                model = models.build(
                    suite.model.backbone,
                    in_channels=shape.channels,
                    image_size=shape.image_size,
                    embedding_dim=dim,
                    **suite.model.params,
                )
        except (NotImplementedError, torch.OutOfMemoryError):
            continue  # an op the meta device lacks: not the suite's fault; the trial will tell
        except (ValueError, TypeError, ArithmeticError, RuntimeError) as err:
            # RuntimeError on meta: sizes beyond what a tensor can hold ("overflowed").
            field = next(
                (f"model.params.{k}" for k in suite.model.params if str(err).startswith(str(k))),
                "model.params",
            )
            what = f"cannot build {suite.model.backbone}: " if isinstance(err, RuntimeError) else ""
            raise _fail(path, field, what + (str(err) or type(err).__name__)) from None
        count = sum(p.numel() for p in model.parameters())
        # Weights, gradients and two optimizer moments in float32.
        if 16 * count > _machine_bytes():
            raise _fail(
                path,
                "model.params",
                f"{suite.model.backbone} has {count:.3g} parameters at "
                f"embedding_dim {dim}: more than this machine's memory can train",
            )


def check_losses(suite: Suite, shape: Shape, path: Path) -> None:
    """Build every loss once on CPU with the real sizes where they are small (tiny otherwise)."""
    classes = shape.classes or 10
    dim = min(suite.grid.embedding_dim)
    memory = shape.train or 64
    if classes * dim > 1 << 22 or memory * dim > 1 << 22:
        classes, dim, memory = min(classes, 10), min(dim, 16), min(memory, 64)
    check_loss_specs(suite.losses, path, num_classes=classes, embedding_dim=dim, memory_size=memory)


def check_loss_specs(
    specs: Sequence[LossSpec],
    path: Path | str,
    *,
    num_classes: int,
    embedding_dim: int,
    memory_size: int = 64,
) -> None:
    """Every loss builds with its params, for run and profile suites alike (the registry checks
    them; a `pml:` loss also takes one test call there)."""
    for i, loss in enumerate(specs):
        where = f"losses[{i}] ({loss.name[:40]})"
        try:
            losses.build(
                loss.name,
                num_classes=num_classes,
                embedding_dim=embedding_dim,
                memory_size=memory_size,
                **loss.params,
            )
        except (
            ValueError,
            TypeError,
            ImportError,
            ArithmeticError,
            RuntimeError,
            AssertionError,
            IndexError,
        ) as err:
            raise _fail(Path(path), where, str(err) or type(err).__name__) from None
