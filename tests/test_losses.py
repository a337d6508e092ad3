"""The losses against direct, slow implementations of Eq. 2-4, for int labels and Mixup/CutMix targets."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from timm.data import Mixup

from ltkit.losses import (BalancedSoftmaxLoss, CrossEntropyLoss, NeighbourSilencingLoss, _SoftNSCE,
                          balanced_softmax_ce, build_loss, cross_entropy, log_prior, neighbour_silencing_ce, neighbour_table)

L, PARENT = 5, [0, 0, 0, 2, 4, 2, 0]  # 7 auxiliary classes: target 0 has 4 children, 1 and 3 none
C = L + len(PARENT)


def is_pair(i: int, j: int, parent, num_targets: int) -> bool:
    """The paper's neighbour pair: one auxiliary, queried from the other (siblings are not pairs)."""
    if i < num_targets <= j:
        return parent[j - num_targets] == i
    if j < num_targets <= i:
        return parent[i - num_targets] == j
    return False


def slow_loss(z, t, counts, parent, num_targets, lam=1.0, tau=1.0):
    """Per-sample sum_c t_c * Eq. 4 for label c, with the lambda matrix built pair by pair (float64)."""
    z = z.double()
    n = torch.tensor(counts, dtype=torch.float64)
    c = z.shape[1]
    lam_mat = torch.ones(c, c, dtype=torch.float64)
    for i in range(c):
        for j in range(c):
            if is_pair(i, j, parent, num_targets):
                lam_mat[i, j] = lam
    off = 1 - torch.eye(c, dtype=torch.float64)  # the sum in Eq. 4 runs over j != y_i
    # e^{log n_j - log n_c + z_j - z_c}, indexed [sample, label c, class j]
    d = tau * (n.log()[None, None, :] - n.log()[None, :, None]) + z[:, None, :] - z[:, :, None]
    per_label = torch.log1p((lam_mat * off * d.exp()).sum(2))  # (B, C): loss if the label were c
    return (t.double() * per_label).sum(1)


def rand_counts(c, seed=0):
    return np.random.default_rng(seed).integers(1, 300, size=c)


def one_hot(y, c):
    return F.one_hot(y, c).double()


def check_value_and_grad(fn, z, t, ref_fn, atol=1e-5):
    """fn(z, t) (mean-reduced) against ref_fn(z, t) per sample: values and d/dz."""
    z1 = z.clone().requires_grad_(True)
    z2 = z.clone().double().requires_grad_(True)
    out, ref = fn(z1, t), ref_fn(z2, t).mean()
    torch.testing.assert_close(out.double(), ref, atol=atol, rtol=1e-5)
    out.backward()
    ref.backward()
    torch.testing.assert_close(z1.grad.double(), z2.grad, atol=atol, rtol=1e-4)


def mixup_batch(num_classes, smoothing, seed, mode="batch", mixup_alpha=0.8, cutmix_alpha=1.0, b=8):
    """Real timm Mixup/CutMix targets (B, C) for random int labels."""
    np.random.seed(seed)
    torch.manual_seed(seed)
    mix = Mixup(mixup_alpha=mixup_alpha, cutmix_alpha=cutmix_alpha, mode=mode, label_smoothing=smoothing,
                num_classes=num_classes)
    x = torch.randn(b, 3, 8, 8)
    y = torch.randint(0, num_classes, (b,))
    _, t = mix(x, y)
    return y, t


def test_log_prior():
    torch.testing.assert_close(log_prior([1, 10, 100], tau=0.5), torch.tensor([0.0, 0.5, 1.0]) * np.log(10))
    with pytest.raises(ValueError, match="class 1 has count 0"):
        log_prior([3, 0, 2])


def test_neighbour_table_pairs():
    table = neighbour_table(PARENT, L)
    for c in range(C):
        row = {int(j) for j in table[c] if j >= 0}
        assert row == {j for j in range(C) if is_pair(c, j, PARENT, L)}
    assert table[0].tolist() == [5, 6, 7, 11]  # children in map order
    assert neighbour_table([], 3).shape == (3, 1)


