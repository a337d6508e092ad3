"""Image sets: the model every dataset shares, and its long-tailed subsets.

Every dataset, built-in or real, becomes an `LTData`: three `ImageSet`s (train, val, test) that
share one list of class names, plus a taxonomy when the source has one. An `ImageSet` is either
in-memory arrays (the built-in world, CIFAR) or files under a root (ImageNet-LT, Places-LT, iNat,
ImageFolder); both hand out PIL images, so timm transforms apply unchanged. The readers of the
real benchmarks' own file formats live in `ltkit.data.readers`.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

from ltkit.data.profiles import profile_counts, subsample_indices
from ltkit.data.taxonomy import Taxonomy
from ltkit.errors import UserError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".ppm", ".gif", ".tif", ".tiff")


# ---------------------------------------------------------------------------------------------
# image sets


class UndecodableImage(UserError):
    """A file that is there but is no image PIL can read (corrupt, truncated): named, so a loader can skip it."""


class ImageSet:
    """Labelled images; `load(i)` gives an RGB PIL image."""

    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)

    def load(self, i: int) -> Image.Image:
        raise NotImplementedError

    def counts(self, num_classes: int) -> np.ndarray:
        """Images per class."""
        return np.bincount(self.labels, minlength=num_classes)

    def subset(self, idx: Sequence[int]) -> "ImageSet":
        raise NotImplementedError


class ArrayImages(ImageSet):
    """Images held as a uint8 (N, H, W, 3) array."""

    def __init__(self, images: np.ndarray, labels: Sequence[int]):
        if len(images) != len(labels):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
        self.images, self.labels = images, np.asarray(labels, dtype=np.int64)

    def load(self, i: int) -> Image.Image:
        return Image.fromarray(self.images[i])

    def subset(self, idx: Sequence[int]) -> "ArrayImages":
        idx = np.asarray(idx, dtype=np.int64)
        return ArrayImages(self.images[idx], self.labels[idx])


class FileImages(ImageSet):
    """Images as files under a root, with relative paths.

    The paths live in one numpy byte-string array, not a list of Python strings: DataLoader workers
    fork the dataset, and touching millions of str objects (their reference counts) would copy them
    into every worker.
    """

    def __init__(self, root: str | os.PathLike, paths: Sequence[str], labels: Sequence[int]):
        if len(paths) != len(labels):
            raise ValueError(f"{len(paths)} paths but {len(labels)} labels")
        self.root, self.labels = Path(root), np.asarray(labels, dtype=np.int64)
        self._paths = np.array([os.fsencode(p) for p in paths], dtype=bytes) if len(paths) else np.zeros(0, "S1")

    @property
    def paths(self) -> list[str]:
        """The relative paths as strings (a new list on every access)."""
        return [os.fsdecode(p) for p in self._paths]

    def path(self, i: int) -> Path:
        """The file of image i."""
        return self.root / os.fsdecode(self._paths[i])

    def load(self, i: int) -> Image.Image:
        path = self.path(i)
        try:
            with Image.open(path) as im:
                return im.convert("RGB")
        except FileNotFoundError:
            raise FileNotFoundError(f"image {i} not found: {path}") from None
        except (OSError, SyntaxError, ValueError) as e:  # corrupt or truncated: name the file, not a PIL traceback
            raise UndecodableImage(f"{path}: image {i} cannot be decoded ({e}); remove it or fix its list") from None

    def subset(self, idx: Sequence[int]) -> "FileImages":
        idx = np.asarray(idx, dtype=np.int64)
        return FileImages(self.root, [os.fsdecode(p) for p in self._paths[idx]], self.labels[idx])


@dataclass
class LTData:
    """A long-tailed dataset: train/val/test sets over one list of class names."""

    name: str
    class_names: list[str]
    train: ImageSet
    val: ImageSet | None
    test: ImageSet
    taxonomy: Taxonomy | None = None
    val_source: str = "dataset"  # "dataset" (its own val split) or "train holdout" (`holdout_val`)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def train_counts(self) -> np.ndarray:
        return self.train.counts(self.num_classes)

    def check(self) -> "LTData":
        """Every label in range and every class present in train; raises otherwise."""
        for split in ("train", "val", "test"):
            s = getattr(self, split)
            if s is None or len(s) == 0:
                continue
            bad = (s.labels < 0) | (s.labels >= self.num_classes)
            if bad.any():
                raise ValueError(f"{self.name} {split}: label {s.labels[bad][0]} outside 0..{self.num_classes - 1}")
        empty = np.flatnonzero(self.train_counts == 0)
        if len(empty):
            raise ValueError(f"{self.name} train: class {empty[0]} ({self.class_names[empty[0]]!r}) has no images"
                             f" ({len(empty)} empty classes in all)")
        return self


def holdout_val(data: LTData, per_class: int = 10, seed: int = 0, max_fraction: float = 0.2) -> LTData:
    """A val split held out from train when the dataset has none (iNat18, CIFAR-LT, folders without val/).

    Without it, per-epoch "val" metrics would be test metrics and invite model selection on test.
    Each class gives min(per_class, floor(max_fraction * n)) of its n train images, drawn with a
    seeded RNG: balanced over classes, except that no class loses more than `max_fraction` of its
    images (a 5-image tail class gives one, a class under 5 gives none). Held-out images leave
    train, so train counts and shot groups are those of what is trained on. A dataset that has a
    val split is returned unchanged.
    """
    if data.val is not None:
        return data
    labels = np.asarray(data.train.labels)
    counts = np.bincount(labels, minlength=data.num_classes)
    take = np.minimum(per_class, np.floor(max_fraction * counts + 1e-9).astype(int))
    # rank of each image within its class in a seeded random order; the first take[c] are held out
    order = np.lexsort((np.random.default_rng([seed, 11]).random(len(labels)), labels))
    rank = np.empty(len(labels), np.int64)
    rank[order] = np.arange(len(labels)) - (np.cumsum(counts) - counts)[labels[order]]
    held = rank < take[labels]
    return LTData(data.name, data.class_names, data.train.subset(np.flatnonzero(~held)),
                  data.train.subset(np.flatnonzero(held)), data.test, data.taxonomy, "train holdout").check()


# ---------------------------------------------------------------------------------------------
# long-tailed subsets and torch views


def make_long_tailed(data: LTData, profile: str = "exp", head: int | None = None, imbalance: float = 100.0,
                     seed: int = 0, shuffle_classes: bool = False) -> LTData:
    """Subsample a (balanced) train split to a profile; class 0 is the head unless shuffle_classes."""
    counts = data.train_counts
    head = head or int(counts.min())
    order = np.random.default_rng(seed).permutation(data.num_classes) if shuffle_classes else None
    idx = subsample_indices(data.train.labels, profile_counts(profile, data.num_classes, head, imbalance), seed, order)
    suffix = f"-LT-{profile}{imbalance:g}"
    return LTData(data.name + suffix, data.class_names, data.train.subset(idx), data.val, data.test, data.taxonomy).check()


def world_data(world) -> LTData:
    """The built-in world's target task as an `LTData`."""
    sets = {s: ArrayImages(*world.splits[s]) for s in ("train", "val", "test")}
    return LTData("builtin", world.class_names, sets["train"], sets["val"], sets["test"],
                  world.taxonomy.subset(world.class_names))


class TransformedSet:
    """A torch-style dataset over an `ImageSet`: item i is (transform(image), label)."""

    def __init__(self, images: ImageSet, transform=None, label_offset: int = 0):
        self.images, self.transform, self.label_offset = images, transform, label_offset

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        img = self.images.load(int(i))
        return (self.transform(img) if self.transform else img), int(self.images.labels[i]) + self.label_offset
