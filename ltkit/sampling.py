"""Which auxiliary classes and images train each epoch (Sec. 4.2 and 4.4 of the paper).

Classes: each target t keeps `budget[t]` of the auxiliary classes queried from it, the budget coming
from `ltkit.budget.aux_budget` (head : medium : tail ratio, capped at k). Kept classes are
re-indexed to L..L+K'-1 so the classifier has no dead rows.

Images: the training set is one concatenation, target images first (0..Nt-1), then auxiliary
images (Nt..Nt+Na-1). Every epoch uses all target images and, per auxiliary class, a fresh random
draw by one of two rules (`aux_sampling`):
- "cap" (the paper, Sec. 4.4): min(cap, n) of its n images, without replacement (cap = 50);
- "released" (the authors' code, `DatasetLT.re_arrange`): cap of them without replacement when
  n > 100, all n when 20 < n <= 100, and cap drawn WITH replacement when n <= 20 (the iNat script's
  rule), so a class with 3 images shows each about 17 times an epoch. Its per-epoch count is never
  below min(n, cap): the rare auxiliary classes weigh more than under the paper's cap.
The draw and the shuffle depend
only on (seed, epoch), so a run resumes from those two numbers; DDP ranks share the same order and
take interleaved slices of it. `EpochSampler` is the trainer's sampler (one DataLoader per run,
`set_epoch` each epoch).

The paper's Random Category (RD) baseline is `aux=random` of the trainer: random categories in place
of the neighbours, with their places and parents (`ltkit.auxiliary.random_categories`).
"""
from __future__ import annotations

from typing import Iterator, Sequence

import numpy as np
import torch.utils.data

IntArray = Sequence[int] | np.ndarray


def _rng(*keys: int) -> np.random.Generator:
    """A generator keyed by integers (SeedSequence), independent across keys."""
    return np.random.default_rng([int(k) for k in keys])


# ---------------------------------------------------------------------------------------------
# classes


def select_auxiliary(aux_parent: IntArray, budget: IntArray, seed: int | None = None,
                     available: IntArray | None = None) -> np.ndarray:
    """Bool mask over auxiliary classes: the first budget[t] of each target t, in the map's order.

    The map's order is the neighbour search's ranking, so "first" keeps the best-ranked names.
    `seed` (optional) keeps a random budget[t] instead, for ablations; `available` (images per
    auxiliary class) skips classes without images so the next ones take their place.
    """
    parent = np.asarray(aux_parent, dtype=np.int64)
    budget = np.asarray(budget, dtype=np.int64)
    if len(parent) and (parent.min() < 0 or parent.max() >= len(budget)):
        raise ValueError(f"aux_parent values must be target classes 0..{len(budget) - 1}")
    eligible = np.ones(len(parent), bool) if available is None else np.asarray(available) > 0
    # rank of each eligible class among its siblings: map order, or a seeded shuffle of it
    key = np.arange(len(parent)) if seed is None else _rng(seed).permutation(len(parent))
    order = np.lexsort((key, ~eligible, parent))
    p = parent[order]
    start = np.searchsorted(p, p, side="left")
    rank = np.empty(len(parent), np.int64)
    rank[order] = np.arange(len(parent)) - start
    return eligible & (rank < budget[parent])


AUX_SAMPLING = ("cap", "released")
RELEASED_MANY, RELEASED_FEW = 100, 20  # the released rule's class sizes: > 100 keep cap, <= 20 draw cap with replacement


def aux_draws(available: IntArray, cap: int = 50, rule: str = "cap") -> np.ndarray:
    """Images drawn per auxiliary class each epoch under `rule` ("cap" or "released", module docstring)."""
    n = np.asarray(available, np.int64)
    if rule == "cap":
        return np.minimum(n, cap)
    if rule == "released":
        return np.where((n > RELEASED_FEW) & (n <= RELEASED_MANY), n, np.where(n > 0, cap, 0))
    raise ValueError(f"aux_sampling={rule!r}: expected one of {AUX_SAMPLING}")


def class_counts(target_counts: IntArray, aux_available: IntArray, cap: int = 50, rule: str = "cap") -> np.ndarray:
    """Per-class images seen per epoch, (L+K,): target counts, then each auxiliary class's draws (`aux_draws`)."""
    return np.concatenate([np.asarray(target_counts, np.int64), aux_draws(aux_available, cap, rule)])


# ---------------------------------------------------------------------------------------------
# images