@pytest.mark.parametrize("tau", [1.0, 0.5])
def test_balce_int_and_soft_match_eq3(tau):
    counts = rand_counts(C)
    z = torch.randn(6, C) * 3
    y = torch.randint(0, C, (6,))
    prior = log_prior(counts, tau)
    ref = lambda z, t: slow_loss(z, t, counts, PARENT, L, 1.0, tau)  # noqa: E731
    check_value_and_grad(lambda z, y: balanced_softmax_ce(z, y, prior), z, y, lambda z, y: ref(z, one_hot(y, C)))
    t = torch.distributions.Dirichlet(torch.ones(C)).sample((6,))
    check_value_and_grad(lambda z, t: BalancedSoftmaxLoss(counts, tau)(z, t), z, t, ref)


def test_plain_ce_is_eq3_with_uniform_counts():
    z, y = torch.randn(6, C), torch.randint(0, C, (6,))
    ref = lambda z, t: slow_loss(z, t, np.ones(C), PARENT, L)  # noqa: E731
    check_value_and_grad(cross_entropy, z, y, lambda z, y: ref(z, one_hot(y, C)))
    _, t = mixup_batch(C, 0.1, seed=1)
    check_value_and_grad(CrossEntropyLoss(), torch.randn(len(t), C), t, ref)


@pytest.mark.parametrize("lam,tau", [(0.1, 1.0), (0.3, 0.7), (2.0, 1.0)])
def test_nsce_int_labels_match_eq4(lam, tau):
    counts = rand_counts(C, 1)
    loss = NeighbourSilencingLoss(counts, PARENT, L, lambda_s=lam, tau=tau)
    z = torch.randn(16, C) * 3
    y = torch.arange(16) % C  # every class, target and auxiliary, as a label
    check_value_and_grad(loss, z, y, lambda z, y: slow_loss(z, one_hot(y, C), counts, PARENT, L, lam, tau))


def test_nsce_random_soft_targets_match_eq4():
    counts = rand_counts(C, 2)
    loss = NeighbourSilencingLoss(counts, PARENT, L, lambda_s=0.1)
    z = torch.randn(6, C) * 3
    t = torch.distributions.Dirichlet(torch.full((C,), 0.5)).sample((6,))
    check_value_and_grad(loss, z, t, lambda z, t: slow_loss(z, t, counts, PARENT, L, 0.1))


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
@pytest.mark.parametrize("mode,mixup_alpha,cutmix_alpha", [("batch", 0.8, 0.0), ("batch", 0.0, 1.0),
                                                           ("pair", 0.8, 1.0), ("elem", 0.8, 1.0)])
def test_nsce_and_balce_with_timm_mixup_targets(smoothing, mode, mixup_alpha, cutmix_alpha):
    counts = rand_counts(C, 3)
    y, t = mixup_batch(C, smoothing, seed=7, mode=mode, mixup_alpha=mixup_alpha, cutmix_alpha=cutmix_alpha)
    assert torch.allclose(t.sum(1), torch.ones(len(t)))
    z = torch.randn(len(t), C) * 3
    ns = NeighbourSilencingLoss(counts, PARENT, L, lambda_s=0.1)
    check_value_and_grad(ns, z, t, lambda z, t: slow_loss(z, t, counts, PARENT, L, 0.1))
    bal = BalancedSoftmaxLoss(counts)
    check_value_and_grad(bal, z, t, lambda z, t: slow_loss(z, t, counts, PARENT, L, 1.0))


def test_mixup_target_is_the_mix_of_the_two_label_losses():
    """Without smoothing, batch-mode Mixup targets give lam * loss(y) + (1 - lam) * loss(y.flip)."""
    counts = rand_counts(C, 4)
    ns = NeighbourSilencingLoss(counts, PARENT, L, reduction="none")
    np.random.seed(3)
    y = torch.randperm(C)[:8]  # distinct labels, so y_i != y.flip(0)_i in every row
    _, t = Mixup(mixup_alpha=0.8, cutmix_alpha=0.0, label_smoothing=0.0, num_classes=C)(torch.randn(8, 3, 8, 8), y)
    lam = t[0, y[0]].item()
    assert 0 < lam < 1
    z = torch.randn(len(y), C)
    mixed = lam * ns(z, y) + (1 - lam) * ns(z, y.flip(0))
    torch.testing.assert_close(ns(z, t), mixed, atol=1e-5, rtol=1e-5)


def test_nsce_hard_path_equals_soft_path_on_one_hot():
    counts = rand_counts(C, 5)
    ns = NeighbourSilencingLoss(counts, PARENT, L, lambda_s=0.2)
    z, y = torch.randn(12, C) * 2, torch.arange(12) % C
    torch.testing.assert_close(ns(z, y), ns(z, F.one_hot(y, C).float()), atol=1e-5, rtol=1e-5)


