"""Random number generators of a training process: seeding, saving and restoring them.

A run draws from python's `random`, numpy's global generator and torch's CPU and CUDA generators
(augmentation, Mixup/CutMix, dropout, drop path). `rng_state` / `set_rng_state` capture all of them
for a checkpoint; `seed_all` keys them by integers, which the loader does per sample with
(seed, epoch, index) so that augmentation does not depend on which process or worker draws it.
`pinned_threads` fixes torch's CPU thread count around work whose float sums depend on it.
"""
from __future__ import annotations

import contextlib
import random
from typing import Iterator

import numpy as np
import torch

_M64 = (1 << 64) - 1


def seed_everything(seed: int) -> None:
    """Python, numpy and torch RNGs from one seed."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state() -> dict:
    """Every RNG the training loop draws from (augmentations, mixup, dropout)."""
    s = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        s["cuda"] = torch.cuda.get_rng_state_all()
    return s


def set_rng_state(s: dict) -> None:
    """Restore what `rng_state` saved."""
    random.setstate(s["python"])
    np.random.set_state(s["numpy"])
    torch.set_rng_state(s["torch"])
    if "cuda" in s and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(s["cuda"])


def mix64(*keys: int) -> int:
    """A 64-bit hash of integers (splitmix64 rounds): independent-looking seeds for nearby keys."""
    h = 0x9E3779B97F4A7C15
    for k in keys:
        h = (h ^ (int(k) & _M64)) * 0xBF58476D1CE4E5B9 & _M64
        h = (h ^ (h >> 31)) * 0x94D049BB133111EB & _M64
        h ^= h >> 29
    return h


def seed_all(*keys: int) -> None:
    """Seed python, numpy and torch's CPU generator (this process or worker) from integers (~25 us)."""
    h = mix64(*keys)
    random.seed(h)
    np.random.seed(h & 0xFFFFFFFF)
    torch.default_generator.manual_seed(h)  # the CPU one only: CUDA streams stay


@contextlib.contextmanager
def pinned_threads(n: int | None) -> Iterator[None]:
    """torch's intra-op CPU threads set to `n` inside the block (None: left as they are), restored after.

    A CPU reduction splits its sum across threads, so the thread count changes the rounding, and
    training amplifies it: the same seed gives other weights under another `OMP_NUM_THREADS`
    (issue 18 item 6). Pinning makes a result depend on `n` alone; record `n` next to it.
    """
    if not n:
        yield
        return
    old = torch.get_num_threads()
    torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(old)
