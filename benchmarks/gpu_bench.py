"""GPU benchmark (run by benchmarks/gpu.sh): ViT-B/16 training images/s of ltkit's trainer against a
timm-style loop, and NS-CE against plain cross-entropy at iNat18's label space in bf16.

    PYTHONPATH=$PWD python benchmarks/gpu_bench.py [--steps 30] [--batch 128]
    GPU_BENCH_SMOKE=1 PYTHONPATH=$PWD python benchmarks/gpu_bench.py   # tiny ViT on the CPU, seconds

1. Training: both sides train `vit_base_patch16_224` (random init, drop path 0.1) with timm's
   `create_optimizer_v2` (AdamW, layer decay 0.75, no decay on norms/biases/embeddings), bf16
   autocast, on the same synthetic uint8 batches already mixed by timm's `FastCollateMixup` (Mixup
   0.8, CutMix 1.0, label smoothing 0.1), as timm's `train.py` gets them from its prefetcher: host
   to device, normalise on the device, forward, soft-target CE, backward, step, per-step schedule.
   The timm-style loop takes no `loss.item()` per step (timm's `train.py` does when not
   distributed), so it is, if anything, faster than timm's own script. ltkit runs
   `Trainer.train_epoch` with its loader replaced by the same batches. Target: ratio >= 0.95.
2. Loss: a linear head 768 -> 8,142 + 40,710 classes under bf16 autocast, batch 512, forward +
   backward of plain `F.cross_entropy` against ltkit's NS-CE (int labels and Mixup soft targets):
   median time and peak CUDA memory above the inputs.
"""
from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

SMOKE = os.environ.get("GPU_BENCH_SMOKE") == "1"


def sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


# ---------------------------------------------------------------------------------------------
# 1. training throughput


def synthetic_batches(n: int, batch: int, size: int, classes: int, seed: int = 0) -> list[tuple[torch.Tensor, ...]]:
    """n batches of random uint8 images mixed by timm's FastCollateMixup (soft targets), pinned on a GPU host."""
    from timm.data import FastCollateMixup

    g = torch.Generator().manual_seed(seed)
    np.random.seed(seed)
    mix = FastCollateMixup(mixup_alpha=0.8, cutmix_alpha=1.0, label_smoothing=0.1, num_classes=classes)
    out = []
    for _ in range(n):
        imgs = torch.randint(0, 256, (batch, 3, size, size), dtype=torch.uint8, generator=g)
        labels = torch.randint(0, classes, (batch,), generator=g).tolist()
        x, y = mix(list(zip(imgs, labels)))
        if torch.cuda.is_available():
            x, y = x.pin_memory(), y.pin_memory()
        out.append((x, y))
    return out


