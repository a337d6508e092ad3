"""Fig. 6: PCA of patch features. PC1 splits foreground from background; 3 PCs of the foreground become RGB.

Patch features are a ViT's patch tokens or a CNN's spatial feature map (any layer, by name).
Each image's patches are centred on that image's mean first: across a batch of unrelated photos the
largest variance is otherwise between images, and PC1 would pick the image, not the subject. PC1 is
fitted over all centred patches of the batch, min-max scaled per image to [0, 1] and thresholded;
its sign is not defined by PCA, so per image it is oriented so that patches on the image border
score lower than the rest (a subject is seldom cut by every edge). A second PCA with 3 components,
fitted on the foreground patches of the batch only, is min-max scaled per component and shown as RGB.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
import torch.nn as nn

from ltkit.data import shot_groups
from ltkit.features import patch_features, patch_grid
from ltkit.models import data_config
from ltkit.viz.style import WIDTHS, house_style


@dataclass
class PatchPCA:
    """Per image: scaled PC1 (N, h, w), the foreground mask, and the foreground RGB map (N, h, w, 3)."""

    pc1: np.ndarray
    mask: np.ndarray
    rgb: np.ndarray
    threshold: float
    explained: tuple[float, ...]  # variance ratio of the 3 foreground components

    @property
    def foreground_share(self) -> np.ndarray:
        """Share of each image's patches in the foreground."""
        return self.mask.reshape(len(self.mask), -1).mean(1)


@torch.inference_mode()
def spatial_features(model: nn.Module, x: torch.Tensor, layer: str | None = None) -> np.ndarray:
    """(N, h, w, C) features of a normalised batch: `layer`'s output by module name, else the last map.

    A CNN layer gives (B, C, h, w); a ViT block gives tokens, whose prefix tokens are dropped.
    """
    if layer is None:
        return patch_features(model, x)
    out = {}
    hook = model.get_submodule(layer).register_forward_hook(lambda m, i, o: out.setdefault("f", o))
    was_training = model.training
    try:
        model.eval()(x)
    finally:
        hook.remove()
        model.train(was_training)
    f = out["f"]
    if f.ndim == 4:
        return f.permute(0, 2, 3, 1).float().cpu().numpy()
    h, w = patch_grid(model, x.shape[-2:])
    return f[:, getattr(model, "num_prefix_tokens", 0):].reshape(len(x), h, w, -1).float().cpu().numpy()


