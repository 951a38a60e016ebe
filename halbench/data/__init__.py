"""Datasets as whole-split tensors on the trial's device, per protocol phase.

- readers.py: on-disk formats (CIFAR-10/100 pickles, MNIST / Fashion-MNIST IDX incl. the Debian
  path, SVHN .mat) and the DATASETS registry; synthetic.py: generated images, size-bounded.
- splits.py: stratified subsets (train_size, test_size) and the validation split.
- loading.py: `load()` onto the device and `Splits.batches()` with batched augmentation.

One type describes a data set: `DatasetInfo` (num_classes, mean, std, flip, crop_pad,
augment_default), held by what a reader returns (`RawData`) and by what `load` returns
(`Splits`, which also exposes its fields as attributes).

The protocol (selection never sees the test split):

    load(name, ..., phase="grid")                        # train split / test split (default)
    load(name, ..., validation=0.2, phase="tune")        # train minus validation / validation;
                                                         # the test files are never opened
    load(name, ..., validation=0.2, phase="final")       # train minus validation / test
    load(name, ..., validation=0.2, phase="final", train_on="train+validation")  # train / test

`validation` is a fraction in (0, 1) or a row count, carved stratified from the training split
(after `train_size`) with the data seed `seed + 2`: the same rows in every phase. The returned
`Splits.eval_split` ("validation" or "test") names the split in `eval_x` / `eval_y`;
`splits.test_x` raises in phase tune. `splits.sizes` gives the rows of each part.

A plugin adds a data set by registering a reader that reads the splits it is asked for:

    @DATASETS.register("my-data")
    def read(request: LoadRequest) -> RawData: ...   # request.wants("test") -> bool
"""

from halbench.data import synthetic as _synthetic  # noqa: F401 - registers "synthetic"
from halbench.data.loading import EVAL_SPLITS, PHASES, TRAIN_ON, Phase, Splits, load
from halbench.data.readers import (
    DATASETS,
    DEBIAN_FASHION_MNIST,
    IDX_FILES,
    DatasetInfo,
    LoadRequest,
    RawData,
    Reader,
    available,
    default_root,
    read_idx,
)
from halbench.data.splits import (
    check_validation,
    stratified_indices,
    subset,
    validation_count,
    validation_indices,
    validation_split_seed,
)

__all__ = [
    "DATASETS",
    "DEBIAN_FASHION_MNIST",
    "EVAL_SPLITS",
    "IDX_FILES",
    "PHASES",
    "TRAIN_ON",
    "DatasetInfo",
    "LoadRequest",
    "Phase",
    "RawData",
    "Reader",
    "Splits",
    "available",
    "check_validation",
    "default_root",
    "load",
    "read_idx",
    "stratified_indices",
    "subset",
    "validation_count",
    "validation_indices",
    "validation_split_seed",
]