def timm_loop(args, batches, classes: int, dev: torch.device) -> float:
    """A minimal timm train.py step (prefetcher-style normalisation, bf16 autocast); images/s."""
    import timm
    from timm.loss import SoftTargetCrossEntropy
    from timm.optim import create_optimizer_v2
    from timm.scheduler import CosineLRScheduler

    torch.manual_seed(0)
    small = {"patch_size": max(1, args.img // 8)} if args.img <= 64 else {}  # ltkit's 8x8 grid for small images
    model = timm.create_model(args.model, num_classes=classes, drop_path_rate=0.1, img_size=args.img, **small).to(dev)
    if args.channels_last:
        model = model.to(memory_format=torch.channels_last)
    opt = create_optimizer_v2(model, "adamw", lr=args.lr, weight_decay=0.05, layer_decay=0.75, betas=(0.9, 0.95))
    sched = CosineLRScheduler(opt, t_initial=10_000, warmup_t=500, warmup_lr_init=1e-6, t_in_epochs=False)
    fwd = torch.compile(model) if args.compile else model
    loss_fn = SoftTargetCrossEntropy()
    cfg = model.pretrained_cfg
    mean = torch.tensor([m * 255 for m in cfg["mean"]], device=dev).view(1, 3, 1, 1)
    std = torch.tensor([s * 255 for s in cfg["std"]], device=dev).view(1, 3, 1, 1)
    model.train()

    def run(steps: int) -> None:
        for k in range(steps):
            x, y = batches[k % len(batches)]
            x = x.to(dev, non_blocking=True).float().sub_(mean).div_(std)
            if args.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            y = y.to(dev, non_blocking=True)
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=dev.type == "cuda"):  # as ltkit's amp
                loss = loss_fn(fwd(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step_update(k + 1)

    run(args.warmup)
    sync(dev)
    t0 = time.perf_counter()
    run(args.steps)
    sync(dev)
    return args.steps * args.batch / (time.perf_counter() - t0)


class FixedBatches:
    """Stands in for the trainer's DataLoader: the given (x, y) batches (pre-mix labels: y's largest share), no file skipped."""

    def __init__(self, batches, steps: int):
        self.batches, self.steps = batches, steps

    def __iter__(self):
        for k in range(self.steps):
            x, y = self.batches[k % len(self.batches)]
            yield x, y, y.argmax(1) if y.ndim == 2 else y, 0

    def __len__(self) -> int:
        return self.steps


def tiny_folders(root: Path, classes: int, per_class: int) -> None:
    """`root/{train,val,test}/<class>/*.png`: a stand-in dataset so the Trainer builds (its loader is replaced)."""
    from PIL import Image

    for split, n in (("train", per_class), ("val", 1), ("test", 1)):
        for c in range(classes):
            d = root / split / f"c{c:04d}"
            d.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                Image.new("RGB", (8, 8), (c % 256, i, 0)).save(d / f"{i}.png")


def ltkit_loop(args, batches, classes: int, dev: torch.device, tmp: Path) -> float:
    """ltkit's Trainer.train_epoch over the same batches; images/s."""
    from ltkit.config import load_config
    from ltkit.train import Trainer

    tiny_folders(tmp / "data", classes, per_class=-(-args.batch // classes) + 1)
    cfg = load_config(None, {
        "dataset": "folders", "data_root": str(tmp / "data"), "out_dir": str(tmp / "runs"), "name": "bench",
        "model": args.model, "img_size": args.img, "pretrained": None, "loss": "ce", "aux": "none",
        "batch_size": args.batch, "epochs": 10_000, "warmup_epochs": 500, "blr": args.lr * 256 / args.batch,
        "layer_decay": 0.75, "drop_path": 0.1, "mixup": 0.8, "cutmix": 1.0, "label_smoothing": 0.1,
        "amp": True, "compile": args.compile, "channels_last": args.channels_last, "eval_every": 0,
        "progress": False, "device": str(dev), "num_workers": 0})
    torch.manual_seed(0)
    t = Trainer(cfg)
    if SMOKE:  # the optimiser the trainer built must be timm's, with the same groups as the timm loop
        assert len(t.optimizer.param_groups) > 2, "expected layer-decay parameter groups"
    t.loader = FixedBatches(batches, args.warmup)
    t.train_epoch()
    t.epoch += 1
    t.loader = FixedBatches(batches, args.steps)
    sync(dev)
    t0 = time.perf_counter()
    t.train_epoch()
    sync(dev)
    return args.steps * args.batch / (time.perf_counter() - t0)


# ---------------------------------------------------------------------------------------------
# 2. NS-CE against plain CE


def loss_rows(args, dev: torch.device) -> list[dict]:
    """Median forward+backward time and peak memory of CE and NS-CE on a bf16 linear head."""
    from timm.data import Mixup

    from ltkit.losses import build_loss

    torch.use_deterministic_algorithms(False)  # the Trainer turns them on for CPU runs; both losses get the same
    L, k, B, D = args.targets, 5, args.loss_batch, 768
    C = L + k * L
    parent = np.repeat(np.arange(L), k)
    counts = np.concatenate([np.random.default_rng(1).integers(1, 1000, size=L), np.full(k * L, 50)])
    nsce = build_loss("nsce", counts, parent, L).to(dev)
    torch.manual_seed(0)
    head = nn.Linear(D, C).to(dev)
    feats = torch.randn(B, D, device=dev)
    y = torch.randint(0, C, (B,))
    _, soft = Mixup(mixup_alpha=0.8, cutmix_alpha=1.0, label_smoothing=0.1, num_classes=C)(torch.zeros(B, 1, 2, 2), y)
    targets = {"int": y.to(dev), "soft": soft.to(dev)}
    rows = []
    for kind in ("int", "soft"):
        for name, fn in (("CE", F.cross_entropy), ("NS-CE", nsce)):
            def step():
                head.zero_grad(set_to_none=True)
                with torch.autocast(dev.type, dtype=torch.bfloat16):
                    loss = fn(head(feats), targets[kind])
                loss.backward()
            step()  # warm-up (allocator, kernels)
            head.zero_grad(set_to_none=True)
            sync(dev)
            peak = None
            if dev.type == "cuda":
                torch.cuda.reset_peak_memory_stats(dev)
                base = torch.cuda.memory_allocated(dev)
                step()
                sync(dev)
                peak = (torch.cuda.max_memory_allocated(dev) - base) / 2**20
            times = []
            for _ in range(args.loss_repeats):
                t0 = time.perf_counter()
                step()
                sync(dev)
                times.append(time.perf_counter() - t0)
            rows.append(dict(loss=name, target=kind, ms=1000 * statistics.median(times), peak_mib=peak))
    return rows


# ---------------------------------------------------------------------------------------------


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="test_vit" if SMOKE else "vit_base_patch16_224")
    p.add_argument("--img", type=int, default=32 if SMOKE else 224)
    p.add_argument("--batch", type=int, default=8 if SMOKE else 128)
    p.add_argument("--classes", type=int, default=10 if SMOKE else 1000)
    p.add_argument("--steps", type=int, default=3 if SMOKE else 50, help="timed steps per side")
    p.add_argument("--warmup", type=int, default=2 if SMOKE else 15)
    p.add_argument("--rounds", type=int, default=1 if SMOKE else 2, help="alternate the sides; best of each")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--compile", action="store_true", help="torch.compile both models")
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--targets", type=int, default=81 if SMOKE else 8142, help="target classes (x5 auxiliary)")
    p.add_argument("--loss-batch", type=int, default=16 if SMOKE else 512)
    p.add_argument("--loss-repeats", type=int, default=3 if SMOKE else 20)
    args = p.parse_args()
    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if dev.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        name = torch.cuda.get_device_name(dev)
    else:
        name = "CPU"
    import timm

    print(f"device {name}, torch {torch.__version__}, timm {timm.__version__}, model {args.model} {args.img}px, "
          f"batch {args.batch}, bf16 autocast, compile {args.compile}, channels_last {args.channels_last}", flush=True)
    batches = synthetic_batches(4, args.batch, args.img, args.classes)
    theirs, ours = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            theirs.append(timm_loop(args, batches, args.classes, dev))
            print(f"  round {r + 1}: timm-style loop {theirs[-1]:.1f} images/s", flush=True)
            ours.append(ltkit_loop(args, batches, args.classes, dev, Path(tmp) / f"r{r}"))
            print(f"  round {r + 1}: ltkit trainer   {ours[-1]:.1f} images/s", flush=True)
            if dev.type == "cuda":
                torch.cuda.empty_cache()
    rows = loss_rows(args, dev)
    C = args.targets * 6
    print(f"\n== training, {args.model}, batch {args.batch}, {args.steps} steps x {args.rounds} rounds (best)")
    print(f"| side | images/s |\n|---|---|\n| timm-style loop | {max(theirs):.1f} |\n| ltkit Trainer | {max(ours):.1f} |")
    print(f"ratio ltkit / timm: {max(ours) / max(theirs):.3f} (target >= 0.95)")
    print(f"\n== loss, linear head 768 -> {args.targets:,} + {5 * args.targets:,} = {C:,} classes, batch "
          f"{args.loss_batch}, bf16 autocast, median of {args.loss_repeats}")
    print("| loss | target | ms | peak MiB above inputs | time vs CE | memory vs CE |\n|---|---|---|---|---|---|")
    for r in rows:
        ce = next(c for c in rows if c["loss"] == "CE" and c["target"] == r["target"])
        mem = "n/a (CPU)" if r["peak_mib"] is None else f"{r['peak_mib']:.0f}"
        mem_ratio = "n/a" if r["peak_mib"] is None else f"{r['peak_mib'] / ce['peak_mib']:.2f}x"
        ratio = r["ms"] / ce["ms"]
        print(f"| {r['loss']} | {r['target']} | {r['ms']:.2f} | {mem} | {ratio:.2f}x | {mem_ratio} |")


if __name__ == "__main__":
    main()
