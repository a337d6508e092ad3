"""The trainer: target + auxiliary classes, BalCE / NS-CE, timm's AdamW with layer decay, warmup + cosine.

One function, `train(cfg)`, runs a whole experiment into `runs/<name>/`:
`config.yaml`, `metrics.jsonl` (one line per epoch: loss, lr, steps, images seen, val Overall /
Many / Medium / Few), the same curves as TensorBoard event files in `tensorboard/` (rank 0),
`checkpoints/last.pt` (every epoch; exact
resume: model, optimiser, scheduler and epoch, plus `rng-rank<r>.pt`, every RNG of each process),
`results.json` (test metrics of the target classifier). Under `torchrun` it runs DDP (NCCL on GPU,
gloo on CPU); each rank takes an interleaved share of every global batch, so N processes see the
same global batches as one, and evaluates its share of the val/test images. The input pipeline
(one DataLoader per run, uint8 batches, undecodable files skipped and counted) is `ltkit.loader`.

The compute budget is `steps` optimizer steps (or `epochs` whole epochs, the paper's protocol):
with `steps`, the epoch count is ceil(steps / steps per epoch), the last epoch stops at the budget,
and warmup + cosine are laid over exactly `steps`. Every run works at `threads` CPU threads
(`ltkit.rng.pinned_threads`), so its digits do not follow the caller's `OMP_NUM_THREADS`.
"""
from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import math
import os
import time
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch
import torch.distributed as dist

import torch.nn as nn
from timm.data import FastCollateMixup, Mixup
from timm.data.mixup import mixup_target
from timm.optim import create_optimizer_v2
from torch.utils.tensorboard import SummaryWriter
from tqdm.auto import tqdm

from ltkit import encoder, evaluate, models
from ltkit.auxiliary import build_aux
from ltkit.config import Config, check_same_recipe, config_yaml
from ltkit.data import TransformedSet
from ltkit.data.datasets import build_target_data
from ltkit.errors import ConfigError, UserError
from ltkit.io import append_jsonl, atomic_save, atomic_write_text
from ltkit.loader import Normalize, build_loader, split_normalize
from ltkit.losses import NS_MODES, NS_PAIRS, build_loss
from ltkit.rng import pinned_threads, rng_state, seed_everything, set_rng_state
from ltkit.sampling import AUX_SAMPLING, EpochSampler, class_counts
from ltkit.world import World

log = logging.getLogger(__name__)

LOG_EVERY = 50  # steps between progress-bar loss updates (each one a host-device sync)

# ---------------------------------------------------------------------------------------------
# distributed helpers


def checked_device(text: str) -> torch.device:
    """`device=` as a torch device that exists here, or a UserError naming the setting."""
    try:
        device = torch.device(text)
    except RuntimeError:
        raise UserError(f"device={text!r}: expected cpu, cuda, cuda:N or another torch device") from None
    if device.type == "cuda":
        n = torch.cuda.device_count()
        if (device.index or 0) >= n:
            raise UserError(f"device={text!r}: this machine has {n} CUDA device(s)")
    return device


