"""Evaluation on the L target classes: the final classifier (Sec. 3.2) and the long-tail metrics.

A model trained on target + auxiliary data has L + K classifier rows. Three ways to get an L-way
classifier, all applied to one extraction of the pooled pre-logits features:

- "direct": keep rows 0..L-1 (the paper's choice: the hyper-planes shaped by the auxiliary classes stay);
- "crt": re-train a linear head on frozen target-train features, class-balanced (cRT, Kang et al. 2020);
- "tau": the direct rows, τ-normalised, w_i / ||w_i||^τ (Kang et al. 2020).

Metrics: top-1, Many / Medium / Few / Overall (mean per-class accuracy within each shot group),
per-class accuracy, macro-F1 and expected calibration error.
"""
from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ltkit.data import ImageSet, shot_accuracy
from ltkit.errors import UserError
from ltkit.features import extract_features, model_device
from ltkit.io import write_json
from ltkit.models import NormLinear, set_classifier

CLASSIFIERS = ("direct", "crt", "tau")


# ---------------------------------------------------------------------------------------------
# classifiers


def classifier_layer(model: nn.Module) -> nn.Linear:
    """The model's final linear layer (timm's `get_classifier()`)."""
    head = model.get_classifier()
    if not isinstance(head, nn.Linear):
        raise TypeError(f"expected the classifier to be nn.Linear, got {type(head).__name__}")
    return head


def _linear(weight: torch.Tensor, bias: torch.Tensor | None) -> nn.Linear:
    lin = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None).to(weight.device, weight.dtype)
    with torch.no_grad():
        lin.weight.copy_(weight)
        if bias is not None:
            lin.bias.copy_(bias)
    return lin


def head_linear(model: nn.Module) -> nn.Linear:
    """The model's head as one plain Linear on its pre-logits features (a `NormLinear` folded)."""
    head = classifier_layer(model)
    return head.folded() if isinstance(head, NormLinear) else head


def masked_linear(model: nn.Module, num_targets: int) -> nn.Linear:
    """The direct classifier: rows 0..L-1 of the trained L + K head."""
    head = head_linear(model)
    if not 0 < num_targets <= head.out_features:
        raise ValueError(f"num_targets={num_targets} outside 1..{head.out_features}")
    return _linear(head.weight[:num_targets].detach(), None if head.bias is None else head.bias[:num_targets].detach())


def tau_normalized(linear: nn.Linear, tau: float = 1.0, bias: bool = True) -> nn.Linear:
    """τ-normalisation: w_i / ||w_i||^τ per class row (τ=0: unchanged; τ=1: unit rows).

    Kang et al. normalise the weights only; `bias=False` drops the bias as well.
    """
    w = linear.weight.detach()
    w = w / w.norm(dim=1, keepdim=True).clamp_min(1e-12) ** tau
    keep_bias = bias and linear.bias is not None
    return _linear(w, linear.bias.detach() if keep_bias else None)


def replace_classifier(model: nn.Module, linear: nn.Linear) -> nn.Module:
    """A deep copy of `model` whose final linear layer is `linear` (e.g. the L-way masked head)."""
    classifier_layer(model)
    new = set_classifier(copy.deepcopy(model), copy.deepcopy(linear))
    if hasattr(new, "num_classes"):
        new.num_classes = linear.out_features
    return new


def mask_classifier(model: nn.Module, num_targets: int) -> nn.Module:
    """A copy of `model` whose head outputs the L target logits only (rows 0..L-1)."""
    return replace_classifier(model, masked_linear(model, num_targets))


def class_balanced_indices(labels: np.ndarray, num_samples: int, g: torch.Generator) -> torch.Tensor:
    """Indices drawn class first, uniformly over present classes, then uniformly within the class (cRT sampling)."""
    labels = torch.as_tensor(labels)
    weights = 1.0 / torch.bincount(labels).float()[labels]
    return torch.multinomial(weights, num_samples, replacement=True, generator=g)


