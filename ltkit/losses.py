"""The losses: plain CE, balanced softmax CE (BalCE, Eq. 2-3) and neighbour-silencing CE (NS-CE, Eq. 4).

Every loss takes logits over the whole label space (targets 0..L-1, auxiliary L..L+K-1) and a
target that is either int labels (B,) or soft targets (B, C), such as `timm.data.Mixup` produces.
With soft targets the loss is sum_c t_c * loss(x, c): the same mix of the per-label losses (Mixup,
CutMix and label smoothing are all such mixes).

With a = z + tau * log n (the balanced logits), Eq. 4 for label y is
    loss(x, y) = -a_y + log sum_j lambda_yj e^{a_j},
lambda_yj = lambda_s when (y, j) is a neighbour pair and 1 otherwise; Eq. 2-3 (BalCE) is lambda = 1.
Neighbour pairs N(y) follow the paper ("one is the other's neighbor category and one of them from
auxiliary categories"): a target y pairs with the auxiliary classes queried from it, an auxiliary
y with its parent target. Two auxiliary siblings of one target are NOT a pair, nor are two targets.

Int labels: log lambda_s is a sparse additive mask on the batch's balanced logits: a (B, D) scatter
at each row's neighbours, read from a padded (L+K, D) neighbour table (D = the most neighbours of
any class, about k), then softmax CE. Nothing of size C x C is ever built.

Soft targets (Mixup, CutMix, label smoothing): smoothing gives every class some mass, so every
class's own partition function is needed, not just two labels'. All of them follow from one softmax
p = softmax(a), because lambda only rescales the neighbours of the label:
    log sum_j lambda_cj e^{a_j} = logsumexp(a) + log(1 - (1 - lambda_s) * P_c),  P_c = sum_{j in N(c)} p_j,
where P is an index_add (a target's children) or a gather (an auxiliary class's parent). So the
soft loss is exact for any soft target, not only timm's two labels plus a uniform term:
    loss = sum_c t_c * (-log p_c + log(1 - (1 - lambda_s) * P_c)).

The released code's hard mask (`ns_mode: mask`, `util/loss.py` of the authors' repository) is not
Eq. 4: for a sample whose pre-Mixup label is y, every class j in its silenced set S(y) gets -inf added
to its logit AND its share of the (mixed, smoothed) target zeroed, with nothing renormalised:
    loss = sum_{c not in S(y)} t_c * (-a_c + log sum_{j not in S(y)} e^{a_j}).
With an int label this is Eq. 4 at lambda = 0 (log lambda = -inf on S(y)); with soft targets it
differs from every lambda: the silenced classes are neither pushed down nor pulled up, and a Mixup
partner whose label is in S(y) simply loses its target mass (the row then weighs less than 1).
S(y) is a variant (`silence_table`, `keep_mask`): target <-> own auxiliary children both ways (the
released scripts' `no_fm_remove_normal_neg`), only one direction, only targets with fewer than
`below` training images (`no_fm`: 100), and auxiliary samples blind to every other auxiliary class
(`_back`). The prior is over all L + K classes, as everywhere here. The gradient is that of softmax
CE over the kept columns, p' * sum(t') - t'. Cost: one (B, C) bool keep mask beside the biased
logits (t' is never built), measured in benchmarks/losses.py (`nsce-mask`, `nsce-mask-soft`).

All paths are small autograd Functions with the gradient written out (`_HardCE`, `_SoftCE`, `_SoftNSCE`):
autograd over the same ops would keep several (B, C) intermediates and take about twice the time.
On the CPU each allocates one (B, C) tensor, the biased logits, which become their softmax in place
and then the gradient in place (so a retained graph can be back-propagated through only once). Memory
beyond that is O(B x L) plus the (B, D) mask: less than F.cross_entropy's; see benchmarks/losses.py.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ltkit.errors import UserError

Counts = Sequence[int] | np.ndarray | Tensor


def log_prior(class_counts: Counts, tau: float = 1.0) -> Tensor:
    """tau * log n_c as a float32 (C,) tensor; every count must be positive."""
    n = torch.as_tensor(np.asarray(class_counts), dtype=torch.float64)
    if n.ndim != 1:
        raise ValueError(f"class_counts must be 1-D, got shape {tuple(n.shape)}")
    if (n <= 0).any():
        bad = int(torch.nonzero(n <= 0)[0])
        # log 0 = -inf would silence the class for ever and make its own loss infinite
        raise ValueError(f"class {bad} has count {n[bad].item():g}; every class needs >= 1 training image"
                         " (drop auxiliary classes without images, see ltkit.sampling.select_auxiliary)")
    return (tau * n.log()).float()


def _acc(x: Tensor) -> Tensor:
    """x in float32, or float64 if it already is: losses are summed in at least single precision."""
    return x if x.dtype == torch.float64 else x.float()


def _check_logits(logits: Tensor, num_classes: int) -> None:
    if logits.ndim != 2 or logits.shape[1] != num_classes:
        raise ValueError(f"logits must be (B, {num_classes}), got {tuple(logits.shape)}")


def _reduce(loss: Tensor, reduction: str) -> Tensor:
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    if reduction == "none":
        return loss
    raise ValueError(f"unknown reduction {reduction!r}; expected 'mean', 'sum' or 'none'")


def cross_entropy(logits: Tensor, target: Tensor, reduction: str = "mean") -> Tensor:
    """Plain softmax CE over the whole label space, for int labels or soft targets."""
    z = _acc(logits)
    return F.cross_entropy(z, target if target.ndim == 1 else target.to(z.dtype), reduction=reduction)


def balanced_softmax_ce(logits: Tensor, target: Tensor, log_prior: Tensor, reduction: str = "mean") -> Tensor:
    """BalCE (Eq. 2-3): softmax CE of logits + log prior, for int labels or soft targets."""
    _check_logits(logits, len(log_prior))
    if target.ndim == 1:
        return _reduce(_HardCE.apply(logits, log_prior, target.long(), None, None), reduction)
    return _reduce(_SoftCE.apply(logits, log_prior, target), reduction)


# ---------------------------------------------------------------------------------------------
# neighbour structure


def _as_parent(aux_parent: Sequence[int] | np.ndarray | Tensor, num_targets: int) -> np.ndarray:
    parent = np.asarray(aux_parent.cpu() if isinstance(aux_parent, Tensor) else aux_parent, dtype=np.int64)
    if parent.ndim != 1:
        raise ValueError(f"aux_parent must be 1-D, got shape {parent.shape}")
    if len(parent) and (parent.min() < 0 or parent.max() >= num_targets):
        raise ValueError(f"aux_parent values must be target classes 0..{num_targets - 1}")
    return parent


def neighbour_table(aux_parent: Sequence[int] | np.ndarray | Tensor, num_targets: int) -> Tensor:
    """(L+K, D) int64: row c lists the neighbour-pair partners of class c, padded with -1.

    A target's row holds its auxiliary children (class ids L+k, in map order); an auxiliary
    class's row holds its parent. D is the most children of any target (at least 1).
    """
    parent = _as_parent(aux_parent, num_targets)
    L, K = num_targets, len(parent)
    deg = np.bincount(parent, minlength=L)
    table = np.full((L + K, max(1, int(deg.max(initial=0)))), -1, dtype=np.int64)
    # CSR of children per target (stable sort keeps the map's order), scattered into padded rows
    order = np.argsort(parent, kind="stable")
    slot = np.arange(K) - np.repeat(np.cumsum(deg) - deg, deg)
    table[parent[order], slot] = L + order
    table[L:, 0] = parent
    return torch.from_numpy(table)


NS_MODES = ("soft", "mask")          # the paper's lambda_s (Eq. 4), the released code's hard mask
NS_PAIRS = ("both", "target", "aux")  # who is silenced: both directions, target rows only, auxiliary rows only


def silence_table(aux_parent: Sequence[int] | np.ndarray | Tensor, num_targets: int, pairs: str = "both",
                  below: int | None = None, target_counts: Counts | None = None) -> Tensor:
    """(L+K, D) int64: row y lists the classes a sample of label y does not see under the hard mask, padded -1.

    pairs='both': a target does not see its auxiliary children, an auxiliary class not its parent;
    'target' / 'aux': only the rows of that kind. `below`: only pairs whose target has fewer than
    `below` training images (`target_counts`; the released `no_fm` uses 100); None: every target.
    """
    if pairs not in NS_PAIRS:
        raise ValueError(f"pairs={pairs!r}: expected one of {NS_PAIRS}")
    parent = _as_parent(aux_parent, num_targets)
    L, table = num_targets, neighbour_table(parent, num_targets)
    if below is not None:
        if target_counts is None or len(target_counts) != L:
            raise ValueError(f"below={below} needs the {L} target classes' training counts")
        big = torch.from_numpy(np.asarray(target_counts) >= below)
        table[:L][big] = -1
        table[L:][big[torch.from_numpy(parent)]] = -1
    if pairs == "aux":
        table[:L] = -1
    elif pairs == "target":
        table[L:] = -1
    return table


def keep_mask(labels: Tensor, table: Tensor, num_classes: int, num_targets: int, aux_blind: bool = False) -> Tensor:
    """(B, C) bool, False at the classes a sample of label y does not see: table[y], plus with `aux_blind`
    every auxiliary class but its own for an auxiliary y (the released `_back` variants)."""
    idx = table[labels]
    pad = idx < 0
    keep = torch.ones(len(labels), num_classes, dtype=torch.bool, device=labels.device)
    # a padded slot writes True at the row's own label, which is always kept
    keep.scatter_(1, torch.where(pad, labels[:, None], idx), pad)
    if aux_blind:
        rows = torch.nonzero(labels >= num_targets).squeeze(1)
        keep[rows, num_targets:] = False
        keep[rows, labels[rows]] = True
    return keep


def _softmax(a: Tensor) -> tuple[Tensor, Tensor]:
    """(softmax, logsumexp) of each row of a; on the CPU the softmax overwrites a.

    On the CPU a fresh (B, C) tensor at iNat's C is ~100 MB, which the allocator maps anew (page
    faults) on every call: at batch 512 and 48,852 classes one allocation costs as much as a pass
    of arithmetic, so the softmax is computed in place. On a GPU the caching allocator makes fresh
    tensors free and kernel launches are what cost, so it is two fused kernels there.
    """
    if a.is_cuda:
        return torch.softmax(a, 1), torch.logsumexp(a, 1)
    m = a.amax(1, keepdim=True)
    s = a.sub_(m).exp_().sum(1, keepdim=True)
    return a.div_(s), (m + s.log()).squeeze(1)


def _chunk(x: Tensor) -> int:
    """Rows per step of a row-chunked loop: a few on the CPU (small, reused temporaries), all on a GPU."""
    return len(x) if x.is_cuda else 64


def _rowdot(x: Tensor, y: Tensor, keep: Tensor | None = None) -> Tensor:
    """Row-wise dot products of two (B, N) tensors (over the `keep` columns only), `_chunk` rows at a time."""
    n = _chunk(x)
    if keep is None:
        return torch.cat([(x[i:i + n] * y[i:i + n]).sum(1) for i in range(0, len(x), n)])
    return torch.cat([(x[i:i + n] * y[i:i + n]).masked_fill_(~keep[i:i + n], 0).sum(1) for i in range(0, len(x), n)])


def _biased(logits: Tensor, log_prior: Tensor) -> Tensor:
    """A fresh float32 (float64 for float64 logits) copy of logits + log prior."""
    a = logits.to(torch.float64 if logits.dtype == torch.float64 else torch.float32, copy=True)
    return a.add_(log_prior)


def _silence_mask(y: Tensor, table: Tensor, log_lambda: float) -> tuple[Tensor, Tensor]:
    """The batch's sparse additive mask: (B, D) columns and values, log lambda_s at each neighbour of y_i."""
    idx = table[y]
    pad = idx < 0
    # a padded slot adds 0 at the row's own label, so every row scatters the same D entries
    return torch.where(pad, y[:, None], idx), torch.full(idx.shape, log_lambda, device=y.device).masked_fill_(pad, 0.0)


