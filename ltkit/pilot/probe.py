"""One cell of the pilot: subsample a draw to an imbalance ratio, train with BalCE, measure head and tail.

The model is a classifier head on frozen encoder features (linear probing; `hidden > 0` adds a
hidden layer learned on the drawn classes), trained with `BalancedSoftmaxLoss` (Eq. 2) for a fixed
number of steps, so every cell costs the same whatever its size.

Head and tail: classes ranked by train count (ties by profile rank); head = the first
`ceil(N * frac)`, tail = the last `ceil(N * frac)` (frac = 1/3: the top and bottom thirds). The
paper does not define them for Fig. 3, and the usual Many (> 100) / Few (< 20) thresholds leave
groups empty at mild ratios, so the thirds keep both groups the same size at every ratio. At ratio
1.0 every class has the same count, head and tail are two random thirds, and the gap measures noise.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch
from torch import nn

from ltkit.data import exp_profile, subsample_indices
from ltkit.losses import BalancedSoftmaxLoss


def ratio_counts(num_classes: int, head: int, ratio: float) -> np.ndarray:
    """Train images per profile rank: head * ratio^(i / (N-1)) (exponential, CIFAR-LT), at least 1."""
    if not 0 < ratio <= 1:
        raise ValueError(f"imbalance ratio must be in (0, 1] (tail / head), got {ratio}")
    return exp_profile(num_classes, head, 1.0 / ratio)


def head_tail_classes(counts: np.ndarray, order: np.ndarray, frac: float = 1 / 3) -> tuple[np.ndarray, np.ndarray]:
    """Head and tail classes: the first and last ceil(N * frac) classes of `order` (counts non-increasing)."""
    k = max(1, math.ceil(len(order) * frac))
    if 2 * k > len(order):
        raise ValueError(f"head/tail fraction {frac} overlaps for {len(order)} classes")
    if (np.diff(np.asarray(counts)) > 0).any():
        raise ValueError("counts must be non-increasing along the profile order")
    return np.asarray(order[:k]), np.asarray(order[-k:])


def per_class_accuracy(pred: np.ndarray, labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Accuracy of each class on its test samples."""
    hit = np.bincount(labels, weights=(pred == labels).astype(float), minlength=num_classes)
    return hit / np.maximum(np.bincount(labels, minlength=num_classes), 1)