def retrain_classifier(features: np.ndarray, labels: np.ndarray, num_classes: int, balance: str = "sampler",
                       epochs: int = 30, lr: float = 0.1, batch_size: int = 512, weight_decay: float = 5e-4,
                       seed: int = 0, device: str | torch.device = "cpu", init: nn.Linear | None = None,
                       return_losses: bool = False):
    """cRT: a new linear head trained on frozen features (SGD, cosine schedule), class-balanced.

    balance: "sampler" (class-balanced sampling, as cRT), "balce" (instance sampling with the
    BalCE logit adjustment log n_y, Eq. 2), or "none". Returns the nn.Linear (and per-epoch losses).
    """
    g = torch.Generator().manual_seed(seed)
    x = torch.as_tensor(np.asarray(features, np.float32), device=device)
    y = torch.as_tensor(np.asarray(labels, np.int64), device=device)
    counts = torch.bincount(y, minlength=num_classes).float()
    log_prior = torch.log(counts.clamp_min(1.0))  # BalCE: add log n_y to every logit (Eq. 2)
    lin = copy.deepcopy(init) if init is not None else nn.Linear(x.shape[1], num_classes)
    if init is None:
        with torch.no_grad():  # seeded init, independent of the global RNG
            lin.weight.copy_(torch.randn(lin.weight.shape, generator=g) * 0.01)
            lin.bias.zero_()
    lin = lin.to(device).train()
    steps_per_epoch = max(1, int(np.ceil(len(y) / batch_size)))
    opt = torch.optim.SGD(lin.parameters(), lr=lr, momentum=0.9, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs * steps_per_epoch)
    losses = []
    with torch.enable_grad():
        for _ in range(epochs):
            if balance == "sampler":
                order = class_balanced_indices(y.cpu(), steps_per_epoch * batch_size, g).to(device)
            elif balance in ("balce", "none"):
                order = torch.randperm(len(y), generator=g).to(device)
            else:
                raise ValueError(f"unknown balance {balance!r}; expected 'sampler', 'balce' or 'none'")
            total = 0.0
            for i in range(steps_per_epoch):
                idx = order[i * batch_size:(i + 1) * batch_size]
                if len(idx) == 0:
                    continue
                logits = lin(x[idx])
                if balance == "balce":
                    logits = logits + log_prior
                loss = F.cross_entropy(logits, y[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                total += loss.item()
            losses.append(total / steps_per_epoch)
    lin = lin.eval().requires_grad_(False)
    return (lin, losses) if return_losses else lin


# ---------------------------------------------------------------------------------------------
# metrics


def per_class_accuracy(pred: np.ndarray, labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Accuracy per true class (NaN for a class with no test sample)."""
    pred, labels = np.asarray(pred), np.asarray(labels)
    n = np.bincount(labels, minlength=num_classes).astype(float)
    hit = np.bincount(labels[pred == labels], minlength=num_classes)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, hit / n, np.nan)


def macro_f1(pred: np.ndarray, labels: np.ndarray, num_classes: int) -> float:
    """Mean F1 over all `num_classes` classes (a class never true nor predicted scores 0)."""
    pred, labels = np.asarray(pred), np.asarray(labels)
    tp = np.bincount(labels[pred == labels], minlength=num_classes).astype(float)
    fp = np.bincount(pred, minlength=num_classes)[:num_classes] - tp
    fn = np.bincount(labels, minlength=num_classes)[:num_classes] - tp
    denom = 2 * tp + fp + fn
    return float(np.mean(np.where(denom > 0, 2 * tp / np.maximum(denom, 1), 0.0)))


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, n_bins: int = 15) -> float:
    """ECE of the top-1 confidence: sum over equal-width bins of |accuracy - confidence| x bin share."""
    probs, labels = np.asarray(probs, float), np.asarray(labels)
    conf, pred = probs.max(1), probs.argmax(1)
    correct = (pred == labels).astype(float)
    bins = np.clip(np.ceil(conf * n_bins).astype(int) - 1, 0, n_bins - 1)  # (k/n, (k+1)/n] -> bin k
    ece = 0.0
    for b in range(n_bins):
        m = bins == b
        if m.any():
            ece += m.mean() * abs(correct[m].mean() - conf[m].mean())
    return float(ece)


def metrics(logits: np.ndarray, labels: np.ndarray, train_counts: Sequence[int], many: int = 100,
            few: int = 20, n_bins: int = 15) -> dict:
    """Every metric of L-way logits against test labels; shot groups by train counts."""
    logits = torch.as_tensor(np.asarray(logits, np.float32))
    num_classes = logits.shape[1]
    if len(train_counts) != num_classes:
        raise ValueError(f"{len(train_counts)} train counts for {num_classes} classes")
    probs = logits.softmax(1).numpy()
    pred, labels = probs.argmax(1), np.asarray(labels)
    acc = per_class_accuracy(pred, labels, num_classes)
    present = ~np.isnan(acc)
    shots = shot_accuracy(acc[present], np.asarray(train_counts)[present], many, few)
    return dict(top1=float((pred == labels).mean()), **shots, macro_f1=macro_f1(pred, labels, num_classes),
                ece=expected_calibration_error(probs, labels, n_bins), num_test=int(len(labels)),
                num_classes=int(num_classes), thresholds=dict(many=many, few=few),
                per_class_accuracy=[None if np.isnan(a) else float(a) for a in acc])


# ---------------------------------------------------------------------------------------------
# evaluation


@torch.inference_mode()
def predict(model: nn.Module, images: ImageSet, transform, num_targets: int | None = None, batch_size: int = 256,
            device: str | torch.device | None = None, num_workers: int = 0, shard: bool = False) -> np.ndarray | None:
    """Logits (N, L) of the model's own head; with `num_targets`, only the first L (direct classifier).

    `shard=True` under torch.distributed: each rank computes its share, rank 0 gets the logits (None elsewhere).
    """
    feats = extract_features(model, images, transform, batch_size, device, num_workers, shard=shard)
    if feats is None:
        return None
    head = head_linear(model) if num_targets is None else masked_linear(model, num_targets)
    return apply_linear(head, feats)


@torch.inference_mode()
def apply_linear(linear: nn.Linear, features: np.ndarray) -> np.ndarray:
    """Logits of a linear head on (N, C) features."""
    dev = linear.weight.device
    return linear(torch.as_tensor(np.asarray(features, np.float32), device=dev)).float().cpu().numpy()


def final_classifier(model: nn.Module, num_targets: int, kind: str = "direct", train_features: np.ndarray | None = None,
                     train_labels: np.ndarray | None = None, tau: float = 1.0, crt: dict | None = None) -> nn.Linear:
    """The L-way linear head of a kind: 'direct', 'tau' or 'crt' (which needs target-train features)."""
    if kind == "direct":
        return masked_linear(model, num_targets)
    if kind == "tau":
        return tau_normalized(masked_linear(model, num_targets), tau)
    if kind == "crt":
        if train_features is None or train_labels is None:
            raise UserError("classifier='crt' re-trains on target train features: pass train=ImageSet")
        # no head needed: cRT also linear-probes a plain encoder (e.g. DINOv2 with num_classes=0)
        return retrain_classifier(train_features, train_labels, num_targets, device=model_device(model), **(crt or {}))
    raise UserError(f"unknown classifier {kind!r}; expected one of {CLASSIFIERS}")


def evaluate(model: nn.Module, test: ImageSet, train_counts: Sequence[int], num_targets: int, transform,
             classifier: str | Sequence[str] = "direct", train: ImageSet | None = None, tau: float = 1.0,
             crt: dict | None = None, many: int = 100, few: int = 20, batch_size: int = 256,
             device: str | torch.device | None = None, num_workers: int = 0, shard: bool = False) -> dict | None:
    """Metrics of the final L-way classifier on `test` (see module docstring for the kinds).

    Features are extracted once (test, and train for 'crt'); a sequence of kinds returns
    {kind: metrics}. `transform` is the eval transform; `crt` passes options to `retrain_classifier`.
    `shard=True` under torch.distributed: every rank extracts its share of the images and rank 0 alone
    fits cRT and computes the metrics; the other ranks return None.
    """
    kinds = [classifier] if isinstance(classifier, str) else list(classifier)
    for k in kinds:
        if k not in CLASSIFIERS:
            raise UserError(f"unknown classifier {k!r}; expected one of {CLASSIFIERS}")
    if len(train_counts) != num_targets:
        raise ValueError(f"train_counts has {len(train_counts)} classes, num_targets is {num_targets}")
    test_f = extract_features(model, test, transform, batch_size, device, num_workers, shard=shard)
    train_f = train_y = None
    if "crt" in kinds:
        if train is None:
            raise UserError("classifier='crt' re-trains on target train features: pass train=ImageSet")
        train_f = extract_features(model, train, transform, batch_size, device, num_workers, shard=shard)
        train_y = train.labels
    if test_f is None:  # a rank other than 0 under torch.distributed: its share went to rank 0
        return None
    out = {}
    for k in kinds:
        head = final_classifier(model, num_targets, k, train_f, train_y, tau, crt)
        res = metrics(apply_linear(head, test_f), test.labels, train_counts, many, few)
        res["classifier"] = k
        if k == "tau":
            res["tau"] = tau
        out[k] = res
    return out[kinds[0]] if isinstance(classifier, str) else out


def write_results(run_dir: str | os.PathLike, results: dict, config: dict | None = None) -> Path:
    """Write `run_dir/results.json` atomically: the results plus the config that produced them."""
    path = Path(run_dir) / "results.json"
    write_json(path, dict(results, config=config or {}))
    return path
