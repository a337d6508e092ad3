"""CIFAR-10-LT and CIFAR-100-LT (Cao et al. 2019): long-tailed train subsets of CIFAR, balanced test sets.

Class i keeps head * imbalance^(-i / (C-1)) training images (class 0 is the head; the standard
settings are head 5,000 for CIFAR-10 and 500 for CIFAR-100, imbalance 100 or 200); the test set
stays whole and balanced (1,000 or 100 per class).

`root` may hold any of these; the first found is used:
  - the python pickles (`cifar-10-batches-py/`, `cifar-100-python/`), as torchvision downloads them;
  - class folders `train/<class>/*.jpg` and `test/<class>/*.jpg` (directly or in one subfolder);
  - a `.tar.gz` / `.tgz` / `.tar` of such folders (then `root` is that file): extracted once into
    `$LTKIT_CACHE/datasets/`;
and with `download=True` (online) torchvision fetches the pickles into `root`.
Folder images are decoded once into memory after subsampling (CIFAR-10-LT is ~12K images of 3 KB).
"""
from __future__ import annotations

import hashlib
import os
import shutil
import tarfile
import tempfile
from pathlib import Path

import numpy as np

from ltkit.data import ArrayImages, FileImages, ImageSet, LTData, make_long_tailed
from ltkit.errors import UserError
from ltkit.paths import cache_root
from ltkit.data.readers import decode_names, load_cifar100, load_image_folders, unpickle

SETS = {  # name: (pretty name, pickle folder, torchvision class, default head)
    "cifar10": ("CIFAR-10", "cifar-10-batches-py", "CIFAR10", 5000),
    "cifar100": ("CIFAR-100", "cifar-100-python", "CIFAR100", 500),
}
TARBALL_SUFFIXES = (".tar.gz", ".tgz", ".tar")


def _which(name: str) -> tuple[str, str, str, int]:
    if name not in SETS:
        raise UserError(f"unknown CIFAR set {name!r}; expected one of {sorted(SETS)}")
    return SETS[name]


# ---------------------------------------------------------------------------------------------
# sources


def extract_tarball(path: str | os.PathLike, cache: str | os.PathLike | None = None) -> Path:
    """Extract an image-folder tarball once into `<cache>/datasets/<name>-<sha>/` (atomically); returns that folder."""
    path = Path(path)
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    stem = path.name[:-len(next(s for s in TARBALL_SUFFIXES if path.name.endswith(s)))]
    dest = Path(cache or cache_root()) / "datasets" / f"{stem}-{digest.hexdigest()[:12]}"
    if dest.is_dir():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{stem}-", dir=dest.parent))
    try:
        with tarfile.open(path) as tar:
            # the "data" filter refuses absolute paths, links out of the folder and device files
            tar.extractall(tmp, filter="data")
        os.replace(tmp, dest)  # another process may have won the race: its copy is the same
    except OSError:
        if not dest.is_dir():
            raise
    except tarfile.TarError as e:
        raise UserError(f"{path}: not a readable tar archive ({e})") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


def find_split_folders(root: Path) -> Path | None:
    """`root`, or its only subfolder, when it holds `train/` and `test/` class folders; else None."""
    for cand in [root] + sorted(d for d in root.iterdir() if d.is_dir()):
        if (cand / "train").is_dir() and (cand / "test").is_dir():
            return cand
    return None


