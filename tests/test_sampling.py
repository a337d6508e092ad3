"""Auxiliary class selection, per-epoch capped draws and DDP sharding."""
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, DistributedSampler

from ltkit.budget import aux_budget
from ltkit.sampling import EpochSampler, aux_draws, class_counts, select_auxiliary, shard


def aux_images(available, seed=0):
    """Shuffled auxiliary image labels with `available[k]` images of class k."""
    labels = np.repeat(np.arange(len(available)), available)
    return np.random.default_rng(seed).permutation(labels)


def test_select_auxiliary_keeps_first_budget_in_map_order():
    parent = np.array([0, 1, 0, 0, 1, 2, 0])
    keep = select_auxiliary(parent, budget=[2, 5, 0])
    assert keep.tolist() == [True, True, True, False, True, False, False]
    # a class without images gives its place to the next sibling
    keep = select_auxiliary(parent, [2, 5, 0], available=[0, 3, 4, 9, 1, 5, 2])
    assert keep.tolist() == [False, True, True, True, True, False, False]
    # a seed picks a random budget[t] instead, reproducibly
    draws = {tuple(select_auxiliary(parent, [2, 5, 0], seed=s)) for s in range(20)}
    for d in draws:
        assert np.bincount(parent[np.array(d)], minlength=3).tolist() == [2, 2, 0]
    assert len(draws) > 1
    assert (select_auxiliary(parent, [2, 5, 0], seed=4) == select_auxiliary(parent, [2, 5, 0], seed=4)).all()


def test_budget_ratio_respected():
    """1:1:3 with k=5 gives head/medium 2 and tail 5; a target never gets more than its map has."""
    train_counts = np.array([500, 300, 150, 60, 40, 10, 5, 3])  # many, many, many, medium x2, few x3
    budget = aux_budget(train_counts, k=5, ratio="1:1:3")
    assert budget.tolist() == [2, 2, 2, 2, 2, 5, 5, 5]
    parent = np.repeat(np.arange(8), 8)
    parent[parent == 7] = 6  # target 7 has no neighbours; target 6 has 16
    kept = np.bincount(parent[select_auxiliary(parent, budget)], minlength=8)
    assert kept.tolist() == [2, 2, 2, 2, 2, 5, 5, 0]
    # the paper's default ratio 1 : ceil(Nh/Nm) : ceil(Nh/Nt) = 1 : ceil(950/100) : ceil(950/18) = 1 : 10 : 53
    kept = np.bincount(parent[select_auxiliary(parent, aux_budget(train_counts, k=5))], minlength=8)
    assert kept.tolist() == [1, 1, 1, 1, 1, 5, 5, 0]


def test_class_counts():
    assert class_counts([100, 10], [3, 80, 50], cap=50).tolist() == [100, 10, 3, 50, 50]


def test_epoch_caps_and_targets():
    available = np.array([3, 50, 51, 200, 0, 7])
    labels = aux_images(available)
    sampler = EpochSampler(num_target=40, aux_labels=labels, cap=50, seed=0)
    assert sampler.aux_counts() == {0: 3, 1: 50, 2: 50, 3: 50, 5: 7}
    for epoch in range(3):
        idx = sampler.indices(epoch)
        assert len(idx) == len(np.unique(idx)) == sampler.epoch_size() == 40 + 160
        src = (idx >= 40).astype(int)  # target images first, then the auxiliary ones
        local = idx - 40 * src
        assert sorted(local[src == 0].tolist()) == list(range(40))  # every target image, once
        drawn = np.bincount(labels[local[src == 1]], minlength=len(available))
        assert drawn.tolist() == np.minimum(available, 50).tolist()


def test_epoch_draws_change_and_reproduce():
    labels = aux_images([200] * 10)
    a = EpochSampler(5, labels, cap=20, seed=11)
    b = EpochSampler(5, labels, cap=20, seed=11)
    c = EpochSampler(5, labels, cap=20, seed=12)
    assert (a.indices(3) == b.indices(3)).all()  # same (seed, epoch), fresh object
    assert set(a.indices(3)) != set(a.indices(4))  # a fresh draw each epoch, not just a reshuffle
    assert set(a.indices(3)) != set(c.indices(3))
    ordered = EpochSampler(5, labels, cap=20, seed=11, shuffle=False).indices(3)
    assert (np.diff(ordered) > 0).all() and set(ordered) == set(a.indices(3))


