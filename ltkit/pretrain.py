"""The built-in world's pool-pretrained encoder: the offline stand-in for DINOv2 / CLIP.

A small timm model (`ltkit.models`) trained once, supervised, on the world's open pool and cached
under `cache_root()/encoders/`. Only the pool items a search for an *open* class returns reach it,
each labelled with its query class, so no target-class label and no target val/test image does
(`pretraining_set`), as no ImageNet-LT label reaches DINOv2 or CLIP. `ltkit.encoder` turns
`pretrained: pool[:...]` and the encoder spec `pool[:...]` into its file (`resolve_pretrained`). Apart
from `models.py` because it is a training recipe with its own cache key (`pool_settings`), not a way
of building a model.
"""
from __future__ import annotations

import hashlib
import json
import logging
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ltkit.errors import UserError
from ltkit.io import read_json, write_json
from ltkit.models import DEFAULT_WORLD_MODEL, create_model, data_config, is_vit, save_weights
from ltkit.paths import cache_root
from ltkit.rng import pinned_threads

log = logging.getLogger(__name__)

# bump when the training recipe below changes: it invalidates cached encoders.
# 2: labels of the open classes only (no target-class label, no target image); 1 used every class.
POOL_RECIPE_VERSION = 2
# torch threads the encoder trains with, whatever OMP_NUM_THREADS says: CPU kernels sum in another
# order at another thread count, so the weights (and every table built on them) would differ
PRETRAIN_THREADS = 1


def pool_settings(model_name: str = DEFAULT_WORLD_MODEL, epochs: int = 12, seed: int = 0, batch_size: int = 128,
                  lr: float | None = None, weight_decay: float | None = None, label_smoothing: float = 0.1,
                  optimizer: str | None = None, classes: str = "open") -> dict:
    """Every setting that changes the pool encoder's weights (its cache key hashes them).

    `classes`: which pool classes it trains on (`pretraining_set`); "open", the default, is left out
    of the key so that the encoders cached before the setting existed keep their files.

    CNNs: SGD-Nesterov, one-cycle to lr 0.6. Sweeps on the builtin pool with recipe 1 (all classes'
    labels; nearest-prototype accuracy on target val, 8 epochs of ltkit_cnn_small): lr 0.1 -> 0.31, 0.3 -> 0.68, 0.6 -> 0.82,
    1.0 -> 0.77; AdamW 4e-3 -> 0.58; 12 epochs at 0.6 -> 0.91 (random init: ~0.16). ViTs: AdamW 2e-3.
    """
    optimizer = optimizer or ("adamw" if is_vit(model_name) else "sgd")
    adamw = optimizer == "adamw"
    if classes not in PRETRAIN_CLASSES:
        raise UserError(f"pre-training classes={classes!r}: expected one of {', '.join(PRETRAIN_CLASSES)}")
    out = dict(model=model_name, epochs=epochs, seed=seed, batch_size=batch_size,
               lr=lr if lr is not None else (2e-3 if adamw else 0.6),
               weight_decay=weight_decay if weight_decay is not None else (0.05 if adamw else 5e-4),
               label_smoothing=label_smoothing, optimizer=optimizer, labels="open-classes",
               version=POOL_RECIPE_VERSION)
    return out if classes == "open" else {**out, "classes": classes}


def encoder_path(world, **settings) -> Path:
    """Cache file of the pool encoder for a world and training settings."""
    s = pool_settings(**settings)
    digest = hashlib.sha256(json.dumps(s, sort_keys=True).encode()).hexdigest()[:10]
    return cache_root() / "encoders" / f"{world.config.key()}-{s['model']}-{digest}.pt"


def _augment(x: torch.Tensor, g: torch.Generator, pad: int = 4) -> torch.Tensor:
    """Batched random translation (reflect-padded crop) and horizontal flip of (B, C, H, W) images.

    On whole uint8 batches rather than PIL images: per-image PIL transforms would cost as much CPU
    as the small model's training step. No colour augmentation: colour is a class attribute here.
    """
    b, _, h, w = x.shape
    xp = F.pad(x.float(), (pad, pad, pad, pad), mode="reflect")
    dy, dx = torch.randint(0, 2 * pad + 1, (2, b), generator=g)
    rows = (torch.arange(h)[None] + dy[:, None])[:, :, None]  # (B, H, 1)
    cols = (torch.arange(w)[None] + dx[:, None])[:, None, :]  # (B, 1, W)
    flip = torch.rand(b, generator=g) < 0.5
    cols = torch.where(flip[:, None, None], 2 * pad + w - 1 - cols, cols)  # mirror inside the padded frame
    out = xp[torch.arange(b)[:, None, None], :, rows, cols]  # (B, H, W, C)
    return out.permute(0, 3, 1, 2)


