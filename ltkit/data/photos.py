"""Real photos as a long-tailed target task and an open captioned pool: the folders a user would bring.

From labelled photo sets (folders or tarballs with `train/<class>/` and `test/` or `val/` class
folders, such as CIFAR-10 as JPEGs and Imagenette) the builder writes

    <out>/target/train/<class>/*.jpg   the targets, long-tailed: head * imbalance^(-r / (L-1)) photos for
                                       the r-th target of `photos.targets` (the CIFAR-LT profile)
    <out>/target/val/<class>/*.jpg     `val_per_class` train photos the long-tailed split left out
    <out>/target/test/<class>/*.jpg    the source's own test split, balanced
    <out>/pool/images/<class>/*.jpg    the open "web": `pool_per_class` items filed under each pool class
    <out>/pool/captions.csv            path,caption,label,truth (what `crawl.pool_dir` reads)
    <out>/build.json                   the settings, the class split and the counts

and nothing downstream knows it was built: training reads `dataset: folders`, the crawl searches
`crawl.pool_dir` by name, the filter scores what the crawl downloaded. A pool item's caption is a
web-like template around a class name, and its `truth` is the world pool's noise kind
(`ltkit.world.NOISE_KINDS`), so the filters' precision and recall can be measured.
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import os
import shutil
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance

from ltkit.config import Config, PhotosConfig, load_config, no_stray_arguments, split_overrides
from ltkit.data.cifar import TARBALL_SUFFIXES, extract_tarball
from ltkit.data.profiles import exp_profile
from ltkit.errors import ArgumentParser, ConfigError, UserError
from ltkit.io import write_json
from ltkit.paths import repo_root
from ltkit.world import BLANK_CAPTIONS, NOISE_KINDS

log = logging.getLogger(__name__)

BUILD_JSON = "build.json"
# web-like captions of photos: a title, a stock-photo line, a forum post (the world's, for photos)
CAPTIONS = ["{n}", "a photo of a {n}", "{N} - stock photo", "close-up of a {n}", "HD wallpaper: {n}",
            "my {n} last summer", "{n} for sale, good condition", "{N} | Flickr", "picture of the {n} we saw"]
TEST_SPLITS = ("test", "val")  # the first present is a source's test split (Imagenette ships val only)


@dataclass
class PhotoSet:
    """One labelled photo set: class name -> sorted photo files, for train and test."""

    root: Path
    train: dict[str, list[Path]]
    test: dict[str, list[Path]]


def resolve(path: str | os.PathLike) -> Path:
    """A source path as given, else relative to the repository (presets name `../shared/...` from there)."""
    p = Path(path)
    if not p.exists() and not p.is_absolute() and (repo_root() / p).exists():
        return repo_root() / p
    if not p.exists():
        raise UserError(f"photos.sources: {p} not found (a folder or .tar.gz with train/<class>/ folders)")
    return p


def split_root(root: Path) -> Path:
    """`root`, or its only subfolder, holding `train/` and a test split; else a UserError."""
    for cand in [root] + sorted(d for d in root.iterdir() if d.is_dir()):
        if (cand / "train").is_dir() and any((cand / s).is_dir() for s in TEST_SPLITS):
            return cand
    raise UserError(f"{root}: expected train/<class>/ and test/<class>/ (or val/<class>/) folders")


def folder_names(root: Path) -> dict[str, str]:
    """Folder -> class name from `classes.csv` (two columns, e.g. wnid,name); empty without the file."""
    path = root / "classes.csv"
    if not path.is_file():
        return {}
    out = {}
    with open(path, newline="", encoding="utf-8") as f:
        for n, row in enumerate(csv.reader(f), 1):
            if n == 1 or not row:  # the header
                continue
            if len(row) < 2 or not row[0].strip() or not row[1].strip():
                raise UserError(f"{path}: line {n}: expected folder,name")
            out[row[0].strip()] = row[1].strip()
    return out


def class_files(folder: Path, names: dict[str, str]) -> dict[str, list[Path]]:
    """Class name -> its JPEG/PNG files, sorted, for one split folder."""
    from ltkit.data import IMAGE_EXTENSIONS

    out = {}
    for d in sorted(p for p in folder.iterdir() if p.is_dir()):
        files = sorted(p for p in d.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
        if files:
            out[names.get(d.name, d.name)] = files
    return out


def open_source(path: str | os.PathLike) -> PhotoSet:
    """A photo set from a folder or a tarball (extracted once into the cache, as CIFAR's)."""
    p = resolve(path)
    if p.is_file():
        if not p.name.endswith(TARBALL_SUFFIXES):
            raise UserError(f"photos.sources: {p}: expected a folder or a {'/'.join(TARBALL_SUFFIXES)} archive")
        p = extract_tarball(p)
    root = split_root(p)
    names = folder_names(root)
    test = next(root / s for s in TEST_SPLITS if (root / s).is_dir())
    return PhotoSet(root, class_files(root / "train", names), class_files(test, names))


# ---------------------------------------------------------------------------------------------
# the draw


def junk(im: Image.Image, rng: np.random.Generator, tiles: int = 4) -> Image.Image:
    """The photo cut into tiles x tiles pieces and shuffled: its colours stay, its object is gone."""
    a = np.asarray(im.convert("RGB"))
    h, w = (a.shape[0] // tiles) * tiles, (a.shape[1] // tiles) * tiles
    pieces = a[:h, :w].reshape(tiles, h // tiles, tiles, w // tiles, 3).swapaxes(1, 2).reshape(-1, h // tiles, w // tiles, 3)
    pieces = pieces[rng.permutation(len(pieces))].reshape(tiles, tiles, h // tiles, w // tiles, 3)
    return Image.fromarray(np.ascontiguousarray(pieces.swapaxes(1, 2).reshape(h, w, 3)))


def jitter(im: Image.Image, rng: np.random.Generator) -> Image.Image:
    """A near-duplicate, as the web re-posts a photo: cropped by a few pixels, resized back, re-toned."""
    im = im.convert("RGB")
    w, h = im.size
    dx, dy = (int(rng.integers(0, max(1, w // 16) + 1)) for _ in range(2))
    im = im.crop((dx, dy, w - max(1, w // 16) + dx, h - max(1, h // 16) + dy)).resize((w, h), Image.BICUBIC)
    return ImageEnhance.Brightness(im).enhance(float(rng.uniform(0.9, 1.1)))


def caption(name: str, k: int) -> str:
    """A web-like caption naming `name` (template k)."""
    return CAPTIONS[k % len(CAPTIONS)].format(n=name, N=name.title() if name.islower() else name)


def noise_probs(p: PhotosConfig) -> np.ndarray:
    """Probabilities of `NOISE_KINDS` (clean first), checked."""
    rates = np.array([getattr(p, k) for k in NOISE_KINDS[1:]], float)
    if (rates < 0).any() or rates.sum() >= 1:
        raise ConfigError("photos.off_topic/mislabelled/uncaptioned/junk/near_duplicate: rates must be >= 0 and "
                          f"sum below 1, got {dict(zip(NOISE_KINDS[1:], rates.tolist()))}")
    return np.concatenate([[1 - rates.sum()], rates])


def settings_of(cfg: Config) -> dict:
    """What the built folders depend on: the photos section, head and imbalance, the sources' sizes."""
    p = cfg.photos
    if not p.sources or not p.targets:
        raise ConfigError("photos: needs photos.sources (photo sets) and photos.targets (target classes, head first)")
    if cfg.head is None or cfg.head < 1:
        raise ConfigError("photos: needs head=N, the train photos of the head target")
    sizes = [os.path.getsize(resolve(s)) if resolve(s).is_file() else None for s in p.sources]
    return dict(asdict(p), out_dir=None, head=cfg.head, imbalance=cfg.imbalance, source_bytes=sizes)


def draw(cfg: Config, sets: list[PhotoSet]) -> dict:
    """Which photo goes where: {"target": {split: [(class, file)]}, "pool": [item dicts]} (no files written)."""
    p = cfg.photos
    train: dict[str, list[Path]] = {}
    test: dict[str, list[Path]] = {}
    for s in sets:
        for c in s.train:
            if c in train:
                raise UserError(f"photos.sources: class {c!r} is in two sources ({s.root})")
            train[c], test[c] = s.train[c], s.test.get(c, [])
    unknown = [c for c in [*p.targets, *(p.pool_classes or [])] if c not in train]
    if unknown:
        raise ConfigError(f"photos.targets/pool_classes: {unknown} not among the sources' classes {sorted(train)}")
    pool_classes = list(p.pool_classes or [c for c in train if c not in p.targets])
    if set(pool_classes) & set(p.targets):
        raise ConfigError(f"photos.pool_classes: {sorted(set(pool_classes) & set(p.targets))} are targets")
    counts = exp_profile(len(p.targets), cfg.head, cfg.imbalance)
    out = {"train": [], "val": [], "test": []}
    for r, c in enumerate(p.targets):
        order = np.random.default_rng([p.seed, r, 1]).permutation(len(train[c]))
        need = int(counts[r]) + p.val_per_class
        if len(order) < need:
            raise ConfigError(f"photos: target {c!r} has {len(order)} train photos; head/imbalance and "
                              f"val_per_class ask for {need}")
        out["train"] += [(c, train[c][i]) for i in sorted(order[:counts[r]])]
        out["val"] += [(c, train[c][i]) for i in sorted(order[counts[r]:need])]
        if not test[c]:
            raise UserError(f"photos.sources: target {c!r} has no test (or val) photos")
        n = len(test[c]) if p.test_per_class is None else min(p.test_per_class, len(test[c]))
        pick = np.random.default_rng([p.seed, r, 2]).permutation(len(test[c]))[:n]
        out["test"] += [(c, test[c][i]) for i in sorted(pick)]
    return {"target": out, "counts": [int(x) for x in counts], "pool_classes": pool_classes,
            "pool": draw_pool(p, train, pool_classes, [f for _, f in out["test"]])}


def draw_pool(p: PhotosConfig, train: dict[str, list[Path]], classes: list[str], test_files: list[Path]) -> list[dict]:
    """The pool items: filed under a class, a noise kind, the photo shown, the class the caption names.

    Photos are drawn without replacement from each class's train photos, so no two items are one
    photo and no item is a target's photo except the near-duplicates (of target test photos).
    """
    probs = noise_probs(p)
    queues = {c: list(np.random.default_rng([p.seed, i, 3]).permutation(len(train[c]))) for i, c in enumerate(classes)}

    def take(c: str) -> Path:
        if not queues[c]:
            raise ConfigError(f"photos.pool_per_class={p.pool_per_class}: class {c!r} has too few train photos")
        return train[c][queues[c].pop()]

    items = []
    for q, c in enumerate(classes):
        for j in range(p.pool_per_class):
            rng = np.random.default_rng([p.seed, q, j, 4])
            kind = NOISE_KINDS[rng.choice(len(NOISE_KINDS), p=probs)]
            other = classes[(q + 1 + int(rng.integers(len(classes) - 1))) % len(classes)] if len(classes) > 1 else c
            if kind in ("off_topic", "mislabelled") and other == c:
                kind = "clean"  # a pool of one class has no other class to show
            shown, named = {"off_topic": (other, other), "mislabelled": (other, c)}.get(kind, (c, c))
            source = test_files[int(rng.integers(len(test_files)))] if kind == "near_duplicate" else take(shown)
            k = int(rng.integers(10000))
            text = BLANK_CAPTIONS[k % len(BLANK_CAPTIONS)].format(k=k) if kind == "uncaptioned" else caption(named, k)
            items.append({"label": c, "kind": kind, "source": source, "caption": text, "seed": [p.seed, q, j, 5],
                          "path": f"images/{c}/{j:05d}.jpg"})
    return items


# ---------------------------------------------------------------------------------------------
# writing


def write_item(item: dict, dest: Path) -> None:
    """A pool item's photo: the source bytes as they are, or the junk / near-duplicate made from them."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    if item["kind"] not in ("junk", "near_duplicate"):
        shutil.copyfile(item["source"], dest)
        return
    rng = np.random.default_rng(item["seed"])
    with Image.open(item["source"]) as im:
        out = junk(im, rng) if item["kind"] == "junk" else jitter(im, rng)
    buf = io.BytesIO()
    out.save(buf, "JPEG", quality=90)
    dest.write_bytes(buf.getvalue())


def write_folders(plan: dict, out: Path) -> dict:
    """Write target/ and pool/ under `out` (a fresh folder); returns the counts for build.json."""
    for split, pairs in plan["target"].items():
        for c, src in pairs:
            dest = out / "target" / split / c / src.name
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dest)
    rows = []
    for item in plan["pool"]:
        write_item(item, out / "pool" / item["path"])
        rows.append({"path": item["path"], "caption": item["caption"], "label": item["label"], "truth": item["kind"]})
    buf = io.StringIO()
    w = csv.DictWriter(buf, ["path", "caption", "label", "truth"], lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    (out / "pool" / "captions.csv").write_text(buf.getvalue(), encoding="utf-8")
    kinds = [i["kind"] for i in plan["pool"]]
    return {"train_counts": plan["counts"], "val": len(plan["target"]["val"]), "test": len(plan["target"]["test"]),
            "pool_classes": plan["pool_classes"], "pool": len(kinds),
            "pool_noise": {k: kinds.count(k) for k in NOISE_KINDS}}


def photos_dir(cfg: Config) -> Path:
    """Where the builder writes: `photos.out_dir` (the preset's), else a folder named after the settings."""
    if cfg.photos.out_dir:
        return Path(cfg.photos.out_dir)
    digest = hashlib.sha1(json.dumps(settings_of(cfg), sort_keys=True, default=str).encode()).hexdigest()[:8]
    return Path(cfg.out_dir) / "_photos" / digest


def build_photos(cfg: Config) -> Path:
    """The folders of the photos section, built unless `build.json` says they are of these settings.

    Built in a temporary folder beside the destination and moved into place, so an interrupted
    build leaves the old folders (or none), never half of new ones.
    """
    settings, out = settings_of(cfg), photos_dir(cfg)
    done = out / BUILD_JSON
    if done.is_file() and json.loads(done.read_text()).get("settings") == json.loads(json.dumps(settings, default=str)):
        return out
    plan = draw(cfg, [open_source(s) for s in cfg.photos.sources])
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        summary = write_folders(plan, tmp)
        write_json(tmp / BUILD_JSON, {"settings": settings, "targets": list(cfg.photos.targets), **summary})
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log.info("built %s: %s", out, json.dumps(summary))
    return out


def main(argv: list[str] | None = None) -> int:
    """`python -m ltkit photos --config configs/photos.yaml`: build (or check) the preset's photo folders."""
    p = ArgumentParser(prog="python -m ltkit photos", description=main.__doc__)
    p.add_argument("--config", default="configs/photos.yaml")
    p.add_argument("overrides", nargs="*", help="e.g. head=100 photos.pool_per_class=50")
    options, overrides = split_overrides(list(sys.argv[1:] if argv is None else argv))
    args = p.parse_args(options)
    no_stray_arguments(args.overrides)
    out = build_photos(load_config(args.config, overrides))
    info = json.loads((out / BUILD_JSON).read_text())
    print(f"{out}: targets {info['targets']} with {info['train_counts']} train photos, {info['val']} val, "
          f"{info['test']} test; pool of {info['pool']} items over {len(info['pool_classes'])} classes, "
          f"noise {info['pool_noise']}")
    return 0
