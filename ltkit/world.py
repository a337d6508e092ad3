"""The built-in world: a procedurally rendered, hierarchical image dataset with an open "web" pool.

Hierarchy (fixed, independent of the seed):  group -> family (shape) -> fine class.
28 shape families in 4 groups; each family has 12 look-alike fine classes, 4 adjacent colours x
3 textures ("teal striped hexagon"). Adjacent colours are 30 degrees of hue apart and every
image jitters its hue by up to 8 degrees, so siblings are look-alikes that never share a hue.
The `builtin-wide` preset gives every family all 12 colours x 6 textures (2016 classes), so that
the classes outside the label set outnumber the neighbour categories a search uses many times
over and random categories (RD) can differ from neighbour ones (SD).

Every image draws its own nuisance factors from an RNG keyed by (seed, split, index), so the world
is byte-identical for a seed however it is generated: position, scale, rotation, aspect, colour
jitter within the colour family, texture phase and frequency, background colour and clutter,
occlusion and pixel noise. This module decides what to draw (classes, splits, pool, cache);
`ltkit.render` draws it.

The open pool stands in for the web: for every class of the world, `pool_per_class` items that a
search for that class returns, each with a web-like caption and one of the noise kinds below
(rates in `WorldConfig`, documented in README and checked by tests).
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ltkit.data import profile_counts, shot_groups
from ltkit.data.taxonomy import Taxonomy
from ltkit.errors import ArgumentParser, UserError
from ltkit.paths import cache_root
from ltkit.render import COLOURS, jitter_copy, render, render_junk

GROUPS: dict[str, list[str]] = {
    "round shape": ["circle", "ring", "ellipse", "crescent", "semicircle", "heart", "teardrop"],
    "polygon": ["square", "diamond", "triangle", "pentagon", "hexagon", "octagon", "trapezoid",
                "parallelogram", "kite"],
    "star or cross": ["star", "hexagram", "cross", "saltire", "asterisk", "sparkle"],
    "glyph": ["arrow", "chevron", "frame", "hourglass", "bolt", "tee"],
}
FAMILIES: list[str] = [f for fams in GROUPS.values() for f in fams]
TEXTURES: list[str] = ["plain", "striped", "dotted", "checkered", "shaded", "wavy"]
NOISE_KINDS = ("clean", "off_topic", "mislabelled", "uncaptioned", "junk", "near_duplicate")
SPLITS = {"train": 0, "val": 1, "test": 2, "pool": 3, "pool_noise": 4}

CAPTIONS = ["{n}", "a photo of a {n}", "{N} - stock illustration", "{n} icon vector", "cute {n} clipart png",
            "HD wallpaper: {n}", "{n} pattern on a background", "buy {n} sticker online", "my {n} drawing"]
BLANK_CAPTIONS = ["IMG_{k:04d}.jpg", "free vector graphics download", "abstract background texture {k}",
                  "untitled design {k}", "image {k} of 500"]


@dataclass(frozen=True)
class WorldConfig:
    """Every knob of the world. Fixed before any method comparison (see README)."""

    seed: int = 0
    image_size: int = 32
    num_targets: int = 100          # L target classes, spread over the families
    head: int = 500                 # train images of the most frequent class
    imbalance: float = 100.0        # head / tail
    profile: str = "exp"            # "exp" (CIFAR-LT) or "pareto" (ImageNet-LT)
    val_per_class: int = 20
    test_per_class: int = 50
    pool_per_class: int = 40        # pool items a search for any one class returns
    # pool noise rates (the rest are clean)
    off_topic: float = 0.10         # image and caption of another class
    mislabelled: float = 0.05       # image of a sibling, caption names the query class
    uncaptioned: float = 0.10       # right image, caption names no class
    junk: float = 0.05              # no shape at all, caption names the query class
    near_duplicate: float = 0.03    # jittered copy of a target image of the query's family (families
                                    # without a target class get clean items instead)
    colours_per_family: int = 4     # adjacent colours of a family (at most 12)
    textures_per_family: int = 3    # textures of a family (at most 6)
    target_families: int = 0        # 0: targets spread over every family; N: over N families only
    pretrain_families: int = 0      # families without targets whose classes only pre-training may use
                                    # (never an auxiliary candidate: `World.pretrain_classes`)

    def key(self) -> str:
        """Short hash that names this world's cache folder."""
        d = {k: float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else v
             for k, v in asdict(self).items() if _LATER_FIELDS.get(k, object()) != v}  # 30 and 30.0: one world
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:12]


# fields added after worlds were first cached: hashed only when they differ from these values,
# so every world generated before keeps its key (and cache folder)
_LATER_FIELDS = {"colours_per_family": 4, "textures_per_family": 3, "target_families": 0, "pretrain_families": 0}