def _mean_std(model: nn.Module, device) -> tuple[torch.Tensor, torch.Tensor]:
    """The data config's mean and std on the 0..255 scale, shaped (1, 3, 1, 1)."""
    cfg = data_config(model)
    return tuple(torch.tensor(cfg[k], device=device).view(1, 3, 1, 1) * 255 for k in ("mean", "std"))


def train_on_arrays(model: nn.Module, images: np.ndarray, labels: np.ndarray, epochs: int, seed: int = 0,
                    batch_size: int = 128, lr: float = 0.1, weight_decay: float = 5e-4, label_smoothing: float = 0.1,
                    optimizer: str = "sgd", log_every: int = 0, device: str | torch.device = "cpu",
                    steps: int | None = None, loss_fn: nn.Module | None = None) -> list[float]:
    """Supervised training on uint8 (N, H, W, 3) arrays; SGD (or AdamW) + one-cycle; returns per-epoch mean loss.

    `steps` (default: `epochs` full passes) fixes the number of optimizer steps whatever N is; a set
    smaller than a batch is then drawn in batches of N. `loss_fn(logits, labels)` replaces the
    label-smoothed cross entropy (the pilot trains with BalCE). Seeded and self-contained (its own
    generator): deterministic on CPU for a fixed thread count.
    """
    g = torch.Generator().manual_seed(seed)
    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2)  # a view: (N, 3, H, W) uint8
    y = torch.as_tensor(labels, dtype=torch.long)
    model.to(device)
    mean, std = _mean_std(model, device)
    if steps is not None:
        batch_size = min(batch_size, len(y))
    per_epoch = len(y) // batch_size
    steps = epochs * per_epoch if steps is None else steps
    if steps == 0 or per_epoch == 0:
        raise ValueError(f"{len(y)} images are fewer than one batch of {batch_size}")
    if loss_fn is None:
        def loss_fn(logits, target):
            return F.cross_entropy(logits, target, label_smoothing=label_smoothing)
    decay = [p for n, p in model.named_parameters() if p.ndim > 1]
    no_decay = [p for n, p in model.named_parameters() if p.ndim <= 1]  # norms and biases
    groups = [dict(params=decay, weight_decay=weight_decay), dict(params=no_decay, weight_decay=0.0)]
    if optimizer == "sgd":
        opt = torch.optim.SGD(groups, lr=lr, momentum=0.9, nesterov=True)
    elif optimizer == "adamw":
        opt = torch.optim.AdamW(groups, lr=lr)
    else:
        raise ValueError(f"unknown optimizer {optimizer!r}; expected 'sgd' or 'adamw'")
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.2)
    model.train()
    # channels_last: measurably faster for small convnets on CPU (benchmarks/model_speed.py)
    model.to(memory_format=torch.channels_last)
    losses, step, epoch = [], 0, 0
    while step < steps:
        perm, total, n = torch.randperm(len(y), generator=g), 0.0, 0
        for i in range(min(per_epoch, steps - step)):  # drop the last partial batch: BatchNorm and steady step time
            idx = perm[i * batch_size:(i + 1) * batch_size]
            xb = ((_augment(x[idx], g).to(device) - mean) / std).contiguous(memory_format=torch.channels_last)
            loss = loss_fn(model(xb), y[idx].to(device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total, n, step = total + loss.item(), n + 1, step + 1
        losses.append(total / n)
        epoch += 1
        if log_every and epoch % log_every == 0:
            log.info("pool encoder epoch %d/%d: loss %.3f", epoch, -(-steps // per_epoch), losses[-1])
    model.to(memory_format=torch.contiguous_format)
    return losses


@torch.inference_mode()
def predict_on_arrays(model: nn.Module, images: np.ndarray, batch_size: int = 256,
                      device: str | torch.device = "cpu") -> np.ndarray:
    """Predicted class of each uint8 (N, H, W, 3) image, normalised as `train_on_arrays` does (eval mode)."""
    model.to(device).eval()
    mean, std = _mean_std(model, device)
    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2)
    out = [model((x[i:i + batch_size].to(device).float() - mean) / std).argmax(1).cpu()
           for i in range(0, len(x), batch_size)]
    return torch.cat(out).numpy() if out else np.zeros(0, np.int64)


PRETRAIN_CLASSES = ("open", "disjoint")


def pretraining_set(world, classes: str = "open") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The encoder's training data: (images, labels 0..C-1, world class id of each label).

    `classes="open"`: pool items returned by a search for an *open* class (one outside the label
    set), each labelled with its query class. No target-class label and no target val/test image
    reaches the encoder, as no ImageNet-LT label reaches DINOv2 or CLIP. The pool's web noise stays,
    as in web pre-training: an off-topic or mislabelled item may show a target class, a near-duplicate
    copies a target *train* image, but each carries the open query's label.

    `classes="disjoint"`: only the world's pre-training part (`World.pretrain_classes`, families that
    hold no target and that no auxiliary search may return), and of its items only those that show a
    pre-training class or nothing (junk): no target or auxiliary image or label reaches the encoder.
    """
    is_target = np.zeros(len(world.classes), bool)
    is_target[np.asarray(world.targets)] = True
    if classes == "open":
        allowed = ~is_target
        keep = allowed[world.pool_query]
    elif classes == "disjoint":
        allowed = np.zeros(len(world.classes), bool)
        allowed[world.pretrain_classes] = True
        if not allowed.any():
            raise UserError(f"pre-training classes=disjoint: world {world.config.key()} reserves no pre-training"
                            " families (pretrain_families=0); use a world preset that does, such as testbed")
        shown = np.where(world.pool_true >= 0, world.pool_true, world.pool_query)  # junk shows no class
        keep = allowed[world.pool_query] & allowed[shown]
    else:
        raise UserError(f"pre-training classes={classes!r}: expected one of {', '.join(PRETRAIN_CLASSES)}")
    ids = np.flatnonzero(allowed)
    relabel = np.full(len(world.classes), -1, np.int64)
    relabel[ids] = np.arange(len(ids))
    return world.pool_images[keep], relabel[world.pool_query[keep]], ids


def pool_pretrained(world, model_name: str = DEFAULT_WORLD_MODEL, epochs: int = 12, seed: int = 0,
                    force: bool = False, device: str | torch.device = "cpu", **settings) -> Path:
    """Train (once) the small model on the world's pool and return the cached weights file.

    Supervised on the open classes only (`pretraining_set`): labels are each item's query class,
    as noisy as web pre-training (off-topic, mislabelled and junk items keep their query's label),
    and no target class is among them (docs/ARCHITECTURE.md says why). Cached under
    `cache_root()/encoders/<world key>-<model>-<settings hash>.pt`; later calls load nothing and
    return the path at once. `device` only changes where it trains, not the cache key.
    """
    path = encoder_path(world, model_name=model_name, epochs=epochs, seed=seed, **settings)
    if path.is_file() and not force and _pinned_copy(path):
        return path
    s = pool_settings(model_name, epochs, seed, **settings)
    t0 = time.perf_counter()
    with torch.random.fork_rng(devices=[]):  # seed the init without touching the caller's global RNG
        torch.manual_seed(seed)
        images, labels, classes = pretraining_set(world, s.get("classes", "open"))
        model = create_model(model_name, len(classes), img_size=world.config.image_size)
    with pinned_threads(PRETRAIN_THREADS):
        threads = torch.get_num_threads()
        losses = train_on_arrays(model, images, labels, epochs, seed, s["batch_size"], s["lr"], s["weight_decay"],
                                 s["label_smoothing"], s["optimizer"], log_every=1, device=device)
    save_weights(model, path)
    meta = dict(settings=s, world=world.config.key(), classes=len(classes), images=len(labels), losses=losses,
                seconds=round(time.perf_counter() - t0, 1), threads=threads, device=str(device))
    write_json(path.with_suffix(".json"), meta)
    log.info("pool encoder %s trained in %.1f s", path.name, meta["seconds"])
    return path


def _pinned_copy(path: Path) -> bool:
    """The cached encoder was trained at the pinned thread count (its metadata says so).

    One trained before the pin, at another count (`make demo` without OMP_NUM_THREADS trained with
    two), has other weights under the same key: it is trained again, once.
    """
    meta = path.with_suffix(".json")
    return meta.is_file() and read_json(meta, "encoder metadata").get("threads") == PRETRAIN_THREADS
