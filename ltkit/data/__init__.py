"""The data layer: every dataset, built-in or real, as an `LTData` of three image sets.

`profiles` (imbalance profiles, shot groups), `images` (image sets, `LTData`, long-tailed subsets),
`taxonomy` (class hierarchies from any source), `classnames` (the real benchmarks' class-name files),
`readers` (ImageNet-LT / Places-LT / iNat18 / image folders / CIFAR-100 in their native formats),
`cifar` (CIFAR-10/100-LT) and `datasets` (`cfg.dataset` to an `LTData`). The package exports the
first two, which every stage uses.
"""
from ltkit.data.images import (IMAGE_EXTENSIONS, ArrayImages, FileImages, ImageSet, LTData, TransformedSet, holdout_val,
                               make_long_tailed, world_data)
from ltkit.data.profiles import (exp_profile, pareto_profile, profile_counts, shot_accuracy, shot_groups,
                                 subsample_indices)

__all__ = ['ArrayImages', 'FileImages', 'IMAGE_EXTENSIONS', 'ImageSet', 'LTData', 'TransformedSet',
           'exp_profile', 'holdout_val', 'make_long_tailed', 'pareto_profile', 'profile_counts', 'shot_accuracy',
           'shot_groups', 'subsample_indices', 'world_data']
