"""Pools the pilot draws from: many classes with a taxonomy, a train and a balanced test split per class.

- `world_pool`: the built-in world's shape families, with colour x texture combinations that the
  world itself never uses, so no encoder ltkit trains on the world (whose labels are world classes)
  has seen a label of a pilot class. Rendered on demand, deterministic per class.
- `cifar100_pool`: CIFAR-100's 100 fine classes under its 20 coarse labels (500 train, 100 test each).
- `folder_pool`: `root/<class>/<image>` (ImageNet-21k style) with a JSON or WordNet taxonomy; each
  class holds out `test_per_class` images (seeded) as its balanced test split.

Features of a pool under an encoder go through the one feature cache (`class_features`), so a grid's
cells, or several array jobs, extract every class once.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from functools import partial
from typing import Callable, Sequence

import numpy as np

from ltkit.data import ArrayImages, FileImages, ImageSet
from ltkit.data.readers import load_cifar100, load_image_folder
from ltkit.data.taxonomy import Taxonomy
from ltkit.encoder import Encoder, encode_cached
from ltkit.errors import UserError
from ltkit.render import COLOURS, render
from ltkit.world import GROUPS, TEXTURES, ClassSpec

PILOT_STREAM = 7  # RNG stream of pilot images, apart from the world's own splits (0..4)


@dataclass
class Pool:
    """Classes with a taxonomy; `images(c, split)` gives class c's 'train' or 'test' images."""

    name: str
    key: str                                   # identity of the images, for feature caches
    class_names: list[str]
    taxonomy: Taxonomy
    images: Callable[[int, str], ImageSet]     # (class index, split) -> its images
    train_sizes: np.ndarray                    # train images available per class
    test_sizes: np.ndarray

    def index(self, names: Sequence[str]) -> np.ndarray:
        """Pool indices of class names."""
        pos = {n: i for i, n in enumerate(self.class_names)}
        return np.array([pos[n] for n in names], dtype=np.int64)

    def eligible(self, train: int, test: int) -> list[str]:
        """Classes with at least `train` train and `test` test images."""
        ok = (self.train_sizes >= train) & (self.test_sizes >= test)
        return [n for n, k in zip(self.class_names, ok) if k]


# ---------------------------------------------------------------------------------------------
# the built-in world


