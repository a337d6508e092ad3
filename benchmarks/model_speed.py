"""Training and inference throughput of world-model candidates on 32 px images, against the default.

    .venv/bin/python benchmarks/model_speed.py [--threads 2] [--batch-size 128] [--reps 5] [MODEL ...]

Train: forward + backward + SGD step, batch 128, random 32 px inputs. Models are measured in
interleaved rounds and the best round is kept, because a shared machine's load comes and goes.
Ratios are against the first model (the default world model unless models are named).
"""
from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from ltkit.models import DEFAULT_WORLD_MODEL, WORLD_VIT, create_model

CANDIDATES = [DEFAULT_WORLD_MODEL, "ltkit_cnn_tiny", "ltkit_cnn_base", "resnet10t@s2", "resnet18@s2", "resnet18@s1",
              WORLD_VIT, "vit_tiny_patch16_224"]


def build(name: str) -> torch.nn.Module:
    """A model by timm name; `resnet*@s1` / `@s2`: a 3x3 stem of stride 1 / 2 and no max-pool, for 32 px."""
    name, _, stem = name.partition("@")
    model = create_model(name, 100, img_size=32)
    if stem:
        width = model.bn1.num_features
        model.conv1 = torch.nn.Conv2d(3, width, 3, int(stem[1:]), 1, bias=False)
        model.maxpool = torch.nn.Identity()
    return model


def train_rate(model: torch.nn.Module, batch: int, steps: int, channels_last: bool) -> float:
    """Images per second of SGD training steps (after one warm-up step)."""
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = model.train().to(memory_format=fmt)
    x = torch.randn(batch, 3, 32, 32).contiguous(memory_format=fmt)
    y = torch.randint(0, 100, (batch,))
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    for i in range(steps + 1):
        if i == 1:
            t = time.perf_counter()
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return batch * steps / (time.perf_counter() - t)


@torch.inference_mode()
def eval_rate(model: torch.nn.Module, batch: int, steps: int) -> float:
    """Images per second of inference (eval mode, channels_last)."""
    model = model.eval().to(memory_format=torch.channels_last)
    x = torch.randn(batch, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    model(x)
    t = time.perf_counter()
    for _ in range(steps):
        model(x)
    return batch * steps / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="*", default=CANDIDATES)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--reps", type=int, default=5)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    models = {n: build(n) for n in args.models}
    best = {n: dict(train=0.0, train_cl=0.0, eval=0.0) for n in models}
    for _ in range(args.reps):
        for n, m in models.items():
            b = best[n]
            b["train"] = max(b["train"], train_rate(m, args.batch_size, args.steps, False))
            b["train_cl"] = max(b["train_cl"], train_rate(m, args.batch_size, args.steps, True))
            b["eval"] = max(b["eval"], eval_rate(m, 256, args.steps))
    base = max(best[args.models[0]]["train"], best[args.models[0]]["train_cl"])
    print(f"torch {torch.__version__}, {args.threads} threads, batch {args.batch_size}, 32 px, best of {args.reps}")
    cols = ("params", "train img/s", "(chan-last)", "eval img/s", "train ratio")
    print(f"{'model':24s} " + " ".join(f"{c:>12s}" for c in cols))
    for n, m in models.items():
        b, params = best[n], sum(p.numel() for p in m.parameters()) / 1e6
        fastest = max(b["train"], b["train_cl"])
        print(f"{n:24s} {params:11.2f}M {b['train']:12.0f} {b['train_cl']:12.0f} {b['eval']:12.0f} {fastest / base:12.2f}")


if __name__ == "__main__":
    main()