def test_siblings_are_not_silenced():
    """Label 5 (child of 0, sibling of 6, 7, 11): only column 0 gets log lambda_s."""
    counts = rand_counts(C, 6)
    z, y = torch.randn(3, C), torch.full((3,), 5)
    shift = torch.zeros(C)
    shift[0] = np.log(0.1)
    expect = balanced_softmax_ce(z + shift, y, log_prior(counts))
    torch.testing.assert_close(NeighbourSilencingLoss(counts, PARENT, L)(z, y), expect)


def test_nsce_equals_balce_when_lambda_one_or_no_neighbours():
    counts = rand_counts(C, 7)
    z, y = torch.randn(8, C), torch.arange(8) % C
    t = torch.distributions.Dirichlet(torch.ones(C)).sample((8,))
    bal = BalancedSoftmaxLoss(counts)
    ns = NeighbourSilencingLoss(counts, PARENT, L, lambda_s=1.0)
    for target in (y, t):
        torch.testing.assert_close(ns(z, target), bal(z, target))
    # K = 0: only target classes, nothing to silence
    ns0, bal0 = NeighbourSilencingLoss(counts[:L], [], L), BalancedSoftmaxLoss(counts[:L])
    t0 = torch.distributions.Dirichlet(torch.ones(L)).sample((8,))
    for target in (y % L, t0):
        torch.testing.assert_close(ns0(z[:, :L], target), bal0(z[:, :L], target))


def finite_difference_check(fn, a: torch.Tensor, eps: float = 1e-6) -> None:
    """fn's per-row losses (float64) against central differences, with a fresh graph per evaluation.

    Each row's loss depends only on its own row of logits, so one backward of sum_b g_b loss_b
    gives every non-zero entry of the Jacobian (times g_b).
    """
    g = torch.rand(len(a), dtype=torch.float64) + 0.5
    x = a.clone().requires_grad_(True)
    (fn(x) * g).sum().backward()
    num = torch.zeros_like(a)
    for b in range(a.shape[0]):
        for j in range(a.shape[1]):
            hi, lo = a.clone(), a.clone()
            hi[b, j] += eps
            lo[b, j] -= eps
            num[b, j] = g[b] * (fn(hi)[b] - fn(lo)[b]) / (2 * eps)
    torch.testing.assert_close(x.grad, num, atol=1e-6, rtol=1e-5)


def test_gradients_match_finite_differences_float64():
    a = torch.randn(3, C, dtype=torch.float64) * 2
    t = torch.distributions.Dirichlet(torch.ones(C, dtype=torch.float64)).sample((3,))
    y = torch.tensor([0, 6, 11])
    prior = log_prior(rand_counts(C)).double()
    finite_difference_check(lambda a: _SoftNSCE.apply(a, prior, t, torch.tensor(PARENT), 0.1), a)
    ns = NeighbourSilencingLoss(rand_counts(C), PARENT, L, lambda_s=0.2, reduction="none")
    finite_difference_check(lambda a: ns(a, y), a)
    bal = BalancedSoftmaxLoss(rand_counts(C), reduction="none")
    finite_difference_check(lambda a: bal(a, t), a)


def test_float64_logits_with_float32_targets():
    """Soft targets arrive as float32 from timm's Mixup even when the logits are float64."""
    counts = rand_counts(C, 11)
    z = torch.randn(4, C, dtype=torch.float64, requires_grad=True)
    t = torch.distributions.Dirichlet(torch.ones(C)).sample((4,))
    for loss in (NeighbourSilencingLoss(counts, PARENT, L), BalancedSoftmaxLoss(counts), CrossEntropyLoss()):
        out = loss(z, t)
        assert out.dtype == torch.float64
        torch.testing.assert_close(out, loss(z.detach(), t.double()))
        z.grad = None
        out.backward()
        assert z.grad.dtype == torch.float64 and torch.isfinite(z.grad).all()


def test_second_backward_through_a_retained_graph_fails_loudly():
    """The backward reuses the saved softmax as the gradient: a second pass must raise, not mislead."""
    counts = rand_counts(C, 12)
    z = torch.randn(4, C, requires_grad=True)
    for loss in (NeighbourSilencingLoss(counts, PARENT, L), BalancedSoftmaxLoss(counts)):
        for target in (torch.arange(4), torch.distributions.Dirichlet(torch.ones(C)).sample((4,))):
            out = loss(z, target)
            out.backward(retain_graph=True)
            with pytest.raises(RuntimeError, match="modified by an inplace operation"):
                out.backward()


