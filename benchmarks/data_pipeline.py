"""ltkit's training input pipeline against timm's `create_loader`: images per second on the same JPEGs.

    OMP_NUM_THREADS=1 python benchmarks/data_pipeline.py [--images 2000] [--workers 2] [--batches 40]

Both sides read the same generated 224 px JPEGs (class folders) with the same settings: random
resized crop to 224, flip, RandAugment rand-m9-mstd0.5, Mixup 0.8 / CutMix 1.0, batch 64, the same
worker count. timm: `create_loader(..., use_prefetcher=True, collate_fn=FastCollateMixup)` on the CPU
device (uint8 batches, normalised by its prefetch loader). ltkit: `ltkit.loader.build_loader` as the
trainer builds it (EpochSampler, per-sample seeding, skip-and-count of bad files, timm's
FastCollateMixup in the collation), then its on-device normalisation. Each side is timed over
`--batches` batches after `--warmup` batches, over as many epochs as that takes. Target: ratio >= 0.95.
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ltkit import models
from ltkit.data import TransformedSet
from ltkit.loader import Normalize, build_loader, split_normalize
from ltkit.data.readers import load_image_folder
from ltkit.sampling import EpochSampler


def make_jpegs(root: Path, n: int, classes: int = 10, size: int = 224, seed: int = 0) -> None:
    """n smooth random JPEGs (gradients plus noise, so they compress like photos) in class folders."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    for i in range(n):
        folder = root / f"c{i % classes:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        a, b, c = rng.uniform(-1, 1, (3, 3))
        img = np.stack([a[k] * xx + b[k] * yy + c[k] * xx * yy for k in range(3)], -1)
        img = (img - img.min()) / (np.ptp(img) + 1e-6) * 200 + rng.normal(0, 12, (size, size, 3))
        Image.fromarray(img.clip(0, 255).astype(np.uint8)).save(folder / f"{i:05d}.jpg", quality=90)


def timed(batches, warmup: int, count: int) -> float:
    """Images per second over `count` batches after `warmup` batches of an endless batch iterator."""
    seen, t0 = 0, 0.0
    for k, x in enumerate(batches):
        if k == warmup:
            t0 = time.perf_counter()
        elif k > warmup:
            seen += len(x)
        if k == warmup + count:
            return seen / (time.perf_counter() - t0)
    raise RuntimeError("the loader ended early")


def ltkit_batches(root: Path, tf, batch: int, workers: int):
    """ltkit's pipeline: the trainer's loader (Mixup/CutMix in its collation) and normalisation on the device."""
    from timm.data import FastCollateMixup

    _, images = load_image_folder(root)
    tf8, mean, std = split_normalize(tf)
    sampler = EpochSampler(len(images), [], seed=0)
    mixup = FastCollateMixup(mixup_alpha=0.8, cutmix_alpha=1.0, label_smoothing=0.0, num_classes=10)
    loader = build_loader(TransformedSet(images, tf8), sampler, batch, seed=0, num_workers=workers, mixup=mixup)
    norm = Normalize(mean, std, torch.device("cpu"))
    for epoch in range(10**6):
        sampler.set_epoch(epoch)
        for x, y, _, _ in loader:
            yield norm(x)


def timm_batches(root: Path, data_cfg: dict, args, batch: int, workers: int):
    """timm's pipeline: create_loader with its prefetcher and FastCollateMixup."""
    from timm.data import FastCollateMixup, ImageDataset, create_loader

    collate = FastCollateMixup(mixup_alpha=0.8, cutmix_alpha=1.0, label_smoothing=0.0, num_classes=10)
    loader = create_loader(ImageDataset(str(root)), data_cfg["input_size"], batch, is_training=True,
                           auto_augment=args.randaugment, interpolation=data_cfg["interpolation"],
                           mean=data_cfg["mean"], std=data_cfg["std"], num_workers=workers, collate_fn=collate,
                           device=torch.device("cpu"), use_prefetcher=True, persistent_workers=True)
    while True:
        for x, _ in loader:
            yield x


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", type=int, default=2000)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--batches", type=int, default=40, help="timed batches per side")
    p.add_argument("--warmup", type=int, default=5, help="untimed batches first (worker start-up)")
    p.add_argument("--rounds", type=int, default=2, help="alternate the sides this many times; best of each")
    p.add_argument("--randaugment", default="rand-m9-mstd0.5")
    p.add_argument("--dir", help="keep the JPEGs here (default: a temporary folder)")
    args = p.parse_args()
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.dir or tmp) / f"jpegs-{args.images}"
        if not root.is_dir():
            t = time.perf_counter()
            make_jpegs(root, args.images)
            print(f"wrote {args.images} JPEGs to {root} in {time.perf_counter() - t:.1f} s")
        model = models.create_model("test_vit", 10, img_size=224)  # only its data config (224, bicubic, mean/std)
        data_cfg = models.data_config(model)
        tf = models.transforms(model, train=True, randaugment=args.randaugment)
        ours, theirs = [], []
        for _ in range(args.rounds):  # alternate, so a load change on a shared machine hits both sides
            theirs.append(timed(timm_batches(root, data_cfg, args, args.batch_size, args.workers),
                                args.warmup, args.batches))
            ours.append(timed(ltkit_batches(root, tf, args.batch_size, args.workers),
                              args.warmup, args.batches))
    print(f"torch {torch.__version__}, {args.images} JPEGs 224 px, batch {args.batch_size}, workers {args.workers},"
          f" {args.batches} timed batches x {args.rounds} rounds, {args.randaugment}, mixup 0.8 / cutmix 1.0")
    print(f"  timm create_loader (prefetcher, FastCollateMixup)  {max(theirs):8.1f} images/s  "
          f"(rounds: {', '.join(f'{v:.1f}' for v in theirs)})")
    print(f"  ltkit build_loader + Normalize                      {max(ours):8.1f} images/s  "
          f"(rounds: {', '.join(f'{v:.1f}' for v in ours)})")
    print(f"  ratio ltkit / timm                                  {max(ours) / max(theirs):8.2f}  (target >= 0.95)")


if __name__ == "__main__":
    main()