def _dist_setup(cfg: Config) -> tuple[int, int, torch.device]:
    """(rank, world size, device); initialises the process group under torchrun."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    device = run_device(cfg)
    if world_size > 1 and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend)
        if device.type == "cuda":
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
            torch.cuda.set_device(device)
    return rank, world_size, device


def run_device(cfg: Config) -> torch.device:
    """`device=` checked, or the first GPU when there is one, else the CPU."""
    if cfg.device:
        return checked_device(cfg.device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@contextlib.contextmanager
def cpu_deterministic(device: torch.device) -> Iterator[None]:
    """On the CPU: deterministic kernels where torch has them (a warning where not) inside the block, restored after.

    A CPU run repeats bit for bit at a fixed thread count (`threads`, pinned around all the
    Trainer's work); another count changes the order of float sums, which training amplifies.
    GPUs keep their fast kernels. The flag is process-wide, so it is restored on the way out:
    a notebook kernel that trains and then does anything else gets its own setting back.
    """
    if device.type != "cpu":
        yield
        return
    old, warn_only = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(old, warn_only=warn_only)


def check_training(cfg: Config) -> None:
    """Refuse impossible or meaningless training settings, naming the key (a ConfigError)."""
    choices = {"ns_mode": NS_MODES, "ns_pairs": NS_PAIRS, "aux_sampling": AUX_SAMPLING, "head_norm": (None, "bn")}
    for key, allowed in choices.items():
        if getattr(cfg, key) not in allowed:
            raise ConfigError(f"{key}={getattr(cfg, key)!r}: expected one of {', '.join(map(str, allowed))}")
    if cfg.steps is not None and cfg.steps < 1:
        raise ConfigError(f"steps={cfg.steps}: a budget is at least 1 optimizer step (or null: epochs decide)")
    if cfg.warmup_steps is not None and cfg.warmup_steps < 0:
        raise ConfigError(f"warmup_steps={cfg.warmup_steps}: expected >= 0 (or null: warmup_epochs decide)")
    if cfg.head_warmup_epochs < 0:
        raise ConfigError(f"head_warmup_epochs={cfg.head_warmup_epochs}: expected >= 0")
    if cfg.ns_below is not None and cfg.ns_below < 1:
        raise ConfigError(f"ns_below={cfg.ns_below}: expected a training-image count >= 1, or null for every target")
    variant = cfg.ns_pairs != "both" or cfg.ns_below is not None or cfg.ns_aux_blind
    if cfg.loss != "nsce" and (cfg.ns_mode != "soft" or variant):
        raise ConfigError(f"ns_mode / ns_pairs / ns_below / ns_aux_blind select NS-CE variants; loss={cfg.loss!r}"
                          " has none (set loss=nsce or leave them at their defaults)")
    if cfg.ns_mode == "soft" and variant:
        raise ConfigError("ns_pairs / ns_below / ns_aux_blind are variants of the released hard mask: set ns_mode=mask")


@contextlib.contextmanager
def reproducible(cfg: Config) -> Iterator[None]:
    """torch's CPU threads pinned to `cfg.threads` and deterministic CPU kernels inside the block, both restored after."""
    with pinned_threads(cfg.threads), cpu_deterministic(run_device(cfg)):
        yield


def pinned(method: Callable) -> Callable:
    """Run a Trainer method under `reproducible(cfg)`."""
    @functools.wraps(method)
    def run(self, *args, **kwargs):
        with reproducible(self.cfg):
            return method(self, *args, **kwargs)
    return run


def lr_lambda(total_steps: int, warmup_steps: int):
    """Linear warmup, then cosine decay to zero, as a LambdaLR factor."""
    def f(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        t = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, t)))
    return f


# ---------------------------------------------------------------------------------------------
# the named parts


def build_model(cfg: Config, num_classes: int, world: World | None, rank: int = 0, world_size: int = 1) -> nn.Module:
    """The timm backbone with L + K outputs, initialised from `cfg.pretrained` (the same on every rank)."""
    pretrained = True if cfg.pretrained == "hf" else cfg.pretrained
    if world_size > 1 and isinstance(pretrained, str) and pretrained.partition(":")[0] == "pool":
        if rank == 0:  # rank 0 trains the cached encoder once, the rest wait
            encoder.resolve_pretrained(pretrained, world, cfg.model)
        dist.barrier()
    extra = {"drop_path_rate": cfg.drop_path} if cfg.drop_path else {}
    try:
        model = models.create_model(cfg.model, num_classes, img_size=cfg.img_size,
                                    pretrained=encoder.resolve_pretrained(pretrained, world, cfg.model), **extra)
    except TypeError as e:
        if extra and "drop_path_rate" in str(e):
            raise ConfigError(f"drop_path={cfg.drop_path}: model {cfg.model!r} has no drop path (stochastic depth);"
                            " set drop_path=0") from None
        raise
    if cfg.head_norm == "bn":
        models.add_head_norm(model)
    return model.to(memory_format=torch.channels_last) if cfg.channels_last else model


def build_transforms(cfg: Config, model: nn.Module) -> tuple[Callable, Callable]:
    """(train, eval) transforms; without `augment` training sees the eval transform."""
    eval_tf = models.transforms(model, train=False)
    if not cfg.augment:
        return eval_tf, eval_tf
    return models.transforms(model, train=True, randaugment=cfg.randaugment, color_jitter=cfg.color_jitter), eval_tf


def build_mixup(cfg: Config, num_classes: int, collate: bool = False) -> Mixup | FastCollateMixup | None:
    """timm's Mixup / CutMix (with label smoothing), or None when both are off.

    collate=True: the `FastCollateMixup` that mixes uint8 batches in the loader's workers (timm's recipe).
    """
    if cfg.mixup <= 0 and cfg.cutmix <= 0:
        return None
    kind = FastCollateMixup if collate else Mixup
    return kind(mixup_alpha=cfg.mixup, cutmix_alpha=cfg.cutmix, label_smoothing=cfg.label_smoothing,
                num_classes=num_classes)


