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
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ltkit.errors import ConfigError
from ltkit.paths import repo_root


def run_only(default: Any = None) -> Any:
    """A field that may differ between a run and its resume (left out of `recipe`)."""
    return field(default=default, metadata={"run_only": True})


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
    timeout: float = run_only(60.0)    # openai: seconds per request
    retries: int = run_only(4)         # openai: retries on 429, 5xx, timeouts
    structured: bool = False           # openai: ask for a JSON list (response_format); falls back to the prompt
    workers: int = run_only(8)         # requests in flight at once
    price_per_1k: float | None = run_only(None)  # price per 1K tokens, to show the cost


@dataclass
class CrawlConfig:
    """Image search and download for the auxiliary categories (`python -m ltkit crawl`; docs/crawl.md)."""

    engine: str = "pool"               # pool (the world's pool, or pool_dir) | ddgs (web image search)
    out_dir: str | None = None         # crawl folder; default: the neighbour map's folder
    per_class: int = 50                # search hits per auxiliary class
    query: str = "{name}"              # search query; {name} is the auxiliary class name
    pool_dir: str | None = None        # pool: a folder of images with captions.csv (path,caption[,label])
    ddgs_backend: str = "duckduckgo"   # ddgs: pinned engine ("auto" picks DDG or Bing at random)
    region: str = "us-en"              # ddgs
    safesearch: str = "moderate"       # ddgs: on | moderate | off
    license: str | None = None         # ddgs: Public | Share | ShareCommercially | Modify | ModifyCommercially
    resize: int | None = None          # longest side of stored images (down only); None keeps the size
    search_interval: float = run_only(1.5)  # ddgs: seconds between searches
    search_retries: int = run_only(4)  # ddgs: retries with backoff per query
    concurrency: int = run_only(64)    # requests in flight
    per_host: int = run_only(2)        # connections per host
    host_interval: float = run_only(0.2)  # seconds between request starts to one host
    rate_limit: float = run_only(0.0)  # requests per second overall; 0 = no limit
    connect_timeout: float = run_only(10.0)
    read_timeout: float = run_only(20.0)
    total_timeout: float = run_only(60.0)  # per request: ends slow drips
    retries: int = run_only(2)         # on 429, 5xx and dropped connections (Retry-After honoured)
    backoff: float = run_only(1.0)     # seconds, doubled per retry, when no Retry-After is sent
    max_bytes: int = run_only(20_000_000)
    max_pixels: int = run_only(40_000_000)  # decompression-bomb limit
    max_redirects: int = run_only(5)
    allow_loopback: bool = run_only(False)  # admit 127.0.0.0/8 (tests, local servers); private ranges never
    progress: bool = run_only(True)


@dataclass
class FilterConfig:
    """Caption and similarity filters of the crawled images (paper Sec. 3.1; `python -m ltkit filter`)."""

    caption_mode: str = "phrase"       # phrase | words | off: how the caption must name the auxiliary class
    gamma1: float = 0.7                # keep gamma1 < cos(prototype of the parent, image feature) < gamma2
    gamma2: float = 0.98
    encoder: str = "pool"              # pool[:epochs=N] | timm:<name>[@<weights file>] | dinov2[:<timm name>]
    leak_hamming: int = 6              # pHash bits (of 64): a val/test image this close is a test leak
    leak_cos: float = 0.99             # feature cosine: a val/test image this similar is a test leak
    leak_splits: list = field(default_factory=lambda: ["val", "test"])  # target splits the leak check compares with
    cap: int = run_only(50)            # the tuner shows kept images per class against this cap
    batch_size: int = run_only(256)    # encoder batch

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
    img_size: int | None = None        # encoder input size; None: the config's img_size
    num_classes: int = 48              # N classes per draw (the paper: 500)
    superclasses: list[int] = field(default_factory=lambda: [4, 8, 16, 24])  # S (the paper: 20, 40, 60, 100)
    ratios: list[float] = field(default_factory=lambda: [1.0, 0.5, 0.1, 0.05, 0.01, 0.001])  # tail / head
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])  # a draw per (S, seed) (the paper: 5 runs)
    level: str = "auto"                # taxonomy level of the superclasses (0 = coarsest); auto: coarsest that fits
    head: int = 100                    # train images of the head class
    test_per_class: int = 20           # the balanced test split
    features: str = "frozen"           # frozen: a probe on frozen encoder features | trained: the whole model
                                       # (model / pretrained, or scratch with pretrained: scratch) trained per cell
    hidden: int = 0                    # frozen: 0 linear probe; > 0 one hidden layer of that width
    steps: int = 300                   # frozen: AdamW steps per cell (the same for every cell, whatever its size)
    batch_size: int = 256              # frozen
    lr: float = 0.01                   # frozen
    weight_decay: float = 0.001        # frozen
    train_steps: int = 400             # trained: SGD steps per cell (the same for every cell, whatever its size)
    train_batch_size: int = 128        # trained
    train_lr: float = 0.1              # trained: peak lr of the one-cycle schedule (SGD-Nesterov, weight decay 5e-4)
    head_tail_frac: float = 1 / 3      # head / tail: the top / bottom fraction of classes by train count
    out_dir: str | None = run_only(None)  # default: <out_dir>/pilot-<pool>-<recipe hash>