# The Functions below overwrite their saved softmax with the gradient in backward (one ~100 MB
# tensor less on the CPU, see `_softmax`). A second backward through the same graph (retain_graph=True)
# then fails autograd's version check with a clear error instead of computing a wrong gradient.


class _HardCE(torch.autograd.Function):
    """Per-row softmax CE of logits + log prior (+ a sparse (B, D) additive mask) for int labels.

    Written out, not F.cross_entropy on a biased copy, so the biased logits' softmax is the only
    (B, C) tensor: it becomes the gradient in place, d/da = softmax(a) - onehot(y).
    """

    @staticmethod
    def forward(ctx, logits: Tensor, log_prior: Tensor, y: Tensor, idx: Tensor | None, val: Tensor | None,
                keep: Tensor | None = None) -> Tensor:
        with torch.autocast(logits.device.type, enabled=False):
            a = _biased(logits, log_prior)
            if idx is not None:
                a.scatter_add_(1, idx, val.to(a.dtype))
            if keep is not None:  # the hard mask: silenced columns leave the softmax (p = 0, no gradient)
                a.masked_fill_(~keep, -math.inf)
            a_y = a.gather(1, y[:, None]).squeeze(1)
            p, lse = _softmax(a)
            loss = lse - a_y
        ctx.save_for_backward(p, y)
        ctx.dtype = logits.dtype
        return loss

    @staticmethod
    def backward(ctx, grad: Tensor):
        p, y = ctx.saved_tensors
        grad = grad.to(p.dtype)
        ga = p.mul_(grad[:, None]).scatter_add_(1, y[:, None], -grad[:, None])
        return ga.to(ctx.dtype), None, None, None, None, None


