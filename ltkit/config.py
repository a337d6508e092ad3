"""The one config every stage reads: a YAML preset plus `key=value` / `section.key=value` overrides.

Shared settings are set once at the top level: `k` (auxiliary categories per class), `aux_ratio`
(head:medium:tail budget) and the shot thresholds `many` / `few` drive the neighbour search, the
sampler and the evaluation alike. Each stage that has settings of its own gets a section, a nested
mapping in YAML (`crawl: {workers: 8}`) and its own dataclass here.

Fields marked `run_only` do not change what is trained (output names, progress, test-time
classifier); `recipe()` leaves them out, so a resume may change them and run names ignore them.
"""
from __future__ import annotations

import dataclasses
import hashlib
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ltkit.errors import ConfigError
from ltkit.io import read_text
from ltkit.paths import repo_root


def run_only(default: Any = None, within: str | None = None) -> Any:
    """A field that may differ between a run and its resume (left out of `recipe`); `within` as in `bounded`."""
    return field(default=default, metadata={"run_only": True, **({"within": within} if within else {})})


def bounded(default: Any, within: str) -> Any:
    """A numeric field with its allowed values: an interval such as "[1, inf)" or "(0, 1]", or "0 or [0.01, 100]"."""
    return field(default=default, metadata={"within": within})


# ---------------------------------------------------------------------------------------------
# sections: one dataclass per stage


@dataclass
class NeighbourConfig:
    """Neighbour category search (paper Sec. 3.1): `python -m ltkit neighbours`, and the map training reads."""

    backend: str = "taxonomy"          # taxonomy (offline) | openai (any OpenAI-compatible server) | manual
                                       # | random (RD: random names from `file`, a vocabulary; the taxonomy's classes)
    model: str | None = None           # openai: model name, e.g. gpt-4o-mini or a local server's model
    base_url: str | None = None        # openai: endpoint, e.g. http://localhost:8000/v1 (default OPENAI_BASE_URL)
    template: str | None = None        # openai: prompt template file with {CLS} and optionally {K}; None: the paper's
    file: str | None = None            # manual: JSON {class: [names]} or CSV class,neighbour
    taxonomy_json: str | None = None   # taxonomy: a Taxonomy JSON instead of the world's
    classes_file: str | None = None    # target classes (name[,train_count] per line) instead of the dataset's
    out_dir: str | None = None         # where neighbours.csv goes; default: <out_dir>/_neighbours/<settings>
    cache: str | None = run_only(None)  # the answer cache; default: llm_cache.jsonl beside neighbours.csv
    timeout: float = run_only(60.0, "(0, 3600]")  # openai: seconds per request
    retries: int = run_only(4, "[0, 100]")  # openai: retries on 429, 5xx, timeouts
    structured: bool = False           # openai: ask for a JSON list (response_format); falls back to the prompt
    workers: int = run_only(8, "[1, 1024]")  # requests in flight at once
    price_per_1k: float | None = run_only(None, "[0, inf)")  # price per 1K tokens, to show the cost


@dataclass
class CrawlConfig:
    """Image search and download for the auxiliary categories (`python -m ltkit crawl`; docs/crawl.md)."""

    engine: str = "pool"               # pool (the world's pool, or pool_dir) | ddgs (web image search)
    out_dir: str | None = None         # crawl folder; default: the neighbour map's folder
    per_class: int = bounded(50, "[1, 10000]")  # search hits per auxiliary class
    query: str = "{name}"              # search query; {name} is the auxiliary class name
    pool_dir: str | None = None        # pool: a folder of images with captions.csv (path,caption[,label])
    ddgs_backend: str = "duckduckgo"   # ddgs: pinned engine ("auto" picks DDG or Bing at random)
    region: str = "us-en"              # ddgs
    safesearch: str = "moderate"       # ddgs: on | moderate | off
    license: str | None = None         # ddgs: Public | Share | ShareCommercially | Modify | ModifyCommercially
    resize: int | None = bounded(None, "[1, 100000]")  # longest side of stored images (down only); None keeps the size
    search_interval: float = run_only(1.5, "[0, 600]")  # ddgs: seconds between searches
    search_retries: int = run_only(4, "[0, 100]")  # ddgs: retries with backoff per query
    concurrency: int = run_only(64, "[1, 100000]")  # requests in flight
    per_host: int = run_only(2, "[1, 1000]")  # connections per host
    host_interval: float = run_only(0.2, "[0, 600]")  # seconds between request starts to one host
    rate_limit: float = run_only(0.0, "0 or [0.01, 1e6]")  # requests per second overall; 0 = no limit
    connect_timeout: float = run_only(10.0, "(0, 3600]")
    read_timeout: float = run_only(20.0, "(0, 3600]")
    total_timeout: float = run_only(60.0, "(0, 3600]")  # per request: ends slow drips
    retries: int = run_only(2, "[0, 100]")  # on 429, 5xx and dropped connections (Retry-After honoured)
    backoff: float = run_only(1.0, "[0, 600]")  # seconds, doubled per retry, when no Retry-After is sent
    max_bytes: int = run_only(20_000_000, "[1, 1e11]")
    max_pixels: int = run_only(40_000_000, "[1, 1e11]")  # decompression-bomb limit
    max_redirects: int = run_only(5, "[0, 100]")
    allow_loopback: bool = run_only(False)  # admit 127.0.0.0/8 (tests, local servers); private ranges never
    progress: bool = run_only(True)