def learning_rate(cfg: Config) -> float:
    """`lr`, or with `blr` the batch-scaled rule of MAE / LiVT: blr x effective batch / 256."""
    if cfg.blr is None:
        return cfg.lr
    return cfg.blr * cfg.batch_size * cfg.accum_steps / 256


def build_optimizer(cfg: Config, model: nn.Module) -> torch.optim.Optimizer:
    """timm's AdamW, or SGD with momentum (`optimizer: sgd`, the CIFAR ResNet recipe): no weight decay on norms,
    biases and embeddings; layer-wise lr decay with `layer_decay`.

    timm keeps a group's layer scale in `lr_scale` for its own schedulers; ltkit's LambdaLR scales
    each group's initial lr, so the scale is applied here once.
    """
    lr = learning_rate(cfg)
    if cfg.optimizer not in ("adamw", "sgd"):
        raise UserError(f"optimizer={cfg.optimizer!r}: expected adamw or sgd")
    if cfg.optimizer == "adamw":
        kind, extra = "adamw", {"betas": tuple(cfg.betas)}
    else:  # timm's "momentum": SGD with momentum, without Nesterov, as the CIFAR ResNet papers train
        kind, extra = "momentum", {"momentum": cfg.momentum}
    opt = create_optimizer_v2(model, kind, lr=lr, weight_decay=cfg.weight_decay, layer_decay=cfg.layer_decay, **extra)
    for group in opt.param_groups:
        group["lr"] = lr * group.get("lr_scale", 1.0)
    return opt


def total_steps(cfg: Config, steps_per_epoch: int) -> int:
    """The run's optimizer steps: `steps`, else `epochs` whole epochs."""
    return cfg.steps or cfg.epochs * steps_per_epoch


def build_scheduler(cfg: Config, optimizer: torch.optim.Optimizer, steps_per_epoch: int):
    """Per-step linear warmup over `warmup_steps` (or `warmup_epochs`), then cosine decay to zero at the last step."""
    warm = cfg.warmup_steps if cfg.warmup_steps is not None else int(cfg.warmup_epochs * steps_per_epoch)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(total_steps(cfg, steps_per_epoch), max(1, warm)))


def wrap_distributed(model: nn.Module, device: torch.device) -> tuple[nn.Module, nn.Module]:
    """(model, the module to call): DDP with SyncBatchNorm on GPU; BN statistics stay per process on CPU."""
    ids = None
    if device.type == "cuda":
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        ids = [device.index]
    return model, nn.parallel.DistributedDataParallel(model, device_ids=ids)


# ---------------------------------------------------------------------------------------------
# the loop


