"""Readers of the real benchmarks' native formats: ImageNet-LT, Places-LT, iNat18, image folders, CIFAR-100.

Each turns the files a benchmark ships with (`path label` text files, COCO-style JSON, class
folders, python pickles) into an `LTData` (`ltkit.data`). They sit apart from the data model so that
`data.py` holds what every dataset shares (profiles, shot groups, image sets) and this module what
only one format needs. CIFAR-10 and the CIFAR-LT subsets build on these in `ltkit.data.cifar`.

Readers never skip anything silently: a missing root, a malformed line (file and line number), an
unknown label or an empty class is an error.
"""
from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np

from ltkit.data import IMAGE_EXTENSIONS, ArrayImages, FileImages, LTData
from ltkit.errors import UserError
from ltkit.io import read_json
from ltkit.data.taxonomy import Taxonomy


# ---------------------------------------------------------------------------------------------
# `path label` split files (ImageNet-LT, Places-LT)


def _need_dir(root: str | os.PathLike, what: str) -> Path:
    """`root` as a Path; FileNotFoundError naming `what` when it is not a folder."""
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
            raise UserError(f"{path}:{n}: expected 'relative/path label', got {line!r}")
        label = int(parts[1])
        if label < 0 or (num_classes is not None and label >= num_classes):
            expected = f"0..{num_classes - 1}" if num_classes is not None else ">= 0"
            raise UserError(f"{path}:{n}: unknown label {label} (expected {expected})")
        paths.append(parts[0])
        labels.append(label)
    if not paths:
        raise UserError(f"{path}: no samples")
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
        raise UserError(f"{name}: {len(names)} class names for {n} classes")
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


# ---------------------------------------------------------------------------------------------
# iNaturalist 2018 (COCO-style JSON)


def _read_inat_json(path: Path) -> dict:
    """An iNat annotation file, checked for its three top-level lists of objects."""
    obj = read_json(path, "iNaturalist annotation file")
    if not isinstance(obj, dict):
        raise UserError(f"{path}: expected a COCO-style object with 'images', 'annotations', 'categories'")
    for key in ("images", "annotations", "categories"):
        if key not in obj:
            raise UserError(f"{path}: missing top-level field {key!r}")
        if not isinstance(obj[key], list) or not all(isinstance(x, dict) for x in obj[key]):
            raise UserError(f"{path}: field {key!r} must be a list of objects")
    return obj


def _inat_split(path: Path, cat_index: dict[int, int]) -> tuple[list[str], np.ndarray]:
    """(file names, labels) of one iNat split; an unknown id or an unannotated image is an error."""
    obj = _read_inat_json(path)
    files = {}
    for i, im in enumerate(obj["images"]):
        if "id" not in im or "file_name" not in im:
            raise UserError(f"{path}: images[{i}] lacks 'id' or 'file_name'")
        files[im["id"]] = im["file_name"]
    paths, labels = [], []
    for i, a in enumerate(obj["annotations"]):
        if a.get("image_id") not in files:
            raise UserError(f"{path}: annotations[{i}]: unknown image_id {a.get('image_id')!r}")
        if a.get("category_id") not in cat_index:
            raise UserError(f"{path}: annotations[{i}]: unknown category_id {a.get('category_id')!r}")
        paths.append(files[a["image_id"]])
        labels.append(cat_index[a["category_id"]])
    unlabelled = set(files) - {a["image_id"] for a in obj["annotations"]}
    if unlabelled:
        example = min(unlabelled, key=str)
        raise UserError(f"{path}: {len(unlabelled)} images have no annotation (e.g. image id {example!r})")
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
            raise UserError(f"{cats_file}: expected a list of category objects")
    for i, c in enumerate(cats):  # validate before sorting by id
        if "id" not in c or "name" not in c:
            raise UserError(f"{cats_file}: categories[{i}] lacks 'id' or 'name'")
    cats = sorted(cats, key=lambda c: c["id"])
    cat_index = {c["id"]: i for i, c in enumerate(cats)}
    if len(cat_index) != len(cats):
        raise UserError(f"{cats_file}: duplicate category ids")
    names = [c["name"] for c in cats]
    ranks = ("supercategory", "kingdom", "phylum", "class", "order", "family", "genus")
    # iNat's rank order is kingdom > ... > genus; supercategory is a coarse grouping of its own
    paths = {c["name"]: tuple(str(c[r]) for r in ranks if c.get(r)) or ("all",) for c in cats}
    tr = _inat_split(train_json, cat_index)
    te = _inat_split(val_json, cat_index)
    return LTData("iNaturalist", names, FileImages(root, *tr), None, FileImages(root, *te), Taxonomy(paths)).check()