@dataclass
class FilterConfig:
    """Caption and similarity filters of the crawled images (paper Sec. 3.1; `python -m ltkit filter`)."""

    caption_mode: str = "phrase"       # phrase | words | off: how the caption must name the auxiliary class
    gamma1: float = bounded(0.7, "[-1, 1]")  # keep gamma1 < cos(prototype of the parent, image feature) < gamma2
    gamma2: float = bounded(0.98, "[-1, 1]")
    encoder: str = "pool"              # ltkit.encoder.parse_spec: pool[:epochs=N,classes=...] | timm:<name>[@<file>|@pool[:...]|@none] | dinov2[:<timm name>] | efficientnet_lite0[:px]
    leak_hamming: int = bounded(6, "[0, 64]")  # pHash bits (of 64): a val/test image this close is a test leak
    leak_cos: float = bounded(0.99, "[-1, 1]")  # feature cosine: a val/test image this similar is a test leak
    leak_splits: list[str] = field(default_factory=lambda: ["val", "test"])  # target splits the leak check compares with
    cap: int = run_only(50, "[1, inf)")  # the tuner shows kept images per class against this cap
    batch_size: int = run_only(256, "[1, inf)")  # encoder batch

    def check(self) -> "FilterConfig":
        """Raise a ConfigError naming the field of an impossible setting."""
        if self.caption_mode not in ("phrase", "words", "off"):
            raise ConfigError(f"filter.caption_mode: {self.caption_mode!r}, expected phrase, words or off")
        if not -1.0 <= self.gamma1 < self.gamma2 <= 1.0:
            raise ConfigError(f"filter.gamma1/gamma2: need -1 <= gamma1 < gamma2 <= 1, got {self.gamma1}, {self.gamma2}")
        bad = set(self.leak_splits) - {"train", "val", "test"}
        if bad:
            raise ConfigError(f"filter.leak_splits: unknown split(s) {sorted(bad)}; expected train, val, test")
        return self


