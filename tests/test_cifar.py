"""CIFAR-LT: loaders from folders, a tarball and pickles; the pad-crop transform; ResNet-32; one epoch of training."""
import json
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
from PIL import Image

from ltkit import models
from ltkit.augment import pad_crop_transform
from ltkit.data import ArrayImages, exp_profile
from ltkit.data.cifar import cifar10_lt, cifar100_lt, load_cifar

ROOT = Path(__file__).resolve().parent.parent
CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def class_image(c: int, i: int) -> np.ndarray:
    """A 32 px image whose colour says its class and whose noise says its index."""
    rng = np.random.default_rng(1000 * c + i)
    base = np.array([25 * c, 255 - 25 * c, (80 * c) % 256], dtype=np.int16)
    return np.clip(base + rng.integers(-20, 20, size=(32, 32, 3)), 0, 255).astype(np.uint8)


def write_folders(root: Path, train_per_class: int = 12, test_per_class: int = 3) -> Path:
    """`root/cifar10/{train,test}/<class>/NNNN.jpg`, as in the shared tarball."""
    for split, n in (("train", train_per_class), ("test", test_per_class)):
        for c, name in enumerate(CLASSES):
            d = root / "cifar10" / split / name
            d.mkdir(parents=True)
            for i in range(n):
                Image.fromarray(class_image(c, i + (0 if split == "train" else 500))).save(d / f"{i:04d}.png")
    return root


