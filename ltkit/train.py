"""The trainer: target + auxiliary classes, BalCE / NS-CE, AdamW with warmup + cosine, timm augmentation.

One function, `train(cfg)`, runs a whole experiment into `runs/<name>/`:
`config.yaml`, `metrics.jsonl` (one line per epoch), `checkpoints/last.pt` (every epoch; exact
resume: model, optimiser, scheduler, sampler epoch and every RNG), `results.json` (test metrics of
the target classifier). Under `torchrun` it runs DDP (NCCL on GPU, gloo on CPU); each rank takes an
interleaved share of every global batch, so N processes see the same global batches as one.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import math
import os
import random
import time
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from ltkit import data as ltdata
from ltkit.config import Config, check_same_recipe, config_yaml, load_config, neighbour_dir, recipe  # noqa: F401
from ltkit.io import append_jsonl, atomic_save, atomic_write_text


TrainConfig = Config  # the name this module had for it before ltkit.config


# ---------------------------------------------------------------------------------------------
# data


def build_target_data(cfg: TrainConfig):
    """The target dataset and, for the built-in world, the world itself (else None)."""
    name = cfg.dataset
    if name.startswith("builtin"):
        from ltkit.world import PRESETS, load_world

        if name not in PRESETS:
            raise ValueError(f"unknown built-in preset {name!r}; choose from {sorted(PRESETS)}")
        world = load_world(PRESETS[name])
        return ltdata.world_data(world), world
    if cfg.data_root is None:
        raise ValueError(f"dataset {name!r} needs data_root")
    if name == "imagenet-lt":
        return ltdata.load_imagenet_lt(cfg.data_root, cfg.splits_dir), None
    if name == "places-lt":
        return ltdata.load_places_lt(cfg.data_root, cfg.splits_dir), None
    if name == "inat18":
        root = Path(cfg.data_root)
        return ltdata.load_inat(root, cfg.inat_train_json or root / "train2018.json",
                                cfg.inat_val_json or root / "val2018.json"), None
    if name == "cifar100-lt":
        return ltdata.cifar100_lt(cfg.data_root, cfg.imbalance, cfg.seed), None
    if name == "folders":
        root = Path(cfg.data_root)
        return ltdata.load_image_folders("folders", root / "train", root / "test",
                                         root / "val" if (root / "val").is_dir() else None), None
    raise ValueError(f"unknown dataset {name!r}")


def build_aux(cfg: TrainConfig, target: ltdata.LTData, world):
    """Auxiliary images (labels L..L+K-1), aux_parent (K,) and names; (None, empty, []) without aux data."""
    from ltkit import sampling
    from ltkit.budget import aux_budget
    from ltkit.neighbours import load_neighbour_map

    L = target.num_classes
    if cfg.aux == "none":
        return None, np.zeros(0, dtype=np.int64), []
    if cfg.aux not in ("neighbours", "random"):
        raise ValueError(f"aux={cfg.aux!r}: expected none, neighbours or random")
    csv = Path(cfg.neighbours_csv) if cfg.neighbours_csv else default_neighbours_csv(cfg)
    if not csv.exists() and (world is None or cfg.neighbours.backend != "taxonomy"):
        raise FileNotFoundError(f"{csv}: no neighbour map; run `python -m ltkit neighbours` with the same config first")
    if not csv.exists() and int(os.environ.get("RANK", "0")) == 0:
        from ltkit.neighbours import TaxonomyBackend, search_neighbours

        search_neighbours(TaxonomyBackend(world.taxonomy, seed=cfg.seed), target.class_names, target.train_counts,
                          csv.parent, k=cfg.k, ratio=cfg.aux_ratio, many=cfg.many, few=cfg.few)
    if dist.is_initialized():  # every rank waits here, then reads what rank 0 wrote
        dist.barrier()
    nmap = load_neighbour_map(csv, L)
    keep = sampling.select_auxiliary(nmap.aux_parent, aux_budget(target.train_counts, cfg.k, cfg.aux_ratio,
                                                                 cfg.many, cfg.few))
    names = [n for n, k in zip(nmap.aux_names, keep) if k]
    parent = nmap.aux_parent[keep]
    if cfg.aux == "random":
        names = random_categories(world, target.class_names, len(names), cfg.seed)
    if world is not None and cfg.aux_images is None:
        images = _pool_images(world, names, L)
    elif cfg.aux_images is None:
        raise ValueError(f"aux={cfg.aux} on {cfg.dataset} needs aux_images: a folder of <aux name>/<image> files")
    else:
        images = _folder_images(Path(cfg.aux_images), names, L)
    return images, parent, names


def default_neighbours_csv(cfg: TrainConfig) -> Path:
    """The neighbour map when none is given: `python -m ltkit neighbours` writes it there with the same config."""
    return neighbour_dir(cfg) / "neighbours.csv"


def random_categories(world, target_names: list[str], n: int, seed: int) -> list[str]:
    """RD: n categories drawn uniformly from the world's classes outside the label set.

    They take the places (and parents) of the n neighbour categories, so RD and SD get the same
    number of auxiliary classes and images per class; only the choice of categories differs.
    """
    if world is None:
        raise ValueError("aux=random draws categories from the built-in world; for a real dataset, crawl random "
                         "categories and pass their neighbours_csv with aux=neighbours")
    taken = set(target_names)
    pool = [c for c in world.all_names if c not in taken]
    if n > len(pool):
        raise ValueError(f"aux=random needs {n} categories but the world has {len(pool)} outside the label set")
    rng = np.random.default_rng([seed, 7])
    return [pool[i] for i in rng.choice(len(pool), size=n, replace=False)]


def _pool_images(world, names: list[str], L: int) -> ltdata.ArrayImages:
    """The world's pool items a search for each auxiliary name returns (unfiltered)."""
    index = {n: i for i, n in enumerate(world.all_names)}
    missing = [n for n in names if n not in index]
    if missing:
        raise ValueError(f"auxiliary names not in the world: {missing[:5]}")
    sel, labels = [], []
    for k, n in enumerate(names):
        idx = np.flatnonzero(world.pool_query == index[n])
        sel.append(idx)
        labels.append(np.full(len(idx), L + k))
    sel = np.concatenate(sel) if sel else np.zeros(0, int)
    return ltdata.ArrayImages(world.pool_images[sel], np.concatenate(labels) if labels else [])


