"""ltkit's CIFAR-10-LT recipe against a bare PyTorch loop on the same real photos: accuracy and time.

    OMP_NUM_THREADS=1 python benchmarks/real_baseline.py --data ../shared/data/cifar10-jpeg.tar.gz \
        --head 500 --imbalance 100 --epochs 15

Both sides get the same CIFAR-10-LT training images (`ltkit.data.cifar.cifar10_lt`: same head, imbalance
and seed), the same balanced test set, model (the CIFAR ResNet-32), epochs, batch size, optimiser
settings and seed. The bare side is the ~60-line loop in `bare_loop` below: torchvision's pad-4
random crop and flip, Balanced Softmax written out, SGD with a cosine schedule, nothing of
ltkit's trainer. ltkit's side is the command a user runs, `python -m ltkit train --config
configs/cifar10-lt.yaml ...`. Each side runs in its own process; the time is that process's wall
clock and CPU time (user + system), data loading and test evaluation included. CPU time is the
fairer ratio on a shared machine. Targets: accuracy >= 1.0x, time <= 1.2x the bare loop.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


# ---------------------------------------------------------------------------------------------
# the bare loop (everything a user would write by hand, given the images as arrays)


def bare_loop(args: argparse.Namespace) -> dict:
    """Train and test ResNet-32 with a plain PyTorch loop; per-class test accuracy."""
    import random

    import torch
    import torch.nn.functional as F
    from PIL import Image
    from torchvision import transforms as T

    from ltkit.data.cifar import cifar10_lt
    from ltkit.cifar_resnet import CIFAR10_MEAN, CIFAR10_STD, CifarResNet

    data = cifar10_lt(args.data, args.head, args.imbalance, args.seed)
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    device = torch.device(args.device)

    class Arrays(torch.utils.data.Dataset):
        def __init__(self, images, labels, tf):
            self.images, self.labels, self.tf = images, labels, tf

        def __len__(self):
            return len(self.labels)

        def __getitem__(self, i):
            return self.tf(Image.fromarray(self.images[i])), int(self.labels[i])

    norm = [T.ToTensor(), T.Normalize(CIFAR10_MEAN, CIFAR10_STD)]
    train_tf = T.Compose([T.RandomCrop(32, padding=4), T.RandomHorizontalFlip(), *norm])
    train = torch.utils.data.DataLoader(Arrays(data.train.images, data.train.labels, train_tf), args.batch_size,
                                        shuffle=True, drop_last=True, num_workers=args.num_workers)
    test = torch.utils.data.DataLoader(Arrays(data.test.images, data.test.labels, T.Compose(norm)), 256,
                                       num_workers=args.num_workers)
    model = CifarResNet(32, num_classes=10).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9, weight_decay=args.weight_decay)
    steps = args.epochs * len(train)
    warm = args.warmup_epochs * len(train)
    sched = torch.optim.lr_scheduler.LambdaLR(  # linear warmup, then cosine to zero
        opt, lambda s: (s + 1) / warm if s < warm else 0.5 * (1 + math.cos(math.pi * (s - warm) / max(1, steps - warm))))
    log_prior = torch.log(torch.as_tensor(np.bincount(data.train.labels, minlength=10), dtype=torch.float, device=device))
    for _ in range(args.epochs):
        model.train()
        for x, y in train:
            x, y = x.to(device), y.to(device)
            loss = F.cross_entropy(model(x) + log_prior, y)  # Balanced Softmax (Ren et al. 2020)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    model.eval()
    correct, total = np.zeros(10), np.zeros(10)
    with torch.no_grad():
        for x, y in test:
            pred = model(x.to(device)).argmax(1).cpu()
            np.add.at(correct, y.numpy(), (pred == y).numpy())
            np.add.at(total, y.numpy(), 1)
    return {"per_class": (correct / total).tolist(), "train_counts": data.train_counts.tolist()}


# ---------------------------------------------------------------------------------------------
# ltkit's side and the comparison


def ltkit_run(args: argparse.Namespace, out_dir: str) -> dict:
    """`python -m ltkit train` with the cifar10-lt preset, as a user runs it."""
    overrides = [f"data_root={args.data}", f"head={args.head}", f"imbalance={args.imbalance}", f"seed={args.seed}",
                 f"epochs={args.epochs}", f"batch_size={args.batch_size}", f"lr={args.lr}",
                 f"weight_decay={args.weight_decay}", f"warmup_epochs={args.warmup_epochs}", f"device={args.device}",
                 f"num_workers={args.num_workers}", f"out_dir={out_dir}", "name=real-baseline", "eval_every=0",
                 "progress=false"]
    subprocess.run([sys.executable, "-m", "ltkit", "train", "--config", str(ROOT / "configs" / "cifar10-lt.yaml"),
                    *overrides], check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
    res = json.loads((Path(out_dir) / "real-baseline" / "results.json").read_text())
    return {"per_class": res["per_class_accuracy"]}


def timed(fn, *a) -> tuple[dict, float, float]:
    """fn(*a) in a child process: (its result, wall seconds, CPU seconds of the child and its workers)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    out = fn(*a)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return out, wall, cpu


