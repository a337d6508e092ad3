"""How well classes separate in a feature space: the numbers behind "tighter clusters, better separation".

Both are computed in the ORIGINAL feature space (UMAP distorts distances), on L2-normalised
features by default, so models whose features differ only in scale get the same numbers:

- silhouette score (sklearn): mean over samples of (b - a) / max(a, b), a the mean distance to the
  own class, b to the nearest other class; -1..1, higher is better separated;
- compactness ratio: per class, mean distance of its samples to its centroid over the distance from
  its centroid to the nearest other centroid, averaged over classes; lower is tighter and farther apart.
"""
from __future__ import annotations

import numpy as np


def _prepare(features: np.ndarray, labels: np.ndarray, normalize: bool) -> tuple[np.ndarray, np.ndarray]:
    """float64 features (unit rows when `normalize`) and int labels, checked for matching length."""
    x = np.asarray(features, np.float64)
    y = np.asarray(labels)
    if x.ndim != 2 or len(x) != len(y):
        raise ValueError(f"expected features (N, C) and N labels, got {x.shape} and {y.shape}")
    if normalize:
        x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    return x, y


def silhouette(features: np.ndarray, labels: np.ndarray, normalize: bool = True, max_samples: int = 4000,
               seed: int = 0) -> float:
    """Silhouette score in the feature space (NaN with fewer than two classes); subsampled above max_samples."""
    from sklearn.metrics import silhouette_score

    x, y = _prepare(features, labels, normalize)
    if len(np.unique(y)) < 2 or len(y) <= len(np.unique(y)):
        return float("nan")
    size = max_samples if len(y) > max_samples else None
    return float(silhouette_score(x, y, sample_size=size, random_state=seed))


def compactness_ratio(features: np.ndarray, labels: np.ndarray, normalize: bool = True) -> float:
    """Mean over classes of (mean distance to own centroid) / (distance to nearest other centroid)."""
    x, y = _prepare(features, labels, normalize)
    classes = np.unique(y)
    if len(classes) < 2:
        return float("nan")
    cent = np.stack([x[y == c].mean(0) for c in classes])
    intra = np.array([np.linalg.norm(x[y == c] - cent[i], axis=1).mean() for i, c in enumerate(classes)])
    d = np.linalg.norm(cent[:, None] - cent[None], axis=2)
    np.fill_diagonal(d, np.inf)
    return float(np.mean(intra / np.maximum(d.min(1), 1e-12)))


def separation(features: np.ndarray, labels: np.ndarray, normalize: bool = True) -> dict:
    """Both numbers and the sample/class counts they were computed on."""
    y = np.asarray(labels)
    return {"silhouette": silhouette(features, y, normalize), "ratio": compactness_ratio(features, y, normalize),
            "n": int(len(y)), "classes": int(len(np.unique(y)))}
