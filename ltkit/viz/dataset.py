"""Figures: the world's contact sheet, class-count plots, and (later) UMAP and PCA views.

Every `save_*` writes a PNG for the README and a PDF for papers, atomically, and returns the paths.
"""
from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use(os.environ.get("MPLBACKEND", "Agg"))  # headless by default; notebooks set their own
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from ltkit.data import shot_groups  # noqa: E402
from ltkit.io import atomic_write_bytes  # noqa: E402

SHOT_COLOURS = {"many": "#1f77b4", "medium": "#ff7f0e", "few": "#d62728"}


def save_figure(fig, stem: str | os.PathLike, formats: Sequence[str] = ("png", "pdf")) -> list[Path]:
    """Save a matplotlib figure as stem.png / stem.pdf (atomic) and close it."""
    paths = []
    for fmt in formats:
        buf = io.BytesIO()
        fig.savefig(buf, format=fmt, dpi=150, bbox_inches="tight")
        path = Path(f"{stem}.{fmt}")
        atomic_write_bytes(path, buf.getvalue())
        paths.append(path)
    plt.close(fig)
    return paths


def contact_sheet(world, per_class: int = 8, max_classes: int = 16, seed: int = 0):
    """Grid of train images: one row per target class (head to tail), labelled with name and count."""
    x, y = world.splits["train"]
    names, counts = world.class_names, world.train_counts
    rows = np.linspace(0, len(names) - 1, min(max_classes, len(names))).round().astype(int)
    rng = np.random.default_rng(seed)
    fig, axes = plt.subplots(len(rows), 1, figsize=(per_class * 0.7 + 2.6, len(rows) * 0.72))
    for ax, c in zip(np.atleast_1d(axes), rows):
        idx = np.flatnonzero(y == c)
        pick = rng.choice(idx, size=min(per_class, len(idx)), replace=False)
        strip = np.concatenate([x[i] for i in pick], 1)
        strip = np.pad(strip, ((0, 0), (0, x.shape[2] * (per_class - len(pick))), (0, 0)), constant_values=255)
        ax.imshow(strip, interpolation="nearest")
        ax.set_xticks([]), ax.set_yticks([])
        ax.set_ylabel(f"{names[c]}\n(n={counts[c]})", rotation=0, ha="right", va="center", fontsize=7)
    np.atleast_1d(axes)[0].set_title("built-in world: target classes, head to tail", fontsize=9)
    fig.subplots_adjust(hspace=0.08)
    return fig


def class_count_plot(train_counts: Sequence[int], many: int = 100, few: int = 20, title: str = ""):
    """Sorted train counts per class, coloured by shot group, log scale, with the thresholds."""
    c = np.sort(np.asarray(train_counts))[::-1]
    g = shot_groups(c, many, few)
    fig, ax = plt.subplots(figsize=(6, 3))
    for k, col in SHOT_COLOURS.items():
        sel = g == k
        ax.bar(np.flatnonzero(sel), c[sel], color=col, width=1.0, label=f"{k} ({sel.sum()})")
    for t in (many, few):
        ax.axhline(t, color="grey", lw=0.7, ls="--")
    ax.set_yscale("log")
    ax.set_xlabel("class (sorted by train count)")
    ax.set_ylabel("train images")
    ax.set_title(title or f"{len(c)} classes, imbalance {c.max() / max(c.min(), 1):.0f}", fontsize=9)
    ax.legend(fontsize=7)
    return fig