@dataclass
class PilotConfig:
    """The pilot study: how granularity relates to accuracy (`python -m ltkit pilot`)."""

    pool: str | None = None            # a world preset (builtin, ...), cifar100 or folders; None: the config's dataset
    taxonomy: str | None = None        # folders: a Taxonomy JSON file, or "wordnet" for folders named by wnid
    model: str | None = None           # frozen encoder (a timm name); None: the config's model
    pretrained: str | None = None      # its weights: pool | hf | a file | none; None: the config's pretrained
    img_size: int | None = bounded(None, "[1, 10000]")  # encoder input size; None: the config's img_size
    num_classes: int = bounded(48, "[2, inf)")  # N classes per draw (the paper: 500)
    superclasses: list[int] = field(default_factory=lambda: [4, 8, 16, 24], metadata={"within": "[1, inf)"})  # S (the paper: 20, 40, 60, 100)
    ratios: list[float] = field(default_factory=lambda: [1.0, 0.5, 0.1, 0.05, 0.01, 0.001], metadata={"within": "(0, 1]"})  # tail / head
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])  # a draw per (S, seed) (the paper: 5 runs)
    level: str = "auto"                # taxonomy level of the superclasses (0 = coarsest); auto: coarsest that fits
    head: int = bounded(100, "[1, inf)")  # train images of the head class
    test_per_class: int = bounded(20, "[1, inf)")  # the balanced test split
    features: str = "frozen"           # frozen: a probe on frozen encoder features | trained: the whole model
                                       # (model / pretrained, or scratch with pretrained: scratch) trained per cell
    hidden: int = bounded(0, "[0, inf)")  # frozen: 0 linear probe; > 0 one hidden layer of that width
    steps: int = bounded(300, "[1, inf)")  # frozen: AdamW steps per cell (the same for every cell, whatever its size)
    batch_size: int = bounded(256, "[1, inf)")  # frozen
    lr: float = bounded(0.01, "(0, inf)")  # frozen
    weight_decay: float = bounded(0.001, "[0, inf)")  # frozen
    train_steps: int = bounded(400, "[1, inf)")  # trained: SGD steps per cell (the same for every cell, whatever its size)
    train_batch_size: int = bounded(128, "[1, inf)")  # trained
    train_lr: float = bounded(0.1, "(0, inf)")  # trained: peak lr of the one-cycle schedule (SGD-Nesterov, weight decay 5e-4)
    head_tail_frac: float = bounded(1 / 3, "(0, 0.5]")  # head / tail: the top / bottom fraction of classes by train count
    out_dir: str | None = run_only(None)  # default: <out_dir>/pilot-<pool>-<recipe hash>


@dataclass
class PhotosConfig:
    """A long-tailed task and an open captioned pool cut from labelled photo sets (`python -m ltkit photos`).

    The builder (`ltkit.data.photos`) writes the image folders every stage reads as it reads a user's
    own: `<out_dir>/target/{train,val,test}/<class>/` (dataset: folders) and `<out_dir>/pool/` with
    captions.csv (crawl.pool_dir). The top-level `head` and `imbalance` shape the target train split.
    """

    sources: list = field(default_factory=list)  # photo sets: folders or .tar.gz with train/<class>/ and
                                                 # test/ (or val/) class folders; a classes.csv (folder,name) renames
    targets: list = field(default_factory=list)  # target classes, head first (the order sets the counts)
    pool_classes: list | None = None   # the pool's classes; None: every source class that is not a target
    out_dir: str | None = None         # where target/ and pool/ go (rebuilt when a setting here changes)
    val_per_class: int = 20            # balanced val from train images the long-tailed split left out
    test_per_class: int | None = None  # from each source's test split; None: all of it
    pool_per_class: int = 150          # pool items filed under each pool class (what a search returns)
    # noise rates of the pool (the rest are clean), as the built-in world's pool
    off_topic: float = 0.10            # photo and caption of another pool class
    mislabelled: float = 0.05          # photo of another pool class, caption names this one
    uncaptioned: float = 0.10          # right photo, a caption naming no class
    junk: float = 0.05                 # the photo cut into 4 x 4 tiles and shuffled: no object left
    near_duplicate: float = 0.03       # a jittered copy of a target test photo (a test leak)
    seed: int = 0                      # the draw of the task and the pool (fixed across training seeds)


SECTIONS = {"neighbours": NeighbourConfig, "crawl": CrawlConfig, "filter": FilterConfig, "pilot": PilotConfig,
            "photos": PhotosConfig}


# ---------------------------------------------------------------------------------------------
# the config