def test_negative_labels_and_empty_auxiliary():
    labels = np.array([0, -1, 1, -1, 1])
    idx = EpochSampler(2, labels, cap=5).indices(0)
    assert sorted(idx.tolist()) == [0, 1, 2, 4, 6]
    assert sorted(EpochSampler(7, [], cap=50).indices(0).tolist()) == list(range(7))  # K = 0: targets only
    assert sorted(EpochSampler(3, labels, cap=0).indices(1).tolist()) == [0, 1, 2]


@pytest.mark.parametrize("n,world", [(203, 4), (200, 4), (5, 8)])
def test_shard_matches_distributed_sampler(n, world):
    order = np.random.default_rng(0).permutation(n)
    parts = [shard(order, r, world) for r in range(world)]
    assert len({len(p) for p in parts}) == 1
    assert set(np.concatenate(parts)) == set(order.tolist())  # coverage
    pad = len(parts[0]) * world - n
    assert sum(len(p) for p in parts) - len(set(np.concatenate(parts))) == pad  # only the wrap-around repeats
    for r in range(world):
        torch_idx = list(DistributedSampler(order.tolist(), world, r, shuffle=False))
        assert order[torch_idx].tolist() == parts[r].tolist()
        dropped = list(DistributedSampler(order.tolist(), world, r, shuffle=False, drop_last=True))
        assert order[dropped].tolist() == shard(order, r, world, drop_last=True).tolist()
    if n >= world:  # without padding the slices are disjoint
        dl = [set(shard(order, r, world, drop_last=True).tolist()) for r in range(world)]
        assert sum(len(s) for s in dl) == len(set().union(*dl))


def test_sampler_ranks_and_dataloader_resume():
    labels = aux_images([30, 80, 11])
    ranks = [EpochSampler(25, labels, cap=20, seed=5, rank=r, world_size=3) for r in range(3)]
    for s in ranks:
        s.set_epoch(2)
    per_rank = [list(s) for s in ranks]
    assert all(len(p) == len(ranks[0]) == 26 for p in per_rank)  # 25 + 20 + 20 + 11 = 76, padded to 78
    assert set(sum(per_rank, [])) == set(ranks[0].indices(2).tolist())
    loader = DataLoader(range(25 + len(labels)), batch_size=4, sampler=ranks[1])
    assert torch.cat(list(loader)).tolist() == per_rank[1]
    # resume rank 1 after 8 samples from its state alone
    fresh = EpochSampler(25, labels, cap=20, rank=1, world_size=3)
    fresh.load_state_dict({**ranks[1].state_dict(), "start": 8})
    assert list(fresh) == per_rank[1][8:] and len(fresh) == len(per_rank[1]) - 8


def test_released_rule_counts_and_prior():
    available = [3, 20, 21, 100, 101, 400, 0]
    assert aux_draws(available, 50, "released").tolist() == [50, 50, 21, 100, 50, 50, 0]
    assert aux_draws(available, 50, "cap").tolist() == [3, 20, 21, 50, 50, 50, 0]
    assert class_counts([7], [3, 150], cap=50, rule="released").tolist() == [7, 50, 50]
    with pytest.raises(ValueError, match="aux_sampling"):
        EpochSampler(2, [0, 1], rule="paper")


def test_released_rule_epoch_draws():
    """> 100 images: 50 distinct; 21-100: every image once; <= 20: 50 with replacement; fresh each epoch."""
    available = np.array([5, 60, 250])
    labels = aux_images(available)
    sampler = EpochSampler(num_target=10, aux_labels=labels, cap=50, seed=3, rule="released")
    assert sampler.aux_counts() == {0: 50, 1: 60, 2: 50} and sampler.epoch_size() == 10 + 160
    draws = []
    for epoch in range(2):
        idx = sampler.indices(epoch)
        assert len(idx) == sampler.epoch_size()
        assert sorted(idx[idx < 10].tolist()) == list(range(10))
        aux = idx[idx >= 10] - 10
        per_class = [np.sort(aux[labels[aux] == k]) for k in range(len(available))]
        assert [len(p) for p in per_class] == [50, 60, 50]
        assert len(np.unique(per_class[0])) <= 5 and len(np.unique(per_class[2])) == 50
        assert per_class[1].tolist() == np.flatnonzero(labels == 1).tolist()  # all of them, once
        draws.append(per_class)
    assert draws[0][2].tolist() != draws[1][2].tolist() and draws[0][0].tolist() != draws[1][0].tolist()
    assert (sampler.indices(1) == EpochSampler(10, labels, cap=50, seed=3, rule="released").indices(1)).all()