def bare_subprocess(args: argparse.Namespace, _: str) -> dict:
    """The bare loop in a fresh process (so both sides are timed alike)."""
    argv = [a for a in sys.argv[1:] if a != "--bare"]
    out = subprocess.run([sys.executable, __file__, "--bare", *argv], check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def groups(per_class: list[float], counts: list[int], many: int = 100, few: int = 20) -> dict[str, float]:
    """Overall / Many / Medium / Few mean per-class accuracy (ltkit's shot thresholds)."""
    from ltkit.data import shot_accuracy

    return shot_accuracy(per_class, counts, many, few)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "cifar10-jpeg.tar.gz"),
                   help="CIFAR-10 tarball, folder or pickles (see ltkit.data.cifar)")
    p.add_argument("--head", type=int, default=500)
    p.add_argument("--imbalance", type=float, default=100.0)
    p.add_argument("--epochs", type=int, default=15)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=0.1)
    p.add_argument("--weight-decay", type=float, default=5e-4)
    p.add_argument("--warmup-epochs", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--num-workers", type=int, default=0)
    p.add_argument("--bare", action="store_true", help=argparse.SUPPRESS)  # internal: run the bare loop here
    args = p.parse_args()
    if args.bare:
        print(json.dumps(bare_loop(args)))
        return 0
    print(f"CIFAR-10-LT head {args.head}, imbalance {args.imbalance:g}, ResNet-32, {args.epochs} epochs, batch "
          f"{args.batch_size}, SGD lr {args.lr} wd {args.weight_decay}, seed {args.seed}, device {args.device}, "
          f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}")
    with tempfile.TemporaryDirectory() as tmp:
        rows = {"bare loop": timed(bare_subprocess, args, tmp), "ltkit": timed(ltkit_run, args, tmp)}
    counts = rows["bare loop"][0]["train_counts"]
    acc = {k: groups(v[0]["per_class"], counts) for k, v in rows.items()}
    print(f"train counts per class: {counts}")
    print(f"\n{'':10} {'Overall':>8} {'Many':>6} {'Medium':>7} {'Few':>6} {'wall s':>8} {'CPU s':>8}")
    for k, (_, wall, cpu) in rows.items():
        a = acc[k]
        print(f"{k:10} {a['overall']:8.3f} {a['many']:6.3f} {a['medium']:7.3f} {a['few']:6.3f} {wall:8.1f} {cpu:8.1f}")
    (_, bw, bc), (_, lw, lc) = rows["bare loop"], rows["ltkit"]
    ratio = {g: acc["ltkit"][g] / acc["bare loop"][g] if acc["bare loop"][g] > 0 else float("nan")
             for g in ("overall", "few")}
    print(f"\nltkit / bare loop: Overall {ratio['overall']:.2f}x, Few {ratio['few']:.2f}x (target >= 1.0x); "
          f"wall time {lw / bw:.2f}x, CPU time {lc / bc:.2f}x (target <= 1.2x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
