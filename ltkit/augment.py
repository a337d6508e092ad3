"""Training transforms for small images: the CIFAR papers' padded random crop and flip.

ResNet-on-CIFAR papers (He et al. 2016; LDAM, Balanced Softmax and logit adjustment after them)
pad a 32 px image by 4 pixels, crop 32 px at random and flip: the object stays whole and at its
scale. `ltkit.models.transforms(crop="pad")` builds this; RandAugment, colour jitter and random
erasing are added only when asked for, with timm's own implementations and parameters.
"""
from __future__ import annotations

from typing import Callable

from PIL import Image
from torchvision import transforms as T


class FitSize:
    """Resize (shorter side) and centre-crop to `size` only when an image is not size x size already."""

    def __init__(self, size: int, interpolation: T.InterpolationMode = T.InterpolationMode.BILINEAR):
        self.size = size
        self.fit = T.Compose([T.Resize(size, interpolation=interpolation), T.CenterCrop(size)])

    def __call__(self, img: Image.Image) -> Image.Image:
        return img if img.size == (self.size, self.size) else self.fit(img)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(size={self.size})"


def pad_crop_transform(size: int, mean: tuple[float, ...], std: tuple[float, ...], padding: int = 4,
                       hflip: float = 0.5, randaugment: str | None = None, color_jitter: float = 0.0,
                       re_prob: float = 0.0) -> Callable:
    """PIL in, normalised tensor out: [fit to size], pad-`padding` random crop, flip, [RandAugment, jitter], [erasing]."""
    from timm.data.auto_augment import rand_augment_transform
    from timm.data.random_erasing import RandomErasing

    ops: list[Callable] = [FitSize(size), T.RandomCrop(size, padding=padding)]
    if hflip > 0:
        ops.append(T.RandomHorizontalFlip(hflip))
    if randaugment:
        # timm's hparams for RandAugment (as in timm.data.transforms_factory)
        hparams = dict(translate_const=int(size * 0.45), img_mean=tuple(round(255 * m) for m in mean))
        ops.append(rand_augment_transform(randaugment, hparams))
    if color_jitter:
        ops.append(T.ColorJitter(*(float(color_jitter),) * 3))
    ops += [T.ToTensor(), T.Normalize(mean, std)]
    if re_prob > 0:
        ops.append(RandomErasing(re_prob, mode="pixel", device="cpu"))
    return T.Compose(ops)