class _SoftCE(torch.autograd.Function):
    """Per-row soft-target CE of logits + log prior, sum_c t_c (-log p_c); d/da = sum(t) p - t.

    With `keep` (the hard mask), t' = t * keep and the softmax runs over the kept columns only; t' is
    never built: its sums skip the dropped columns, and the gradient is zeroed there (p' = 0 there).
    """

    @staticmethod
    def forward(ctx, logits: Tensor, log_prior: Tensor, t: Tensor, keep: Tensor | None = None) -> Tensor:
        with torch.autocast(logits.device.type, enabled=False):
            a = _biased(logits, log_prior)
            t = t.to(a.dtype)
            if keep is None:
                ta, t_sum = _rowdot(t, a), t.sum(1)
            else:  # before the mask: 0 * -inf would be nan
                ta, t_sum = _rowdot(t, a, keep), _rowdot(t, keep)
                a.masked_fill_(~keep, -math.inf)
            p, lse = _softmax(a)
            loss = t_sum * lse - ta
        ctx.save_for_backward(p, t, t_sum, keep)
        ctx.dtype = logits.dtype
        return loss

    @staticmethod
    def backward(ctx, grad: Tensor):
        p, t, t_sum, keep = ctx.saved_tensors
        ga = p.mul_(t_sum[:, None]).sub_(t)
        if keep is not None:
            ga.masked_fill_(~keep, 0.0)
        ga.mul_(grad.to(p.dtype)[:, None])
        return ga.to(ctx.dtype), None, None, None