@dataclass(frozen=True)
class ClassSpec:
    """One fine class of the world."""

    index: int
    family: str
    colour: str
    texture: str

    @property
    def name(self) -> str:
        return f"{self.colour} {self.texture} {self.family}"


def all_classes(cfg: WorldConfig | None = None) -> list[ClassSpec]:
    """The world's fine classes, family by family (336 for the default 4 colours x 3 textures)."""
    cfg = cfg or WorldConfig()
    colours = list(COLOURS)
    if not (1 <= cfg.colours_per_family <= len(colours) and 1 <= cfg.textures_per_family <= len(TEXTURES)):
        raise UserError(f"colours_per_family must be 1..{len(colours)} and textures_per_family 1..{len(TEXTURES)}")
    out = []
    for f, fam in enumerate(FAMILIES):
        cols = [colours[(3 * f + j) % len(colours)] for j in range(cfg.colours_per_family)]
        texs = [TEXTURES[(f + t) % len(TEXTURES)] for t in range(cfg.textures_per_family)]
        for c in cols:
            for t in texs:
                out.append(ClassSpec(len(out), fam, c, t))
    return out


def world_taxonomy(classes: list[ClassSpec] | None = None) -> Taxonomy:
    """group -> family -> fine class, for all classes of the world (default: the 336 of `builtin`)."""
    group_of = {f: g for g, fams in GROUPS.items() for f in fams}
    return Taxonomy({c.name: (group_of[c.family], c.family) for c in (classes or all_classes())})


# ---------------------------------------------------------------------------------------------
# the world


@dataclass
class World:
    """A generated world: target splits, open pool, and the full taxonomy."""

    config: WorldConfig
    classes: list[ClassSpec]                 # every class of the world, index = world class id
    targets: np.ndarray                      # (L,) world class id of target class 0..L-1
    train_counts: np.ndarray                 # (L,) train images per target class
    splits: dict[str, tuple[np.ndarray, np.ndarray]]  # name -> (images uint8 NHWC, target labels)
    pool_images: np.ndarray
    pool_query: np.ndarray                   # world class a search for which returns the item
    pool_true: np.ndarray                    # world class actually depicted, -1 for junk
    pool_captions: list[str]
    pool_noise: list[str]                    # one of NOISE_KINDS
    taxonomy: Taxonomy = field(default_factory=world_taxonomy)

    @property
    def class_names(self) -> list[str]:
        """Target class names, index = target label."""
        return [self.classes[i].name for i in self.targets]

    @property
    def all_names(self) -> list[str]:
        """Names of every class of the world, index = world class id."""
        return [c.name for c in self.classes]

    @property
    def pretrain_classes(self) -> np.ndarray:
        """World class ids of the pre-training part: every class of the reserved families (none by default)."""
        fams = reserved_families(self.config, [self.classes[i].family for i in self.targets])
        return np.array([c.index for c in self.classes if c.family in fams], dtype=np.int64)

    @property
    def search_taxonomy(self) -> Taxonomy:
        """The taxonomy auxiliary categories come from: every class outside the pre-training part.

        The neighbour search and RD draw from it, so no auxiliary class is one the encoder was
        pre-trained on (`pretrain.pretraining_set(world, "disjoint")`).
        """
        held = set(self.pretrain_classes.tolist())
        return self.taxonomy if not held else self.taxonomy.subset([c.name for c in self.classes if c.index not in held])

    def summary(self) -> dict:
        """Counts a researcher checks first: classes, superclasses, shot groups, pool noise."""
        groups = shot_groups(self.train_counts)
        noise = {k: self.pool_noise.count(k) / max(len(self.pool_noise), 1) for k in NOISE_KINDS}
        fams = {self.classes[i].family for i in self.targets}
        return {
            "world_classes": len(self.classes), "families": len(FAMILIES), "groups": len(GROUPS),
            "open_classes": len(self.classes) - int(len(self.targets)),
            "targets": int(len(self.targets)), "target_families": len(fams),
            "train": int(self.train_counts.sum()), "val": len(self.splits["val"][1]),
            "test": len(self.splits["test"][1]),
            "head": int(self.train_counts.max()), "tail": int(self.train_counts.min()),
            "many": int((groups == "many").sum()), "medium": int((groups == "medium").sum()),
            "few": int((groups == "few").sum()),
            "pool": len(self.pool_captions), "pool_noise": {k: round(v, 4) for k, v in noise.items()},
        }


def _rng(seed: int, split: str, i: int) -> np.random.Generator:
    return np.random.default_rng([seed, SPLITS[split], i])