# ---------------------------------------------------------------------------------------------
# ImageFolder trees


def load_image_folder(root: str | os.PathLike) -> tuple[list[str], FileImages]:
    """`root/<class>/<image>` folders; classes in sorted order. An empty class folder is an error."""
    root = _need_dir(root, "ImageFolder")
    classes = sorted(d.name for d in root.iterdir() if d.is_dir())
    if not classes:
        raise UserError(f"{root}: no class folders")
    paths, labels = [], []
    for y, c in enumerate(classes):
        files = sorted(p for p in (root / c).rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS)
        if not files:
            raise UserError(f"{root / c}: class folder has no images ({', '.join(IMAGE_EXTENSIONS)})")
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
            raise UserError(f"{root}: class folders differ from train's" + (f" (unknown: {extra[:5]})" if extra else ""))
        sets[split] = s
    return LTData(name, names, tr, sets.get("val"), sets["test"]).check()


# ---------------------------------------------------------------------------------------------
# CIFAR-100 python pickles


def unpickle(path: Path, what: str = "CIFAR-100") -> dict:
    """A CIFAR python pickle as a dict with str keys; errors name the file and `what` it should be."""
    if not path.is_file():
        raise FileNotFoundError(f"{what} file not found: {path}")
    with open(path, "rb") as f:
        try:
            d = pickle.load(f, encoding="latin1")
        except Exception as e:
            raise UserError(f"{path}: not a {what} python pickle ({type(e).__name__}: {e})") from None
    if not isinstance(d, dict):
        raise UserError(f"{path}: not a {what} python pickle (a {type(d).__name__}, not a dict)")
    # pickles written from Python 3 with bytes keys (the `encoding="bytes"` view) keep them as bytes
    return {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in d.items()}


def decode_names(values) -> list[str]:
    """Label names as str, whether the pickle stored them as str or bytes."""
    return [v.decode("latin1") if isinstance(v, bytes) else str(v) for v in values]


def _cifar_arrays(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(images NHWC uint8, fine labels, coarse labels) of one CIFAR-100 split pickle."""
    d = unpickle(path)
    for key in ("data", "fine_labels", "coarse_labels"):
        if key not in d:
            raise UserError(f"{path}: missing field {key!r}")
    x = np.asarray(d["data"], dtype=np.uint8)
    if x.ndim != 2 or x.shape[1] != 3072:
        raise UserError(f"{path}: field 'data' has shape {x.shape}, expected (N, 3072)")
    fine, coarse = np.asarray(d["fine_labels"], dtype=np.int64), np.asarray(d["coarse_labels"], dtype=np.int64)
    if len(fine) != len(x) or len(coarse) != len(x):
        raise UserError(f"{path}: {len(x)} images but {len(fine)} fine and {len(coarse)} coarse labels")
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
    meta = unpickle(folder / "meta")
    fine, coarse = meta.get("fine_label_names"), meta.get("coarse_label_names")
    if fine is None or coarse is None:
        raise UserError(f"{folder / 'meta'}: missing 'fine_label_names' or 'coarse_label_names'")
    fine, coarse = decode_names(fine), decode_names(coarse)
    xs, ys, cs = _cifar_arrays(folder / "train")
    xt, yt, ct = _cifar_arrays(folder / "test")
    for split, y, c in (("train", ys, cs), ("test", yt, ct)):
        if len(y) and (y.min() < 0 or y.max() >= len(fine)):
            bad = y[(y < 0) | (y >= len(fine))][0]
            raise UserError(f"{folder / split}: unknown fine label {bad} (expected 0..{len(fine) - 1})")
        if len(c) and (c.min() < 0 or c.max() >= len(coarse)):
            bad = c[(c < 0) | (c >= len(coarse))][0]
            raise UserError(f"{folder / split}: unknown coarse label {bad} (expected 0..{len(coarse) - 1})")
    parent = {}
    for y, c in zip(ys, cs):
        parent.setdefault(fine[y], coarse[c])
    tax = Taxonomy.from_parents({n: parent[n] for n in fine if n in parent})
    return LTData("CIFAR-100", list(fine), ArrayImages(xs, ys), None, ArrayImages(xt, yt), tax).check()
