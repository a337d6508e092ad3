"""Training curves per table row: did the classifier converge? Loss, lr and val Overall / Many / Medium / Few.

Read from each run's `metrics.jsonl` (one line per epoch, what the trainer also sends to TensorBoard
in `tensorboard/`), so the figure needs neither a TensorBoard server nor its event files. The x axis
is optimizer steps: rows that train different epoch lengths are compared at equal compute.
"""
from __future__ import annotations

import os
from pathlib import Path

from ltkit.io import read_jsonl
from ltkit.viz.style import CYCLE, MARKERS, figure, house_style

PANELS = (("loss", "train loss"), ("lr", "learning rate"), ("val_overall", "val Overall (%)"),
          ("val_many", "val Many (%)"), ("val_medium", "val Medium (%)"), ("val_few", "val Few (%)"))


def read_curves(run_dir: str | os.PathLike) -> list[dict]:
    """The per-epoch rows of a run's `metrics.jsonl` (an error naming the file when there is none)."""
    path = Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no training curves (train the run first; older runs wrote none)")
    return list(read_jsonl(path))


def late_gain(run_dir: str | os.PathLike, key: str = "val_overall", fraction: float = 0.2) -> float:
    """Points `key` gained over the last `fraction` of a run's steps: near 0 when the curve has flattened.

    From the last epoch at or before (1 - fraction) x the run's steps to its last epoch; epochs are
    the curve's only points, so with few epochs the window is wider than `fraction`.
    """
    rows = [r for r in read_curves(run_dir) if key in r and "steps" in r]
    if len(rows) < 2:
        raise ValueError(f"{run_dir}: {key} needs two epochs of metrics.jsonl to show a trend, found {len(rows)}")
    cut = (1 - fraction) * rows[-1]["steps"]
    start = max((r for r in rows[:-1] if r["steps"] <= cut), key=lambda r: r["steps"], default=rows[0])
    return 100 * (rows[-1][key] - start[key])


def training_curves(runs: dict[str, str | os.PathLike], width: str | float = "double"):
    """A 2 x 3 figure: each panel of `PANELS` against optimizer steps, one line per named run folder."""
    fig, axes = figure(width, height=3.6, nrows=2, ncols=3)
    with house_style():
        for i, (name, run_dir) in enumerate(runs.items()):
            rows = read_curves(run_dir)
            for ax, (key, _) in zip(axes.flat, PANELS):
                pts = [(r["steps"], r[key] * (100 if key.startswith("val_") else 1)) for r in rows
                       if key in r and "steps" in r]
                if pts:
                    x, y = zip(*pts)
                    ax.plot(x, y, color=CYCLE[i % len(CYCLE)], marker=MARKERS[i % len(MARKERS)], markersize=2.5,
                            label=name)
        for ax, (_, title) in zip(axes.flat, PANELS):
            ax.set_title(title)
            ax.set_xlabel("optimizer steps")
        handles, labels = axes.flat[0].get_legend_handles_labels()
        fig.tight_layout(rect=(0, 0.08, 1, 1))  # room below the panels for one legend of every run
        fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 3) or 1)
    return fig
