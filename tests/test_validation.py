"""Validation is not test: a dataset without val gets a held-out split from train, and test is touched only at the end."""
import numpy as np
import pytest

from ltkit.data import ArrayImages, LTData, holdout_val


def no_val_data(counts=(60, 30, 12, 5, 3)) -> LTData:
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(len(counts)), counts)
    images = rng.integers(0, 256, (len(labels), 8, 8, 3), dtype=np.uint8)
    images[:, 0, 0, 0] = np.arange(len(labels)) % 256  # tell images apart
    images[:, 0, 0, 1] = np.arange(len(labels)) // 256
    test = ArrayImages(rng.integers(0, 256, (10, 8, 8, 3), dtype=np.uint8), np.arange(10) % len(counts))
    return LTData("no-val", [f"c{i}" for i in range(len(counts))], ArrayImages(images, labels), None, test)


def _ids(s: ArrayImages) -> set[int]:
    return set((s.images[:, 0, 0, 0].astype(int) + 256 * s.images[:, 0, 0, 1].astype(int)).tolist())


def test_holdout_is_balanced_disjoint_and_seeded():
    data = no_val_data()
    split = holdout_val(data, per_class=10, seed=0)
    # 10 per class, but never more than a fifth of a class: 60 -> 10, 30 -> 6, 12 -> 2, 5 -> 1, 3 -> 0
    assert split.val.counts(5).tolist() == [10, 6, 2, 1, 0]
    assert split.train_counts.tolist() == [50, 24, 10, 4, 3]
    assert not _ids(split.train) & _ids(split.val)
    assert _ids(split.train) | _ids(split.val) == _ids(data.train)
    assert split.test is data.test and split.val_source == "train holdout" and data.val_source == "dataset"
    again, other = holdout_val(data, 10, seed=0), holdout_val(data, 10, seed=1)
    assert _ids(again.val) == _ids(split.val) and _ids(other.val) != _ids(split.val)


def test_dataset_with_val_is_unchanged():
    data = no_val_data()
    with_val = LTData(data.name, data.class_names, data.train, data.test, data.test)
    assert holdout_val(with_val) is with_val