def _folder_images(root: Path, names: list[str], L: int) -> ltdata.FileImages:
    """Crawled images in `root/<aux name>/`; a kept name without images is an error."""
    paths, labels = [], []
    for k, n in enumerate(names):
        folder = root / n
        files = sorted(p for p in folder.glob("*") if p.suffix.lower() in ltdata.IMAGE_EXTENSIONS)
        if not files:
            raise FileNotFoundError(f"{folder}: no images for auxiliary class {n!r}")
        paths += [str(p.relative_to(root)) for p in files]
        labels += [L + k] * len(files)
    return ltdata.FileImages(root, paths, labels)


# ---------------------------------------------------------------------------------------------
# distributed helpers


def _dist_setup(cfg: TrainConfig) -> tuple[int, int, torch.device]:
    """(rank, world size, device); initialises the process group under torchrun."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    if cfg.device:
        device = torch.device(cfg.device)
    else:
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if world_size > 1 and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend)
        if device.type == "cuda":
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
            torch.cuda.set_device(device)
    return rank, world_size, device


def seed_everything(seed: int) -> None:
    """Python, numpy and torch RNGs from one seed."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state() -> dict:
    """Every RNG the training loop draws from (augmentations, mixup, dropout)."""
    s = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        s["cuda"] = torch.cuda.get_rng_state_all()
    return s


def set_rng_state(s: dict) -> None:
    """Restore what `rng_state` saved."""
    random.setstate(s["python"])
    np.random.set_state(s["numpy"])
    torch.set_rng_state(s["torch"])
    if "cuda" in s and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(s["cuda"])


def lr_lambda(total_steps: int, warmup_steps: int):
    """Linear warmup, then cosine decay to zero, as a LambdaLR factor."""
    def f(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        t = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, t)))
    return f


# ---------------------------------------------------------------------------------------------
# the loop