@dataclass
class Config:
    """Everything one run depends on; written next to its results."""

    name: str = run_only("run")
    out_dir: str = run_only("runs")
    seed: int = 0
    # data: builtin | builtin-tiny | imagenet-lt | places-lt | inat18 | cifar10-lt | cifar100-lt | folders
    dataset: str = "builtin"
    data_root: str | None = None
    splits_dir: str | None = None      # ImageNet-LT / Places-LT split files (default: data_root)
    inat_train_json: str | None = None
    inat_val_json: str | None = None
    imbalance: float = bounded(100.0, "[1, inf)")  # cifar10-lt / cifar100-lt / photos: head / tail images
    head: int | None = bounded(None, "[1, inf)")  # cifar10-lt / cifar100-lt / photos: images of the head class (None: 5000 / 500)
    many: int = bounded(100, "[1, inf)")  # shot-group thresholds: many > 100 images, few < 20
    few: int = bounded(20, "[0, inf)")
    val_holdout: int = bounded(10, "[0, inf)")  # without a val split: per-class images held out of train as val (data.holdout_val)
    # auxiliary data: none | neighbours (SD) | random (RD)
    aux: str = "none"
    neighbours_csv: str | None = None  # from `python -m ltkit neighbours`; default: neighbours.out_dir's
    aux_images: str | None = None      # crawl (this config's filtered crawl), an accepted.csv or <aux name>/ folders; None: world pool
    k: int = bounded(5, "[1, 1000]")  # auxiliary categories per class at most
    aux_ratio: str | None = None       # head:medium:tail, e.g. "1:1:3"; None = 1:ceil(Nh/Nm):ceil(Nh/Nt)
    aux_cap: int = bounded(50, "[1, inf)")  # images per auxiliary class per epoch
    aux_sampling: str = "cap"          # cap: min(aux_cap, n) (the paper) | released: the authors' code (ltkit.sampling)
    # loss: ce | balce | nsce
    loss: str = "balce"
    lambda_s: float = bounded(0.1, "(0, 1]")
    tau: float = bounded(1.0, "[0, inf)")
    ns_mode: str = "soft"              # nsce: soft (the paper's lambda_s, Eq. 4) | mask (the released hard mask)
    ns_pairs: str = "both"             # mask: who is silenced: both | target (target samples only) | aux
    ns_below: int | None = bounded(None, "[1, inf)")  # mask: only targets with fewer training images (released no_fm: 100)
    ns_aux_blind: bool = False         # mask: auxiliary samples see no other auxiliary class (released _back)
    # model
    model: str = "ltkit_cnn_small"
    pretrained: str | None = None      # None | "pool" | "hf" (HF cache) | path to a weights file
    img_size: int = bounded(32, "[1, 10000]")
    head_norm: str | None = None       # bn: BatchNorm1d(affine=False) before the linear head (released DINOv2)
    # optimisation
    epochs: int = bounded(30, "[1, inf)")  # the paper's equal-epoch protocol; `steps` overrides it
    steps: int | None = bounded(None, "[1, inf)")  # optimizer steps in all (one compute budget); epochs follow, the last may be partial
    head_warmup_epochs: int = bounded(0, "[0, inf)")  # the first epochs train the head alone, the encoder frozen (released: 3)
    batch_size: int = bounded(128, "[1, inf)")  # per step, across all processes
    accum_steps: int = bounded(1, "[1, inf)")  # effective batch = batch_size * accum_steps
    lr: float = bounded(2e-3, "(0, inf)")  # used as given unless blr is set
    blr: float | None = bounded(None, "(0, inf)")  # base lr per 256 images (MAE / LiVT): lr = blr x batch_size x accum_steps / 256
    weight_decay: float = bounded(0.05, "[0, inf)")  # timm's AdamW groups: none on norms, biases and embeddings
    layer_decay: float | None = bounded(None, "(0, 1]")  # layer-wise lr decay (timm), e.g. 0.75 for ViT-B fine-tuning; None: off
    drop_path: float = bounded(0.0, "[0, 1)")  # stochastic depth (models that take drop_path_rate, e.g. ViTs)
    warmup_epochs: float = bounded(2.0, "[0, inf)")
    warmup_steps: int | None = bounded(None, "[0, inf)")  # lr warmup in optimizer steps, the same for every row of an
                                       # equal-step table; None: warmup_epochs x steps per epoch
    betas: tuple[float, float] = bounded((0.9, 0.95), "[0, 1)")
    optimizer: str = "adamw"           # adamw | sgd (momentum, as the CIFAR ResNet papers train)
    momentum: float = bounded(0.9, "[0, 1)")  # sgd
    augment: bool = True               # False: train on the eval transform (no crop, flip or RandAugment)
    randaugment: str | None = "rand-m9-mstd0.5"
    color_jitter: float = bounded(0.4, "[0, inf)")  # timm's default; 0 where colour is a class attribute (the world)
    mixup: float = bounded(0.8, "[0, inf)")
    cutmix: float = bounded(1.0, "[0, inf)")
    label_smoothing: float = bounded(0.0, "[0, 1)")
    amp: bool = True                   # bf16 autocast on GPU
    channels_last: bool = run_only(False)  # NHWC images and weights (faster convolutions on GPU)
    compile: bool = run_only(False)    # torch.compile the model
    num_workers: int = run_only(0, "[0, 1024]")
    threads: int | None = run_only(1, "[1, 1024]")  # torch CPU threads, pinned (ltkit.rng.pinned_threads) so
                                       # OMP_NUM_THREADS changes no digit; None: torch's default (numbers then follow it)
    device: str | None = run_only(None)  # default: cuda if available
    # evaluation: direct | crt | tau
    classifier: str = run_only("direct")
    eval_every: int = run_only(1, "[0, inf)")
    progress: bool = run_only(True)
    # stage sections
    neighbours: NeighbourConfig = field(default_factory=NeighbourConfig)
    crawl: CrawlConfig = field(default_factory=CrawlConfig)
    filter: FilterConfig = field(default_factory=FilterConfig)
    pilot: PilotConfig = field(default_factory=PilotConfig)
    # in a recipe only when set: the section came late, and most presets never use it, so their run
    # names stayed what they were
    photos: PhotosConfig = field(default_factory=PhotosConfig, metadata={"recipe_when_set": True})

    @property
    def run_dir(self) -> Path:
        return Path(self.out_dir) / self.name


