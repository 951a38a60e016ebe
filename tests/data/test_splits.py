"""Stratified subsets and the validation split carved from the training split."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from fixtures_data import write_fake_cifar10

from halbench import data


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


def test_validation_is_a_stratified_disjoint_partition() -> None:
    labels = np.repeat(np.arange(4), [50, 30, 15, 5])
    fit, val = data.validation_indices(labels, 0.2, seed=5)
    assert np.bincount(labels[val]).tolist() == [10, 6, 3, 1]
    assert np.bincount(labels[fit]).tolist() == [40, 24, 12, 4]
    assert not set(fit.tolist()) & set(val.tolist())
    np.testing.assert_array_equal(np.sort(np.concatenate([fit, val])), np.arange(100))
    assert np.all(np.diff(fit) > 0) and np.all(np.diff(val) > 0)


def test_validation_is_deterministic_for_a_seed() -> None:
    labels = np.arange(200) % 7
    a = data.validation_indices(labels, 30, seed=1)
    b = data.validation_indices(labels, 30, seed=1)
    c = data.validation_indices(labels, 30, seed=2)
    np.testing.assert_array_equal(a[1], b[1])
    np.testing.assert_array_equal(a[0], b[0])
    assert not np.array_equal(a[1], c[1])


@pytest.mark.parametrize(
    ("validation", "rows"), [(0.2, 20), (0.25, 25), (7, 7), (99, 99), (0.5, 50)]
)
def test_validation_counts_and_fractions(validation: float | int, rows: int) -> None:
    assert data.validation_count(validation, 100) == rows
    labels = np.arange(100) % 4
    fit, val = data.validation_indices(labels, validation, seed=0)
    assert len(val) == rows and len(fit) == 100 - rows


@pytest.mark.parametrize(
    "bad",
    [0, -3, 0.0, 1.0, 1.5, -0.2, float("nan"), float("inf"), True, "0.2", None, [0.2], 10**400],
)
def test_bad_validation_values_are_one_line_errors(bad: object) -> None:
    with pytest.raises(ValueError, match="^validation must") as err:
        data.check_validation(bad)
    assert "\n" not in str(err.value) and len(str(err.value)) < 200


@pytest.mark.parametrize(
    ("validation", "gives"), [(100, 100), (250, 250), (0.001, 0), (0.999, 100)]
)
def test_validation_must_leave_rows_on_both_sides(validation: float | int, gives: int) -> None:
    with pytest.raises(ValueError, match=f"validation must leave .* gives {gives} validation"):
        data.validation_count(validation, 100)


def test_validation_through_load_counts_and_fractions(tmp_path: Path) -> None:
    write_fake_cifar10(tmp_path, per_batch=20, n_test=30)
    by_count = data.load("cifar10", root=tmp_path, validation=30, phase="tune")
    by_fraction = data.load("cifar10", root=tmp_path, validation=0.3, phase="tune")
    for s in (by_count, by_fraction):
        assert s.sizes == {"train": 70, "validation": 30}
        assert torch.bincount(s.eval_y).tolist() == [3] * 10
        assert torch.bincount(s.train_y).tolist() == [7] * 10
    assert torch.equal(by_count.eval_x, by_fraction.eval_x)
    # train_size subsets first; the validation part is a fraction of that subset.
    small = data.load("cifar10", root=tmp_path, train_size=50, validation=0.2, phase="tune")
    assert small.sizes == {"train": 40, "validation": 10}
    with pytest.raises(ValueError, match="validation must leave"):
        data.load("cifar10", root=tmp_path, train_size=50, validation=50, phase="tune")


def test_a_validation_seed_draws_another_stratified_split(tmp_path: Path) -> None:
    # validation_seed 0 is the split of every run before tuning replicates (data seed + 2)
    assert data.validation_split_seed(5) == 7 == data.validation_split_seed(5, 0)
    write_fake_cifar10(tmp_path, per_batch=20, n_test=30)
    kw = {"root": tmp_path, "train_size": 60, "validation": 20, "phase": "tune"}
    seeds = ({}, {"validation_seed": 0}, {"validation_seed": 1})
    today, zero, one = (data.load("cifar10", **kw, **extra) for extra in seeds)
    assert torch.equal(today.eval_x, zero.eval_x) and torch.equal(today.train_x, zero.train_x)
    assert not torch.equal(today.eval_x, one.eval_x)
    assert torch.bincount(one.eval_y).tolist() == [2] * 10 and one.train_x.shape[0] == 40
    # a final trial of replicate 1 leaves out exactly replicate 1's validation rows
    final = data.load("cifar10", **{**kw, "phase": "final"}, validation_seed=1)
    fit = {tuple(x.flatten().tolist()) for x in final.train_x}
    assert fit == {tuple(x.flatten().tolist()) for x in one.train_x}
    with pytest.raises(ValueError, match="validation_seed"):
        data.load("cifar10", **kw, validation_seed=-1)