def shard(indices: np.ndarray, rank: int, world_size: int, drop_last: bool = False) -> np.ndarray:
    """This rank's slice of an epoch order, like torch's DistributedSampler (pad by wrap-around)."""
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} outside 0..{world_size - 1}")
    n = len(indices)
    if drop_last:
        total = (n // world_size) * world_size
        indices = indices[:total]
    else:
        total = -(-n // world_size) * world_size
        if total > n:
            if n == 0:
                raise ValueError("cannot shard an empty epoch")
            indices = np.concatenate([indices, np.resize(indices, total - n)])
    return indices[rank:total:world_size]


class EpochSampler(torch.utils.data.Sampler[int]):
    """Indices into [target images | auxiliary images] for one epoch: all targets, <= cap per auxiliary class.

    `aux_labels` gives each auxiliary image's class (any ints; a negative label excludes the image). Use it as a DataLoader sampler with
    `set_epoch` like DistributedSampler; `indices(epoch)` is the whole epoch order across ranks.
    `multiple_of` (the trainer: global batch x accumulation steps) trims every epoch to a multiple of
    it before sharding, so each rank's share splits into whole optimiser steps; rank r takes
    positions r, r + world_size, ... so every global batch is interleaved over the ranks.
    """

    def __init__(self, num_target: int, aux_labels: IntArray, cap: int = 50, seed: int = 0, shuffle: bool = True,
                 rank: int = 0, world_size: int = 1, drop_last: bool = False, multiple_of: int = 1, rule: str = "cap"):
        if cap < 0:
            raise ValueError(f"cap must be >= 0, got {cap}")
        aux_draws([], cap, rule)  # refuses an unknown rule here, not at the first epoch
        self.rule = rule
        if multiple_of < 1:
            raise ValueError(f"multiple_of must be >= 1, got {multiple_of}")
        self.num_target, self.cap, self.seed, self.shuffle = int(num_target), int(cap), int(seed), shuffle
        self.rank, self.world_size, self.drop_last, self.multiple_of = rank, world_size, drop_last, int(multiple_of)
        self.epoch, self.start = 0, 0
        labels = np.asarray(aux_labels, dtype=np.int64)
        # aux images grouped by class once; each epoch only draws random keys within the groups
        self._aux = np.flatnonzero(labels >= 0)
        order = np.argsort(labels[self._aux], kind="stable")
        self._aux, self._group = self._aux[order], labels[self._aux][order]
        self._group_start = np.searchsorted(self._group, self._group, side="left")
        self._labels, self._starts, self._sizes = np.unique(self._group, return_index=True, return_counts=True)

    def aux_counts(self) -> dict[int, int]:
        """Images drawn per auxiliary class each epoch: {label: draws} (`aux_draws` of the rule)."""
        return {int(k): int(v) for k, v in zip(self._labels, aux_draws(self._sizes, self.cap, self.rule))}

    def epoch_size(self) -> int:
        """Images per epoch across all ranks."""
        return self.num_target + sum(self.aux_counts().values())

    def indices(self, epoch: int | None = None) -> np.ndarray:
        """The epoch's order over the concatenated dataset; reproducible from (seed, epoch)."""
        rng = _rng(self.seed, self.epoch if epoch is None else epoch)
        key = rng.random(len(self._aux))
        order = np.lexsort((key, self._group))  # random order within each class
        rank = np.empty(len(order), np.int64)
        rank[order] = np.arange(len(order)) - self._group_start
        draws = aux_draws(self._sizes, self.cap, self.rule)
        # without replacement: the first `quota` of each class's random order; the released rule's small
        # classes (draws > size) take none this way and `draws` uniform picks with replacement instead
        small = draws > self._sizes
        quota = np.where(small, 0, draws)
        picked = [self._aux[rank < np.repeat(quota, self._sizes)]]
        if small.any():
            size, start = np.repeat(self._sizes[small], draws[small]), np.repeat(self._starts[small], draws[small])
            picked.append(self._aux[start + (rng.random(len(size)) * size).astype(np.int64)])
        aux = self.num_target + np.sort(np.concatenate(picked))
        idx = np.concatenate([np.arange(self.num_target, dtype=np.int64), aux])
        return rng.permutation(idx) if self.shuffle else idx

    def rank_indices(self, epoch: int | None = None) -> np.ndarray:
        """This rank's share of `indices(epoch)` (trimmed to `multiple_of` first)."""
        idx = self.indices(epoch)
        return shard(idx[:len(idx) // self.multiple_of * self.multiple_of], self.rank, self.world_size, self.drop_last)

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        """Select the epoch; `start` skips this rank's first samples (resuming mid-epoch)."""
        self.epoch, self.start = int(epoch), int(start)

    def state_dict(self) -> dict[str, int]:
        return {"seed": self.seed, "epoch": self.epoch, "start": self.start}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.seed = int(state["seed"])
        self.set_epoch(state["epoch"], state.get("start", 0))

    def __iter__(self) -> Iterator[int]:
        return iter(self.rank_indices()[self.start:].tolist())

    def __len__(self) -> int:
        n = self.epoch_size() // self.multiple_of * self.multiple_of
        per_rank = n // self.world_size if self.drop_last else -(-n // self.world_size)
        return max(0, per_rank - self.start)
