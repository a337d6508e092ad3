"""Tiny photo tarballs in the real formats, and configs/photos.yaml scaled down to them (test_photos, test_tuner_browser)."""
import io
import tarfile
from pathlib import Path

import numpy as np
import yaml
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
CIFAR = ["airplane", "automobile", "cat", "dog", "truck"]
NETTE = {"n02102040": "English springer", "n03417042": "garbage truck", "n03028079": "church",
         "n03445777": "golf ball"}
TRAIN, TEST = 16, 4


def _jpeg(rng: np.random.Generator, colour: int, size: int) -> bytes:
    """A photo-like JPEG: a class colour plus noise."""
    a = np.clip(rng.normal(40 * colour % 255, 60, (size, size, 3)), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def make_tarballs(d: Path) -> list[str]:
    """CIFAR-10 JPEGs (cifar10/{train,test}/<class>/NNNN.jpg) and Imagenette (./classes.csv, ./{train,val}/<wnid>/)."""
    rng = np.random.default_rng(0)
    with tarfile.open(d / "cifar10-jpeg.tar.gz", "w:gz") as tar:
        for split, n in (("train", TRAIN), ("test", TEST)):
            for c, name in enumerate(CIFAR):
                for i in range(n):
                    _add(tar, f"cifar10/{split}/{name}/{i:04d}.jpg", _jpeg(rng, c, 32))
    with tarfile.open(d / "imagenette-64px.tar.gz", "w:gz") as tar:
        _add(tar, "./classes.csv", ("wnid,name\n" + "".join(f"{w},{n}\n" for w, n in NETTE.items())).encode())
        for split, n in (("train", TRAIN), ("val", TEST)):
            for c, wnid in enumerate(NETTE):
                for i in range(n):
                    _add(tar, f"./{split}/{wnid}/ILSVRC_{split}_{i:05d}.JPEG", _jpeg(rng, c + 5, 64))
    return [str(d / "cifar10-jpeg.tar.gz"), str(d / "imagenette-64px.tar.gz")]


def tiny_preset(tarballs, tmp: Path, **extra) -> Path:
    """configs/photos.yaml scaled down to the tiny tarballs, writing under `tmp`."""
    cfg = yaml.safe_load((ROOT / "configs" / "photos.yaml").read_text())
    vocab = tmp / "rd.txt"
    vocab.write_text("church\ngolf ball\n")
    cfg.update(out_dir=str(tmp / "runs"), data_root=str(tmp / "photos" / "target"), head=12, imbalance=4,
               many=10, few=4, epochs=1, batch_size=8, model="ltkit_cnn_tiny", **extra)
    cfg["photos"].update(sources=tarballs, targets=["airplane", "automobile", "cat"], out_dir=str(tmp / "photos"),
                         val_per_class=2, test_per_class=None, pool_per_class=8)
    cfg["crawl"].update(pool_dir=str(tmp / "photos" / "pool"), per_class=8)
    cfg["neighbours"]["file"] = str(vocab)
    # real EfficientNet-Lite0 features at 32 px; an open window, since noise JPEGs are no photos of anything
    cfg["filter"].update(encoder="efficientnet_lite0:32", gamma1=-1.0, gamma2=1.0, batch_size=64)
    path = tmp / "photos-tiny.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path