def test_reductions_and_functional_api():
    counts = rand_counts(C, 8)
    z, y = torch.randn(4, C), torch.arange(4)
    prior, parent = log_prior(counts), torch.tensor(PARENT)
    per = neighbour_silencing_ce(z, y, prior, parent, reduction="none")
    assert per.shape == (4,)
    torch.testing.assert_close(neighbour_silencing_ce(z, y, prior, parent, reduction="sum"), per.sum())
    torch.testing.assert_close(NeighbourSilencingLoss(counts, PARENT, L)(z, y), per.mean())


def test_large_label_space_is_never_squared():
    """~200K classes: any (C, C) float tensor would need 160 GB, so this only passes if none is built."""
    num_targets, k = 40_000, 4
    parent = np.repeat(np.arange(num_targets), k)
    counts = np.full(num_targets * (k + 1), 7)
    ns = NeighbourSilencingLoss(counts, parent, num_targets)
    z = torch.randn(2, len(counts), requires_grad=True)
    ns(z, torch.tensor([3, num_targets + 11])).backward()
    t = torch.full((2, len(counts)), 0.1 / len(counts))
    t[0, 3] += 0.9
    t[1, num_targets + 11] += 0.9
    ns(z, t).backward()
    assert torch.isfinite(z.grad).all()


def test_module_buffers_and_errors():
    counts = rand_counts(C, 9)
    ns = NeighbourSilencingLoss(counts, PARENT, L)
    assert set(ns.state_dict()) == {"log_prior", "aux_parent", "table"}
    assert isinstance(build_loss("nsce", counts, PARENT, L), NeighbourSilencingLoss)
    assert isinstance(build_loss("balce", counts), BalancedSoftmaxLoss)
    assert isinstance(build_loss("ce", counts), CrossEntropyLoss)
    with pytest.raises(ValueError, match="lambda_s"):
        NeighbourSilencingLoss(counts, PARENT, L, lambda_s=0.0)
    with pytest.raises(ValueError, match="class_counts has"):
        NeighbourSilencingLoss(counts[:-1], PARENT, L)
    with pytest.raises(ValueError, match="aux_parent values"):
        NeighbourSilencingLoss(counts, [0, 9, 0, 0, 0, 0, 0], L)
    with pytest.raises(ValueError, match="logits must be"):
        ns(torch.randn(2, C + 1), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="unknown loss"):
        build_loss("focal", counts)


def test_bfloat16_logits_under_autocast():
    """Low-precision logits: the loss is computed in float32, the gradient comes back in the logits' dtype."""
    counts = rand_counts(C, 10)
    ns = NeighbourSilencingLoss(counts, PARENT, L)
    z = torch.randn(4, C)
    y, t = torch.arange(4), torch.distributions.Dirichlet(torch.ones(C)).sample((4,))
    for target in (y, t):
        zb = z.bfloat16().requires_grad_(True)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = ns(zb, target)
        out.backward()
        assert out.dtype == torch.float32 and zb.grad.dtype == torch.bfloat16
        z32 = z.bfloat16().float().requires_grad_(True)
        ns(z32, target).backward()
        torch.testing.assert_close(out, ns(z.bfloat16().float(), target))
        torch.testing.assert_close(zb.grad.float(), z32.grad, atol=1e-2, rtol=1e-2)


# ---------------------------------------------------------------------------------------------
# the released hard mask (ns_mode: mask) against a per-sample, per-class reference

MASK_COUNTS = np.array([150, 40, 300, 90, 10] + [50] * len(PARENT))  # targets on both sides of below=100
VARIANTS = [("both", None, False), ("target", None, False), ("aux", None, False), ("both", 100, False),
            ("both", None, True), ("aux", 100, True)]


def silenced(y: int, j: int, pairs: str, below, aux_blind: bool) -> bool:
    """Whether a sample of label y does not see class j, decided pair by pair like the released generate_mask."""
    if j == y:
        return False
    small = lambda t: below is None or MASK_COUNTS[t] < below  # noqa: E731
    if y < L <= j and pairs in ("both", "target") and PARENT[j - L] == y and small(y):
        return True
    if j < L <= y and pairs in ("both", "aux") and PARENT[y - L] == j and small(j):
        return True
    return aux_blind and y >= L and j >= L