class _SoftNSCE(torch.autograd.Function):
    """Per-row NS-CE for soft targets, sum_c t_c (-log p_c + log r_c), with its gradient written out.

    The correction splits by the label's kind, so all its elementwise work is on (B, L) blocks:
    a target label t has r_t = 1 - (1 - lambda_s) Q_t (Q_t: its children's p); an auxiliary label
    has r = rho_parent = 1 - (1 - lambda_s) p_parent, so its t mass is first summed per parent
    (t_up). With u = t_tgt / r and w = t_up / rho, the gradient is
        d/da_j = p_j * (s - (1 - lambda_s) * e_j) - t_j,  s = sum_c t_c + (1 - lambda_s) sum_t (u_t Q_t + w_t p_t),
    e_j = w_j for a target j and u_parent(j) for an auxiliary j. Soft targets get no gradient.
    """

    @staticmethod
    def forward(ctx, logits: Tensor, log_prior: Tensor, t: Tensor, aux_parent: Tensor, lambda_s: float) -> Tensor:
        with torch.autocast(logits.device.type, enabled=False):  # keep the sums in float32
            L, c = logits.shape[1] - len(aux_parent), 1.0 - lambda_s
            a = _biased(logits, log_prior)
            t = t.to(a.dtype)
            ta = _rowdot(t, a)  # before a becomes p (on the CPU)
            t_sum = t.sum(1)
            p, lse = _softmax(a)
            t_tgt = t[:, :L]
            t_up = t.new_zeros(len(t), L).index_add_(1, aux_parent, t[:, L:])  # auxiliary labels' mass per parent
            r = p.new_zeros(len(p), L).index_add_(1, aux_parent, p[:, L:]).mul_(-c).add_(1.0)  # 1 - c * Q
            rho = p[:, :L].mul(-c).add_(1.0)  # 1 - c * p_parent
            # sum_c t_c (-log p_c) = sum_c t_c * lse - t . a
            loss = t_sum * lse - ta + _rowdot(t_tgt, r.log()) + _rowdot(t_up, rho.log())
        ctx.save_for_backward(p, t, aux_parent, r, rho, t_up, t_sum)
        ctx.c, ctx.dtype = c, logits.dtype
        return loss

    @staticmethod
    def backward(ctx, grad: Tensor):
        p, t, aux_parent, r, rho, t_up, t_sum = ctx.saved_tensors
        L, c = r.shape[1], ctx.c
        w, u = t_up / rho, t[:, :L] / r
        # s = t_sum + c * sum_t (u_t Q_t + w_t p_t), with c Q = 1 - r and c p_t = 1 - rho
        s = (t_sum + (u.sum(1) - _rowdot(u, r)) + (w.sum(1) - _rowdot(w, rho)))[:, None]
        # p * m - t with m = s - c * e, scaled, written over p: the target block directly (e = w),
        # the auxiliary block's per-parent factors (e = u_parent) gathered a few rows at a time
        p[:, :L].mul_(w.mul_(-c).add_(s))
        u.mul_(-c).add_(s)
        n = _chunk(p)
        for i in range(0, len(p), n):
            p[i:i + n, L:].mul_(u[i:i + n].index_select(1, aux_parent))
        ga = p.sub_(t).mul_(grad.to(p.dtype)[:, None])
        return ga.to(ctx.dtype), None, None, None, None