def unseen_specs(world, colours_per_family: int = 4, textures_per_family: int = 3) -> list:
    """Per family, adjacent colours x textures that the world never pairs with that family (4 x 3 = 12)."""
    colours = list(COLOURS)
    used: dict[str, tuple[set, set]] = {}
    for c in world.classes:
        cols, texs = used.setdefault(c.family, (set(), set()))
        cols.add(c.colour), texs.add(c.texture)
    specs = []
    for fam, (cols, texs) in used.items():
        # unused hues in wheel order, starting right after the family's last used hue
        last = max(colours.index(c) for c in cols) if len(cols) < len(colours) else 0
        free_c = [colours[(last + 1 + j) % len(colours)] for j in range(len(colours))
                  if colours[(last + 1 + j) % len(colours)] not in cols]
        free_t = [t for t in TEXTURES if t not in texs]
        # the middle 4 free hues: as far from the world's own colours of this family as possible
        mid = max(0, (len(free_c) - colours_per_family) // 2)
        for col in free_c[mid:mid + colours_per_family]:
            for tex in free_t[:textures_per_family]:
                specs.append(ClassSpec(len(specs), fam, col, tex))
    return specs


def world_pool(world, train_per_class: int, test_per_class: int) -> Pool:
    """The world's families with unseen colour x texture combinations, rendered on demand."""
    specs = unseen_specs(world)
    if not specs:
        raise UserError(f"world {world.config.key()} pairs every family with every colour and texture: no class is"
                         " left that its pool encoder has not seen (use a preset such as builtin)")
    names = [s.name for s in specs]
    clash = sorted(set(names) & set(world.all_names))
    if clash:  # a preset that uses these combinations itself: its encoder may have seen them
        raise UserError(f"pilot classes {clash[:3]} are classes of world {world.config.key()}; its encoder may have"
                         " seen their labels")
    group_of = {f: g for g, fams in GROUPS.items() for f in fams}
    tax = Taxonomy({s.name: (group_of.get(s.family, "shape"), s.family) for s in specs})
    cfg, size = world.config, world.config.image_size
    split_id = {"train": 0, "test": 1}

    def images(c: int, split: str) -> ImageSet:
        n = train_per_class if split == "train" else test_per_class
        imgs = np.stack([render(specs[c], np.random.default_rng([cfg.seed, PILOT_STREAM, c, split_id[split], i]), size)
                         for i in range(n)]) if n else np.zeros((0, size, size, 3), np.uint8)
        return ArrayImages(imgs, np.full(n, c))

    key = _digest(["world", cfg.key(), names, train_per_class, test_per_class])
    return Pool(f"world-{cfg.key()}", key, names, tax, images, np.full(len(specs), train_per_class),
                np.full(len(specs), test_per_class))


# ---------------------------------------------------------------------------------------------
# real data


def cifar100_pool(root: str | os.PathLike) -> Pool:
    """CIFAR-100 (train and test pickles under root/cifar-100-python) with its 20 coarse labels."""
    data = load_cifar100(root)
    tr, te = data.train, data.test
    by_tr = [np.flatnonzero(tr.labels == c) for c in range(data.num_classes)]
    by_te = [np.flatnonzero(te.labels == c) for c in range(data.num_classes)]

    def images(c: int, split: str) -> ImageSet:
        return tr.subset(by_tr[c]) if split == "train" else te.subset(by_te[c])

    # the pickles' size and mtime stand in for their bytes: a replaced file gets new features
    files = [Path(root) / "cifar-100-python" / f for f in ("train", "test")]
    key = _digest(["cifar100", [(str(f.resolve()), f.stat().st_size, f.stat().st_mtime_ns) for f in files]])
    return Pool("CIFAR-100", key, data.class_names, data.taxonomy, images, np.array([len(i) for i in by_tr]),
                np.array([len(i) for i in by_te]))


def folder_pool(root: str | os.PathLike, taxonomy: Taxonomy | str | None, test_per_class: int, seed: int = 0) -> Pool:
    """`root/<class>/<image>` classes found in the taxonomy; each holds out `test_per_class` images as test.

    `taxonomy`: a Taxonomy, a Taxonomy JSON file, or "wordnet" for folders named by ImageNet wnids.
    """
    names, files = load_image_folder(root)
    if taxonomy is None:
        raise UserError("a folder pool needs a taxonomy (pilot.taxonomy=: a Taxonomy JSON file, or wordnet)")
    if isinstance(taxonomy, str):
        taxonomy = load_taxonomy(taxonomy, names)
    missing = [n for n in names if n not in taxonomy]
    if missing:
        raise UserError(f"{root}: {len(missing)} class folders are not in the taxonomy (e.g. {missing[:3]})")
    rng = np.random.default_rng(seed)
    split: dict[tuple[int, str], np.ndarray] = {}
    for c in range(len(names)):
        idx = rng.permutation(np.flatnonzero(files.labels == c))
        split[c, "test"], split[c, "train"] = np.sort(idx[:test_per_class]), np.sort(idx[test_per_class:])

    def images(c: int, which: str) -> FileImages:
        return files.subset(split[c, which])

    key = _digest(["folders", str(Path(root).resolve()), files.paths, test_per_class, seed])
    return Pool(f"folders-{Path(root).name}", key, names, taxonomy.subset(names), images,
                np.array([len(split[c, "train"]) for c in range(len(names))]),
                np.array([len(split[c, "test"]) for c in range(len(names))]))


def load_taxonomy(spec: str, class_names: Sequence[str]) -> Taxonomy:
    """A taxonomy from a JSON file, or "wordnet" for folders named by ImageNet wnids."""
    if spec == "wordnet":
        tax = Taxonomy.from_wordnet(list(class_names))
        # from_wordnet names classes by lemma; the pool names them by wnid
        return Taxonomy(dict(zip(class_names, tax.paths.values())))
    return Taxonomy.from_json(spec)


# ---------------------------------------------------------------------------------------------
# features, cached per class


def class_features(pool: Pool, classes: Sequence[int], encoder: Encoder, train: int, test: int,
                   cache_dir: str | os.PathLike | None = None) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """Class -> (features of its first `train` train images, of its first `test` test images), cached.

    Through the one feature cache (`ltkit.encoder.encode_cached`), an image keyed by its place in the
    pool (`image_keys`), so a class whose features are cached is neither rendered nor read again.
    """
    out = {}
    for c in classes:
        feats = []
        for split, n in (("train", train), ("test", test)):
            keys = image_keys(pool, int(c), split, n)
            images = partial(_first_images, pool, int(c), split, len(keys))
            feats.append(encode_cached(encoder, images, cache_dir, keys))
        out[c] = tuple(feats)
    return out


def image_keys(pool: Pool, c: int, split: str, n: int) -> list[str]:
    """Cache keys of the first `n` images (at most all) of class `c`'s split: `<pool key>:<class>:<split>:<index>`."""
    sizes = pool.train_sizes if split == "train" else pool.test_sizes
    return [f"{pool.key}:{c}:{split}:{i}" for i in range(min(n, int(sizes[c])))]


def _first_images(pool: Pool, c: int, split: str, n: int) -> ImageSet:
    """The first `n` images of class `c`'s split."""
    return pool.images(c, split).subset(np.arange(n))


def class_images(pool: Pool, classes: Sequence[int], train: int, test: int) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """Class -> (first `train` train images, first `test` test images) as uint8 (N, H, W, 3) arrays.

    For `pilot.features: trained`, which trains on pixels: a pool of in-memory images (a world
    preset, CIFAR-100); image files of assorted sizes would need the trainer's transforms.
    """
    out = {}
    for c in classes:
        tr, te = pool.images(int(c), "train"), pool.images(int(c), "test")
        if not isinstance(tr, ArrayImages) or not isinstance(te, ArrayImages):
            raise UserError(f"pilot.features=trained trains on in-memory images; pool {pool.name} holds image files"
                            " (use a world preset or cifar100, or pilot.features=frozen)")
        out[int(c)] = (tr.images[:train], te.images[:test])
    return out


def _digest(obj) -> str:
    return hashlib.sha256(json.dumps(obj, default=str).encode()).hexdigest()[:12]