SECTIONS = {"neighbours": NeighbourConfig, "crawl": CrawlConfig, "filter": FilterConfig, "pilot": PilotConfig}


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
    imbalance: float = 100.0           # cifar10-lt / cifar100-lt: head / tail images
    head: int | None = None            # cifar10-lt / cifar100-lt: images of class 0 (None: 5000 / 500)
    many: int = 100                    # shot-group thresholds: many > 100 images, few < 20
    few: int = 20
    val_holdout: int = 10              # without a val split: per-class images held out of train as val (data.holdout_val)
    # auxiliary data: none | neighbours (SD) | random (RD)
    aux: str = "none"
    neighbours_csv: str | None = None  # from `python -m ltkit neighbours`; default: neighbours.out_dir's
    aux_images: str | None = None      # crawl (this config's filtered crawl), an accepted.csv or <aux name>/ folders; None: world pool
    k: int = 5                         # auxiliary categories per class at most
    aux_ratio: str | None = None       # head:medium:tail, e.g. "1:1:3"; None = 1:ceil(Nh/Nm):ceil(Nh/Nt)
    aux_cap: int = 50                  # images per auxiliary class per epoch
    # loss: ce | balce | nsce
    loss: str = "balce"
    lambda_s: float = 0.1
    tau: float = 1.0
    # model
    model: str = "ltkit_cnn_small"
    pretrained: str | None = None      # None | "pool" | "hf" (HF cache) | path to a weights file
    img_size: int = 32
    # optimisation
    epochs: int = 30
    batch_size: int = 128              # per step, across all processes
    accum_steps: int = 1               # effective batch = batch_size * accum_steps
    lr: float = 2e-3                   # used as given unless blr is set
    blr: float | None = None           # base lr per 256 images (MAE / LiVT): lr = blr x batch_size x accum_steps / 256
    weight_decay: float = 0.05         # timm's AdamW groups: none on norms, biases and embeddings
    layer_decay: float | None = None   # layer-wise lr decay (timm), e.g. 0.75 for ViT-B fine-tuning; None: off
    drop_path: float = 0.0             # stochastic depth (models that take drop_path_rate, e.g. ViTs)
    warmup_epochs: float = 2.0
    betas: tuple[float, float] = (0.9, 0.95)
    optimizer: str = "adamw"           # adamw | sgd (momentum, as the CIFAR ResNet papers train)
    momentum: float = 0.9              # sgd
    augment: bool = True               # False: train on the eval transform (no crop, flip or RandAugment)
    randaugment: str | None = "rand-m9-mstd0.5"
    color_jitter: float = 0.4          # timm's default; 0 where colour is a class attribute (the world)
    mixup: float = 0.8
    cutmix: float = 1.0
    label_smoothing: float = 0.0
    amp: bool = True                   # bf16 autocast on GPU
    channels_last: bool = run_only(False)  # NHWC images and weights (faster convolutions on GPU)
    compile: bool = run_only(False)    # torch.compile the model
    num_workers: int = run_only(0)
    threads: int | None = run_only(None)  # torch CPU threads (None: torch's default); numbers repeat bit for bit
                                          # only at the same thread count
    device: str | None = run_only(None)  # default: cuda if available
    # evaluation: direct | crt | tau
    classifier: str = run_only("direct")
    eval_every: int = run_only(1)
    progress: bool = run_only(True)
    # stage sections
    neighbours: NeighbourConfig = field(default_factory=NeighbourConfig)
    crawl: CrawlConfig = field(default_factory=CrawlConfig)
    filter: FilterConfig = field(default_factory=FilterConfig)
    pilot: PilotConfig = field(default_factory=PilotConfig)

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
    return "str" in str(f.type)


def _override_value(f: dataclasses.Field, text: str) -> Any:
    """A `key=value` value: YAML for numbers, lists and booleans; strings stay strings (name=001)."""
    if text.strip().lower() in ("null", "none", "~", ""):
        return None
    value = parse_yaml(text)
    return text.strip() if _is_str_field(f) and not isinstance(value, str) else value


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
    if "betas" in flat and flat["betas"] is not None:
        flat["betas"] = tuple(flat["betas"])
    for name, cls in SECTIONS.items():
        flat[name] = cls(**flat.get(name, {}))
    return Config(**flat)


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
            values = parse_yaml(path.read_text()) or {}
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


def parse_value(key: str, text: str) -> Any:
    """A top-level key's value as a `key=value` override would set it (checks that the key exists)."""
    values: dict = {}
    _set(values, key, text, "", parse=True)
    return values[key]


# ---------------------------------------------------------------------------------------------
# what a run depends on


def _flat(obj, prefix: str = "") -> dict:
    """Dotted key -> value of every field that changes training (run_only fields left out)."""
    out = {}
    for f in dataclasses.fields(obj):
        if f.metadata.get("run_only"):
            continue
        v = getattr(obj, f.name)
        if dataclasses.is_dataclass(v):
            out.update(_flat(v, f"{prefix}{f.name}."))
        else:
            out[prefix + f.name] = list(v) if isinstance(v, tuple) else v
    return out


def recipe(cfg: Config | dict) -> dict:
    """The settings that determine the trained weights, as dotted keys."""
    return _flat(cfg if isinstance(cfg, Config) else config_from_dict(cfg, strict=False))


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


def neighbour_dir(cfg: Config) -> Path:
    """Where the neighbour map of these settings lives: `neighbours.out_dir`, else a folder named after them.

    The name carries everything the map depends on (dataset, k, ratio, shot thresholds, seed,
    backend and its inputs), so changing any of them builds a new map instead of reusing a stale one.
    """
    if cfg.neighbours.out_dir:
        return Path(cfg.neighbours.out_dir)
    n = cfg.neighbours
    ratio = (cfg.aux_ratio or "paper").replace(":", "-")
    name = f"{cfg.dataset}-k{cfg.k}-{ratio}-m{cfg.many}-f{cfg.few}-s{cfg.seed}-{n.backend}"
    inputs = [n.model, n.base_url, n.template, n.file, n.taxonomy_json, n.classes_file]
    if any(inputs):
        name += "-" + hashlib.sha1(repr(inputs).encode()).hexdigest()[:6]
    return Path(cfg.out_dir) / "_neighbours" / name