# ---------------------------------------------------------------------------------------------
# YAML without surprises


class _YAMLLoader(yaml.SafeLoader):
    """SafeLoader without YAML 1.1's base-60 numbers, so `aux_ratio: 1:1:3` stays the string '1:1:3'."""


_YAMLLoader.yaml_implicit_resolvers = {
    ch: [(tag, rx) for tag, rx in resolvers if tag not in ("tag:yaml.org,2002:int", "tag:yaml.org,2002:float")]
    for ch, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}
_YAMLLoader.add_implicit_resolver("tag:yaml.org,2002:int", re.compile(r"^[-+]?(0|[1-9][0-9_]*)$"), list("-+0123456789"))
_YAMLLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(\.[0-9]+|[0-9][0-9_]*(\.[0-9_]*)?)([eE][-+]?[0-9]+)?$|^[-+]?\.(inf|Inf|INF)$|^\.(nan|NaN|NAN)$"),
    list("-+0123456789."))


def parse_yaml(text: str) -> Any:
    """YAML with the loader above."""
    return yaml.load(text, Loader=_YAMLLoader)


def _is_str_field(f: dataclasses.Field) -> bool:
    return "str" in (k.strip() for k in str(f.type).split("|"))


def _override_value(f: dataclasses.Field, text: str) -> Any:
    """A `key=value` value: YAML for numbers, lists and booleans; strings stay strings (name=001)."""
    if text.strip().lower() == "none" and _is_str_field(f) and "None" not in str(f.type):
        return "none"  # a value of its own where the field cannot be empty (aux=none, backend=none)
    if text.strip().lower() in ("null", "none", "~", ""):
        return None
    value = parse_yaml(text)
    return text.strip() if _is_str_field(f) and not isinstance(value, str) else value


# ---------------------------------------------------------------------------------------------
# every value checked where it is read: against its field's type and declared `within` interval


def in_interval(x: float, within: str) -> bool:
    """Whether x lies in `within`: intervals like "[1, inf)" or "(0, 1]" and single numbers, joined by " or "."""
    for part in (p.strip() for p in within.split(" or ")):
        if part[0] not in "[(":
            if x == float(part):
                return True
            continue
        lo, hi = (float(v) for v in part[1:-1].split(","))
        if (lo <= x if part[0] == "[" else lo < x) and (x <= hi if part[-1] == "]" else x < hi):
            return True
    return False


def _scalar(key: str, value: Any, kind: str, within: str | None) -> Any:
    """One value as `kind` (bool, int, float, str; anything else passes), or a ConfigError naming `key`."""
    if kind == "bool":
        if isinstance(value, bool):  # "false", "no", 0 or "fasle" are not booleans: a typo must not mean true
            return value
        raise ConfigError(f"{key}={value!r}: expected true or false")
    if kind == "str":
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)  # `name: 2024` in YAML
        if not isinstance(value, str):
            raise ConfigError(f"{key}={value!r}: expected a string")
        return value
    if kind not in ("int", "float"):
        return value
    what = "an integer" if kind == "int" else "a number"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{key}={value!r}: expected {what}")
    if not math.isfinite(value):  # NaN passes every `<` check and inf switches limits off
        raise ConfigError(f"{key}={value!r}: expected a finite number")
    if kind == "int" and value != int(value):
        raise ConfigError(f"{key}={value!r}: expected an integer")
    value = int(value) if kind == "int" else float(value)
    if within and not in_interval(value, within):
        raise ConfigError(f"{key}={value!r}: must be in {within}")
    return value


