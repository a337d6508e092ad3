"""Fig. 2: UMAP panels of confusing head/tail classes and their auxiliary classes, with separation numbers.

The paper's four panels: (a) pre-trained features of the training data, (b) after baseline
training, (c) the baseline on validation data, (d) the model trained with auxiliary classes on
validation data. Pairs come from the baseline's confusion matrix (or are named); every panel shows
the silhouette score and the compactness ratio of the target classes, computed in the original
feature space (`ltkit.viz.separation`), since UMAP's distances are not to be read.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from ltkit.data import shot_groups
from ltkit.evaluate import predict
from ltkit.rng import pinned_threads
from ltkit.viz.separation import separation
from ltkit.viz.style import CYCLE, MARKERS, PALETTE, WIDTHS, house_style


@dataclass
class Panel:
    """One UMAP panel: features and their labels (target 0..L-1, auxiliary L..L+K-1)."""

    title: str
    features: np.ndarray
    labels: np.ndarray
    numbers: dict = field(default_factory=dict)  # filled by `draw_panels`


def confusion_matrix(pred: np.ndarray, labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Row-normalised confusion rates: entry (i, j) is the share of class i predicted as j."""
    m = np.zeros((num_classes, num_classes))
    np.add.at(m, (np.asarray(labels), np.asarray(pred)), 1)
    return m / np.maximum(m.sum(1, keepdims=True), 1)