class Trainer:
    """Holds the pieces of one run; `fit()` trains with resume, `evaluate()` writes results.json."""

    def __init__(self, cfg: Config):
        self.cfg = cfg
        check_training(cfg)
        self._setup()

    @pinned
    def _setup(self) -> None:
        """Data, model, loss, optimiser, schedule and loader (with the pool encoder's training, if any)."""
        cfg = self.cfg
        self.rank, self.world_size, self.device = _dist_setup(cfg)
        if cfg.batch_size % (2 * self.world_size):
            raise UserError(f"batch_size={cfg.batch_size} must be divisible by 2 x {self.world_size} processes"
                            " (mixup pairs samples within a local batch)")
        seed_everything(cfg.seed)
        self.data, self.world = build_target_data(cfg)
        L = self.L = self.data.num_classes
        self.aux_images, self.aux_parent, self.aux_names = build_aux(cfg, self.data, self.world)
        K = self.K = len(self.aux_parent)
        aux_counts = self.aux_images.counts(L + K)[L:] if K else np.zeros(0, int)
        self.sampler = EpochSampler(len(self.data.train), self.aux_images.labels if K else [], cap=cfg.aux_cap,
                                    seed=cfg.seed, rank=self.rank, world_size=self.world_size, drop_last=True,
                                    multiple_of=cfg.batch_size * cfg.accum_steps, rule=cfg.aux_sampling)
        self.class_counts = class_counts(self.data.train_counts, aux_counts, cfg.aux_cap, cfg.aux_sampling)
        self.model = build_model(cfg, L + K, self.world, self.rank, self.world_size).to(self.device)
        if self.world_size > 1:  # same init on every rank (above); different augmentation draws from here on
            seed_everything(cfg.seed + 1000 * self.rank)
        self.train_tf, self.eval_tf = build_transforms(cfg, self.model)
        self.loss_fn = build_loss(cfg.loss, self.class_counts, self.aux_parent, L, cfg.lambda_s, cfg.tau, mode=cfg.ns_mode,
                                  pairs=cfg.ns_pairs, below=cfg.ns_below, aux_blind=cfg.ns_aux_blind).to(self.device)
        head = {id(p) for p in self.model.get_classifier().parameters()}
        self.encoder_params = [p for p in self.model.parameters() if id(p) not in head]  # frozen in head warm-up
        self.net = self.model
        if self.world_size > 1:
            self.model, self.net = wrap_distributed(self.model, self.device)
        if cfg.compile:
            self.net = torch.compile(self.net)
        self.optimizer = build_optimizer(cfg, self.model)
        self.steps_per_epoch = self.sampler.epoch_size() // (cfg.batch_size * cfg.accum_steps)
        if self.steps_per_epoch == 0:
            raise UserError(f"an epoch has fewer than batch_size x accum_steps = {cfg.batch_size * cfg.accum_steps}"
                            " images; lower batch_size")
        self.total_steps = total_steps(cfg, self.steps_per_epoch)
        self.epochs = -(-self.total_steps // self.steps_per_epoch)  # the last one partial when steps says so
        if cfg.head_warmup_epochs >= self.epochs:
            raise ConfigError(f"head_warmup_epochs={cfg.head_warmup_epochs}: the run has {self.epochs} epochs;"
                              " the encoder would never train")
        self.scheduler = build_scheduler(cfg, self.optimizer, self.steps_per_epoch)
        self.loader, self.normalize, self.mixup = self._build_loader()
        self.epoch = self.step = self.images_seen = 0

    # --- data ---------------------------------------------------------------------------------

    def _build_loader(self):
        """(the run's DataLoader, its on-device normalisation, the Mixup left to the loop or None).

        Transforms that end in ToTensor + Normalize hand uint8 images to the loader and the device
        normalises. With workers, uint8 batches are mixed there too (FastCollateMixup, timm's recipe);
        without, Mixup runs on the normalised batch in the loop (vectorised, no per-image loop).
        """
        cfg, n = self.cfg, self.L + self.K
        tf, mean, std = split_normalize(self.train_tf)
        sets = [TransformedSet(self.data.train, tf)] + ([TransformedSet(self.aux_images, tf)] if self.K else [])
        in_loader = mean is not None and cfg.num_workers > 0
        loader = build_loader(torch.utils.data.ConcatDataset(sets), self.sampler, cfg.batch_size // self.world_size,
                              cfg.seed, cfg.num_workers, pin_memory=self.device.type == "cuda",
                              mixup=build_mixup(cfg, n, collate=True) if in_loader else None)
        normalize = Normalize(mean, std, self.device, cfg.channels_last)
        return loader, normalize, None if in_loader else build_mixup(cfg, n)

    # --- checkpoints --------------------------------------------------------------------------

    @property
    def ckpt_path(self) -> Path:
        return self.cfg.run_dir / "checkpoints" / "last.pt"

    def rng_path(self, rank: int) -> Path:
        return self.ckpt_path.parent / f"rng-rank{rank}.pt"

    def save(self) -> None:
        """Checkpoint after an epoch, atomically: each rank its RNG states, then rank 0 the rest."""
        atomic_save(self.rng_path(self.rank), lambda f: torch.save({"epoch": self.epoch, "rng": rng_state()}, f))
        if self.world_size > 1:  # every RNG file of this epoch exists before last.pt names the epoch
            dist.barrier()
        if self.rank != 0:
            return
        state = {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                 "scheduler": self.scheduler.state_dict(), "epoch": self.epoch, "step": self.step,
                 "images_seen": self.images_seen, "world_size": self.world_size,
                 "aux_parent": self.aux_parent, "config": dataclasses.asdict(self.cfg)}
        atomic_save(self.ckpt_path, lambda f: torch.save(state, f))

    def resume(self) -> bool:
        """Load the last checkpoint if there is one (refusing other settings first); True when resumed."""
        if not self.ckpt_path.exists():
            return False
        # on the CPU first: RNG states must stay CPU tensors; load_state_dict moves the rest
        ck = torch.load(self.ckpt_path, map_location="cpu", weights_only=False)
        check_same_recipe(ck["config"], self.cfg, self.ckpt_path)
        self.model.load_state_dict(ck["model"])
        self.optimizer.load_state_dict(ck["optimizer"])
        self.scheduler.load_state_dict(ck["scheduler"])
        self.epoch = ck["epoch"]
        self.step = ck.get("step", self.epoch * self.steps_per_epoch)
        self.images_seen = ck.get("images_seen", self.step * self.cfg.batch_size * self.cfg.accum_steps)
        path = self.rng_path(self.rank)
        rng = torch.load(path, map_location="cpu", weights_only=False) if path.exists() else None
        if rng is None or rng["epoch"] != self.epoch or ck.get("world_size", 1) != self.world_size:
            log.warning("%s: no RNG state of rank %d at epoch %d (saved with %s processes); the resumed run's "
                        "random draws differ from an uninterrupted one", path, self.rank, self.epoch,
                        ck.get("world_size", "?"))
        else:
            set_rng_state(rng["rng"])
        return True

    # --- training -----------------------------------------------------------------------------

    def head_only(self) -> bool:
        """Whether this epoch is one of the head-only warm-up epochs (`head_warmup_epochs`)."""
        return self.epoch < self.cfg.head_warmup_epochs

    def train_epoch(self) -> dict:
        """One epoch (cut at the step budget); returns mean loss, lr, throughput, steps and files skipped.

        Head warm-up: the encoder is in eval mode (BatchNorm statistics and drop path frozen too) and
        its gradients are dropped before each step, so AdamW leaves it (weight decay included) alone.
        The backward still runs through it: simple under DDP, and it is a few epochs of the budget.
        """
        self.net.train()
        cfg = self.cfg
        head_only = self.head_only()
        if head_only:
            self.model.eval()
            self.model.get_classifier().train()
        self.sampler.set_epoch(self.epoch)
        amp = cfg.amp and self.device.type == "cuda"
        t0, seen, skipped = time.time(), 0, 0
        total = torch.zeros((), device=self.device)  # summed on the device: no sync per step
        bar = tqdm(self.loader, desc=f"epoch {self.epoch + 1}/{self.epochs}", leave=False,
                   disable=not cfg.progress or self.rank != 0)
        self.optimizer.zero_grad(set_to_none=True)
        step0 = self.step
        for i, (x, y, labels, bad) in enumerate(bar):
            if self.step >= self.total_steps:  # the budget ends inside this epoch
                break
            x, y = self.normalize(x), y.to(self.device, non_blocking=True)
            labels = labels.to(self.device, non_blocking=True)  # pre-mix: the hard NS-CE mask is chosen by them
            if y.ndim == 1 and self.mixup is not None:  # soft targets: mixed in the loader already
                x, y = self.mixup(x, y)
            elif y.ndim == 1 and cfg.label_smoothing > 0:  # timm's Mixup applies it otherwise
                y = mixup_target(y, self.L + self.K, 1.0, cfg.label_smoothing)
            last_micro = (i + 1) % cfg.accum_steps == 0
            sync = self.world_size == 1 or last_micro
            ctx = self.net.no_sync() if not sync else contextlib.nullcontext()
            with ctx, torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=amp):
                loss = self.loss_fn(self.net(x), y, labels) / cfg.accum_steps
                loss.backward()
            if last_micro:
                if head_only:
                    for p in self.encoder_params:
                        p.grad = None
                self.optimizer.step()
                self.optimizer.zero_grad(set_to_none=True)
                self.scheduler.step()
                self.step += 1
            total += loss.detach().float() * (cfg.accum_steps * len(x))
            seen += len(x)
            skipped += bad
            if not bar.disable and (i + 1) % LOG_EVERY == 0:
                bar.set_postfix(loss=f"{total.item() / seen:.3f}")
        sums = torch.stack([total, torch.tensor(float(seen), device=self.device),
                            torch.tensor(float(skipped), device=self.device)])
        if self.world_size > 1:
            dist.all_reduce(sums)
        total, seen, skipped = sums.tolist()  # the epoch's one host-device sync
        self.images_seen += int(seen)
        dt = time.time() - t0
        return {"loss": total / max(seen, 1), "lr": max(self.scheduler.get_last_lr()),
                "images_per_s": seen / dt, "seconds": dt, "skipped_images": int(skipped),
                "steps": self.step, "epoch_steps": self.step - step0, "images_seen": self.images_seen,
                "head_only": head_only}

    def val_metrics(self) -> dict | None:
        """Many/Medium/Few/Overall on the val split, direct classifier (rank 0); None without one: test is for the end."""
        if self.data.val is None or len(self.data.val) == 0:
            return None
        return evaluate.evaluate(self.model, self.data.val, self.data.train_counts, self.L, self.eval_tf,
                                 many=self.cfg.many, few=self.cfg.few, device=self.device,
                                 num_workers=self.cfg.num_workers, shard=self.world_size > 1)

    @pinned
    def fit(self, stop_after: int | None = None) -> "Trainer":
        """Train to the step budget, resuming from the last checkpoint; writes config, metrics and curves.

        `stop_after` ends the call after that many epochs in all (an interruption, for tests).
        """
        cfg = self.cfg
        resumed = self.resume()  # refuses other settings before config.yaml is touched
        writer = None
        if self.rank == 0:
            atomic_write_text(cfg.run_dir / "config.yaml", config_yaml(cfg))
            if resumed:
                log.info("resumed %s at epoch %d", cfg.run_dir, self.epoch)
            # purge_step: an epoch logged after the checkpoint by an interrupted run is dropped, not doubled
            writer = SummaryWriter(cfg.run_dir / "tensorboard", purge_step=self.step if resumed else None)
        try:
            while self.epoch < min(self.epochs, stop_after or self.epochs):
                row = {"epoch": self.epoch + 1, **self.train_epoch()}
                if row["skipped_images"]:
                    log.warning("epoch %d: %d files failed to decode and were replaced", row["epoch"],
                                row["skipped_images"])
                self.epoch += 1
                if cfg.eval_every and (self.epoch % cfg.eval_every == 0 or self.epoch == self.epochs):
                    m = self.val_metrics()  # every rank extracts its share; rank 0 gets the metrics
                    if m is not None:
                        row.update({f"val_{k}": m[k] for k in ("overall", "many", "medium", "few")})
                self.save()
                if self.rank == 0:
                    append_jsonl(cfg.run_dir / "metrics.jsonl", row)
                    log_curves(writer, row)
        finally:
            if writer is not None:
                writer.close()
        return self

    def compute(self) -> dict:
        """What the run cost and ran at, for its results: steps, images seen, epochs, CPU threads."""
        return {"steps": self.step, "images_seen": self.images_seen, "epochs": self.epoch,
                "steps_per_epoch": self.steps_per_epoch, "threads": torch.get_num_threads()}

    @pinned
    def evaluate(self) -> dict | None:
        """Test metrics with cfg.classifier; writes results.json. Under DDP every rank extracts its
        share of the features and rank 0 gets the results (None elsewhere)."""
        res = evaluate.evaluate(self.model, self.data.test, self.data.train_counts, self.L, self.eval_tf,
                                classifier=self.cfg.classifier, train=self.data.train, many=self.cfg.many,
                                few=self.cfg.few, device=self.device, num_workers=self.cfg.num_workers,
                                shard=self.world_size > 1)
        if res is None:
            return None
        res["num_aux_classes"] = int(self.K)
        res["num_aux_images"] = int(len(self.aux_images)) if self.K else 0
        res.update(val_split(self.data), **self.compute())
        if self.rank == 0:
            evaluate.write_results(self.cfg.run_dir, res, dataclasses.asdict(self.cfg))
        return res


CURVES = ("loss", "lr", "val_overall", "val_many", "val_medium", "val_few")  # what TensorBoard gets per epoch


def log_curves(writer: SummaryWriter | None, row: dict) -> None:
    """One epoch's `metrics.jsonl` row as TensorBoard scalars at its optimizer step (`train/loss`, `val/overall`, ...)."""
    if writer is None:
        return
    for key in CURVES:
        if key in row:
            group, _, name = key.rpartition("_")
            writer.add_scalar(f"{group or 'train'}/{name}", row[key], row["steps"])
    writer.add_scalar("train/images_seen", row["images_seen"], row["steps"])
    writer.flush()


def val_split(data) -> dict:
    """Where the run's val split came from, for its results and summary."""
    n = len(data.val) if data.val is not None else 0
    return {"val_source": data.val_source if n else "none", "val_images": n}


def train(cfg: Config) -> dict | None:
    """Fit (resuming if possible) and evaluate one run; returns the test results (None on ranks > 0)."""
    t = Trainer(cfg).fit()
    res = t.evaluate()
    if dist.is_initialized():
        dist.barrier()
    return res
