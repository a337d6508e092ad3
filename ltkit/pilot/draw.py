"""Class sampling with controlled granularity: N classes spread over exactly S superclasses (Sec. 2.2).

The paper draws 500 classes from ImageNet-21k + OpenImages over {20, 40, 60, 100} WordNet
superclasses; here any `Taxonomy` works (the world's shape families, CIFAR-100's coarse labels,
a JSON or WordNet hierarchy over a folder-per-class pool). Fewer superclasses for the same N means
more classes per superclass: a finer-grained dataset.

A draw picks S superclasses at one taxonomy level, gives each an even share of N (a superclass too
small for its share hands the rest to the others), then picks that many classes inside each. It is
a pure function of the seed. When the pool cannot supply N classes over S superclasses, the error
says which level, how many superclasses it has, and how many classes the largest S of them hold.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ltkit.errors import UserError
from ltkit.data.taxonomy import Taxonomy


class GranularityError(UserError, ValueError):
    """The pool cannot supply N classes over S superclasses at the requested level."""


@dataclass(frozen=True)
class Draw:
    """N classes of a pool over S superclasses: `classes[i]` belongs to `superclasses[i]`."""

    classes: tuple[str, ...]
    superclasses: tuple[str, ...]
    level: int
    seed: int

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def num_superclasses(self) -> int:
        return len(set(self.superclasses))


def superclass_members(taxonomy: Taxonomy, level: int, classes: Sequence[str] | None = None) -> dict[str, list[str]]:
    """Superclass at `level` -> its classes among `classes` (default: all), in taxonomy order."""
    out: dict[str, list[str]] = {}
    for c in (taxonomy.classes if classes is None else classes):
        out.setdefault(taxonomy.superclass(c, level), []).append(c)
    return out


def max_depth(taxonomy: Taxonomy, classes: Sequence[str] | None = None) -> int:
    """Deepest ancestor path among the classes (levels run 0 .. max_depth - 1)."""
    return max(taxonomy.depth(c) for c in (taxonomy.classes if classes is None else classes))


def resolve_level(taxonomy: Taxonomy, num_classes: int, num_superclasses: int, level: int | str = "auto",
                  classes: Sequence[str] | None = None) -> int:
    """`level` itself, or for "auto" the coarsest level at which N classes over S superclasses can be drawn.

    Pass the largest S of a grid so that every S of the grid uses one level.
    """
    depth = max_depth(taxonomy, classes)
    if level != "auto":
        level = int(level)
        if not 0 <= level < depth:
            raise GranularityError(f"taxonomy level {level} does not exist: levels run 0..{depth - 1} (0 = coarsest)")
        return level
    for lv in range(depth):
        if _shortfall(superclass_members(taxonomy, lv, classes), num_classes, num_superclasses) is None:
            return lv
    why = "; ".join(f"at level {lv} {_shortfall(superclass_members(taxonomy, lv, classes), num_classes, num_superclasses)}"
                    for lv in range(depth))
    raise GranularityError(f"no taxonomy level can supply N={num_classes} classes over S={num_superclasses} "
                           f"superclasses: {why}")


def grid_level(taxonomy: Taxonomy, num_classes: int, sizes: Sequence[int], level: int | str = "auto",
               classes: Sequence[str] | None = None, pool_name: str = "pool") -> int:
    """The one level of a grid (from its largest S), after checking that every S of the grid can be drawn there."""
    level = resolve_level(taxonomy, num_classes, max(sizes), level, classes)
    members = superclass_members(taxonomy, level, classes)
    for s in sorted(set(sizes)):
        why = _shortfall(members, num_classes, s)
        if why is not None:
            raise GranularityError(f"cannot draw N={num_classes} classes over S={s} superclasses at level {level} of"
                                   f" {pool_name}: {why}")
    return level


def _shortfall(members: dict[str, list[str]], n: int, s: int) -> str | None:
    """Why N classes over S superclasses cannot be drawn from `members`, or None if they can."""
    if s < 1 or n < s:
        return f"need 1 <= S <= N, got N={n}, S={s}"
    if len(members) < s:
        return f"there are only {len(members)} superclasses with classes, {s - len(members)} short of S={s}"
    sizes = sorted((len(v) for v in members.values()), reverse=True)
    if sum(sizes[:s]) < n:
        largest = ", ".join(f"{k} ({len(v)})" for k, v in sorted(members.items(), key=lambda kv: -len(kv[1]))[:min(s, 5)])
        return (f"the {s} largest superclasses hold only {sum(sizes[:s])} classes, {n - sum(sizes[:s])} short of"
                f" N={n} (largest: {largest})")
    return None


def _quotas(capacity: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """Split n over superclasses as evenly as their capacities allow (spare units go to random ones)."""
    q = np.minimum(capacity, n // len(capacity))
    while q.sum() < n:
        room = np.flatnonzero(q < capacity)
        low = room[q[room] == q[room].min()]  # fill the smallest quotas first: as even as possible
        q[rng.choice(low, size=min(len(low), n - int(q.sum())), replace=False)] += 1
    return q


def draw_classes(taxonomy: Taxonomy, num_classes: int, num_superclasses: int, seed: int = 0,
                 level: int | str = "auto", classes: Sequence[str] | None = None, pool_name: str = "pool") -> Draw:
    """N classes over exactly S superclasses at a taxonomy level, drawn from `classes` (default all); seeded.

    Superclasses that can take an even share come first (in random order), so the draw is as
    even as the pool allows; a GranularityError names what is missing when it cannot be done.
    """
    n, s = int(num_classes), int(num_superclasses)
    level = resolve_level(taxonomy, n, s, level, classes)
    members = superclass_members(taxonomy, level, classes)
    why = _shortfall(members, n, s)
    if why is not None:
        raise GranularityError(f"cannot draw N={n} classes over S={s} superclasses at level {level} of {pool_name}: {why}")
    rng = np.random.default_rng([seed, n, s, level])
    names = list(members)
    share = -(-n // s)
    order = [names[i] for i in rng.permutation(len(names))]
    # stable sort: superclasses that can take a full share first (random among them), then by size
    order.sort(key=lambda k: -min(len(members[k]), share))
    chosen = order[:s]
    if sum(len(members[k]) for k in chosen) < n:  # a few small ones sneaked in: take the largest S instead
        chosen = sorted(order, key=lambda k: -len(members[k]))[:s]
    quotas = _quotas(np.array([len(members[k]) for k in chosen]), n, rng)
    picked, supers = [], []
    for k, q in zip(chosen, quotas):
        idx = np.sort(rng.choice(len(members[k]), size=int(q), replace=False))
        picked += [members[k][i] for i in idx]
        supers += [k] * int(q)
    return Draw(tuple(picked), tuple(supers), level, seed)
