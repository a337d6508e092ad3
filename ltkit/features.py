"""Features of an encoder: pooled pre-logits vectors, class prototypes, cosine similarity, patch maps.

Pooled features are what the paper's filter compares (cos(p_i, f_r), p_i the class mean, Sec. 3.1)
and what a re-trained classifier probes. They are cached as .npy files keyed by the weights and the
dataset, so a crawl's filter and a notebook share one extraction.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ltkit.data import ArrayImages, FileImages, ImageSet, TransformedSet
from ltkit.io import atomic_save


def model_device(model: nn.Module) -> torch.device:
    """Device of a model's first parameter (CPU for a parameter-free model)."""
    return next(model.parameters(), torch.empty(0)).device


def _loader(images: ImageSet, transform, batch_size: int, num_workers: int = 0) -> torch.utils.data.DataLoader:
    # num_workers=0 by default: on a 2-core machine worker processes only add copying
    return torch.utils.data.DataLoader(TransformedSet(images, transform), batch_size=batch_size, shuffle=False,
                                       num_workers=num_workers)


@torch.inference_mode()
def extract_features(model: nn.Module, images: ImageSet, transform, batch_size: int = 256,
                     device: str | torch.device | None = None, num_workers: int = 0) -> np.ndarray:
    """Pooled pre-logits features (N, C) float32: forward_head(forward_features(x), pre_logits=True)."""
    device = torch.device(device) if device is not None else model_device(model)
    was_training = model.training
    model.eval().to(device)
    out = []
    for x, _ in _loader(images, transform, batch_size, num_workers):
        f = model.forward_head(model.forward_features(x.to(device, non_blocking=True)), pre_logits=True)
        out.append(f.float().cpu().numpy())
    model.train(was_training)
    dim = getattr(model, "num_features", 0)
    return np.concatenate(out) if out else np.zeros((0, dim), np.float32)


# ---------------------------------------------------------------------------------------------
# cache keys and the cache


def weights_hash(model: nn.Module) -> str:
    """sha256 (16 hex) of a model's class and state dict: names, shapes, dtypes and bytes."""
    h = hashlib.sha256(type(model).__qualname__.encode())
    for k, v in model.state_dict().items():
        t = v.detach().cpu().contiguous()
        h.update(f"{k}{tuple(t.shape)}{t.dtype}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")  # 0-d too (BN counters)
    return h.hexdigest()[:16]


def dataset_hash(images: ImageSet) -> str:
    """sha256 (16 hex) that identifies an image set: pixels for arrays, root and paths for files."""
    h = hashlib.sha256(type(images).__name__.encode())
    if isinstance(images, ArrayImages):
        h.update(str(images.images.shape).encode())
        h.update(np.ascontiguousarray(images.images).tobytes())
    elif isinstance(images, FileImages):
        h.update(str(images.root.resolve()).encode())
        h.update("\n".join(images.paths).encode())
    else:  # an unknown set: its images decide
        for i in range(len(images)):
            h.update(np.asarray(images.load(i)).tobytes())
    h.update(np.asarray(images.labels, np.int64).tobytes())
    return h.hexdigest()[:16]


def feature_cache_path(root: str | os.PathLike, model: nn.Module, images: ImageSet, transform=None,
                       extra: str = "") -> Path:
    """`root/<weights>-<dataset>-<transform>.npy`: one file per (weights, dataset, eval transform)."""
    t = hashlib.sha256((repr(transform) + extra).encode()).hexdigest()[:8]
    return Path(root) / f"{weights_hash(model)}-{dataset_hash(images)}-{t}.npy"


def cached_features(cache_path: str | os.PathLike | None, fn: Callable[[], np.ndarray]) -> np.ndarray:
    """Load `cache_path` if it exists, else compute `fn()` and save it there atomically (None: no cache)."""
    if cache_path is None:
        return fn()
    path = Path(cache_path)
    if path.is_file():
        return np.load(path)
    arr = np.asarray(fn())
    atomic_save(path, lambda f: np.save(f, arr))
    return arr


def extract_features_cached(model: nn.Module, images: ImageSet, transform,
                            cache_dir: str | os.PathLike | None = None, **kwargs) -> np.ndarray:
    """`extract_features`, cached under `cache_dir` by weights and dataset when given."""
    path = feature_cache_path(cache_dir, model, images, transform) if cache_dir is not None else None
    return cached_features(path, lambda: extract_features(model, images, transform, **kwargs))


# ---------------------------------------------------------------------------------------------
# prototypes and similarity


def prototypes(features: np.ndarray, labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Class means p_i (num_classes, C); NaN rows for classes without samples."""
    labels = np.asarray(labels)
    protos = np.full((num_classes, features.shape[1]), np.nan, np.float32)
    counts = np.bincount(labels, minlength=num_classes)
    sums = np.zeros((num_classes, features.shape[1]), np.float64)
    np.add.at(sums, labels, features)
    has = counts > 0
    protos[has] = sums[has] / counts[has, None]
    return protos


def cosine_to(features: np.ndarray, protos: np.ndarray) -> np.ndarray:
    """Cosine similarity (N, P) of every feature to every prototype."""
    f = torch.as_tensor(np.asarray(features, np.float32))
    p = torch.as_tensor(np.asarray(protos, np.float32))
    return (F.normalize(f, dim=1) @ F.normalize(p, dim=1).T).numpy()


def nearest_prototype_accuracy(train_feats: np.ndarray, train_labels: np.ndarray, test_feats: np.ndarray,
                               test_labels: np.ndarray, num_classes: int) -> float:
    """Accuracy of assigning each test feature to its most cosine-similar class mean."""
    protos = np.nan_to_num(prototypes(train_feats, train_labels, num_classes), nan=0.0)
    return float((cosine_to(test_feats, protos).argmax(1) == np.asarray(test_labels)).mean())


# ---------------------------------------------------------------------------------------------
# patch features (PCA -> RGB figures)


@torch.inference_mode()
def patch_features(model: nn.Module, images: torch.Tensor | ImageSet, transform=None, batch_size: int = 256,
                   device: str | torch.device | None = None) -> np.ndarray:
    """Spatial features (N, H', W', C): ViT patch tokens without the prefix tokens, or a CNN's feature map.

    `images` is a normalised (N, 3, H, W) batch, or an ImageSet with its eval `transform`.
    """
    device = torch.device(device) if device is not None else model_device(model)
    was_training = model.training
    model.eval().to(device)
    batches = (images.split(batch_size) if isinstance(images, torch.Tensor)
               else (x for x, _ in _loader(images, transform, batch_size)))
    out = []
    for x in batches:
        f = model.forward_features(x.to(device))
        if f.ndim == 4:  # CNN: (B, C, H', W')
            out.append(f.permute(0, 2, 3, 1).float().cpu().numpy())
            continue
        tokens = f[:, getattr(model, "num_prefix_tokens", 0):]
        h, w = _grid(model, x.shape[-2:])
        out.append(tokens.reshape(len(x), h, w, -1).float().cpu().numpy())
    model.train(was_training)
    return np.concatenate(out)


def _grid(model: nn.Module, hw) -> tuple[int, int]:
    """Patch grid of a ViT for an input size (dynamic-size models included)."""
    pe = model.patch_embed
    if getattr(pe, "dynamic_img_pad", False) or getattr(model, "dynamic_img_size", False):
        if hasattr(pe, "dynamic_feat_size"):
            return tuple(pe.dynamic_feat_size(tuple(hw)))
    return tuple(pe.grid_size)
