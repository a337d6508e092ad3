"""Features of an encoder: pooled pre-logits vectors, class prototypes, cosine similarity, patch maps.

Pooled features are what the paper's filter compares (cos(p_i, f_r), p_i the class mean, Sec. 3.1)
and what a re-trained classifier probes. `ltkit.encoder` caches them for the filter, the pilot and
the figures.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ltkit.data import ImageSet, TransformedSet


def model_device(model: nn.Module) -> torch.device:
    """Device of a model's first parameter (CPU for a parameter-free model)."""
    return next(model.parameters(), torch.empty(0)).device


def _loader(images: ImageSet, transform, batch_size: int, num_workers: int = 0,
            indices: range | None = None, pin_memory: bool = False) -> torch.utils.data.DataLoader:
    # num_workers=0 by default: on a 2-core machine worker processes only add copying
    ds = TransformedSet(images, transform)
    if indices is not None:
        ds = torch.utils.data.Subset(ds, indices)
    return torch.utils.data.DataLoader(ds, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                                       pin_memory=pin_memory)


def distributed() -> tuple[int, int]:
    """(rank, world size) of the initialised process group; (0, 1) without one."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def shard_range(n: int, rank: int, world_size: int) -> range:
    """Rank's contiguous share of 0..n-1: shares differ by at most one and never repeat an index."""
    return range(rank * n // world_size, (rank + 1) * n // world_size)


def _gather_rows(part: torch.Tensor, n: int, world_size: int) -> np.ndarray | None:
    """Every rank's (share, C) rows stacked in rank order on rank 0 (None elsewhere)."""
    dist = torch.distributed
    dim = torch.tensor([part.shape[1] if len(part) else 0], device=part.device)
    dist.all_reduce(dim, op=dist.ReduceOp.MAX)  # a rank with an empty share still needs C
    most = -(-n // world_size)
    buf = torch.zeros(most, int(dim), dtype=torch.float32, device=part.device)
    buf[:len(part)] = part
    rank = dist.get_rank()
    bufs = [torch.empty_like(buf) for _ in range(world_size)] if rank == 0 else None
    dist.gather(buf, bufs, dst=0)  # padded to one size; the padding is cut off below
    if rank != 0:
        return None
    return torch.cat([b[:len(shard_range(n, r, world_size))] for r, b in enumerate(bufs)]).cpu().numpy()


@torch.inference_mode()
def extract_features(model: nn.Module, images: ImageSet, transform, batch_size: int = 256,
                     device: str | torch.device | None = None, num_workers: int = 0,
                     amp: bool = True, shard: bool = False) -> np.ndarray | None:
    """Pooled pre-logits features (N, C) float32: forward_head(forward_features(x), pre_logits=True).

    `shard=True` under torch.distributed: every rank must call it; each extracts its contiguous
    share and rank 0 gets all N rows in order (the other ranks get None). `amp`: bf16 autocast on a GPU.
    """
    device = torch.device(device) if device is not None else model_device(model)
    rank, world_size = distributed() if shard else (0, 1)
    mine = shard_range(len(images), rank, world_size)
    was_training = model.training
    model.eval().to(device)
    out = []
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp and device.type == "cuda"):
        for x, _ in _loader(images, transform, batch_size, num_workers, mine, pin_memory=device.type == "cuda"):
            x = x.to(device, non_blocking=True)
            out.append(model.forward_head(model.forward_features(x), pre_logits=True).float())
    model.train(was_training)
    dim = getattr(model, "num_features", 0)
    part = torch.cat(out) if out else torch.zeros((0, dim), device=device)
    if world_size > 1:
        return _gather_rows(part, len(images), world_size)
    return part.cpu().numpy()


# ---------------------------------------------------------------------------------------------
# prototypes and similarity


def prototypes(features: np.ndarray, labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Class means p_i (num_classes, C); NaN rows for classes without samples."""
    labels = torch.as_tensor(np.asarray(labels, np.int64))
    feats = torch.as_tensor(np.asarray(features, np.float32))
    # index_add_ is one pass in C (np.add.at at 100K x 768: 3.2 s against 0.2 s); float32 sums are
    # exact to ~1e-6 relative at a few thousand images per class, far below any cosine threshold
    sums = torch.zeros(num_classes, feats.shape[1]).index_add_(0, labels, feats)
    counts = torch.bincount(labels, minlength=num_classes)
    protos = torch.full((num_classes, feats.shape[1]), float("nan"))
    has = counts > 0
    protos[has] = sums[has] / counts[has, None]
    return protos.numpy()


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
        h, w = patch_grid(model, x.shape[-2:])
        out.append(tokens.reshape(len(x), h, w, -1).float().cpu().numpy())
    model.train(was_training)
    return np.concatenate(out)


def patch_grid(model: nn.Module, hw) -> tuple[int, int]:
    """Patch grid of a ViT for an input size (dynamic-size models included)."""
    pe = model.patch_embed
    if getattr(pe, "dynamic_img_pad", False) or getattr(model, "dynamic_img_size", False):
        if hasattr(pe, "dynamic_feat_size"):
            return tuple(pe.dynamic_feat_size(tuple(hw)))
    return tuple(pe.grid_size)
