"""NS-CE and BalCE forward+backward time and peak memory against F.cross_entropy on the same logits.

The default shape is the paper's iNat18 setting: batch 512, 8,142 targets and 5 auxiliary classes
each (40,710), so C = 48,852 and a dense C x C float32 lambda matrix would take 9.1 GiB.
Int labels and soft targets (timm Mixup + CutMix, label smoothing 0.1) are timed separately; each
ratio is against F.cross_entropy with the same kind of target.

Time: all methods run in one process, interleaved round by round (fair on a shared machine), median
per method. Memory: each method runs once in its own subprocess, measuring the growth over its
inputs (logits, target; the step allocates the gradient) of torch.cuda.max_memory_allocated on CUDA, or of the peak
RSS on CPU (VmHWM after resetting it through /proc/self/clear_refs; getrusage's ru_maxrss where
that is unavailable).

    .venv/bin/python benchmarks/losses.py --repeats 5
"""
from __future__ import annotations

import argparse
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from ltkit.losses import build_loss  # noqa: E402

METHODS = {  # name: (loss, target kind)
    "ce": ("ce", "int"),
    "balce": ("balce", "int"),
    "nsce": ("nsce", "int"),
    "ce-soft": ("ce", "soft"),
    "balce-soft": ("balce", "soft"),
    "nsce-soft": ("nsce", "soft"),
    "nsce-mask": ("nsce-mask", "int"),       # the released hard mask (ns_mode: mask), both ways
    "nsce-mask-soft": ("nsce-mask", "soft"),  # ... masked by the pre-mix labels
}


def baseline_of(method: str) -> str:
    """The F.cross_entropy row a method is compared with."""
    return "ce-soft" if method.endswith("-soft") else "ce"


# ---------------------------------------------------------------------------------------------
# one method


