"""The synthetic data set: class-conditional images generated in memory (no files).

Its sizes come from the request, so it is the one reader whose allocation the user controls:
the byte size of every array is computed and bounded before anything is allocated.
"""

from __future__ import annotations

import os

import numpy as np

from halbench.checks import check_int, check_nonnegative
from halbench.data.readers import DATASETS, DatasetInfo, LoadRequest, RawData

PARAMS = ("channels", "image_size", "noise", "num_classes", "pattern_seed")
DEFAULT_TRAIN_SIZE, DEFAULT_TEST_SIZE = 1000, 200


def memory_limit_bytes() -> int:
    """Physical memory of this machine (a generous 1 TiB when the OS does not say)."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return 2**40


def generation_bytes(num_classes: int, channels: int, size: int, n_train: int, n_test: int) -> int:
    """Peak bytes while generating: float64 prototypes, one split's float64 temporaries
    (prototypes gathered, noise, their sum), and the uint8 images kept."""
    pixels = channels * size * size
    return (
        8 * num_classes * pixels
        + 3 * 8 * max(n_train, n_test) * pixels
        + (n_train + n_test) * pixels
    )


@DATASETS.register("synthetic")
def _synthetic(request: LoadRequest) -> RawData:
    """Class-conditional images: a smooth random prototype per class, shifted, plus noise.

    params: num_classes (10), image_size (32), channels (3), noise (0.5, relative to the
    prototype contrast), pattern_seed (0; the prototypes and samples, independent of the trial
    seed so that every trial sees the same data). Sizes come from train_size (1000) and
    test_size (200); no subsetting is applied on top. The test split is generated after the
    training split from the same stream, so leaving it out does not change the training data.
    """
    unknown = sorted(set(request.params) - set(PARAMS))
    if unknown:
        raise ValueError(
            f"synthetic dataset: unknown params {', '.join(unknown)}; "
            f"expected some of {', '.join(PARAMS)}"
        )
    p = request.params
    num_classes = check_int("num_classes", p.get("num_classes", 10), minimum=2)
    size = check_int("image_size", p.get("image_size", 32), minimum=4)
    channels = check_int("channels", p.get("channels", 3), minimum=1)
    noise = check_nonnegative("noise", p.get("noise", 0.5))
    seed = check_int("pattern_seed", p.get("pattern_seed", 0), minimum=0)
    n_train = request.train_size or DEFAULT_TRAIN_SIZE
    n_test = (request.test_size or DEFAULT_TEST_SIZE) if request.wants("test") else 0
    if num_classes > n_train:
        raise ValueError(
            f"num_classes must be at most train_size ({n_train}): every class needs a "
            f"training image, got {num_classes}"
        )
    _check_fits(num_classes, channels, size, n_train, n_test)

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
    test_x, test_y = draw(n_test) if request.wants("test") else (None, None)
    mean = tuple(float(m) for m in train_x.mean(axis=(0, 2, 3)) / 255)
    std = tuple(float(s) for s in train_x.std(axis=(0, 2, 3)) / 255)
    info = DatasetInfo(num_classes, mean, std, flip=False, crop_pad=2)
    return RawData(info, train_x, train_y, test_x, test_y)


def _check_fits(num_classes: int, channels: int, size: int, n_train: int, n_test: int) -> None:
    """Refuse, before numpy allocates, a data set larger than this machine's memory."""
    need = generation_bytes(num_classes, channels, size, n_train, n_test)
    limit = memory_limit_bytes()
    if need <= limit:
        return
    pixels = channels * size * size
    # Name the parameter that makes the largest term, so the message says what to shrink.
    terms = {
        "num_classes": 8 * num_classes * pixels,
        "train_size": 24 * n_train * pixels,
        "test_size": 24 * n_test * pixels,
    }
    culprit = max(terms, key=lambda k: terms[k])
    if pixels * 8 * 1024 > limit:  # one image (times a thousand) is already too big
        culprit = "image_size" if size * size >= channels else "channels"
    raise ValueError(
        f"synthetic dataset too large for this machine's memory ({_gib(need)} needed, "
        f"{_gib(limit)} available): reduce {culprit} (num_classes={num_classes}, "
        f"channels={channels}, image_size={size}, train_size={n_train}, test_size={n_test})"
    )


def _gib(n: int) -> str:
    return f"{n / 2**30:.3g} GiB"