def choose_targets(cfg: WorldConfig, classes: list[ClassSpec]) -> np.ndarray:
    """L classes spread round-robin over shuffled families, then ordered head first."""
    rng = np.random.default_rng([cfg.seed, 99])
    by_family = {f: [c.index for c in classes if c.family == f] for f in FAMILIES}
    for f in by_family:
        rng.shuffle(by_family[f])
    order = list(rng.permutation(FAMILIES))
    if cfg.target_families:  # the rest of the families hold no target (room for a pre-training part)
        order = order[:cfg.target_families]
        classes = [c for c in classes if c.family in order]
    if cfg.num_targets > len(classes):
        raise ValueError(f"num_targets={cfg.num_targets} exceeds the {len(classes)} classes targets may come from")
    picked, r = [], 0
    while len(picked) < cfg.num_targets:
        for f in order:
            if len(picked) < cfg.num_targets and r < len(by_family[f]):
                picked.append(by_family[f][r])
        r += 1
    return np.array(rng.permutation(picked))


def reserved_families(cfg: WorldConfig, target_families: list[str]) -> list[str]:
    """The `pretrain_families` families, drawn (seeded) from those without a target class."""
    free = [f for f in FAMILIES if f not in set(target_families)]
    if cfg.pretrain_families > len(free):
        raise ValueError(f"pretrain_families={cfg.pretrain_families}: only {len(free)} families hold no target class"
                         " (set target_families to leave more free)")
    if not cfg.pretrain_families:
        return []
    order = np.random.default_rng([cfg.seed, 98]).permutation(free)
    return sorted(str(f) for f in order[:cfg.pretrain_families])


def generate(cfg: WorldConfig = WorldConfig()) -> World:
    """Render a world from its config (no caching; see `load_world`)."""
    probs = np.array([cfg.off_topic, cfg.mislabelled, cfg.uncaptioned, cfg.junk, cfg.near_duplicate])
    if probs.sum() >= 1 or (probs < 0).any():
        raise UserError("pool noise rates must be non-negative and sum below 1")
    probs = np.concatenate([[1 - probs.sum()], probs])
    classes = all_classes(cfg)
    targets = choose_targets(cfg, classes)
    reserved_families(cfg, [classes[t].family for t in targets])  # an impossible carve fails before rendering
    L, S = len(targets), cfg.image_size
    counts = profile_counts(cfg.profile, L, cfg.head, cfg.imbalance)
    splits = {}
    for split, per_class in (("train", counts), ("val", [cfg.val_per_class] * L), ("test", [cfg.test_per_class] * L)):
        labels = np.repeat(np.arange(L), per_class)
        imgs = np.empty((len(labels), S, S, 3), np.uint8)
        for i, y in enumerate(labels):
            imgs[i] = render(classes[targets[y]], _rng(cfg.seed, split, i), S)
        splits[split] = (imgs, labels)

    fam_targets = {f: [t for t in range(L) if classes[targets[t]].family == f] for f in FAMILIES}
    train_imgs, train_labels = splits["train"]
    n_pool = len(classes) * cfg.pool_per_class
    pool = np.empty((n_pool, S, S, 3), np.uint8)
    query, true, caps, noise = np.empty(n_pool, int), np.empty(n_pool, int), [], []
    for j in range(n_pool):
        q = j // cfg.pool_per_class
        rng = _rng(cfg.seed, "pool", j)
        kind = NOISE_KINDS[rng.choice(len(NOISE_KINDS), p=probs)]
        if kind == "near_duplicate" and not fam_targets[classes[q].family]:
            kind = "clean"  # nothing of this family is in the target set to duplicate
        t, named = q, q
        if kind == "off_topic":  # any class but the query
            t = int(rng.integers(len(classes) - 1))
            t = named = t + (t >= q)
        elif kind == "mislabelled":
            t = int(rng.choice([c.index for c in classes if c.family == classes[q].family and c.index != q]))
        if kind == "junk":
            pool[j], t = render_junk(rng, S), -1
        elif kind == "near_duplicate":
            src = rng.choice(np.flatnonzero(np.isin(train_labels, fam_targets[classes[q].family])))
            pool[j], t = jitter_copy(train_imgs[src], rng), int(targets[train_labels[src]])
        else:
            pool[j] = render(classes[t], rng, S)
        name = classes[named].name
        k = int(rng.integers(10000))
        if kind == "uncaptioned":
            caps.append(BLANK_CAPTIONS[k % len(BLANK_CAPTIONS)].format(k=k))
        else:
            caps.append(CAPTIONS[k % len(CAPTIONS)].format(n=name, N=name.title()))
        query[j], true[j] = q, t
        noise.append(kind)
    return World(cfg, classes, targets, np.asarray(counts), splits, pool, query, true, caps, noise,
                 world_taxonomy(classes))


