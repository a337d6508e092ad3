"""Work for the DDP tests, run under `torchrun --nproc_per_node 2` with gloo on the CPU.

    python -m torch.distributed.run --standalone --nproc_per_node 2 tests/ddp_worker.py MODE OUT_DIR [key=value ...]

MODE `eval` (into OUT_DIR/eval): every rank extracts features and evaluates (direct + cRT) its
share of a small image set and records which images it read; rank 0 saves what it gathered.
MODE `resume` (into OUT_DIR/resume): the trainer runs 2 epochs straight, then 1 epoch, a restart
with scrambled RNGs, and 1 more; each rank saves both weights. MODE `all`: both, in one start-up.
"""
from __future__ import annotations

import json
import random
import sys
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torchvision.transforms as T

from ltkit import evaluate, features, models
from ltkit.data import ArrayImages


class RecordingImages(ArrayImages):
    """ArrayImages that remember which indices this process loaded."""

    def __init__(self, images, labels):
        super().__init__(images, labels)
        self.seen: list[int] = []

    def load(self, i: int):
        self.seen.append(int(i))
        return super().load(i)


def eval_images(n: int = 37, num_classes: int = 4, seed: int = 0) -> RecordingImages:
    """n random 16 px images (the same on every rank and in the test)."""
    rng = np.random.default_rng(seed)
    return RecordingImages(rng.integers(0, 256, (n, 16, 16, 3), dtype=np.uint8), np.arange(n) % num_classes)


def eval_model() -> torch.nn.Module:
    torch.manual_seed(0)
    return models.create_model("ltkit_cnn_tiny", 4, img_size=16).eval()


def run_eval(out: Path) -> None:
    images, train = eval_images(), eval_images(29, seed=1)
    model, tf = eval_model(), T.ToTensor()
    feats = features.extract_features(model, images, tf, batch_size=8, shard=True)
    res = evaluate.evaluate(model, images, [10, 10, 10, 10], 4, tf, classifier=["direct", "crt"], train=train,
                            batch_size=8, shard=True)
    rank = dist.get_rank()
    (out / f"seen{rank}.json").write_text(json.dumps({"test": images.seen, "train": train.seen}))
    if rank == 0:
        np.save(out / "features.npy", feats)
        (out / "results.json").write_text(json.dumps(res))
    else:
        assert feats is None and res is None, "only rank 0 gets the gathered rows"


def run_resume(out: Path, overrides: list[str]) -> None:
    from ltkit.config import load_config
    from ltkit.pipeline import prepare
    from ltkit.train import Trainer

    base = ["epochs=2", f"out_dir={out}", "eval_every=0", "progress=false", *overrides]
    cfg = lambda name: load_config("configs/builtin-tiny.yaml", [*base, f"name={name}"])  # noqa: E731
    prepare(cfg("straight"))  # the map the runs read, on rank 0 (as the train command does)
    straight = Trainer(cfg("straight")).fit()
    Trainer(cfg("resumed")).fit(stop_after=1)
    rank = dist.get_rank()
    torch.manual_seed(1234 + rank)  # a restarted process has none of the interrupted one's RNG state
    np.random.seed(99 + rank)
    random.seed(7 + rank)
    resumed = Trainer(cfg("resumed")).fit()
    for name, t in (("straight", straight), ("resumed", resumed)):
        torch.save(t.model.state_dict(), out / f"{name}{rank}.pt")


if __name__ == "__main__":
    torch.set_num_threads(1)
    mode, out = sys.argv[1], Path(sys.argv[2])
    dist.init_process_group("gloo")
    if mode not in ("eval", "resume", "all"):
        raise SystemExit(f"error: unknown mode {mode!r}")
    if mode in ("eval", "all"):  # "all": one start-up of two processes for both tests
        (out / "eval").mkdir(exist_ok=True)
        run_eval(out / "eval")
    if mode in ("resume", "all"):
        (out / "resume").mkdir(exist_ok=True)
        run_resume(out / "resume", sys.argv[3:])
    dist.barrier()
    dist.destroy_process_group()
