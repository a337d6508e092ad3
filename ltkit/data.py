"""Long-tail data: imbalance profiles, shot groups, image sets and loaders for the real benchmarks.

Every dataset, built-in or real, becomes an `LTData`: three `ImageSet`s (train, val, test) that
share one list of class names, plus a taxonomy when the source has one. An `ImageSet` is either
in-memory arrays (the built-in world, CIFAR) or files under a root (ImageNet-LT, Places-LT, iNat,
ImageFolder); both hand out PIL images, so timm transforms apply unchanged.

Loaders never skip anything silently: a missing root, a malformed line (file and line number), an
unknown label or an empty class is an error.
"""
from __future__ import annotations

import os
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

from ltkit.io import read_json
from ltkit.taxonomy import Taxonomy

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".ppm", ".gif", ".tif", ".tiff")


# ---------------------------------------------------------------------------------------------
# imbalance profiles


def exp_profile(num_classes: int, head: int, imbalance: float) -> np.ndarray:
    """CIFAR-LT counts: head * imbalance^(-i / (L-1)), so the tail class gets head / imbalance."""
    if num_classes < 1 or head < 1 or imbalance < 1:
        raise ValueError("exp_profile needs num_classes >= 1, head >= 1, imbalance >= 1")
    if num_classes == 1:
        return np.array([head])
    i = np.arange(num_classes)
    # the epsilon keeps floor() from losing an exact integer to rounding (98 / 49 -> 1.999...98 -> 1)
    return np.maximum(1, np.floor(head * imbalance ** (-i / (num_classes - 1)) + 1e-9)).astype(int)


def pareto_profile(num_classes: int, head: int, imbalance: float, alpha: float = 6.0) -> np.ndarray:
    """ImageNet-LT-style counts: Pareto(alpha) quantiles, rescaled linearly to [head/imbalance, head].

    Liu et al. (2019) drew ImageNet-LT's class sizes from a Pareto with alpha = 6 and mapped them onto
    1280 .. 5 images. Here the draw is replaced by its expectation: the quantiles at the expected
    positions of L uniform order statistics, i / (L + 1), of numpy's Pareto (Lomax,
    x = q^(-1/alpha) - 1), mapped linearly onto [head / imbalance, head] and truncated like the
    CIFAR-LT profile. For 1000 classes, head 1280, imbalance 256: 404 Many / 456 Medium / 140 Few
    classes and 121.4K images; ImageNet-LT has 385 / 479 / 136 and 115.8K (tests/test_data.py).
    """
    if num_classes < 2:
        return exp_profile(num_classes, head, imbalance)
    if head < 1 or imbalance < 1 or alpha <= 0:
        raise ValueError("pareto_profile needs head >= 1, imbalance >= 1, alpha > 0")
    q = np.arange(1, num_classes + 1) / (num_classes + 1)  # survival probability of the r-th largest class
    x = q ** (-1 / alpha) - 1  # decreasing
    t = (x - x[-1]) / (x[0] - x[-1])  # 1 for the head class, 0 for the tail class
    tail = head / imbalance
    return np.maximum(1, np.floor(tail + t * (head - tail) + 1e-9)).astype(int)


def profile_counts(profile: str, num_classes: int, head: int, imbalance: float) -> np.ndarray:
    """Counts per class (head first) for a named profile: 'exp' or 'pareto'."""
    if profile == "exp":
        return exp_profile(num_classes, head, imbalance)
    if profile == "pareto":
        return pareto_profile(num_classes, head, imbalance)
    raise ValueError(f"unknown imbalance profile {profile!r}; expected 'exp' or 'pareto'")