def train_probe(x: np.ndarray, y: np.ndarray, counts: np.ndarray, hidden: int = 0, steps: int = 300,
                batch_size: int = 256, lr: float = 1e-2, weight_decay: float = 1e-3, seed: int = 0) -> nn.Module:
    """A linear (or one-hidden-layer) head on standardised features, trained with BalCE for `steps` steps."""
    g = torch.Generator().manual_seed(seed)
    xt, yt = torch.as_tensor(x, dtype=torch.float32), torch.as_tensor(y, dtype=torch.long)
    mean, std = xt.mean(0), xt.std(0, unbiased=False).clamp_min(1e-6)
    with torch.random.fork_rng(devices=[]):  # seeded init that leaves the caller's RNG alone
        torch.manual_seed(seed)
        body = nn.Sequential(nn.Linear(x.shape[1], hidden), nn.ReLU()) if hidden else nn.Identity()
        model = nn.Sequential(Standardise(mean, std), body, nn.Linear(hidden or x.shape[1], len(counts)))
    loss_fn = BalancedSoftmaxLoss(counts)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    for _ in range(steps):
        idx = torch.randint(len(yt), (min(batch_size, len(yt)),), generator=g)
        loss = loss_fn(model(xt[idx]), yt[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    return model.eval()


class Standardise(nn.Module):
    """(x - mean) / std with the training features' statistics."""

    def __init__(self, mean: torch.Tensor, std: torch.Tensor):
        super().__init__()
        self.register_buffer("mean", mean)
        self.register_buffer("std", std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


def sibling_errors(pred: np.ndarray, labels: np.ndarray, classes: np.ndarray, groups: np.ndarray) -> tuple[float, float]:
    """Share (%) of the errors on `classes` that land in the true class's superclass, and that share by chance.

    Chance: a wrong guess uniform over the other N-1 classes hits a sibling with probability
    (superclass size - 1) / (N - 1), averaged over the errors' true classes.
    """
    _, gid = np.unique(np.asarray(groups), return_inverse=True)
    wrong = np.isin(labels, classes) & (pred != labels)
    if not wrong.any():
        return float("nan"), float("nan")
    same = gid[pred[wrong]] == gid[labels[wrong]]
    size = np.bincount(gid)[gid]  # the superclass size of each class
    chance = (size[labels[wrong]] - 1) / (len(gid) - 1)
    return float(100 * same.mean()), float(100 * chance.mean())


def cell_subsample(sizes: Sequence[int], head: int, ratio: float, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(counts per profile rank, seeded rank order of the classes, kept indices into the concatenated train set).

    Class c of the draw has `sizes[c]` train samples; which class gets the head count is a seeded
    permutation, so head and tail are unrelated to superclasses.
    """
    n = len(sizes)
    counts = ratio_counts(n, head, ratio)
    order = np.random.default_rng([seed, 17]).permutation(n)
    y_all = np.repeat(np.arange(n), sizes)
    return counts, order, subsample_indices(y_all, counts, seed, order)  # counts[r] random samples of class order[r]


def score_cell(pred: np.ndarray, labels: np.ndarray, counts: np.ndarray, order: np.ndarray, class_counts: np.ndarray,
               frac: float = 1 / 3, groups: Sequence | None = None) -> dict:
    """Head, tail and overall accuracy (%), the gap (points), and with `groups` the tail's sibling errors."""
    n = len(order)
    acc = per_class_accuracy(pred, labels, n)
    head_c, tail_c = head_tail_classes(counts, order, frac)
    h, t = 100 * acc[head_c].mean(), 100 * acc[tail_c].mean()
    out = {"head_acc": round(float(h), 3), "tail_acc": round(float(t), 3), "gap": round(float(h - t), 3),
           "overall_acc": round(float(100 * acc.mean()), 3), "train_images": int(class_counts.sum()),
           "head_count": int(counts[0]), "tail_count": int(counts[-1]), "head_classes": len(head_c),
           "tail_classes": len(tail_c), "counts": class_counts.tolist()}
    if groups is not None:
        sib, chance = sibling_errors(pred, labels, tail_c, np.asarray(groups))
        out.update(tail_sibling_errors=round(sib, 3), tail_sibling_chance=round(chance, 3))
    return out


def run_cell(train_feats: Sequence[np.ndarray], test_feats: Sequence[np.ndarray], head: int, ratio: float, seed: int,
             frac: float = 1 / 3, groups: Sequence | None = None, **probe) -> dict:
    """Subsample N classes' train features to `ratio`, train the probe, and score head, tail and gap (points).

    `train_feats[c]` / `test_feats[c]` are class c's features (c = 0..N-1 in draw order). With
    `groups` (each class's superclass), also the share of tail errors that go to a sibling.
    """
    n = len(train_feats)
    counts, order, keep = cell_subsample([len(f) for f in train_feats], head, ratio, seed)
    x = np.concatenate(train_feats)[keep]
    y = np.repeat(np.arange(n), [len(f) for f in train_feats])[keep]
    class_counts = np.bincount(y, minlength=n)
    model = train_probe(x, y, class_counts, seed=seed, **probe)
    xt = torch.as_tensor(np.concatenate(test_feats), dtype=torch.float32)
    yt = np.repeat(np.arange(n), [len(f) for f in test_feats])
    with torch.inference_mode():
        pred = model(xt).argmax(1).numpy()
    return score_cell(pred, yt, counts, order, class_counts, frac, groups)