def confusing_pairs(confusion: np.ndarray, train_counts: Sequence[int], many: int = 100, few: int = 20,
                    n: int = 1) -> list[tuple[int, int, float]]:
    """The n (head, tail, rate) pairs most confused in either direction, head from Many, tail from Few.

    When a shot group is empty (a small world), the top and bottom thirds by train count stand in.
    """
    counts = np.asarray(train_counts)
    g = shot_groups(counts, many, few)
    order = np.argsort(-counts, kind="stable")
    heads = np.flatnonzero(g == "many") if (g == "many").any() else order[: max(1, len(order) // 3)]
    tails = np.flatnonzero(g == "few") if (g == "few").any() else order[-max(1, len(order) // 3):]
    both = confusion + confusion.T
    scored = sorted(((float(both[h, t]), int(h), int(t)) for h in heads for t in tails if h != t), reverse=True)
    return [(h, t, s) for s, h, t in scored[:n]]


def pick_classes(targets: Sequence[int], aux_parent: np.ndarray, num_targets: int, aux_per_target: int = 2,
                 max_classes: int = 20) -> tuple[list[int], list[int]]:
    """Subset picker: the targets (first max_classes), then up to aux_per_target auxiliary classes each.

    Auxiliary classes are returned as labels L + k, in the order of their parents; the total stays
    within max_classes so a panel remains readable.
    """
    tg = list(dict.fromkeys(int(t) for t in targets))[:max_classes]
    aux = []
    for t in tg:
        kids = [num_targets + int(k) for k in np.flatnonzero(np.asarray(aux_parent) == t)][:aux_per_target]
        aux += kids[: max(0, max_classes - len(tg) - len(aux))]
    return tg, aux


def embed(features: np.ndarray, seed: int = 0, n_neighbors: int = 15, min_dist: float = 0.1) -> np.ndarray:
    """2-D UMAP of (N, C) features with a fixed seed (deterministic, single-threaded)."""
    import torch

    x = np.asarray(features, np.float32)
    if len(x) < 4:
        raise ValueError(f"UMAP needs at least 4 points, got {len(x)}")
    # numba's OpenMP layer, started by UMAP, resets the process's OpenMP thread count and torch follows it:
    # a kernel pinned to one thread would train at every core's count after a UMAP figure
    with warnings.catch_warnings(), pinned_threads(torch.get_num_threads()):
        import umap  # lazy: numba compiles on first import

        warnings.filterwarnings("ignore", message=".*n_jobs value.*")
        warnings.filterwarnings("ignore", message=".*n_neighbors is larger than the dataset size.*")
        reducer = umap.UMAP(n_neighbors=min(n_neighbors, len(x) - 1), min_dist=min_dist, random_state=seed,
                            metric="cosine", init="spectral" if len(x) > n_neighbors + 1 else "random")
        return reducer.fit_transform(x)


def panel_numbers(panel: Panel, targets: Sequence[int]) -> dict:
    """Separation of the target classes in the panel's original feature space."""
    keep = np.isin(panel.labels, list(targets))
    return separation(panel.features[keep], panel.labels[keep])


def class_styles(targets: Sequence[int], aux: Sequence[int], aux_parent: np.ndarray, num_targets: int) -> dict:
    """Target classes: filled circles in the palette; auxiliary: hollow markers in their parent's colour."""
    styles = {t: dict(marker="o", color=CYCLE[i % len(CYCLE)], fill=True) for i, t in enumerate(targets)}
    for j, a in enumerate(aux):
        parent = int(aux_parent[a - num_targets])
        colour = styles.get(parent, {"color": PALETTE["grey"]})["color"]
        styles[a] = dict(marker=MARKERS[1 + j % (len(MARKERS) - 1)], color=colour, fill=False)
    return styles


def draw_panels(panels: list[Panel], class_names: Sequence[str], targets: Sequence[int], aux: Sequence[int] = (),
                aux_parent: np.ndarray | None = None, train_counts: Sequence[int] | None = None, seed: int = 0,
                max_points: int = 150):
    """One row of UMAP panels (double column) with silhouette / ratio under each; returns the figure.

    Each panel is embedded on its own (its own feature space) with the same seed; at most
    `max_points` random points per class are drawn, but the numbers use every point.
    """
    import matplotlib.pyplot as plt

    L = len(train_counts) if train_counts is not None else (min(aux) if aux else max(targets) + 1)
    styles = class_styles(targets, aux, np.asarray(aux_parent if aux_parent is not None else []), L)
    rng = np.random.default_rng(seed)
    with house_style():
        fig, axes = plt.subplots(1, len(panels), figsize=(WIDTHS["double"], WIDTHS["double"] / len(panels) + 0.9),
                                 squeeze=False)
        for ax, p in zip(axes[0], panels):
            keep = np.isin(p.labels, list(targets) + list(aux))
            xy, lab = embed(p.features[keep], seed), p.labels[keep]
            p.numbers = panel_numbers(p, targets)
            for c in [c for c in styles if c in set(lab.tolist())]:
                idx = np.flatnonzero(lab == c)
                idx = rng.choice(idx, min(max_points, len(idx)), replace=False)
                s = styles[c]
                ax.scatter(xy[idx, 0], xy[idx, 1], s=7, marker=s["marker"], linewidths=0.6,
                           facecolors=s["color"] if s["fill"] else "none", edgecolors=s["color"],
                           alpha=0.85, label=_label(c, class_names, train_counts, L))
            ax.set_title(p.title)
            ax.set_xticks([]), ax.set_yticks([])
            ax.set_xlabel(f"silhouette {p.numbers['silhouette']:.2f}\nratio {p.numbers['ratio']:.2f}")
        handles = {h.get_label(): h for ax in axes[0] for h in ax.collections}
        fig.legend(list(handles.values()), list(handles), loc="lower center", ncol=min(3, len(handles)),
                   bbox_to_anchor=(0.5, -0.02), markerscale=2)
        fig.subplots_adjust(bottom=0.32, wspace=0.08)
    return fig


def _label(c: int, names: Sequence[str], counts: Sequence[int] | None, L: int) -> str:
    """Legend text: target name with its train count, or 'aux: name'."""
    if c >= L:
        return f"aux: {names[c]}"
    return f"{names[c]} (n={counts[c]})" if counts is not None else names[c]


def numbers_table(panels: list[Panel]) -> str:
    """Markdown table of each panel's separation numbers (target classes, original feature space)."""
    rows = [f"| {p.title} | {p.numbers['silhouette']:.3f} | {p.numbers['ratio']:.3f} | {p.numbers['n']} |"
            for p in panels]
    return ("| panel | silhouette (higher: better separated) | intra/inter ratio (lower: tighter) | points |\n"
            "|---|---|---|---|\n" + "\n".join(rows) + "\n")


# ---------------------------------------------------------------------------------------------
# the paper's four panels from trained runs (ltkit.viz.runs.RunView)


def _of_classes(images, classes: Sequence[int]):
    """The subset of an image set whose labels are in `classes`."""
    return images.subset(np.flatnonzero(np.isin(images.labels, list(classes))))


def baseline_confusion(baseline) -> np.ndarray:
    """The baseline's confusion rates on validation data (test when there is none), direct classifier."""
    split = baseline.data.val if baseline.data.val is not None else baseline.data.test
    pred = predict(baseline.model, split, baseline.transform, num_targets=baseline.num_targets).argmax(1)
    return confusion_matrix(pred, split.labels, baseline.num_targets)


def paper_panels(pretrained, baseline, ours, targets: Sequence[int], aux: Sequence[int]) -> list[Panel]:
    """Fig. 2 (a)-(d) for the chosen target classes; auxiliary classes (labels of `ours`) appear in (d) only.

    Auxiliary points in (d) are the pool images `ours` trained on (auxiliary classes have no validation split).
    """
    data = baseline.data
    train = _of_classes(data.train, targets)
    val = _of_classes(data.val if data.val is not None else data.test, targets)
    panels = [Panel("(a) pre-trained, train", pretrained.features(train), np.asarray(train.labels)),
              Panel("(b) baseline, train", baseline.features(train), np.asarray(train.labels)),
              Panel("(c) baseline, val", baseline.features(val), np.asarray(val.labels))]
    f, y = ours.features(val), np.asarray(val.labels)
    if aux and ours.aux_images is not None:
        a = _of_classes(ours.aux_images, aux)
        f, y = np.concatenate([f, ours.features(a)]), np.concatenate([y, np.asarray(a.labels)])
    panels.append(Panel("(d) + auxiliary, val", f, y))
    return panels


def resolve_pairs(pairs, class_names: Sequence[str]) -> list[tuple[int, int]]:
    """User-named (head, tail) pairs, by class name or index, as index pairs; unknown names are errors."""
    index = {n: i for i, n in enumerate(class_names)}
    out = []
    for pair in pairs:
        ids = []
        for c in pair:
            if isinstance(c, str) and c not in index:
                raise ValueError(f"class {c!r} is not a target class; e.g. {list(class_names)[:3]}")
            ids.append(index[c] if isinstance(c, str) else int(c))
        out.append(tuple(ids))
    return out


def figure2(pretrained, baseline, ours, pairs=None, n_pairs: int = 1, aux_per_target: int = 2,
            max_classes: int = 20, seed: int = 0):
    """Fig. 2 end to end: pairs (named, or the baseline's most confused head/tail), classes, four panels.

    Returns (figure, panels, info) where info names the pairs, classes and confusion rates used.
    """
    names = list(baseline.data.class_names)
    if pairs:
        chosen = [(h, t, None) for h, t in resolve_pairs(pairs, names)]
    else:
        conf = baseline_confusion(baseline)
        cfg = baseline_thresholds(baseline)
        chosen = confusing_pairs(conf, baseline.data.train_counts, cfg["many"], cfg["few"], n_pairs)
    targets, aux = pick_classes([c for h, t, _ in chosen for c in (h, t)], ours.aux_parent, ours.num_targets,
                                aux_per_target, max_classes)
    panels = paper_panels(pretrained, baseline, ours, targets, aux)
    fig = draw_panels(panels, ours.class_names, targets, aux, ours.aux_parent, baseline.data.train_counts, seed)
    info = dict(pairs=[dict(head=names[h], tail=names[t], confusion=s) for h, t, s in chosen],
                targets=[names[t] for t in targets], auxiliary=[ours.class_names[a] for a in aux])
    return fig, panels, info


def baseline_thresholds(run) -> dict:
    """The Many / Few thresholds a run was evaluated with (defaults 100 / 20)."""
    th = (run.results or {}).get("thresholds") or {}
    return {"many": th.get("many", 100), "few": th.get("few", 20)}


def separation_summary(panels: list[Panel], before: int = 2, after: int = 3, clear: float = 0.25,
                       min_change: float = 0.05) -> str:
    """What the numbers show: silhouette and ratio from panel `before` to `after`, and whether any panel separates.

    `clear` is the silhouette at or below which classes are not clearly separated (Kaufman and
    Rousseeuw's reading: 0.25 or less, no substantial structure). A move smaller than `min_change`
    (absolute for the silhouette, relative for the ratio) is reported as no clear change: one run of
    each model cannot carry a finer reading.
    """
    b, a = panels[before].numbers, panels[after].numbers
    parts = []
    for key, name, up_is_better, good in (("silhouette", "silhouette", True, "better separated"),
                                          ("ratio", "the intra/inter ratio", False, "tighter")):
        x, y = b[key], a[key]
        step = abs(y - x) if key == "silhouette" else abs(y - x) / max(abs(x), 1e-12)
        if np.isnan(x) or np.isnan(y):
            parts.append(f"{name} cannot be computed (fewer than two classes)")
        elif step < min_change:
            parts.append(f"{name} did not change clearly ({x:.3f} to {y:.3f})")
        else:
            better = (y > x) == up_is_better
            parts.append(f"{name} {'rose' if y > x else 'fell'} from {x:.3f} to {y:.3f} "
                         f"({good if better else 'worse'})")
    text = f"from {panels[before].title} to {panels[after].title}: " + " and ".join(parts)
    sil = {p.title.split()[0]: p.numbers["silhouette"] for p in panels if not np.isnan(p.numbers["silhouette"])}
    if sil and max(sil.values()) <= clear:
        text += (f"; every panel's silhouette is at most {clear} ({min(sil.values()):.3f} to {max(sil.values()):.3f}), "
                 "so no panel separates the target classes clearly")
    elif sil:
        text += f"; silhouette above {clear} (some structure) in " + ", ".join(k for k, s in sil.items() if s > clear)
    return text