class Trainer:
    """Holds the pieces of one run; `fit()` trains with resume, `evaluate()` writes results.json."""

    def __init__(self, cfg: TrainConfig):
        from ltkit import losses, models, sampling

        self.cfg = cfg
        self.rank, self.world_size, self.device = _dist_setup(cfg)
        if cfg.batch_size % (2 * self.world_size):
            raise ValueError(f"batch_size={cfg.batch_size} must be divisible by 2 x {self.world_size} processes"
                             " (mixup pairs samples within a local batch)")
        seed_everything(cfg.seed)
        self.data, self.world = build_target_data(cfg)
        L = self.L = self.data.num_classes
        self.aux_images, self.aux_parent, self.aux_names = build_aux(cfg, self.data, self.world)
        K = self.K = len(self.aux_parent)
        aux_counts = self.aux_images.counts(L + K)[L:] if K else np.zeros(0, int)
        self.sampler = sampling.EpochSampler(len(self.data.train), self.aux_images.labels if K else [],
                                             cap=cfg.aux_cap, seed=cfg.seed)
        self.class_counts = sampling.class_counts(self.data.train_counts, aux_counts, cfg.aux_cap)
        pretrained = True if cfg.pretrained == "hf" else cfg.pretrained
        if pretrained == "pool" and self.world_size > 1:  # rank 0 trains the cached encoder once, the rest wait
            if self.rank == 0:
                models.pool_pretrained(self.world, model_name=cfg.model)
            dist.barrier()
        self.model = models.create_model(cfg.model, L + K, img_size=cfg.img_size, pretrained=pretrained,
                                         world=self.world).to(self.device)
        if self.world_size > 1:  # same init on every rank (above); different augmentation draws from here on
            seed_everything(cfg.seed + 1000 * self.rank)
        self.eval_tf = models.transforms(self.model, train=False)
        self.train_tf = models.transforms(self.model, train=True, randaugment=cfg.randaugment,
                                          color_jitter=cfg.color_jitter) if cfg.augment \
            else self.eval_tf
        self.loss_fn = losses.build_loss(cfg.loss, self.class_counts, self.aux_parent, L, cfg.lambda_s,
                                         cfg.tau).to(self.device)
        self.mixup = None
        if cfg.mixup > 0 or cfg.cutmix > 0:
            from timm.data import Mixup

            self.mixup = Mixup(mixup_alpha=cfg.mixup, cutmix_alpha=cfg.cutmix, label_smoothing=cfg.label_smoothing,
                               num_classes=L + K)
        self.net = self.model
        if self.world_size > 1:
            ids = None
            if self.device.type == "cuda":  # SyncBatchNorm needs a GPU; on CPU, BN statistics stay per process
                self.model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(self.model)
                ids = [self.device.index]
            self.net = torch.nn.parallel.DistributedDataParallel(self.model, device_ids=ids)
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=cfg.lr, betas=cfg.betas,
                                           weight_decay=cfg.weight_decay)
        self.steps_per_epoch = len(self.sampler.indices(0)) // (cfg.batch_size * cfg.accum_steps)
        if self.steps_per_epoch == 0:
            raise ValueError(f"an epoch has fewer than batch_size x accum_steps = {cfg.batch_size * cfg.accum_steps}"
                             " images; lower batch_size")
        warm = int(cfg.warmup_epochs * self.steps_per_epoch)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lr_lambda(cfg.epochs * self.steps_per_epoch, max(1, warm)))
        self.epoch = 0

    # --- data ---------------------------------------------------------------------------------

    def _dataset(self):
        sets = [ltdata.TransformedSet(self.data.train, self.train_tf)]
        if self.K:
            sets.append(ltdata.TransformedSet(self.aux_images, self.train_tf))
        return torch.utils.data.ConcatDataset(sets)

    def _loader(self, epoch: int):
        """This rank's batches of the epoch: an interleaved share of every global batch."""
        order = self.sampler.indices(epoch)
        n = (len(order) // (self.cfg.batch_size * self.cfg.accum_steps)) * self.cfg.batch_size * self.cfg.accum_steps
        mine = order[:n][self.rank::self.world_size]
        return torch.utils.data.DataLoader(self._dataset(), batch_size=self.cfg.batch_size // self.world_size,
                                           sampler=mine.tolist(), num_workers=self.cfg.num_workers,
                                           drop_last=True, pin_memory=self.device.type == "cuda")

    # --- checkpoints --------------------------------------------------------------------------

    @property
    def ckpt_path(self) -> Path:
        return self.cfg.run_dir / "checkpoints" / "last.pt"

    def save(self) -> None:
        """Checkpoint after an epoch (rank 0 only), atomically."""
        if self.rank != 0:
            return
        state = {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                 "scheduler": self.scheduler.state_dict(), "epoch": self.epoch, "rng": rng_state(),
                 "aux_parent": self.aux_parent, "config": dataclasses.asdict(self.cfg)}
        atomic_save(self.ckpt_path, lambda f: torch.save(state, f))

    def resume(self) -> bool:
        """Load the last checkpoint if there is one; True when resumed."""
        if not self.ckpt_path.exists():
            return False
        # on the CPU first: RNG states must stay CPU tensors; load_state_dict moves the rest
        ck = torch.load(self.ckpt_path, map_location="cpu", weights_only=False)
        check_same_recipe(ck["config"], self.cfg, self.ckpt_path)
        self.model.load_state_dict(ck["model"])
        self.optimizer.load_state_dict(ck["optimizer"])
        self.scheduler.load_state_dict(ck["scheduler"])
        self.epoch = ck["epoch"]
        set_rng_state(ck["rng"])
        return True

    # --- training -----------------------------------------------------------------------------

    def train_epoch(self) -> dict:
        """One epoch; returns mean loss, lr and throughput."""
        from tqdm.auto import tqdm

        self.net.train()
        cfg, loader = self.cfg, self._loader(self.epoch)
        amp = cfg.amp and self.device.type == "cuda"
        t0, seen, total = time.time(), 0, 0.0
        bar = tqdm(loader, desc=f"epoch {self.epoch + 1}/{cfg.epochs}", leave=False,
                   disable=not cfg.progress or self.rank != 0)
        self.optimizer.zero_grad(set_to_none=True)
        for i, (x, y) in enumerate(bar):
            x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
            if self.mixup is not None:
                x, y = self.mixup(x, y)
            elif cfg.label_smoothing > 0:  # timm's Mixup applies it otherwise
                from timm.data.mixup import mixup_target

                y = mixup_target(y, self.L + self.K, 1.0, cfg.label_smoothing)
            last_micro = (i + 1) % cfg.accum_steps == 0
            sync = self.world_size == 1 or last_micro
            ctx = self.net.no_sync() if not sync else contextlib.nullcontext()
            with ctx, torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=amp):
                loss = self.loss_fn(self.net(x), y) / cfg.accum_steps
                loss.backward()
            if last_micro:
                self.optimizer.step()
                self.optimizer.zero_grad(set_to_none=True)
                self.scheduler.step()
            total += loss.item() * cfg.accum_steps * len(x)
            seen += len(x)
            bar.set_postfix(loss=f"{total / seen:.3f}")
        dt = time.time() - t0
        return {"loss": total / max(seen, 1), "lr": self.scheduler.get_last_lr()[0],
                "images_per_s": seen * self.world_size / dt, "seconds": dt}

    def val_metrics(self) -> dict:
        """Many/Medium/Few/Overall on the val split (test when there is none), direct classifier."""
        from ltkit import evaluate

        split = self.data.val if self.data.val is not None else self.data.test
        return evaluate.evaluate(self.model, split, self.data.train_counts, self.L, self.eval_tf,
                                 many=self.cfg.many, few=self.cfg.few, device=self.device)

    def fit(self, stop_after: int | None = None) -> "Trainer":
        """Train to cfg.epochs, resuming from the last checkpoint; writes config and metrics.

        `stop_after` ends the call after that many epochs in all (an interruption, for tests).
        """
        cfg = self.cfg
        if self.rank == 0:
            atomic_write_text(cfg.run_dir / "config.yaml", config_yaml(cfg))
        if self.resume() and self.rank == 0:
            print(f"[train] resumed {cfg.run_dir} at epoch {self.epoch}")
        while self.epoch < min(cfg.epochs, stop_after or cfg.epochs):
            row = {"epoch": self.epoch + 1, **self.train_epoch()}
            self.epoch += 1
            if self.rank == 0 and cfg.eval_every and (self.epoch % cfg.eval_every == 0 or self.epoch == cfg.epochs):
                m = self.val_metrics()
                row.update({f"val_{k}": m[k] for k in ("overall", "many", "medium", "few")})
            self.save()
            if self.rank == 0:
                append_jsonl(cfg.run_dir / "metrics.jsonl", row)
        return self

    def evaluate(self) -> dict:
        """Test metrics with cfg.classifier; writes results.json (rank 0)."""
        from ltkit import evaluate

        res = evaluate.evaluate(self.model, self.data.test, self.data.train_counts, self.L, self.eval_tf,
                                classifier=self.cfg.classifier, train=self.data.train, many=self.cfg.many,
                                few=self.cfg.few, device=self.device)
        res["num_aux_classes"] = int(self.K)
        res["num_aux_images"] = int(len(self.aux_images)) if self.K else 0
        if self.rank == 0:
            evaluate.write_results(self.cfg.run_dir, res, dataclasses.asdict(self.cfg))
        return res


def train(cfg: TrainConfig) -> dict:
    """Fit (resuming if possible) and evaluate one run; returns the test results."""
    t = Trainer(cfg).fit()
    res = t.evaluate()
    if dist.is_initialized():
        dist.barrier()
    return res


def main(argv: list[str] | None = None) -> int:
    """`python -m ltkit train --config configs/builtin.yaml [key=value ...]`."""
    p = argparse.ArgumentParser(prog="python -m ltkit train", description=main.__doc__)
    p.add_argument("--config", help="YAML preset (configs/*.yaml)")
    p.add_argument("overrides", nargs="*", help="key=value overrides, e.g. loss=nsce aux=neighbours epochs=5")
    args = p.parse_args(argv)
    cfg = load_config(args.config, args.overrides)
    res = train(cfg)
    if int(os.environ.get("RANK", "0")) == 0:
        print(f"[train] {cfg.name}: overall {res['overall']:.3f}  many {res['many']:.3f}  "
              f"medium {res['medium']:.3f}  few {res['few']:.3f}  -> {cfg.run_dir / 'results.json'}")
    if dist.is_initialized():
        dist.destroy_process_group()
    return 0
