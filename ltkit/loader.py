"""The training input pipeline: uint8 batches from persistent workers, normalised on the device.

timm's own recipe (`create_loader` with its prefetcher): workers decode and augment to uint8, the
batch crosses process and device boundaries at a quarter of float32's bytes, and the normalisation
runs on the device. Two things are ltkit's own:

- **Augmentation keyed by (seed, epoch, index).** Every sample seeds python, numpy and torch from
  those three numbers before its transform, so the draws do not depend on the number of workers,
  on which worker gets the sample or on whether the workers persisted across epochs; a resumed run
  draws what an uninterrupted one would, with workers built once per run.
- **A file that fails to decode is replaced, not fatal.** The next index takes its place (the batch
  keeps its size, which Mixup's pairing and DDP's equal batches need) and the batch carries the
  count of skipped files, which the trainer sums into the epoch log.
"""
from __future__ import annotations

import logging
import random
from typing import Callable, Iterator

import numpy as np
import torch
import torchvision.transforms as T
from timm.data.transforms import MaybePILToTensor, MaybeToTensor

from ltkit.data.images import UndecodableImage
from ltkit.rng import seed_all

log = logging.getLogger(__name__)

MAX_RETRIES = 16  # consecutive undecodable files before the loader gives up


def split_normalize(transform: Callable) -> tuple[Callable, tuple[float, ...] | None, tuple[float, ...] | None]:
    """(transform to uint8, mean, std) when `transform` ends in ToTensor + Normalize; else (transform, None, None).

    The float conversion and normalisation then run on the whole batch on the device (`to_device`).
    """
    ops = list(getattr(transform, "transforms", []))
    if len(ops) >= 2 and isinstance(ops[-2], (MaybeToTensor, T.ToTensor)) and isinstance(ops[-1], T.Normalize):
        norm = ops[-1]
        mean, std = (tuple(float(v) for v in torch.as_tensor(a).flatten()) for a in (norm.mean, norm.std))
        return T.Compose([*ops[:-2], MaybePILToTensor()]), mean, std
    return transform, None, None


class EpochKey(torch.utils.data.Sampler):
    """Yields (epoch, index) pairs of a sampler with `set_epoch`, so each sample knows its epoch."""

    def __init__(self, sampler):
        self.sampler = sampler

    def __iter__(self) -> Iterator[tuple[int, int]]:
        epoch = int(self.sampler.epoch)
        return ((epoch, int(i)) for i in self.sampler)

    def __len__(self) -> int:
        return len(self.sampler)


class TrainSet(torch.utils.data.Dataset):
    """Item (epoch, i) of a dataset of (image, label): augmented with RNGs seeded by (seed, epoch, i).

    A sample whose file fails to decode (OSError: missing, truncated, not an image) is replaced by
    the next index; the item's third field counts the files skipped on the way.
    """

    def __init__(self, items: torch.utils.data.Dataset, seed: int):
        self.items, self.seed = items, int(seed)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, key: tuple[int, int]):
        return self.__getitems__([key])[0]

    def __getitems__(self, keys: list[tuple[int, int]]) -> list:
        """A batch of items (the DataLoader calls this once per batch)."""
        if torch.utils.data.get_worker_info() is not None:
            return [self._load(*k) for k in keys]
        saved = random.getstate(), np.random.get_state(), torch.get_rng_state()
        try:  # num_workers=0: the main process's streams (Mixup, dropout) must not see the per-sample seeds
            return [self._load(*k) for k in keys]
        finally:
            random.setstate(saved[0])
            np.random.set_state(saved[1])
            torch.set_rng_state(saved[2])

    def _load(self, epoch: int, i: int):
        for skipped in range(MAX_RETRIES):
            j = (i + skipped) % len(self.items)
            seed_all(self.seed, epoch, j)
            try:
                x, y = self.items[j]
            except (OSError, UndecodableImage) as e:  # missing, corrupt or truncated files: skipped and counted
                log.warning("skipping image %d: %s", j, e)
                continue
            return x, y, skipped
        raise RuntimeError(f"{MAX_RETRIES} consecutive images from index {i} failed to decode; is the data readable?")


class Collate:
    """A list of (image, label, skipped) to (images, targets, pre-mix labels, files skipped).

    With `mixup` (timm's `FastCollateMixup`) the uint8 batch is mixed in the worker and the targets
    are soft (timm's recipe); without, images are stacked and targets are class indices. The
    pre-mix labels come along either way (the hard NS-CE mask is chosen by them).
    """

    def __init__(self, mixup: Callable | None = None):
        self.mixup = mixup

    def __call__(self, batch: list) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
        xs, ys, skipped = zip(*batch)
        labels = torch.tensor(ys, dtype=torch.int64)
        if self.mixup is not None:
            x, y = self.mixup([(torch.as_tensor(v), t) for v, t in zip(xs, ys)])
        else:
            x, y = torch.stack([torch.as_tensor(v) for v in xs]), labels
        return x, y, labels, int(sum(skipped))


def build_loader(items: torch.utils.data.Dataset, sampler, batch_size: int, seed: int, num_workers: int = 0,
                 pin_memory: bool = False, mixup: Callable | None = None,
                 prefetch_factor: int = 4) -> torch.utils.data.DataLoader:
    """The run's one DataLoader: `sampler.set_epoch(e)` picks the epoch; workers persist across epochs.

    `mixup`: a `timm.data.FastCollateMixup` for uint8 items (see `split_normalize`), applied per batch.
    """
    extra = dict(persistent_workers=True, prefetch_factor=prefetch_factor) if num_workers > 0 else {}
    return torch.utils.data.DataLoader(TrainSet(items, seed), batch_size=batch_size, sampler=EpochKey(sampler),
                                       num_workers=num_workers, collate_fn=Collate(mixup), drop_last=True,
                                       pin_memory=pin_memory, **extra)


class Normalize:
    """uint8 (or float) batches to normalised float32 on a device, optionally channels-last."""

    def __init__(self, mean, std, device: torch.device, channels_last: bool = False):
        self.device, self.channels_last = device, channels_last
        self.mean = None if mean is None else torch.tensor(mean, device=device).view(1, -1, 1, 1) * 255
        self.std = None if std is None else torch.tensor(std, device=device).view(1, -1, 1, 1) * 255

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.device, non_blocking=True)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        if self.mean is None:  # the transform normalised already
            return x.float()
        return x.float().sub_(self.mean).div_(self.std)