def check_value(key: str, value: Any, hint: str, within: str | None = None) -> Any:
    """`value` as a field of type `hint` ('int | None', 'list[float]', 'tuple[float, float]'), or a ConfigError."""
    kinds = [k.strip() for k in str(hint).split("|")]
    if value is None:
        if "None" in kinds:
            return None
        raise ConfigError(f"{key}: must be set (got null)")
    kind = next(k for k in kinds if k != "None")
    outer, _, inner = kind.partition("[")
    if outer not in ("list", "tuple"):
        return _scalar(key, value, kind, within)
    if not isinstance(value, (list, tuple)):  # `leak_splits=val` must not become ['v', 'a', 'l']
        raise ConfigError(f"{key}={value!r}: expected a list, e.g. {key.split('.')[-1]}=[a,b]")
    items = [k.strip() for k in inner.rstrip("]").split(",")] if inner else []
    if outer == "tuple" and len(items) != len(value):
        raise ConfigError(f"{key}={list(value)!r}: expected {len(items)} values")
    out = [_scalar(f"{key}[{i}]", v, items[i if outer == "tuple" else 0] if items else "", within)
           for i, v in enumerate(value)]
    return tuple(out) if outer == "tuple" else out


def check_fields(cls, values: dict, prefix: str = "", where: str = "") -> dict:
    """The values of dataclass `cls`'s fields (a subset), each checked by `check_value` (errors name file and key)."""
    fields = _fields(cls)
    try:
        return {k: check_value(prefix + k, v, fields[k].type, fields[k].metadata.get("within"))
                for k, v in values.items()}
    except ConfigError as e:
        raise ConfigError(f"{where}{e}") from None


# ---------------------------------------------------------------------------------------------
# loading


def _fields(cls) -> dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(cls)}


def _set(values: dict, key: str, value: Any, where: str, parse: bool) -> None:
    """Put one (possibly dotted) key into the nested dict `values`, checking it exists."""
    section, _, sub = key.partition(".")
    top = _fields(Config)
    if section not in top:
        raise ConfigError(f"{where}unknown config key {key!r}; known: {sorted(top)}")
    if section in SECTIONS and sub:
        fields = _fields(SECTIONS[section])
        if sub not in fields:
            raise ConfigError(f"{where}unknown config key {key!r}; known in {section}: {sorted(fields) or 'none yet'}")
        values.setdefault(section, {})[sub] = _override_value(fields[sub], value) if parse else value
    elif sub:
        raise ConfigError(f"{where}config key {key!r}: {section!r} is not a section ({', '.join(SECTIONS)})")
    elif section in SECTIONS:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}config key {section!r}: expected a mapping, e.g. {section}.KEY=VALUE")
        for k, v in value.items():
            _set(values, f"{section}.{k}", v, where, parse=False)
    else:
        values[section] = _override_value(top[section], value) if parse else value


def config_from_dict(values: dict, where: str = "", strict: bool = True) -> Config:
    """A Config from a nested mapping; unknown keys are errors (or skipped with strict=False, for old files)."""
    flat: dict = {}
    for key, value in values.items():
        try:
            _set(flat, str(key), value, where, parse=False)
        except ConfigError:
            if strict:
                raise
    sections = {name: check_fields(cls, flat.pop(name, {}), f"{name}.", where) for name, cls in SECTIONS.items()}
    flat = check_fields(Config, flat, "", where)
    return Config(**flat, **{name: SECTIONS[name](**v) for name, v in sections.items()})