def write_pickles(root: Path, per_class: int = 12) -> Path:
    """A CIFAR-10 pickle folder in torchvision's layout (5 train batches, a test batch, meta)."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    labels = np.repeat(np.arange(10), per_class)
    data = np.stack([class_image(c, i).transpose(2, 0, 1).reshape(-1) for c, i in zip(labels, range(len(labels)))])
    for b, part in enumerate(np.array_split(np.arange(len(labels)), 5), 1):
        with open(folder / f"data_batch_{b}", "wb") as f:
            pickle.dump({b"data": data[part], b"labels": labels[part].tolist()}, f)
    with open(folder / "test_batch", "wb") as f:
        pickle.dump({b"data": data[::4], b"labels": labels[::4].tolist()}, f)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({b"label_names": [c.encode() for c in CLASSES]}, f)
    return root


def test_cifar10_lt_from_folders(tmp_path):
    d = cifar10_lt(write_folders(tmp_path), head=12, imbalance=4, seed=0)
    assert d.class_names == CLASSES and d.name == "CIFAR-10-LT-4"
    assert d.train_counts.tolist() == exp_profile(10, 12, 4).tolist() == [12, 10, 8, 7, 6, 5, 4, 4, 3, 3]
    assert np.bincount(d.test.labels).tolist() == [3] * 10  # the test set stays balanced
    assert isinstance(d.train, ArrayImages) and d.train.images.shape[1:] == (32, 32, 3)
    # the images are the files' pixels, with their labels
    y, img = d.test.labels[4], np.asarray(d.test.load(4), dtype=int)
    assert np.abs(img.mean((0, 1)) - class_image(y, 0).mean((0, 1))).max() < 8
    again, other = cifar10_lt(tmp_path, 12, 4, seed=0), cifar10_lt(tmp_path, 12, 4, seed=1)
    assert np.array_equal(again.train.images, d.train.images)
    assert not np.array_equal(other.train.images, d.train.images)  # the seed picks which images stay


def test_cifar10_lt_from_a_tarball_extracts_once(tmp_path, monkeypatch):
    monkeypatch.setenv("LTKIT_CACHE", str(tmp_path / "cache"))
    src = write_folders(tmp_path / "src")
    tarball = tmp_path / "cifar10-jpeg.tar.gz"
    with tarfile.open(tarball, "w:gz") as tar:
        tar.add(src / "cifar10", arcname="cifar10")
    d = cifar10_lt(tarball, head=12, imbalance=4)
    assert np.array_equal(d.train.images, cifar10_lt(src, head=12, imbalance=4).train.images)
    (extracted,) = (tmp_path / "cache" / "datasets").iterdir()
    stamp = extracted.stat().st_mtime_ns
    cifar10_lt(tarball, head=12, imbalance=4)
    assert [p.name for p in (tmp_path / "cache" / "datasets").iterdir()] == [extracted.name]
    assert extracted.stat().st_mtime_ns == stamp


def test_cifar10_lt_from_pickles_and_errors(tmp_path):
    d = cifar10_lt(write_pickles(tmp_path), head=12, imbalance=12)
    assert d.class_names == CLASSES and d.train_counts[[0, -1]].tolist() == [12, 1]
    assert np.array_equal(d.test.images[0], class_image(0, 0))
    (tmp_path / "cifar-10-batches-py" / "test_batch").write_bytes(b"not a pickle")
    with pytest.raises(ValueError, match="test_batch: not a CIFAR-10 python pickle"):
        load_cifar("cifar10", tmp_path)
    with pytest.raises(FileNotFoundError, match="download=True"):
        cifar10_lt(tmp_path / "nowhere")
    with pytest.raises(ValueError, match="fewer than the 50"):
        cifar10_lt(write_folders(tmp_path / "f"), head=50)
    with pytest.raises(FileNotFoundError, match="CIFAR-100 not found"):
        cifar100_lt(tmp_path / "nowhere")


def test_pad_crop_shifts_and_flips_whole_images():
    """Each output is the input shifted by at most 4 px (zeros where it left the frame), maybe mirrored."""
    img = class_image(3, 7)
    tf = pad_crop_transform(32, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), hflip=0.5)
    x = torch.from_numpy(img).permute(2, 0, 1).float() / 255
    padded = torch.nn.functional.pad(x, (4, 4, 4, 4))
    torch.manual_seed(0)
    seen = set()
    for _ in range(20):
        out = tf(Image.fromarray(img))
        assert out.shape == (3, 32, 32)
        match = [(dy, dx, f) for dy in range(9) for dx in range(9) for f in (0, 1)
                 if torch.allclose((padded.flip(2) if f else padded)[:, dy:dy + 32, dx:dx + 32], out, atol=1e-6)]
        assert match, "not a shifted (and possibly flipped) copy of the input"
        seen.add(match[0])
    assert len(seen) > 5 and {f for _, _, f in seen} == {0, 1}


def test_resnet32_cifar_in_timm():
    ten = models.create_model("resnet32_cifar", 10)
    assert sum(p.numel() for p in ten.parameters()) == 464_154  # the paper's 0.46 M
    m = models.create_model("resnet32_cifar", 7)
    x = torch.randn(2, 3, 32, 32)
    assert m(x).shape == (2, 7)
    assert m.forward_head(m.forward_features(x), pre_logits=True).shape == (2, 64)
    m.reset_classifier(0)
    assert m(x).shape == (2, 64)
    feats = timm.create_model("resnet32_cifar", features_only=True)(x)
    assert [f.shape[1:] for f in feats] == [(16, 32, 32), (16, 32, 32), (32, 16, 16), (64, 8, 8)]
    with pytest.raises(ValueError, match="6n \\+ 2"):
        models.cifar_resnet.CifarResNet(depth=30)
    # its training transform is the pad-4 crop; other small models keep the random resized crop
    assert "RandomCrop" in repr(models.transforms(m, train=True, randaugment=None))
    assert "RandomResizedCrop" in repr(models.transforms(models.create_model("ltkit_cnn_tiny", 3), train=True))
    assert "RandomCrop" in repr(models.transforms(models.create_model("ltkit_cnn_tiny", 3), train=True, crop="pad"))
def test_one_epoch_of_resnet32_on_cifar10_lt(tmp_path):
    from ltkit.config import load_config
    from ltkit.train import train

    write_folders(tmp_path / "data")
    cfg = load_config(ROOT / "configs" / "cifar10-lt.yaml",
                      {"data_root": str(tmp_path / "data"), "head": 12, "imbalance": 4, "epochs": 1, "batch_size": 16,
                       "out_dir": str(tmp_path / "runs"), "eval_every": 0, "progress": False, "device": "cpu"})
    assert (cfg.model, cfg.dataset, cfg.loss) == ("resnet32_cifar", "cifar10-lt", "balce")
    res = train(cfg)
    assert res["num_test"] == 30 and len(res["per_class_accuracy"]) == 10
    rows = [json.loads(line) for line in (cfg.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 1 and np.isfinite(rows[0]["loss"])