def subsample_indices(labels: Sequence[int], counts: Sequence[int], seed: int = 0,
                      class_order: Sequence[int] | None = None) -> np.ndarray:
    """Indices that keep counts[r] random samples of the r-th class of `class_order` (default 0..C-1).

    The class that gets the head count is `class_order[0]`; pass a permutation to decide which
    classes become head and tail. A class with fewer samples than asked is an error.
    """
    labels = np.asarray(labels)
    order = np.arange(len(counts)) if class_order is None else np.asarray(class_order)
    if len(order) != len(counts):
        raise ValueError(f"class_order has {len(order)} classes but counts has {len(counts)}")
    if len(set(order.tolist())) != len(order):
        raise ValueError("class_order lists a class more than once")
    rng = np.random.default_rng(seed)
    keep = []
    for c, n in zip(order, counts):
        idx = np.flatnonzero(labels == c)
        if len(idx) < n:
            raise ValueError(f"class {c} has {len(idx)} samples, fewer than the {n} the profile asks for")
        keep.append(np.sort(rng.choice(idx, size=int(n), replace=False)))
    return np.concatenate(keep) if keep else np.array([], int)


# ---------------------------------------------------------------------------------------------
# shot groups


def shot_groups(train_counts: Sequence[int], many: int = 100, few: int = 20) -> np.ndarray:
    """'many' (> many images), 'few' (< few images), 'medium' otherwise, per class."""
    c = np.asarray(train_counts)
    return np.where(c > many, "many", np.where(c < few, "few", "medium"))


def shot_accuracy(per_class_acc: Sequence[float], train_counts: Sequence[int], many: int = 100,
                  few: int = 20) -> dict[str, float]:
    """Mean per-class accuracy over Many / Medium / Few classes and Overall (NaN for an empty group)."""
    acc, g = np.asarray(per_class_acc, float), shot_groups(train_counts, many, few)
    out = {k: float(acc[g == k].mean()) if (g == k).any() else float("nan") for k in ("many", "medium", "few")}
    out["overall"] = float(acc.mean())
    return out


# ---------------------------------------------------------------------------------------------
# image sets


class ImageSet:
    """Labelled images; `load(i)` gives an RGB PIL image."""

    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)

    def load(self, i: int) -> Image.Image:
        raise NotImplementedError

    def counts(self, num_classes: int) -> np.ndarray:
        """Images per class."""
        return np.bincount(self.labels, minlength=num_classes)

    def subset(self, idx: Sequence[int]) -> "ImageSet":
        raise NotImplementedError


class ArrayImages(ImageSet):
    """Images held as a uint8 (N, H, W, 3) array."""

    def __init__(self, images: np.ndarray, labels: Sequence[int]):
        if len(images) != len(labels):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
        self.images, self.labels = images, np.asarray(labels, dtype=np.int64)

    def load(self, i: int) -> Image.Image:
        return Image.fromarray(self.images[i])

    def subset(self, idx: Sequence[int]) -> "ArrayImages":
        idx = np.asarray(idx, dtype=np.int64)
        return ArrayImages(self.images[idx], self.labels[idx])


class FileImages(ImageSet):
    """Images as files under a root, with relative paths.

    The paths live in one numpy byte-string array, not a list of Python strings: DataLoader workers
    fork the dataset, and touching millions of str objects (their reference counts) would copy them
    into every worker.
    """

    def __init__(self, root: str | os.PathLike, paths: Sequence[str], labels: Sequence[int]):
        if len(paths) != len(labels):
            raise ValueError(f"{len(paths)} paths but {len(labels)} labels")
        self.root, self.labels = Path(root), np.asarray(labels, dtype=np.int64)
        self._paths = np.array([os.fsencode(p) for p in paths], dtype=bytes) if len(paths) else np.zeros(0, "S1")

    @property
    def paths(self) -> list[str]:
        """The relative paths as strings (a new list on every access)."""
        return [os.fsdecode(p) for p in self._paths]

    def path(self, i: int) -> Path:
        """The file of image i."""
        return self.root / os.fsdecode(self._paths[i])

    def load(self, i: int) -> Image.Image:
        path = self.path(i)
        try:
            with Image.open(path) as im:
                return im.convert("RGB")
        except FileNotFoundError:
            raise FileNotFoundError(f"image {i} not found: {path}") from None

    def subset(self, idx: Sequence[int]) -> "FileImages":
        idx = np.asarray(idx, dtype=np.int64)
        return FileImages(self.root, [os.fsdecode(p) for p in self._paths[idx]], self.labels[idx])