def slow_masked(z, t, labels, pairs, below, aux_blind):
    """Per sample: sum over kept c of t_c (logsumexp over kept j of a_j - a_c), a = z + log n; loops only."""
    a = z.double() + torch.tensor(MASK_COUNTS, dtype=torch.float64).log()
    out = []
    for i in range(len(z)):
        kept = [j for j in range(C) if not silenced(int(labels[i]), j, pairs, below, aux_blind)]
        lse = torch.logsumexp(torch.stack([a[i, j] for j in kept]), 0)
        out.append(sum(t[i, c].double() * (lse - a[i, c]) for c in kept))
    return torch.stack(out)


@pytest.mark.parametrize("pairs,below,aux_blind", VARIANTS)
def test_hard_mask_int_labels_match_reference(pairs, below, aux_blind):
    loss = NeighbourSilencingLoss(MASK_COUNTS, PARENT, L, mode="mask", pairs=pairs, below=below, aux_blind=aux_blind)
    z, y = torch.randn(2 * C, C) * 3, torch.arange(2 * C) % C  # every class as a label, twice
    check_value_and_grad(loss, z, y, lambda z, y: slow_masked(z, one_hot(y, C), y, pairs, below, aux_blind))


@pytest.mark.parametrize("pairs,below,aux_blind", VARIANTS)
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_hard_mask_mixup_targets_masked_by_pre_mix_label(pairs, below, aux_blind, smoothing):
    loss = NeighbourSilencingLoss(MASK_COUNTS, PARENT, L, mode="mask", pairs=pairs, below=below, aux_blind=aux_blind)
    y, t = mixup_batch(C, smoothing, seed=5, mode="elem", b=16)
    z = torch.randn(len(t), C) * 3
    check_value_and_grad(lambda z, t: loss(z, t, y), z, t, lambda z, t: slow_masked(z, t, y, pairs, below, aux_blind))
    # random soft targets with random pre-mix labels too (any mass anywhere)
    t = torch.distributions.Dirichlet(torch.full((C,), 0.5)).sample((8,))
    y = torch.randint(0, C, (8,))
    check_value_and_grad(lambda z, t: loss(z, t, y), z[:8], t,
                         lambda z, t: slow_masked(z, t, y, pairs, below, aux_blind))


def test_hard_mask_zeroes_a_silenced_partner_without_renormalising():
    """A target sample mixed with its own child: the child's mass is dropped, the row weighs lam, not 1."""
    loss = NeighbourSilencingLoss(MASK_COUNTS, PARENT, L, mode="mask", reduction="none")
    z = torch.randn(1, C)
    t = torch.zeros(1, C)
    t[0, 0], t[0, L] = 0.7, 0.3  # label 0 mixed with its child L
    torch.testing.assert_close(loss(z, t, torch.tensor([0])), 0.7 * loss(z, torch.tensor([0])))


def test_hard_mask_int_labels_are_eq4_at_lambda_zero():
    z, y = torch.randn(12, C) * 2, torch.arange(12) % C
    mask = NeighbourSilencingLoss(MASK_COUNTS, PARENT, L, mode="mask")
    soft = NeighbourSilencingLoss(MASK_COUNTS, PARENT, L, lambda_s=1e-30)
    torch.testing.assert_close(mask(z, y), soft(z, y), atol=1e-5, rtol=1e-5)


def test_hard_mask_errors_and_large_label_space():
    with pytest.raises(ValueError, match="pre-mix label"):
        NeighbourSilencingLoss(MASK_COUNTS, PARENT, L, mode="mask")(torch.randn(2, C), torch.full((2, C), 1 / C))
    with pytest.raises(ValueError, match="need mode='mask'"):
        NeighbourSilencingLoss(MASK_COUNTS, PARENT, L, aux_blind=True)
    with pytest.raises(ValueError, match="mode="):
        build_loss("nsce", MASK_COUNTS, PARENT, L, mode="hard")
    num_targets, k = 40_000, 4  # aux_blind silences ~160K columns per auxiliary row: still no (C, C) tensor
    parent = np.repeat(np.arange(num_targets), k)
    counts = np.full(num_targets * (k + 1), 7)
    ns = build_loss("nsce", counts, parent, num_targets, mode="mask", below=100, aux_blind=True)
    z = torch.randn(2, len(counts), requires_grad=True)
    labels = torch.tensor([3, num_targets + 11])
    ns(z, torch.full((2, len(counts)), 1 / len(counts)), labels).backward()
    assert torch.isfinite(z.grad).all() and z.grad[1, num_targets + 12] == 0