def neighbour_silencing_ce(logits: Tensor, target: Tensor, log_prior: Tensor, aux_parent: Tensor | Sequence[int],
                           lambda_s: float = 0.1, table: Tensor | None = None,
                           reduction: str = "mean") -> Tensor:
    """NS-CE (Eq. 4) for int labels (B,) or soft targets (B, C); `table` from `neighbour_table` (built if None)."""
    _check_logits(logits, len(log_prior))
    if lambda_s <= 0:
        raise ValueError(f"lambda_s must be > 0 (it enters as log lambda_s), got {lambda_s}")
    aux_parent = torch.as_tensor(aux_parent, dtype=torch.long, device=logits.device)
    if target.ndim == 1:
        if table is None:
            table = neighbour_table(aux_parent, len(log_prior) - len(aux_parent)).to(logits.device)
        target = target.long()
        idx, val = _silence_mask(target, table, float(np.log(lambda_s)))
        return _reduce(_HardCE.apply(logits, log_prior, target, idx, val), reduction)
    if target.shape != logits.shape:
        raise ValueError(f"soft targets must be {tuple(logits.shape)}, got {tuple(target.shape)}")
    return _reduce(_SoftNSCE.apply(logits, log_prior, target, aux_parent, float(lambda_s)), reduction)


def masked_ce(logits: Tensor, target: Tensor, log_prior: Tensor, keep: Tensor, reduction: str = "mean") -> Tensor:
    """The released hard mask: BalCE over the kept columns, target mass outside them zeroed, not renormalised."""
    _check_logits(logits, len(log_prior))
    if keep.shape != logits.shape:
        raise ValueError(f"keep must be {tuple(logits.shape)}, got {tuple(keep.shape)}")
    if target.ndim == 1:
        return _reduce(_HardCE.apply(logits, log_prior, target.long(), None, None, keep), reduction)
    return _reduce(_SoftCE.apply(logits, log_prior, target, keep), reduction)


# ---------------------------------------------------------------------------------------------
# modules


class CrossEntropyLoss(nn.Module):
    """Plain softmax CE over the whole label space (int labels or soft targets), summed in float32."""

    def __init__(self, reduction: str = "mean"):
        super().__init__()
        self.reduction = reduction

    def forward(self, logits: Tensor, target: Tensor, labels: Tensor | None = None) -> Tensor:
        return cross_entropy(logits, target, self.reduction)


class BalancedSoftmaxLoss(nn.Module):
    """BalCE (Eq. 2-3) over target + auxiliary classes; tau scales the log prior as in logit adjustment."""

    def __init__(self, class_counts: Counts, tau: float = 1.0, reduction: str = "mean"):
        super().__init__()
        self.register_buffer("log_prior", log_prior(class_counts, tau))
        self.tau, self.reduction = tau, reduction

    def forward(self, logits: Tensor, target: Tensor, labels: Tensor | None = None) -> Tensor:
        return balanced_softmax_ce(logits, target, self.log_prior, self.reduction)

    def extra_repr(self) -> str:
        return f"classes={len(self.log_prior)}, tau={self.tau}"