def _pca(x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Scores (N, k) on the top-k principal components and their explained-variance ratios."""
    x = x - x.mean(0)
    _, s, vt = np.linalg.svd(x, full_matrices=False)
    var = s ** 2
    return x @ vt[:k].T, var[:k] / max(var.sum(), 1e-12)


def _minmax(x: np.ndarray, axis=None) -> np.ndarray:
    lo, hi = x.min(axis=axis, keepdims=True), x.max(axis=axis, keepdims=True)
    return (x - lo) / np.maximum(hi - lo, 1e-12)


def border(h: int, w: int) -> np.ndarray:
    """(h, w) boolean mask of the outermost ring of patches."""
    b = np.zeros((h, w), bool)
    b[0], b[-1], b[:, 0], b[:, -1] = True, True, True, True
    return b


def first_component(feats: np.ndarray) -> np.ndarray:
    """PC1 of per-image-centred patches, per image oriented (border low) and min-max scaled: (N, h, w)."""
    n, h, w, c = feats.shape
    f = feats.astype(np.float64)
    f = f - f.mean((1, 2), keepdims=True)
    score = _pca(f.reshape(-1, c), 1)[0][:, 0].reshape(n, h, w)
    edge = border(h, w)
    out = []
    for s in score:
        if h > 2 and w > 2 and s[edge].mean() > s[~edge].mean():
            s = -s
        out.append(_minmax(s))
    return np.stack(out)


def patch_pca(feats: np.ndarray, threshold: float = 0.5, background: float = 1.0) -> PatchPCA:
    """Foreground by PC1 > threshold, then a 3-component PCA of the foreground patches as RGB."""
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold={threshold}: PC1 is scaled to [0, 1]")
    n, h, w, c = feats.shape
    pc1 = first_component(feats)
    mask = pc1 > threshold
    rgb = np.full((n, h, w, 3), background, np.float64)
    explained = (float("nan"),) * 3
    fg = feats[mask].astype(np.float64)
    if len(fg) >= 3:
        scores, ratio = _pca(fg, 3)
        rgb[mask] = _minmax(scores, axis=0)
        explained = tuple(float(r) for r in ratio)
    return PatchPCA(pc1, mask, rgb, threshold, explained)


# ---------------------------------------------------------------------------------------------
# real weights and real photos (offline)


def sample_photos(names: Sequence[str] = ("grace_hopper", "chelsea", "coffee", "astronaut")) -> dict:
    """Real photos shipped inside installed wheels (matplotlib, scikit-image), as RGB PIL images."""
    from PIL import Image

    out = {}
    for name in names:
        if name == "grace_hopper":
            from matplotlib import cbook

            out[name] = Image.open(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)).convert("RGB")
        else:
            from skimage import data  # these four are bundled in the wheel, not fetched

            out[name] = Image.fromarray(getattr(data, name)()).convert("RGB")
    return out


def photo_batch(model: nn.Module, photos: Sequence, size: int = 448) -> tuple[torch.Tensor, np.ndarray]:
    """Normalised (N, 3, size, size) batch for a model's mean/std, and the (N, size, size, 3) uint8 crops shown."""
    cfg = data_config(model)
    mean, std = torch.tensor(cfg["mean"]).view(3, 1, 1), torch.tensor(cfg["std"]).view(3, 1, 1)
    shown = np.stack([np.asarray(_square(p).resize((size, size), 3)) for p in photos])  # 3: bicubic
    x = torch.as_tensor(shown).permute(0, 3, 1, 2).float() / 255
    return (x - mean) / std, shown


def _square(img):
    """Centre square crop of a PIL image."""
    w, h = img.size
    s = min(w, h)
    return img.crop(((w - s) // 2, (h - s) // 2, (w - s) // 2 + s, (h - s) // 2 + s))


# ---------------------------------------------------------------------------------------------
# the figure


def pca_figure(images: np.ndarray, maps: dict[str, PatchPCA], show_mask: bool = True):
    """Rows: images; columns: the image, then per model its PC1 mask (optional) and foreground RGB map.

    Column titles name only what a column shows ("PC1 > 0.5", "3 PCs"); the model's name stands once
    above its columns, so long names ("EfficientNet-Lite0") never run into the next title.
    """
    import matplotlib.pyplot as plt

    per = 2 if show_mask else 1
    cols = 1 + len(maps) * per
    n = len(images)
    width = WIDTHS["double"] if cols > 3 else WIDTHS["single"]
    height = width / cols * n + 0.5  # + two lines of titles
    with house_style():
        fig, axes = plt.subplots(n, cols, figsize=(width, height), squeeze=False)
        fig.subplots_adjust(wspace=0.04, hspace=0.04, top=1 - 0.5 / height, bottom=0.01, left=0.01, right=0.99)
        axes[0, 0].set_title("image")
        for i in range(n):
            axes[i, 0].imshow(images[i])
        for k, (name, m) in enumerate(maps.items()):
            j = 1 + k * per
            for i in range(n):
                if show_mask:
                    axes[i, j].imshow(m.pc1[i], cmap="gray", vmin=0, vmax=1, interpolation="nearest")
                    axes[i, j].contour(m.mask[i].astype(float), levels=[0.5], colors="#D55E00", linewidths=0.8)
                axes[i, j + per - 1].imshow(m.rgb[i], interpolation="nearest")
            if show_mask:
                axes[0, j].set_title(f"PC1 > {m.threshold:g}")
            axes[0, j + per - 1].set_title("3 PCs")
            left, right = axes[0, j].get_position(), axes[0, j + per - 1].get_position()
            fig.text((left.x0 + right.x1) / 2, 1 - 0.08 / height, name, ha="center", va="top", fontweight="bold")
        for ax in axes.flat:
            ax.set_xticks([]), ax.set_yticks([])
    return fig


# ---------------------------------------------------------------------------------------------
# trained runs side by side (baseline and ours)


def tail_images(data, n: int = 6, seed: int = 0):
    """n validation images (test when there is none) from n different Few classes, fewest train images first."""
    split = data.val if data.val is not None else data.test
    counts = np.asarray(data.train_counts)
    few = [c for c in np.argsort(counts, kind="stable") if c in set(np.asarray(split.labels).tolist())][:n]
    rng = np.random.default_rng(seed)
    labels = np.asarray(split.labels)
    idx = [int(rng.choice(np.flatnonzero(labels == c))) for c in few]
    groups = shot_groups(counts)
    return split.subset(idx), [f"{data.class_names[c]} ({groups[c]}, n={counts[c]})" for c in few]


def run_patch_maps(runs: dict, images, layer: str | None = None, threshold: float = 0.5,
                   upsample: int = 1) -> tuple[np.ndarray, dict[str, PatchPCA]]:
    """Patch maps of each run on the same images: (shown uint8 images, {run name: PatchPCA}).

    `upsample` enlarges the input (e.g. 2: a 32 px image seen at 64 px) for a finer grid.
    """
    import torch.nn.functional as F

    shown = np.stack([np.asarray(images.load(i).convert("RGB")) for i in range(len(images))])
    maps = {}
    for name, run in runs.items():
        x = torch.stack([run.transform(images.load(i)) for i in range(len(images))])
        if upsample > 1:
            x = F.interpolate(x, scale_factor=upsample, mode="bilinear", align_corners=False)
        maps[name] = patch_pca(spatial_features(run.model, x, layer), threshold)
    return shown, maps