@dataclass
class LTData:
    """A long-tailed dataset: train/val/test sets over one list of class names."""

    name: str
    class_names: list[str]
    train: ImageSet
    val: ImageSet | None
    test: ImageSet
    taxonomy: Taxonomy | None = None
    val_source: str = "dataset"  # "dataset" (its own val split) or "train holdout" (`holdout_val`)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def train_counts(self) -> np.ndarray:
        return self.train.counts(self.num_classes)

    def check(self) -> "LTData":
        """Every label in range and every class present in train; raises otherwise."""
        for split in ("train", "val", "test"):
            s = getattr(self, split)
            if s is None or len(s) == 0:
                continue
            bad = (s.labels < 0) | (s.labels >= self.num_classes)
            if bad.any():
                raise ValueError(f"{self.name} {split}: label {s.labels[bad][0]} outside 0..{self.num_classes - 1}")
        empty = np.flatnonzero(self.train_counts == 0)
        if len(empty):
            raise ValueError(f"{self.name} train: class {empty[0]} ({self.class_names[empty[0]]!r}) has no images"
                             f" ({len(empty)} empty classes in all)")
        return self


def holdout_val(data: LTData, per_class: int = 10, seed: int = 0, max_fraction: float = 0.2) -> LTData:
    """A val split held out from train when the dataset has none (iNat18, CIFAR-LT, folders without val/).

    Without it, per-epoch "val" metrics would be test metrics and invite model selection on test.
    Each class gives min(per_class, floor(max_fraction * n)) of its n train images, drawn with a
    seeded RNG: balanced over classes, except that no class loses more than `max_fraction` of its
    images (a 5-image tail class gives one, a class under 5 gives none). Held-out images leave
    train, so train counts and shot groups are those of what is trained on. A dataset that has a
    val split is returned unchanged.
    """
    if data.val is not None:
        return data
    labels = np.asarray(data.train.labels)
    counts = np.bincount(labels, minlength=data.num_classes)
    take = np.minimum(per_class, np.floor(max_fraction * counts + 1e-9).astype(int))
    # rank of each image within its class in a seeded random order; the first take[c] are held out
    order = np.lexsort((np.random.default_rng([seed, 11]).random(len(labels)), labels))
    rank = np.empty(len(labels), np.int64)
    rank[order] = np.arange(len(labels)) - (np.cumsum(counts) - counts)[labels[order]]
    held = rank < take[labels]
    return LTData(data.name, data.class_names, data.train.subset(np.flatnonzero(~held)),
                  data.train.subset(np.flatnonzero(held)), data.test, data.taxonomy, "train holdout").check()


# ---------------------------------------------------------------------------------------------
# loaders


def _need_dir(root: str | os.PathLike, what: str) -> Path:
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{what} root not found: {root}")
    return root