class NeighbourSilencingLoss(nn.Module):
    """NS-CE: BalCE with each target <-> auxiliary-child pair silenced; siblings are not pairs.

    mode='soft': the paper's Eq. 4, log lambda_s on each pair. mode='mask': the released code's hard
    mask (module docstring), with its variants `pairs`, `below` and `aux_blind` (see `silence_table`,
    `keep_mask`); Mixup/CutMix targets then need the pre-mix labels: `forward(logits, target, labels)`.
    """

    def __init__(self, class_counts: Counts, aux_parent: Sequence[int] | np.ndarray | Tensor, num_targets: int,
                 lambda_s: float = 0.1, tau: float = 1.0, reduction: str = "mean", mode: str = "soft",
                 pairs: str = "both", below: int | None = None, aux_blind: bool = False):
        super().__init__()
        parent = _as_parent(aux_parent, num_targets)
        if len(class_counts) != num_targets + len(parent):
            raise ValueError(f"class_counts has {len(class_counts)} entries, expected num_targets + K ="
                             f" {num_targets} + {len(parent)}")
        if mode not in NS_MODES:
            raise ValueError(f"mode={mode!r}: expected one of {NS_MODES}")
        if mode == "soft" and lambda_s <= 0:
            raise ValueError(f"lambda_s must be > 0 (it enters as log lambda_s), got {lambda_s}")
        if mode == "soft" and (pairs != "both" or below is not None or aux_blind):
            raise ValueError("pairs, below and aux_blind select variants of the hard mask: they need mode='mask'")
        self.register_buffer("log_prior", log_prior(class_counts, tau))
        self.register_buffer("aux_parent", torch.from_numpy(parent))
        table = (neighbour_table(parent, num_targets) if mode == "soft"
                 else silence_table(parent, num_targets, pairs, below, np.asarray(class_counts)[:num_targets]))
        self.register_buffer("table", table)
        self.num_targets, self.lambda_s, self.tau, self.reduction = num_targets, lambda_s, tau, reduction
        self.mode, self.pairs, self.below, self.aux_blind = mode, pairs, below, aux_blind

    def forward(self, logits: Tensor, target: Tensor, labels: Tensor | None = None) -> Tensor:
        if self.mode == "soft":
            return neighbour_silencing_ce(logits, target, self.log_prior, self.aux_parent, self.lambda_s,
                                          self.table, self.reduction)
        if target.ndim == 1:
            labels = target
        elif labels is None:
            raise ValueError("the hard mask (mode='mask') masks soft targets by each sample's pre-mix label:"
                             " pass labels=")
        _check_logits(logits, len(self.log_prior))
        keep = keep_mask(labels.long(), self.table, len(self.log_prior), self.num_targets, self.aux_blind)
        return masked_ce(logits, target, self.log_prior, keep, self.reduction)

    def extra_repr(self) -> str:
        variant = (f"lambda_s={self.lambda_s}" if self.mode == "soft" else
                   f"mask: pairs={self.pairs}, below={self.below}, aux_blind={self.aux_blind}")
        return f"targets={self.num_targets}, auxiliary={len(self.aux_parent)}, {variant}, tau={self.tau}"


def build_loss(name: str, class_counts: Counts, aux_parent: Sequence[int] | np.ndarray | Tensor | None = None,
               num_targets: int | None = None, lambda_s: float = 0.1, tau: float = 1.0, mode: str = "soft",
               pairs: str = "both", below: int | None = None, aux_blind: bool = False) -> nn.Module:
    """'ce', 'balce' or 'nsce' (mode 'soft' or 'mask' with its variants) as a module taking
    (logits, int labels or soft targets[, pre-mix labels])."""
    if name == "ce":
        return CrossEntropyLoss()
    if name == "balce":
        return BalancedSoftmaxLoss(class_counts, tau)
    if name == "nsce":
        if aux_parent is None or num_targets is None:
            raise ValueError("loss 'nsce' needs aux_parent and num_targets")
        return NeighbourSilencingLoss(class_counts, aux_parent, num_targets, lambda_s, tau, mode=mode, pairs=pairs,
                                      below=below, aux_blind=aux_blind)
    raise UserError(f"unknown loss {name!r}; expected 'ce', 'balce' or 'nsce'")
