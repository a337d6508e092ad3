"""Figures of a dataset: the built-in world's contact sheet and the sorted class-count plot."""
from __future__ import annotations

from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np

from ltkit.data import shot_groups
from ltkit.viz.style import PALETTE, SHOT_COLOURS, WIDTHS, house_style


def contact_sheet(world, per_class: int = 8, max_classes: int = 16, seed: int = 0):
    """Grid of train images: one row per target class (head to tail), labelled with name and count."""
    x, y = world.splits["train"]
    names, counts = world.class_names, world.train_counts
    rows = np.linspace(0, len(names) - 1, min(max_classes, len(names))).round().astype(int)
    rng = np.random.default_rng(seed)
    with house_style():
        fig, axes = plt.subplots(len(rows), 1, figsize=(WIDTHS["single"], len(rows) * 0.36 + 0.3))
        _sheet_rows(np.atleast_1d(axes), x, y, rows, names, counts, per_class, rng)
    return fig


def _sheet_rows(axes, x, y, rows, names, counts, per_class: int, rng) -> None:
    """One strip of `per_class` train images per row, padded white when a class has fewer."""
    for ax, c in zip(np.atleast_1d(axes), rows):
        idx = np.flatnonzero(y == c)
        pick = rng.choice(idx, size=min(per_class, len(idx)), replace=False)
        strip = np.concatenate([x[i] for i in pick], 1)
        strip = np.pad(strip, ((0, 0), (0, x.shape[2] * (per_class - len(pick))), (0, 0)), constant_values=255)
        ax.imshow(strip, interpolation="nearest")
        ax.set_xticks([]), ax.set_yticks([])
        ax.set_ylabel(f"{names[c]} (n={counts[c]})", rotation=0, ha="right", va="center", fontsize=6)
        for s in ax.spines.values():
            s.set_visible(False)
    axes[0].set_title("built-in world: target classes, head to tail")
    axes[0].figure.subplots_adjust(hspace=0.08)


def class_count_plot(train_counts: Sequence[int], many: int = 100, few: int = 20, title: str = ""):
    """Sorted train counts per class, coloured by shot group, log scale, with the thresholds."""
    c = np.sort(np.asarray(train_counts))[::-1]
    g = shot_groups(c, many, few)
    with house_style():
        fig, ax = plt.subplots(figsize=(WIDTHS["single"], 1.9))
        for k, col in SHOT_COLOURS.items():
            sel = g == k
            ax.bar(np.flatnonzero(sel), c[sel], color=col, width=1.0, label=f"{k} ({sel.sum()})")
        for t in (many, few):
            ax.axhline(t, color=PALETTE["grey"], lw=0.6, ls="--")
        ax.set_yscale("log")
        ax.set_xlabel("class (sorted by train count)")
        ax.set_ylabel("train images")
        ax.set_title(title or f"{len(c)} classes, imbalance {c.max() / max(c.min(), 1):.0f}")
        ax.legend()
    return fig