def read_split_file(path: str | os.PathLike, num_classes: int | None = None) -> tuple[list[str], np.ndarray]:
    """Parse a `relative/path label` file (ImageNet-LT, Places-LT, iNat txt); errors name file and line."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"split file not found: {path}")
    paths, labels = [], []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        parts = line.rsplit(maxsplit=1)
        if len(parts) != 2 or not parts[1].lstrip("-").isdigit():
            raise ValueError(f"{path}:{n}: expected 'relative/path label', got {line!r}")
        label = int(parts[1])
        if label < 0 or (num_classes is not None and label >= num_classes):
            expected = f"0..{num_classes - 1}" if num_classes is not None else ">= 0"
            raise ValueError(f"{path}:{n}: unknown label {label} (expected {expected})")
        paths.append(parts[0])
        labels.append(label)
    if not paths:
        raise ValueError(f"{path}: no samples")
    return paths, np.array(labels)


def load_split_files(name: str, root: str | os.PathLike, train: str, val: str | None, test: str,
                     class_names: list[str] | None = None, num_classes: int | None = None) -> LTData:
    """ImageNet-LT / Places-LT style: image root plus three `path label` files."""
    root = _need_dir(root, name)
    tr_p, tr_y = read_split_file(train, num_classes)
    n = num_classes or int(tr_y.max()) + 1
    va = read_split_file(val, n) if val else None
    te_p, te_y = read_split_file(test, n)
    names = class_names or [str(i) for i in range(n)]
    if len(names) != n:
        raise ValueError(f"{name}: {len(names)} class names for {n} classes")
    return LTData(name, names, FileImages(root, tr_p, tr_y), FileImages(root, *va) if va else None,
                  FileImages(root, te_p, te_y)).check()


def load_imagenet_lt(root: str | os.PathLike, splits_dir: str | os.PathLike | None = None,
                     class_names: list[str] | None = None) -> LTData:
    """ImageNet-LT from `ImageNet_LT_{train,val,test}.txt` (1000 classes) under `splits_dir` (default root)."""
    d = Path(splits_dir or root)
    return load_split_files("ImageNet-LT", root, d / "ImageNet_LT_train.txt", d / "ImageNet_LT_val.txt",
                            d / "ImageNet_LT_test.txt", class_names, 1000 if class_names is None else len(class_names))


def load_places_lt(root: str | os.PathLike, splits_dir: str | os.PathLike | None = None,
                   class_names: list[str] | None = None) -> LTData:
    """Places-LT from `Places_LT_{train,val,test}.txt` (365 classes)."""
    d = Path(splits_dir or root)
    return load_split_files("Places-LT", root, d / "Places_LT_train.txt", d / "Places_LT_val.txt",
                            d / "Places_LT_test.txt", class_names, 365 if class_names is None else len(class_names))


def _read_inat_json(path: Path) -> dict:
    obj = read_json(path, "iNaturalist annotation file")
    if not isinstance(obj, dict):
        raise ValueError(f"{path}: expected a COCO-style object with 'images', 'annotations', 'categories'")
    for key in ("images", "annotations", "categories"):
        if key not in obj:
            raise ValueError(f"{path}: missing top-level field {key!r}")
        if not isinstance(obj[key], list) or not all(isinstance(x, dict) for x in obj[key]):
            raise ValueError(f"{path}: field {key!r} must be a list of objects")
    return obj


def _inat_split(path: Path, cat_index: dict[int, int]) -> tuple[list[str], np.ndarray]:
    obj = _read_inat_json(path)
    files = {}
    for i, im in enumerate(obj["images"]):
        if "id" not in im or "file_name" not in im:
            raise ValueError(f"{path}: images[{i}] lacks 'id' or 'file_name'")
        files[im["id"]] = im["file_name"]
    paths, labels = [], []
    for i, a in enumerate(obj["annotations"]):
        if a.get("image_id") not in files:
            raise ValueError(f"{path}: annotations[{i}]: unknown image_id {a.get('image_id')!r}")
        if a.get("category_id") not in cat_index:
            raise ValueError(f"{path}: annotations[{i}]: unknown category_id {a.get('category_id')!r}")
        paths.append(files[a["image_id"]])
        labels.append(cat_index[a["category_id"]])
    unlabelled = set(files) - {a["image_id"] for a in obj["annotations"]}
    if unlabelled:
        example = min(unlabelled, key=str)
        raise ValueError(f"{path}: {len(unlabelled)} images have no annotation (e.g. image id {example!r})")
    return paths, np.array(labels, dtype=np.int64)


def load_inat(root: str | os.PathLike, train_json: str | os.PathLike, val_json: str | os.PathLike,
              categories_json: str | os.PathLike | None = None) -> LTData:
    """iNaturalist 2018 COCO-style JSON; val serves as test (as in the LT literature).

    Labels are categories sorted by id; the taxonomy is supercategory (> kingdom ... genus when
    present). `categories_json` replaces the obfuscated names with the released real ones.
    """
    root = _need_dir(root, "iNaturalist")
    train_json, val_json = Path(train_json), Path(val_json)
    cats, cats_file = _read_inat_json(train_json)["categories"], train_json
    if categories_json is not None:
        cats_file = Path(categories_json)
        cats = read_json(cats_file, "iNaturalist categories file")
        if isinstance(cats, dict):  # tolerate {"categories": [...]}
            cats = cats.get("categories")
        if not isinstance(cats, list) or not all(isinstance(c, dict) for c in cats):
            raise ValueError(f"{cats_file}: expected a list of category objects")
    for i, c in enumerate(cats):  # validate before sorting by id
        if "id" not in c or "name" not in c:
            raise ValueError(f"{cats_file}: categories[{i}] lacks 'id' or 'name'")
    cats = sorted(cats, key=lambda c: c["id"])
    cat_index = {c["id"]: i for i, c in enumerate(cats)}
    if len(cat_index) != len(cats):
        raise ValueError(f"{cats_file}: duplicate category ids")
    names = [c["name"] for c in cats]
    ranks = ("supercategory", "kingdom", "phylum", "class", "order", "family", "genus")
    # iNat's rank order is kingdom > ... > genus; supercategory is a coarse grouping of its own
    paths = {c["name"]: tuple(str(c[r]) for r in ranks if c.get(r)) or ("all",) for c in cats}
    tr = _inat_split(train_json, cat_index)
    te = _inat_split(val_json, cat_index)
    return LTData("iNaturalist", names, FileImages(root, *tr), None, FileImages(root, *te), Taxonomy(paths)).check()


def load_image_folder(root: str | os.PathLike) -> tuple[list[str], FileImages]:
    """`root/<class>/<image>` folders; classes in sorted order. An empty class folder is an error."""
    root = _need_dir(root, "ImageFolder")
    classes = sorted(d.name for d in root.iterdir() if d.is_dir())
    if not classes:
        raise ValueError(f"{root}: no class folders")
    paths, labels = [], []
    for y, c in enumerate(classes):
        files = sorted(p for p in (root / c).rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS)
        if not files:
            raise ValueError(f"{root / c}: class folder has no images ({', '.join(IMAGE_EXTENSIONS)})")
        paths += [str(p.relative_to(root)) for p in files]
        labels += [y] * len(files)
    return classes, FileImages(root, paths, labels)


def load_image_folders(name: str, train: str | os.PathLike, test: str | os.PathLike,
                       val: str | os.PathLike | None = None) -> LTData:
    """A dataset from ImageFolder trees; val and test must have the same classes as train."""
    names, tr = load_image_folder(train)
    sets = {}
    for split, root in (("val", val), ("test", test)):
        if root is None:
            continue
        n, s = load_image_folder(root)
        if n != names:
            extra = sorted(set(n) - set(names))
            raise ValueError(f"{root}: class folders differ from train's" + (f" (unknown: {extra[:5]})" if extra else ""))
        sets[split] = s
    return LTData(name, names, tr, sets.get("val"), sets["test"]).check()


def _unpickle(path: Path, what: str = "CIFAR-100") -> dict:
    """A CIFAR python pickle as a dict with str keys; errors name the file and `what` it should be."""
    if not path.is_file():
        raise FileNotFoundError(f"{what} file not found: {path}")
    with open(path, "rb") as f:
        try:
            d = pickle.load(f, encoding="latin1")
        except Exception as e:
            raise ValueError(f"{path}: not a {what} python pickle ({type(e).__name__}: {e})") from None
    if not isinstance(d, dict):
        raise ValueError(f"{path}: not a {what} python pickle (a {type(d).__name__}, not a dict)")
    # pickles written from Python 3 with bytes keys (the `encoding="bytes"` view) keep them as bytes
    return {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in d.items()}


def _names(values) -> list[str]:
    """Label names as str, whether the pickle stored them as str or bytes."""
    return [v.decode("latin1") if isinstance(v, bytes) else str(v) for v in values]


def _cifar_arrays(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    d = _unpickle(path)
    for key in ("data", "fine_labels", "coarse_labels"):
        if key not in d:
            raise ValueError(f"{path}: missing field {key!r}")
    x = np.asarray(d["data"], dtype=np.uint8)
    if x.ndim != 2 or x.shape[1] != 3072:
        raise ValueError(f"{path}: field 'data' has shape {x.shape}, expected (N, 3072)")
    fine, coarse = np.asarray(d["fine_labels"], dtype=np.int64), np.asarray(d["coarse_labels"], dtype=np.int64)
    if len(fine) != len(x) or len(coarse) != len(x):
        raise ValueError(f"{path}: {len(x)} images but {len(fine)} fine and {len(coarse)} coarse labels")
    return x.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), fine, coarse


def load_cifar100(root: str | os.PathLike, download: bool = False) -> LTData:
    """CIFAR-100 from `root/cifar-100-python/{train,test,meta}` pickles, with coarse labels as taxonomy.

    `download=True` fetches it through torchvision first (needs internet).
    """
    root = Path(root)
    folder = root / "cifar-100-python"
    if download and not folder.is_dir():
        from torchvision.datasets import CIFAR100

        CIFAR100(str(root), download=True)
    if not folder.is_dir():
        raise FileNotFoundError(f"CIFAR-100 not found: {folder} (pass download=True when online)")
    meta = _unpickle(folder / "meta")
    fine, coarse = meta.get("fine_label_names"), meta.get("coarse_label_names")
    if fine is None or coarse is None:
        raise ValueError(f"{folder / 'meta'}: missing 'fine_label_names' or 'coarse_label_names'")
    fine, coarse = _names(fine), _names(coarse)
    xs, ys, cs = _cifar_arrays(folder / "train")
    xt, yt, ct = _cifar_arrays(folder / "test")
    for split, y, c in (("train", ys, cs), ("test", yt, ct)):
        if len(y) and (y.min() < 0 or y.max() >= len(fine)):
            bad = y[(y < 0) | (y >= len(fine))][0]
            raise ValueError(f"{folder / split}: unknown fine label {bad} (expected 0..{len(fine) - 1})")
        if len(c) and (c.min() < 0 or c.max() >= len(coarse)):
            bad = c[(c < 0) | (c >= len(coarse))][0]
            raise ValueError(f"{folder / split}: unknown coarse label {bad} (expected 0..{len(coarse) - 1})")
    parent = {}
    for y, c in zip(ys, cs):
        parent.setdefault(fine[y], coarse[c])
    tax = Taxonomy.from_parents({n: parent[n] for n in fine if n in parent})
    return LTData("CIFAR-100", list(fine), ArrayImages(xs, ys), None, ArrayImages(xt, yt), tax).check()


def make_long_tailed(data: LTData, profile: str = "exp", head: int | None = None, imbalance: float = 100.0,
                     seed: int = 0, shuffle_classes: bool = False) -> LTData:
    """Subsample a (balanced) train split to a profile; class 0 is the head unless shuffle_classes."""
    counts = data.train_counts
    head = head or int(counts.min())
    order = np.random.default_rng(seed).permutation(data.num_classes) if shuffle_classes else None
    idx = subsample_indices(data.train.labels, profile_counts(profile, data.num_classes, head, imbalance), seed, order)
    suffix = f"-LT-{profile}{imbalance:g}"
    return LTData(data.name + suffix, data.class_names, data.train.subset(idx), data.val, data.test, data.taxonomy).check()


def cifar100_lt(root: str | os.PathLike, imbalance: float = 100.0, seed: int = 0, download: bool = False) -> LTData:
    """CIFAR-100-LT: exponential profile from 500 per class down to 500 / imbalance."""
    return make_long_tailed(load_cifar100(root, download), "exp", 500, imbalance, seed)


def world_data(world) -> LTData:
    """The built-in world's target task as an `LTData`."""
    sets = {s: ArrayImages(*world.splits[s]) for s in ("train", "val", "test")}
    return LTData("builtin", world.class_names, sets["train"], sets["val"], sets["test"],
                  world.taxonomy.subset(world.class_names))


class TransformedSet:
    """A torch-style dataset over an `ImageSet`: item i is (transform(image), label)."""

    def __init__(self, images: ImageSet, transform=None, label_offset: int = 0):
        self.images, self.transform, self.label_offset = images, transform, label_offset

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        img = self.images.load(int(i))
        return (self.transform(img) if self.transform else img), int(self.images.labels[i]) + self.label_offset