def load_config(path: str | os.PathLike | None = None, overrides: list[str] | dict | None = None) -> Config:
    """A YAML preset plus overrides (`key=value` / `section.key=value` strings, or a dict); unknown keys name themselves."""
    values: dict = {}
    where = f"{path}: " if path is not None else ""
    if path is not None:
        path = Path(path)
        if not path.is_file() and not path.is_absolute() and (repo_root() / path).is_file():
            path = repo_root() / path  # `configs/builtin.yaml` from any folder
        if not path.is_file():
            raise FileNotFoundError(f"config file not found: {path}")
        try:
            values = parse_yaml(read_text(path)) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"{path}: invalid YAML ({e})".replace("\n", " ")) from None
        if not isinstance(values, dict):
            raise ConfigError(f"{path}: expected a mapping of config keys")
    merged: dict = {}
    for key, value in values.items():
        _set(merged, str(key), value, where, parse=False)
    if isinstance(overrides, dict):
        for key, value in overrides.items():
            _set(merged, str(key), value, "", parse=False)
    else:
        for item in overrides or []:
            if "=" not in item:
                raise ConfigError(f"override {item!r}: expected key=value (or section.key=value)")
            key, text = item.split("=", 1)
            _set(merged, key.strip(), text, "", parse=True)
    return config_from_dict(merged, where)


def split_overrides(argv: list[str], valued: tuple[str, ...] = ()) -> tuple[list[str], list[str]]:
    """(options, key=value overrides) of a command line: overrides may come anywhere, even after an option's list.

    A `key=value` token right after one of the `valued` options (e.g. `--ablate k=1,5`) is that option's value.
    """
    overrides = [a for i, a in enumerate(argv)
                 if "=" in a and not a.startswith("-") and (i == 0 or argv[i - 1] not in valued)]
    return [a for a in argv if a not in overrides], overrides


def no_stray_arguments(tokens: list[str]) -> None:
    """Refuse command-line words that are neither options nor key=value (`epochs 1` would be dropped silently)."""
    if tokens:
        raise ConfigError(f"argument {tokens[0]!r}: expected key=value (e.g. {tokens[0]}=...) or an option")


def parse_value(key: str, text: str) -> Any:
    """A top-level key's value as a `key=value` override would set it (checks that the key exists)."""
    values: dict = {}
    _set(values, key, text, "", parse=True)
    return check_fields(Config, values)[key]


# ---------------------------------------------------------------------------------------------
# what a run depends on


def _flat(obj, prefix: str = "") -> dict:
    """Dotted key -> value of every field that changes training (run_only fields left out)."""
    out = {}
    for f in dataclasses.fields(obj):
        if f.metadata.get("run_only"):
            continue
        v = getattr(obj, f.name)
        if f.metadata.get("recipe_when_set") and v == type(v)():
            continue
        if dataclasses.is_dataclass(v):
            out.update(_flat(v, f"{prefix}{f.name}."))
        else:
            out[prefix + f.name] = list(v) if isinstance(v, tuple) else v
    return out


def recipe(cfg: Config | dict) -> dict:
    """The settings that determine a training run's weights, as dotted keys (its name and resume check).

    The top-level keys always count. A stage's section counts only when the run reads that stage's
    output: `neighbours.*` when the auxiliary classes come from a map these settings build (no
    `neighbours_csv` given), `crawl.*` when the images are this config's own crawl (`aux_images: crawl`),
    `filter.*` when they are an accepted set (its thresholds are checked against the set's provenance).
    `pilot.*` never counts: the pilot trains nothing a training run reads.
    """
    cfg = cfg if isinstance(cfg, Config) else config_from_dict(cfg, strict=False)
    flat = _flat(cfg)
    return {k: v for k, v in flat.items() if "." not in k or k.split(".")[0] in training_sections(cfg)}


def training_sections(cfg: Config) -> set[str]:
    """The sections whose settings change what a training run of `cfg` trains on (see `recipe`)."""
    if cfg.aux in (None, "none"):
        return set()
    used = set() if cfg.neighbours_csv else {"neighbours"}
    if cfg.aux_images == "crawl":
        used |= {"crawl", "filter"}
    elif cfg.aux_images and str(cfg.aux_images).endswith(".csv"):
        used.add("filter")
    return used


def check_same_recipe(saved: dict, cfg: Config, where: Path) -> None:
    """Refuse to resume a checkpoint trained with other settings (it would mislabel the results)."""
    a, b = recipe(saved), recipe(cfg)
    diff = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
    if diff:
        details = ", ".join(f"{k}: {a.get(k)!r} -> {b.get(k)!r}" for k in diff)
        raise ConfigError(f"{where} was trained with other settings ({details}); use another name= or out_dir=")


def config_yaml(cfg: Config) -> str:
    """YAML text of a config (what `load_config` reads back)."""
    d = dataclasses.asdict(cfg)
    d["betas"] = list(d["betas"])
    return yaml.safe_dump(d, sort_keys=False)
