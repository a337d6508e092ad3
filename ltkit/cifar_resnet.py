"""The CIFAR ResNets of He et al. (2016, Sec. 4.2), registered in timm: `resnet20_cifar`, `resnet32_cifar`, ...

ResNet-32 is the backbone of the CIFAR-LT results in LDAM (Cao et al. 2019), Balanced Softmax
(Ren et al. 2020) and logit adjustment (Menon et al. 2021): a 3x3 stem of 16 channels, three
stages of n basic blocks at 16, 32 and 64 channels (32x32, 16x16, 8x8 maps), depth 6n + 2,
global average pooling and a linear classifier; 0.46 M parameters at depth 32. Shortcuts are the
paper's option A (stride-2 subsampling and zero channels, no parameters), as in LDAM's code.

It trains with the papers' augmentation, a 4-pixel padded random crop and a horizontal flip:
`train_crop = "pad"` tells `ltkit.models.transforms` so.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.layers import ClassifierHead
from timm.models import build_model_with_cfg, generate_default_cfgs, register_model

from ltkit.backbone import StemStagesNet

__all__ = ["CifarResNet"]

CIFAR10_MEAN, CIFAR10_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)


class Block(nn.Module):
    """Basic block with an option-A shortcut: subsample by stride, pad the new channels with zeros."""

    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.stride, self.extra = stride, cout - cin

    def shortcut(self, x: torch.Tensor) -> torch.Tensor:
        """Identity, or every stride-th pixel with `extra` zero channels split around it."""
        if self.stride == 1 and self.extra == 0:
            return x
        x = x[:, :, ::self.stride, ::self.stride]
        return F.pad(x, (0, 0, 0, 0, self.extra // 2, self.extra - self.extra // 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)), inplace=True)
        return F.relu(self.bn2(self.conv2(out)) + self.shortcut(x), inplace=True)


class CifarResNet(StemStagesNet):
    """ResNet-(6n+2) for 32 px images, with timm's model interface (features, head, reset_classifier)."""

    train_crop = "pad"  # pad-4 random crop + flip, the CIFAR papers' augmentation

    def __init__(self, depth: int = 32, num_classes: int = 10, in_chans: int = 3, widths: tuple[int, ...] = (16, 32, 64),
                 global_pool: str = "avg", drop_rate: float = 0.0, **kwargs):
        super().__init__()
        kwargs.pop("img_size", None)  # any size works: the head pools globally
        if kwargs:
            raise TypeError(f"CifarResNet got unexpected arguments {sorted(kwargs)}")
        if depth < 8 or (depth - 2) % 6:
            raise ValueError(f"CIFAR ResNet depth must be 6n + 2 (20, 32, 44, 56, 110), got {depth}")
        n = (depth - 2) // 6
        self.num_classes, self.drop_rate = num_classes, drop_rate
        self.stem = nn.Sequential(nn.Conv2d(in_chans, widths[0], 3, 1, 1, bias=False), nn.BatchNorm2d(widths[0]),
                                  nn.ReLU(inplace=True))
        stages, cin = [], widths[0]
        self.feature_info = [dict(num_chs=widths[0], reduction=1, module="stem.2")]
        for i, w in enumerate(widths):
            stride = 1 if i == 0 else 2
            stages.append(nn.Sequential(Block(cin, w, stride), *[Block(w, w) for _ in range(n - 1)]))
            self.feature_info.append(dict(num_chs=w, reduction=stride * self.feature_info[-1]["reduction"],
                                          module=f"stages.{i}"))
            cin = w
        self.stages = nn.Sequential(*stages)
        self.num_features = self.head_hidden_size = cin
        self.head = ClassifierHead(cin, num_classes, pool_type=global_pool, drop_rate=drop_rate)
        for m in self.modules():  # He init for the convs, as in the paper; timm's default for the head
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")


def _cfg(**kwargs) -> dict:
    return dict(num_classes=10, input_size=(3, 32, 32), pool_size=(8, 8), crop_pct=1.0, interpolation="bilinear",
                mean=CIFAR10_MEAN, std=CIFAR10_STD, first_conv="stem.0", classifier="head.fc", license="mit",
                **kwargs)


DEPTHS = {"resnet20_cifar": 20, "resnet32_cifar": 32, "resnet44_cifar": 44, "resnet56_cifar": 56}
default_cfgs = generate_default_cfgs({name: _cfg() for name in DEPTHS})  # no hub weights: trained from scratch


def _create(variant: str, pretrained: bool = False, **kwargs) -> CifarResNet:
    return build_model_with_cfg(CifarResNet, variant, pretrained, depth=DEPTHS[variant],
                                feature_cfg=dict(flatten_sequential=True, out_indices=(0, 1, 2, 3)), **kwargs)


@register_model
def resnet20_cifar(pretrained: bool = False, **kwargs) -> CifarResNet:
    """ResNet-20 for CIFAR (0.27 M parameters)."""
    return _create("resnet20_cifar", pretrained, **kwargs)


@register_model
def resnet32_cifar(pretrained: bool = False, **kwargs) -> CifarResNet:
    """ResNet-32 for CIFAR (0.46 M parameters): the CIFAR-LT papers' backbone."""
    return _create("resnet32_cifar", pretrained, **kwargs)


@register_model
def resnet44_cifar(pretrained: bool = False, **kwargs) -> CifarResNet:
    """ResNet-44 for CIFAR (0.66 M parameters)."""
    return _create("resnet44_cifar", pretrained, **kwargs)


@register_model
def resnet56_cifar(pretrained: bool = False, **kwargs) -> CifarResNet:
    """ResNet-56 for CIFAR (0.85 M parameters)."""
    return _create("resnet56_cifar", pretrained, **kwargs)