def make_inputs(args: argparse.Namespace, dev: torch.device) -> tuple[dict, torch.Tensor, dict]:
    """Loss modules, logits and the two kinds of target for the configured shape (seeded)."""
    from timm.data import Mixup

    torch.manual_seed(0)
    np.random.seed(0)
    L, K, B = args.targets, args.aux, args.batch
    C = L + K
    # k = K / L children per target when it divides (the paper's setting), else random parents
    parent = np.repeat(np.arange(L), K // L) if K % L == 0 else np.random.default_rng(0).integers(0, L, size=K)
    counts = np.concatenate([np.random.default_rng(1).integers(1, 1000, size=L), np.full(K, 50)])
    losses = {name: build_loss(name, counts, parent, L).to(dev) for name in ("balce", "nsce")}
    losses["nsce-mask"] = build_loss("nsce", counts, parent, L, mode="mask").to(dev)
    y = torch.randint(0, C, (B,))
    _, soft = Mixup(mixup_alpha=0.8, cutmix_alpha=1.0, label_smoothing=0.1, num_classes=C)(torch.zeros(B, 1, 2, 2), y)
    z = torch.randn(B, C, device=dev, requires_grad=True)
    return losses, z, {"int": y.to(dev), "soft": soft.to(dev)}


def step_fn(method: str, losses: dict, z: torch.Tensor, targets: dict):
    """A closure running one forward+backward of `method`, writing z.grad."""
    loss_name, kind = METHODS[method]
    target = targets[kind]
    labels = targets["int"]  # the pre-mix labels (the hard mask's rows)
    fn = (lambda: F.cross_entropy(z, target)) if loss_name == "ce" else (lambda: losses[loss_name](z, target, labels))

    def step():
        z.grad = None
        fn().backward()

    return step


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        return int(re.search(rf"{field}:\s+(\d+)", f.read()).group(1))


def measure_memory(args: argparse.Namespace) -> dict:
    """Peak memory growth of one forward+backward, MiB; runs in a fresh subprocess per method."""
    if args.device == "cpu":
        torch.set_num_threads(args.threads)
    dev = torch.device(args.device)
    losses, z, targets = make_inputs(args, dev)
    step = step_fn(args.method, losses, z, targets)
    if dev.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        step()
        torch.cuda.synchronize()
        return {"peak_mb": (torch.cuda.max_memory_allocated() - base) / 2**20, "how": "torch.cuda.max_memory_allocated"}
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # reset the peak RSS to the current RSS
        base = _status_kib("VmRSS")
        step()
        return {"peak_mb": (_status_kib("VmHWM") - base) / 1024, "how": "VmHWM after clear_refs"}
    except OSError:
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        step()
        return {"peak_mb": (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) / 1024, "how": "ru_maxrss"}


def measure_time(args: argparse.Namespace, methods: list[str]) -> dict[str, float]:
    """Median fwd+bwd milliseconds per method, interleaved round by round after one warm-up each."""
    if args.device == "cpu":
        torch.set_num_threads(args.threads)
    dev = torch.device(args.device)
    losses, z, targets = make_inputs(args, dev)
    steps = {m: step_fn(m, losses, z, targets) for m in methods}
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    times: dict[str, list[float]] = {m: [] for m in methods}
    for r in range(args.repeats + 1):
        for m in methods:
            sync()
            t0 = time.perf_counter()
            steps[m]()
            sync()
            if r:  # round 0 warms up
                times[m].append(time.perf_counter() - t0)
    return {m: 1e3 * statistics.median(v) for m, v in times.items()}


# ---------------------------------------------------------------------------------------------
# report


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--batch", type=int, default=512)
    p.add_argument("--targets", type=int, default=8142)
    p.add_argument("--aux", type=int, default=40710)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (1 keeps timings stable on shared cores)")
    p.add_argument("--methods", default=",".join(METHODS))
    p.add_argument("--method", help=argparse.SUPPRESS)  # internal: measure one method's memory
    args = p.parse_args()
    if args.method:
        print(json.dumps(measure_memory(args)))
        return 0
    methods = args.methods.split(",")
    for m in methods:
        if m not in METHODS:
            p.error(f"unknown method {m!r}; choose from {', '.join(METHODS)}")
        if baseline_of(m) not in methods:
            methods.insert(0, baseline_of(m))  # every ratio needs its baseline in the same run
    methods = list(dict.fromkeys(methods))

    C = args.targets + args.aux
    print(f"device={args.device} ({torch.cuda.get_device_name() if args.device.startswith('cuda') else 'CPU'})"
          f" batch={args.batch} classes={C} ({args.targets} targets + {args.aux} auxiliary) repeats={args.repeats}"
          + (f" threads={args.threads}" if args.device == "cpu" else "") + f" torch={torch.__version__}")
    mem = {}
    for m in methods:
        cmd = [sys.executable, os.path.abspath(__file__), "--method", m] + [
            f"--{k}={getattr(args, k)}" for k in ("device", "batch", "targets", "aux", "threads")]
        env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
        out = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if out.returncode:
            print(out.stderr, file=sys.stderr)
            return out.returncode
        mem[m] = json.loads(out.stdout.strip().splitlines()[-1])
    ms = measure_time(args, methods)

    logits_mb = args.batch * C * 4 / 2**20
    dense_mb = C * C * 4 / 2**20
    print(f"\n{'method':<11} {'fwd+bwd ms':>10} {'time/CE':>8} {'peak growth MiB':>16} {'mem/CE':>7} {'/logits':>8}")
    for m in methods:
        ref = baseline_of(m)
        print(f"{m:<11} {ms[m]:>10.1f} {ms[m] / ms[ref]:>7.2f}x {mem[m]['peak_mb']:>16.1f}"
              f" {mem[m]['peak_mb'] / max(mem[ref]['peak_mb'], 1e-9):>6.2f}x {mem[m]['peak_mb'] / logits_mb:>7.2f}x")
    worst = max(r["peak_mb"] for r in mem.values())
    print(f"\nmemory: {next(iter(mem.values()))['how']}; one (B, C) float32 tensor = {logits_mb:.1f} MiB;"
          f" a dense C x C float32 lambda matrix = {dense_mb:,.0f} MiB.")
    print(f"largest peak growth: {worst:.1f} MiB = {worst / logits_mb:.1f} (B, C) tensors ="
          f" {100 * worst / dense_mb:.2f}% of one C x C matrix: nothing of size C x C is allocated.")
    for m, target in (("nsce", 1.5), ("nsce-soft", 1.25)):  # the soft path is the paper's (Mixup + CutMix)
        if m in ms:
            ref = baseline_of(m)
            verdict = "ok" if ms[m] / ms[ref] <= target else "OVER"
            print(f"{m} vs {ref}: time {ms[m] / ms[ref]:.2f}x (target <= {target}x: {verdict}),"
                  f" peak memory {mem[m]['peak_mb'] / max(mem[ref]['peak_mb'], 1e-9):.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
