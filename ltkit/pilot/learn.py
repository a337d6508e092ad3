"""One cell of the pilot with features learned on the cell's own images (`pilot.features: trained`).

The frozen probe (`probe.py`) only lets the classifier feel the imbalance; the paper's Finding 1 is
about representation learning (finer classes shape better features for the tail). Here every cell
trains the whole model, from the pilot's encoder weights (`pilot.pretrained`: fine-tuned) or from
scratch (`pilot.pretrained: scratch`), with Balanced Softmax (Eq. 2) for a fixed number of SGD steps,
whatever the cell's size, so every cell gets the same compute. The recipe is the pool encoder's
(`pretrain.train_on_arrays`: SGD-Nesterov, one-cycle, batched translation and flip, no colour
augmentation since colour is a class attribute), with BalCE in place of label-smoothed CE.

Cost: a step of 128 images of `ltkit_cnn_tiny` is about 60 ms of one core, so 400 steps are about
25 s per cell, against a third of a second for the probe.
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn

from ltkit.losses import BalancedSoftmaxLoss
from ltkit.pilot.probe import cell_subsample, score_cell
from ltkit.pretrain import PRETRAIN_THREADS, predict_on_arrays, train_on_arrays
from ltkit.rng import pinned_threads


def train_cell(train_images: Sequence[np.ndarray], test_images: Sequence[np.ndarray], head: int, ratio: float,
               seed: int, make_model: Callable[[int], nn.Module], frac: float = 1 / 3, groups: Sequence | None = None,
               steps: int = 400, lr: float = 0.1, batch_size: int = 128, weight_decay: float = 5e-4) -> dict:
    """Subsample N classes' uint8 train images to `ratio`, train `make_model(N)` with BalCE, score on test.

    `make_model(num_classes)` returns a fresh, seeded model (the same initialisation for every
    ratio of a draw). Threads are pinned, so a cell gives the same digits whatever OMP_NUM_THREADS is.
    """
    n = len(train_images)
    counts, order, keep = cell_subsample([len(x) for x in train_images], head, ratio, seed)
    x = np.concatenate(train_images)[keep]
    y = np.repeat(np.arange(n), [len(a) for a in train_images])[keep]
    class_counts = np.bincount(y, minlength=n)
    with pinned_threads(PRETRAIN_THREADS):
        model = make_model(n)
        losses = train_on_arrays(model, x, y, epochs=0, seed=seed, batch_size=batch_size, lr=lr,
                                 weight_decay=weight_decay, steps=steps, loss_fn=BalancedSoftmaxLoss(class_counts))
        pred = predict_on_arrays(model, np.concatenate(test_images))
    yt = np.repeat(np.arange(n), [len(a) for a in test_images])
    out = score_cell(pred, yt, counts, order, class_counts, frac, groups)
    out["final_loss"] = round(float(losses[-1]), 4)
    return out


def seeded_model(build: Callable[[int], nn.Module], seed: int) -> Callable[[int], nn.Module]:
    """`build(num_classes)` under a fixed torch seed, leaving the caller's RNG alone."""
    def make(num_classes: int) -> nn.Module:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return build(num_classes)
    return make
