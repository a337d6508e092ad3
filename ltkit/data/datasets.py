"""Dataset assembly: the config's `dataset` key to an `LTData` (the readers of each format live in `ltkit.data.readers`)."""
from __future__ import annotations

from pathlib import Path

from ltkit.config import Config
from ltkit.data import LTData, holdout_val, world_data
from ltkit.data.cifar import cifar_lt
from ltkit.data.classnames import find_class_names, read_class_names
from ltkit.data.readers import load_image_folders, load_imagenet_lt, load_inat, load_places_lt
from ltkit.errors import UserError
from ltkit.world import PRESETS, World, load_world


def build_target_data(cfg: Config) -> tuple[LTData, World | None]:
    """The target dataset of `cfg.dataset` with a val split, and the built-in world (else None).

    A dataset without a val split (iNat18, CIFAR-LT, folders without val/) gets one held out of
    train (`holdout_val`: `cfg.val_holdout` per class, seeded by `cfg.seed`), so per-epoch
    evaluation never sees test.
    """
    data, world = _load_target_data(cfg)
    return holdout_val(data, cfg.val_holdout, cfg.seed), world


def _load_target_data(cfg: Config) -> tuple[LTData, World | None]:
    """The dataset as its files define it."""
    name = cfg.dataset
    if name.startswith("builtin") or name in PRESETS:  # a world preset (builtin, ..., testbed)
        if name not in PRESETS:
            raise UserError(f"unknown built-in preset {name!r}; choose from {sorted(PRESETS)}")
        world = load_world(PRESETS[name])
        return world_data(world), world
    if cfg.data_root is None:
        raise UserError(f"dataset {name!r} needs data_root=PATH")
    if name == "imagenet-lt":
        return load_imagenet_lt(cfg.data_root, cfg.splits_dir, _class_names(cfg)), None
    if name == "places-lt":
        return load_places_lt(cfg.data_root, cfg.splits_dir, _class_names(cfg)), None
    if name == "inat18":
        root = Path(cfg.data_root)
        categories = root / "categories.json"  # the released real names; the competition files' are obfuscated
        return load_inat(root, cfg.inat_train_json or root / "train2018.json",
                         cfg.inat_val_json or root / "val2018.json",
                         categories if categories.is_file() else None), None
    if name in ("cifar10-lt", "cifar100-lt"):
        return cifar_lt(name.split("-")[0], cfg.data_root, cfg.head, cfg.imbalance, cfg.seed, download=True), None
    if name == "folders":
        root = Path(cfg.data_root)
        if cfg.photos.sources and not (root / "train").is_dir():
            raise UserError(f"{root / 'train'} not found: the preset cuts it from photos.sources; run "
                            "`python -m ltkit photos --config PRESET` (or `compare`, which runs it) first")
        return load_image_folders("folders", root / "train", root / "test",
                                  root / "val" if (root / "val").is_dir() else None), None
    raise UserError(f"unknown dataset {name!r}; expected a world preset (builtin, builtin-tiny, builtin-wide, testbed), imagenet-lt, places-lt, inat18, "
                    "cifar10-lt, cifar100-lt or folders")


def _class_names(cfg: Config) -> list[str] | None:
    """ImageNet-LT / Places-LT class names from a class-name file beside the split files (`ltkit.data.classnames`)."""
    path = find_class_names(cfg.dataset, cfg.splits_dir, cfg.data_root)
    return read_class_names(path) if path is not None else None