def _cifar10_batches(folder: Path, files: list[str], num_classes: int) -> ArrayImages:
    xs, ys = [], []
    for name in files:
        d = unpickle(folder / name, "CIFAR-10")
        if "data" not in d or "labels" not in d:
            raise UserError(f"{folder / name}: missing field 'data' or 'labels'")
        x, y = np.asarray(d["data"], dtype=np.uint8), np.asarray(d["labels"], dtype=np.int64)
        if x.ndim != 2 or x.shape[1] != 3072 or len(x) != len(y):
            raise UserError(f"{folder / name}: 'data' has shape {x.shape} for {len(y)} labels, expected (N, 3072)")
        if len(y) and (y.min() < 0 or y.max() >= num_classes):
            raise UserError(f"{folder / name}: label {y[(y < 0) | (y >= num_classes)][0]} outside 0..{num_classes - 1}")
        xs.append(x.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
        ys.append(y)
    return ArrayImages(np.concatenate(xs), np.concatenate(ys))


def load_cifar10_pickles(folder: str | os.PathLike) -> LTData:
    """CIFAR-10 from `data_batch_1..5`, `test_batch` and `batches.meta` in `folder`."""
    folder = Path(folder)
    names = unpickle(folder / "batches.meta", "CIFAR-10").get("label_names")
    if not names:
        raise UserError(f"{folder / 'batches.meta'}: missing 'label_names'")
    names = decode_names(names)
    train = _cifar10_batches(folder, [f"data_batch_{i}" for i in range(1, 6)], len(names))
    test = _cifar10_batches(folder, ["test_batch"], len(names))
    return LTData("CIFAR-10", names, train, None, test).check()


def load_cifar(name: str, root: str | os.PathLike, download: bool = False) -> LTData:
    """Balanced CIFAR-10 or CIFAR-100 (`name` 'cifar10' / 'cifar100') from whatever `root` holds (module docstring)."""
    pretty, pickles, tv_class, _ = _which(name)
    root = Path(root)
    if root.is_file():
        if not root.name.endswith(TARBALL_SUFFIXES):
            raise UserError(f"{root}: expected a folder or a {'/'.join(TARBALL_SUFFIXES)} archive")
        root = extract_tarball(root)
    if (root / pickles).is_dir():
        return load_cifar10_pickles(root / pickles) if name == "cifar10" else load_cifar100(root)
    folders = find_split_folders(root) if root.is_dir() else None
    if folders is not None:
        return load_image_folders(pretty, folders / "train", folders / "test")
    where = (f"{pretty} not found under {root}: expected {root / pickles}/, train/ and test/ class folders, or a "
             f".tar.gz of them")
    if download:
        import torchvision.datasets

        try:
            for train in (True, False):
                getattr(torchvision.datasets, tv_class)(str(root), train=train, download=True)
        except (OSError, RuntimeError) as e:  # offline: URLError and socket errors are OSErrors
            raise FileNotFoundError(f"{where}; torchvision could not download it ({type(e).__name__}: {e})") from None
        return load_cifar(name, root)
    raise FileNotFoundError(f"{where} (pass download=True when online)")


# ---------------------------------------------------------------------------------------------
# long-tailed subsets


def in_memory(images: ImageSet) -> ImageSet:
    """Decode a set of equal-sized image files once into an array (kept as files when sizes differ)."""
    if not isinstance(images, FileImages) or not len(images):
        return images
    arrays = [np.asarray(images.load(i)) for i in range(len(images))]
    if len({a.shape for a in arrays}) > 1:
        return images
    return ArrayImages(np.stack(arrays), images.labels)


def cifar_lt(name: str, root: str | os.PathLike, head: int | None = None, imbalance: float = 100.0, seed: int = 0,
             download: bool = False) -> LTData:
    """CIFAR-10-LT / CIFAR-100-LT: exponential profile from `head` (default 5,000 / 500) down to head / imbalance."""
    pretty, _, _, default_head = _which(name)
    full = load_cifar(name, root, download)
    lt = make_long_tailed(full, "exp", head or default_head, imbalance, seed)
    return LTData(f"{pretty}-LT-{imbalance:g}", lt.class_names, in_memory(lt.train), lt.val and in_memory(lt.val),
                  in_memory(lt.test), lt.taxonomy).check()


def cifar10_lt(root: str | os.PathLike, head: int = 5000, imbalance: float = 100.0, seed: int = 0,
               download: bool = False) -> LTData:
    """CIFAR-10-LT (head 5,000 per class; imbalance 100 leaves 50 for the tail class)."""
    return cifar_lt("cifar10", root, head, imbalance, seed, download)


def cifar100_lt(root: str | os.PathLike, head: int = 500, imbalance: float = 100.0, seed: int = 0,
                download: bool = False) -> LTData:
    """CIFAR-100-LT (head 500 per class; imbalance 100 leaves 5 for the tail class)."""
    return cifar_lt("cifar100", root, head, imbalance, seed, download)
