"""Imbalance profiles and shot groups: how many images each class gets, and which classes are Many / Medium / Few."""
from __future__ import annotations

from typing import Sequence

import numpy as np

from ltkit.errors import UserError


# ---------------------------------------------------------------------------------------------
# imbalance profiles


def exp_profile(num_classes: int, head: int, imbalance: float) -> np.ndarray:
    """CIFAR-LT counts: head * imbalance^(-i / (L-1)), so the tail class gets head / imbalance."""
    if num_classes < 1 or head < 1 or imbalance < 1:
        raise UserError("exp_profile needs num_classes >= 1, head >= 1, imbalance >= 1")
    if num_classes == 1:
        return np.array([head])
    i = np.arange(num_classes)
    # the epsilon keeps floor() from losing an exact integer to rounding (98 / 49 -> 1.999...98 -> 1)
    return np.maximum(1, np.floor(head * imbalance ** (-i / (num_classes - 1)) + 1e-9)).astype(int)


def pareto_profile(num_classes: int, head: int, imbalance: float, alpha: float = 6.0) -> np.ndarray:
    """ImageNet-LT-style counts: Pareto(alpha) quantiles, rescaled linearly to [head/imbalance, head].

    Liu et al. (2019) drew ImageNet-LT's class sizes from a Pareto with alpha = 6 and mapped them onto
    1280 .. 5 images. Here the draw is replaced by its expectation: the quantiles at the expected
    positions of L uniform order statistics, i / (L + 1), of numpy's Pareto (Lomax,
    x = q^(-1/alpha) - 1), mapped linearly onto [head / imbalance, head] and truncated like the
    CIFAR-LT profile. For 1000 classes, head 1280, imbalance 256: 404 Many / 456 Medium / 140 Few
    classes and 121.4K images; ImageNet-LT has 385 / 479 / 136 and 115.8K (tests/test_data.py).
    """
    if num_classes < 2:
        return exp_profile(num_classes, head, imbalance)
    if head < 1 or imbalance < 1 or alpha <= 0:
        raise UserError("pareto_profile needs head >= 1, imbalance >= 1, alpha > 0")
    q = np.arange(1, num_classes + 1) / (num_classes + 1)  # survival probability of the r-th largest class
    x = q ** (-1 / alpha) - 1  # decreasing
    t = (x - x[-1]) / (x[0] - x[-1])  # 1 for the head class, 0 for the tail class
    tail = head / imbalance
    return np.maximum(1, np.floor(tail + t * (head - tail) + 1e-9)).astype(int)


def profile_counts(profile: str, num_classes: int, head: int, imbalance: float) -> np.ndarray:
    """Counts per class (head first) for a named profile: 'exp' or 'pareto'."""
    if profile == "exp":
        return exp_profile(num_classes, head, imbalance)
    if profile == "pareto":
        return pareto_profile(num_classes, head, imbalance)
    raise UserError(f"unknown imbalance profile {profile!r}; expected 'exp' or 'pareto'")


def subsample_indices(labels: Sequence[int], counts: Sequence[int], seed: int = 0,
                      class_order: Sequence[int] | None = None) -> np.ndarray:
    """Indices that keep counts[r] random samples of the r-th class of `class_order` (default 0..C-1).

    The class that gets the head count is `class_order[0]`; pass a permutation to decide which
    classes become head and tail. A class with fewer samples than asked is an error.
    """
    labels = np.asarray(labels)
    order = np.arange(len(counts)) if class_order is None else np.asarray(class_order)
    if len(order) != len(counts):
        raise ValueError(f"class_order has {len(order)} classes but counts has {len(counts)}")
    if len(set(order.tolist())) != len(order):
        raise ValueError("class_order lists a class more than once")
    rng = np.random.default_rng(seed)
    keep = []
    for c, n in zip(order, counts):
        idx = np.flatnonzero(labels == c)
        if len(idx) < n:
            raise UserError(f"class {c} has {len(idx)} samples, fewer than the {n} the profile asks for")
        keep.append(np.sort(rng.choice(idx, size=int(n), replace=False)))
    return np.concatenate(keep) if keep else np.array([], int)


# ---------------------------------------------------------------------------------------------
# shot groups


def shot_groups(train_counts: Sequence[int], many: int = 100, few: int = 20) -> np.ndarray:
    """'many' (> many images), 'few' (< few images), 'medium' otherwise, per class."""
    c = np.asarray(train_counts)
    return np.where(c > many, "many", np.where(c < few, "few", "medium"))


def shot_accuracy(per_class_acc: Sequence[float], train_counts: Sequence[int], many: int = 100,
                  few: int = 20) -> dict[str, float]:
    """Mean per-class accuracy over Many / Medium / Few classes and Overall (NaN for an empty group)."""
    acc, g = np.asarray(per_class_acc, float), shot_groups(train_counts, many, few)
    out = {k: float(acc[g == k].mean()) if (g == k).any() else float("nan") for k in ("many", "medium", "few")}
    out["overall"] = float(acc.mean())
    return out
