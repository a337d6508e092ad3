"""How many auxiliary categories each target class gets: the head : medium : tail ratio.

One setting shared by the neighbour search (how many names to ask for and keep) and the sampler.
The paper's default ratio is 1 : ceil(Nh/Nm) : ceil(Nh/Nt), with N the total training images of
the head, medium and tail groups; its ablation default is an explicit 1:1:3. A ratio becomes
per-class counts by giving the largest group k categories and the others ceil(k * r / r_max),
so every group with a non-zero ratio gets at least one.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from ltkit.data import shot_groups
from ltkit.errors import UserError

GROUPS = ("many", "medium", "few")


def default_ratio(train_counts: Sequence[int], many: int = 100, few: int = 20) -> tuple[float, float, float]:
    """1 : ceil(Nh/Nm) : ceil(Nh/Nt) from total images per shot group (an empty group gets 0)."""
    c, g = np.asarray(train_counts), shot_groups(train_counts, many, few)
    n = {k: int(c[g == k].sum()) for k in GROUPS}
    if n["many"] == 0:
        raise UserError("the default head:medium:tail ratio needs at least one Many-shot class; pass ratio=")
    mid = math.ceil(n["many"] / n["medium"]) if n["medium"] else 0
    tail = math.ceil(n["many"] / n["few"]) if n["few"] else 0
    return (1.0, float(mid), float(tail))


def parse_ratio(ratio: str | Sequence[float]) -> tuple[float, float, float]:
    """'1:1:3' or a 3-sequence to a float triple; rejects negatives and all-zero."""
    parts = ratio.split(":") if isinstance(ratio, str) else list(ratio)
    try:
        r = tuple(float(p) for p in parts)
    except (TypeError, ValueError):
        raise UserError(f"ratio {ratio!r}: expected three numbers like '1:1:3'") from None
    if len(r) != 3 or not all(math.isfinite(x) for x in r) or min(r) < 0 or max(r) == 0:
        raise UserError(f"ratio {ratio!r}: expected three non-negative numbers, not all zero, like '1:1:3'")
    return r  # type: ignore[return-value]


def aux_budget(train_counts: Sequence[int], k: int = 5, ratio: str | Sequence[float] | None = None,
               many: int = 100, few: int = 20) -> np.ndarray:
    """Auxiliary categories per target class, from its shot group, the ratio and the cap k."""
    r = default_ratio(train_counts, many, few) if ratio is None else parse_ratio(ratio)
    per_group = {g: math.ceil(k * x / max(r)) for g, x in zip(GROUPS, r)}
    return np.array([per_group[g] for g in shot_groups(train_counts, many, few)], dtype=int)
