"""The Pareto profile has ImageNet-LT's shape (Liu et al. 2019: Pareto alpha = 6, 1280 .. 5 images)."""
import numpy as np
import pytest

from ltkit.data import profile_counts, shot_groups

# ImageNet-LT's train split: classes with > 100, 20..100 and < 20 images, and its size
IMAGENET_LT = {"many": 385, "medium": 479, "few": 136, "images": 115_846}


def test_pareto_profile_has_imagenet_lt_shape():
    c = profile_counts("pareto", 1000, 1280, 256)
    assert c.max() == 1280 and c.min() == 5 and (np.diff(c) <= 0).all()
    g = shot_groups(c)
    got = {k: int((g == k).sum()) for k in ("many", "medium", "few")} | {"images": int(c.sum())}
    for k, want in IMAGENET_LT.items():
        assert got[k] == pytest.approx(want, rel=0.05), (k, got)


def test_exp_profile_is_not_imagenet_lt_shaped():
    """The check above can fail: CIFAR's exponential profile with the same ends misses it."""
    g = shot_groups(profile_counts("exp", 1000, 1280, 256))
    assert abs((g == "few").sum() - IMAGENET_LT["few"]) > 0.05 * IMAGENET_LT["few"]