def load_world(cfg: WorldConfig = WorldConfig(), cache: str | os.PathLike | None = None) -> World:
    """Load a world from the cache, generating and caching it (atomically) on first use."""
    root = Path(cache) if cache is not None else cache_root()
    folder = root / "world" / cfg.key()
    if not (folder / "meta.json").exists():
        _check_writable(folder.parent)  # before rendering, which takes a minute on the larger presets
        _save(generate(cfg), folder)
    meta = json.loads((folder / "meta.json").read_text())
    with np.load(folder / "arrays.npz") as a:
        arrays = {k: a[k] for k in a.files}
    splits = {s: (arrays[f"{s}_x"], arrays[f"{s}_y"]) for s in ("train", "val", "test")}
    wcfg = WorldConfig(**meta["config"])
    classes = all_classes(wcfg)
    return World(wcfg, classes, arrays["targets"], arrays["train_counts"], splits, arrays["pool_x"],
                 arrays["pool_query"], arrays["pool_true"], meta["pool_captions"], meta["pool_noise"],
                 world_taxonomy(classes))


def _check_writable(folder: Path) -> None:
    """Create the world cache folder and write a probe file there, or raise a UserError naming it."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=folder).close()
    except OSError as e:
        raise UserError(f"world cache {folder}: cannot write there ({e.strerror or e});"
                        " pass --cache or set LTKIT_CACHE to a writable folder") from None


def _save(w: World, folder: Path) -> None:
    """Write into a temporary sibling folder, then rename it into place."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}."))
    try:
        arrays = {f"{s}_{k}": a for s, (x, y) in w.splits.items() for k, a in (("x", x), ("y", y))}
        np.savez(tmp / "arrays.npz", targets=w.targets, train_counts=w.train_counts, pool_x=w.pool_images,
                 pool_query=w.pool_query, pool_true=w.pool_true, **arrays)
        meta = {"config": asdict(w.config), "class_names": w.all_names, "target_names": w.class_names,
                "pool_captions": w.pool_captions, "pool_noise": w.pool_noise, "summary": w.summary()}
        (tmp / "meta.json").write_text(json.dumps(meta))
        try:
            os.rename(tmp, folder)
        except OSError:  # another process won the race: its copy is identical
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


PRESETS: dict[str, WorldConfig] = {
    "builtin": WorldConfig(),
    # small enough for the test suite, yet with Many, Medium and Few classes
    "builtin-tiny": WorldConfig(num_targets=24, head=150, imbalance=30.0, val_per_class=5, test_per_class=10,
                                pool_per_class=12),
    # `builtin`'s target task in a world with every colour x texture per family (2016 classes, 1916
    # open). Fixed before any run by one rule: the open classes must number at least five times the
    # neighbour categories the search uses (about 220 at k = 5), so RD's random draw can differ from SD.
    "builtin-wide": WorldConfig(colours_per_family=12, textures_per_family=6),
    # the world that can answer the paper's question (docs/testbed.md says what each number is for):
    # 40 targets in 10 families (4 each, 12 open siblings each), 8 of the 18 other families reserved
    # for pre-training, 150 pool items per class so the 50-image cap binds
    "testbed": WorldConfig(num_targets=40, head=300, imbalance=100.0, pool_per_class=150, textures_per_family=4,
                           target_families=10, pretrain_families=8),
}


def main(argv: list[str] | None = None) -> int:
    """`python -m ltkit world`: generate (or load) a world and print its summary."""
    import argparse
    import time

    p = ArgumentParser(prog="python -m ltkit world", description=main.__doc__)
    p.add_argument("--preset", default="builtin", choices=sorted(PRESETS))
    p.add_argument("--seed", type=int, help="override the preset's seed")
    p.add_argument("--image-size", type=int, choices=(32, 64), help="override the image size")
    p.add_argument("--cache", help="cache folder (default: $LTKIT_CACHE or ~/.cache/ltkit)")
    args = p.parse_args(argv)
    cfg = PRESETS[args.preset]
    over = {k: v for k, v in (("seed", args.seed), ("image_size", args.image_size)) if v is not None}
    cfg = WorldConfig(**{**asdict(cfg), **over})
    t = time.time()
    w = load_world(cfg, args.cache)
    s = w.summary()
    print(f"world {args.preset} (key {cfg.key()}, seed {cfg.seed}, {cfg.image_size}px) ready in {time.time() - t:.1f}s")
    print(f"  classes      {s['world_classes']} in {s['families']} shape families, {s['groups']} groups;"
          f" {s['open_classes']} outside the label set")
    print(f"  targets      {s['targets']} over {s['target_families']} families;"
          f" train {s['train']} (head {s['head']}, tail {s['tail']}), val {s['val']}, test {s['test']}")
    print(f"  shot groups  many {s['many']}, medium {s['medium']}, few {s['few']}")
    print(f"  pool         {s['pool']} items; noise " + ", ".join(f"{k} {v:.1%}" for k, v in s["pool_noise"].items()))
    return 0
