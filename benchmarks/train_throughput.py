"""ltkit's trainer against a minimal hand-written timm training loop: images per second, same model and data.

    python benchmarks/train_throughput.py [--preset builtin-tiny] [--model ltkit_cnn_small] [--epochs 2]

Both sides train the same timm model on the same target images with the same transform, batch size,
AdamW and Mixup/CutMix; ltkit adds its auxiliary sampler, BalCE / NS-CE loss, scheduler, metrics and
a checkpoint per epoch. The first epoch of each side warms up and is not timed. Target: ratio >= 0.9.
"""
from __future__ import annotations

import argparse
import tempfile
import time

import torch

from ltkit import models
from ltkit.config import load_config
from ltkit.data import TransformedSet
from ltkit.train import Trainer


def baseline_loop(trainer: Trainer, epochs: int) -> float:
    """A plain loop: DataLoader, timm model, AdamW, Mixup, soft-target CE. Returns images/s after warm-up."""
    from timm.data import Mixup
    from timm.loss import SoftTargetCrossEntropy

    cfg = trainer.cfg
    torch.manual_seed(cfg.seed)
    model = models.create_model(cfg.model, trainer.L + trainer.K, img_size=cfg.img_size)
    tf = models.transforms(model, train=True, randaugment=cfg.randaugment, color_jitter=cfg.color_jitter)
    loader = torch.utils.data.DataLoader(TransformedSet(trainer.data.train, tf), batch_size=cfg.batch_size,
                                         shuffle=True, drop_last=True, num_workers=cfg.num_workers)
    mixup = Mixup(mixup_alpha=cfg.mixup, cutmix_alpha=cfg.cutmix, num_classes=trainer.L + trainer.K,
                  label_smoothing=0.0)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)
    loss_fn = SoftTargetCrossEntropy()
    seen, t = 0, 0.0
    for epoch in range(epochs + 1):
        t0 = time.time()
        for x, y in loader:
            x, y = mixup(x, y)
            loss = loss_fn(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if epoch:
                seen += len(x)
        if epoch:
            t += time.time() - t0
    return seen / t


def ltkit_loop(trainer: Trainer, epochs: int) -> float:
    """ltkit's `train_epoch` (with its per-epoch checkpoint); images/s after one warm-up epoch."""
    trainer.train_epoch()
    seen, t = 0, 0.0
    for _ in range(epochs):
        trainer.epoch += 1
        t0 = time.time()
        row = trainer.train_epoch()
        trainer.save()
        t += time.time() - t0
        seen += row["images_per_s"] * row["seconds"]
    return seen / t


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="builtin-tiny")
    p.add_argument("--model", default="ltkit_cnn_small")
    p.add_argument("--epochs", type=int, default=2, help="timed epochs per side (after one warm-up)")
    p.add_argument("--batch-size", type=int, default=128)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        cfg = load_config(f"configs/{args.preset}.yaml", {
            "model": args.model, "batch_size": args.batch_size, "out_dir": tmp, "epochs": args.epochs + 1,
            "aux": "none", "loss": "balce", "progress": False, "eval_every": 0})
        trainer = Trainer(cfg)
        base = baseline_loop(trainer, args.epochs)
        ours = ltkit_loop(trainer, args.epochs)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, preset {args.preset}, model {args.model},"
          f" batch {args.batch_size}, {len(trainer.data.train)} images/epoch")
    print(f"  hand-written timm loop   {base:8.1f} images/s")
    print(f"  ltkit Trainer            {ours:8.1f} images/s")
    print(f"  ratio ltkit / baseline   {ours / base:8.2f}  (target >= 0.9)")


if __name__ == "__main__":
    main()
