"""How good the filters are: precision and recall against a pool's truth, and a sweep.

Every item of the built-in world's pool knows what it is (`world.NOISE_KINDS`), and so does every
item of a folder pool whose captions.csv has a `truth` column (`ltkit.data.photos` writes one).
An item is *relevant* to its auxiliary class when its image shows that class: `clean` and
`uncaptioned` items (the latter has the right image and a caption naming no class). Off-topic,
mislabelled, junk and near-duplicate items are not. A filter's precision is the share of relevant
items among those it keeps; its recall, the share of relevant items it keeps. Each filter is scored alone and in combination, with the other filters off.
"""
from __future__ import annotations

import numpy as np

from ltkit.curate.filter import FilterConfig, FilterScores, decide
from ltkit.errors import UserError
from ltkit.viz import figure, house_style

RELEVANT = ("clean", "uncaptioned")
KINDS = ("clean", "uncaptioned", "off_topic", "mislabelled", "junk", "near_duplicate")


def _truth(scores: FilterScores) -> np.ndarray:
    t = scores.truth
    if t is None:
        raise UserError(f"{scores.crawl_dir}: the manifest has no 'truth' field (the built-in world's pool has one; "
                         "a folder pool needs a truth column in its captions.csv)")
    return np.asarray(t)


def precision_recall(keep: np.ndarray, relevant: np.ndarray) -> tuple[float, float]:
    """Precision and recall of a keep mask against a relevance mask (precision NaN when nothing is kept)."""
    tp = float((keep & relevant).sum())
    return (tp / keep.sum() if keep.sum() else float("nan"), tp / relevant.sum() if relevant.sum() else float("nan"))


def filter_masks(scores: FilterScores, settings: FilterConfig) -> dict[str, np.ndarray]:
    """Keep mask of no filter, each filter alone, and the combination under `settings`."""
    d = decide(scores, settings)
    return {"none": np.ones(len(scores), bool), "caption": d.caption_ok, "window": d.window_ok,
            "leak check": ~d.leak, "caption + window": d.caption_ok & d.window_ok, "all three": d.keep}


def quality_table(scores: FilterScores, settings: FilterConfig) -> list[dict]:
    """One row per filter: kept, precision, recall, and the share of each truth kind kept."""
    truth = _truth(scores)
    rel = np.isin(truth, RELEVANT)
    rows = []
    for name, keep in filter_masks(scores, settings).items():
        p, r = precision_recall(keep, rel)
        kinds = {k: (float(keep[truth == k].mean()) if (truth == k).any() else float("nan")) for k in KINDS}
        rows.append(dict(filter=name, kept=int(keep.sum()), precision=p, recall=r, **{f"kept_{k}": v for k, v in kinds.items()}))
    return rows


def markdown_quality(rows: list[dict], counts: dict[str, int] | None = None) -> str:
    """The quality table as markdown: precision / recall, then the share of each kind kept."""
    head = "| filter | kept | precision | recall | " + " | ".join(KINDS) + " |\n"
    head += "|---|---:|---:|---:|" + "---:|" * len(KINDS) + "\n"
    if counts:
        head = head.replace(" | ".join(KINDS), " | ".join(f"{k} ({counts.get(k, 0)})" for k in KINDS))
    body = "".join(f"| {r['filter']} | {r['kept']} | {r['precision']:.3f} | {r['recall']:.3f} | "
                   + " | ".join(f"{r['kept_' + k]:.2f}" for k in KINDS) + " |\n" for r in rows)
    return head + body


def sweep(scores: FilterScores, settings: FilterConfig, gamma1: np.ndarray, gamma2: np.ndarray,
          combine: bool = True) -> dict[str, np.ndarray]:
    """Precision, recall and kept count over a gamma1 x gamma2 grid (NaN where gamma1 >= gamma2).

    With `combine`, the caption filter and leak check of `settings` apply too; otherwise the window alone.
    """
    rel = np.isin(_truth(scores), RELEVANT)
    base = decide(scores, settings)
    other = base.caption_ok & ~base.leak if combine else np.ones(len(scores), bool)
    out = {k: np.full((len(gamma1), len(gamma2)), np.nan) for k in ("precision", "recall", "kept")}
    for i, g1 in enumerate(gamma1):
        for j, g2 in enumerate(gamma2):
            if g1 >= g2:
                continue
            keep = other & (scores.cos > g1) & (scores.cos < g2)
            out["precision"][i, j], out["recall"][i, j] = precision_recall(keep, rel)
            out["kept"][i, j] = keep.sum()
    return out


def sweep_figure(result: dict[str, np.ndarray], gamma1: np.ndarray, gamma2: np.ndarray, settings: FilterConfig):
    """Heat maps of precision, recall and kept images over the grid, the current setting marked."""
    fig, axes = figure("double", 2.2, ncols=3, constrained_layout=True)
    ext = [gamma2[0], gamma2[-1], gamma1[0], gamma1[-1]]
    with house_style():  # every later call draws in the house style too
        for ax, key, fmt in zip(axes, ("precision", "recall", "kept"), ("{:.2f}", "{:.2f}", "{:.0f}")):
            im = ax.imshow(result[key], origin="lower", aspect="auto", extent=ext, interpolation="nearest")
            ax.plot([settings.gamma2], [settings.gamma1], marker="x", color="white", ms=6, mew=1.5)
            ax.set_xlabel("γ2 (upper bound)")
            ax.set_ylabel("γ1 (lower bound)")
            at = result[key][np.abs(gamma1 - settings.gamma1).argmin(), np.abs(gamma2 - settings.gamma2).argmin()]
            ax.set_title(f"{key}; × = ({settings.gamma1:g}, {settings.gamma2:g}): {fmt.format(at)}")
            fig.colorbar(im, ax=ax, shrink=0.9)
    return fig


def default_grid(scores: FilterScores) -> tuple[np.ndarray, np.ndarray]:
    """A gamma1 grid spanning the observed similarities and a gamma2 grid over their upper end."""
    lo = float(np.floor(np.nanpercentile(scores.cos, 1) * 20) / 20) if len(scores) else 0.0
    return np.round(np.arange(lo, 0.951, 0.025), 3), np.round(np.arange(0.85, 1.0001, 0.01), 3)
